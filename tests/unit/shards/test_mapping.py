"""The shard mapping in a database (shards/mapping.py, tables.py), on SQLite and PostgreSQL.

Airflow's `dag_run` table is stood in for by its three columns the mapping reads.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, MetaData, String, Table, create_engine, event, insert, select, update
from sqlalchemy.engine import Engine

from attune_provider.shards import mapping, tables
from attune_provider.shards.rendezvous import assign
from tests.live_airflow import create_database, drop_database

DAG_RUN = Table("dag_run", MetaData(), Column("dag_id", String(250)), Column("run_id", String(250)),
                Column("state", String(50)))
TIMEOUT = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        made = create_engine(f"sqlite:///{tmp_path / 'meta.db'}")
        name = None
    else:
        name = create_database("attune_shards")
        made = create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}")
    DAG_RUN.metadata.create_all(made)
    with made.begin() as connection:
        tables.ensure_tables(connection)
    yield made
    made.dispose()
    tables.forget_ready()
    if name is not None:
        drop_database(name)


def start_run(connection: Any, dag_id: str, run_id: str, state: str = "running") -> None:
    connection.execute(insert(DAG_RUN).values(dag_id=dag_id, run_id=run_id, state=state))


def test_versions_are_published_only_when_the_shards_change(engine: Engine) -> None:
    with engine.begin() as connection:
        assert mapping.current_version(connection, 3).shards == (0, 1, 2)
        assert mapping.publish(connection, [0, 1, 2], "same as initial", 3) is None
        first = mapping.publish(connection, [0, 2], "shard 1 lost", 3)
        assert first is not None and first.number == 1 and first.shards == (0, 2)
        assert mapping.publish(connection, [2, 0], "again", 3) is None
        second = mapping.publish(connection, [0, 1, 2], "shard 1 back", 3)
        assert second is not None and second.number == 2
        current = mapping.current_version(connection, 3)
        assert (current.number, current.shards, current.reason) == (2, (0, 1, 2), "shard 1 back")


def test_a_shard_is_live_while_a_worker_beats_for_it(engine: Engine) -> None:
    now = mapping.utcnow()
    with engine.begin() as connection:
        mapping.beat(connection, "w0", 0, now)
        mapping.beat(connection, "w1", 1, now - timedelta(seconds=TIMEOUT + 5))
        mapping.beat(connection, "w1", 1, now - timedelta(seconds=TIMEOUT + 1))  # updates its row
        mapping.beat(connection, "w9", 9, now)  # beyond [attune] shards: ignored
        beats = mapping.beats(connection)
    assert [b.worker for b in beats] == ["w0", "w1", "w9"]
    assert mapping.live_shards(beats, 3, TIMEOUT, now) == {0}
    with engine.begin() as connection:
        mapping.forget(connection, "w0")
        assert mapping.live_shards(mapping.beats(connection), 3, TIMEOUT, now) == set()


def test_a_run_stays_on_its_shard_while_it_is_live_and_moves_when_it_is_lost(engine: Engine) -> None:
    ref = "shop.deploy"
    with engine.begin() as connection:
        version = mapping.current_version(connection, 3)
        first = mapping.shard_of_run(connection, ref, "r1", version, {0, 1, 2})
        assert first == assign(ref, (0, 1, 2))
        newer = mapping.Version(7, tuple(s for s in (0, 1, 2) if s != first), None, "")
        assert mapping.shard_of_run(connection, ref, "r1", newer, {0, 1, 2}) == first  # pinned
        live = {0, 1, 2} - {first}
        moved = mapping.shard_of_run(connection, ref, "r1", version, live)  # its shard is lost
        assert moved == assign(ref, (0, 1, 2), live) and moved != first
        pin = connection.execute(select(tables.runs.c.version, tables.runs.c.shard)).one()
    assert tuple(pin) == (0, moved)


def test_in_transition_while_a_moved_workflow_still_runs_on_its_old_shard(engine: Engine) -> None:
    refs = [f"p.w{i}" for i in range(40)]
    with engine.begin() as connection:
        old = mapping.publish(connection, [0, 1], "two shards live", 3)
        assert old is not None
        for ref in refs:
            start_run(connection, ref, "r1")
            mapping.shard_of_run(connection, ref, "r1", old, {0, 1})
    with engine.begin() as connection:
        new = mapping.publish(connection, [0, 1, 2], "a third shard", 3)
        assert new is not None
        moving = mapping.moving_runs(connection, new, {0, 1, 2})
    expected = {ref for ref in refs if assign(ref, (0, 1, 2)) != assign(ref, (0, 1))}
    assert expected and {m.dag_id for m in moving} == expected
    assert all(m.new_shard == 2 and m.version == 1 for m in moving)
    with engine.begin() as connection:  # the moved workflows' runs end: steady again
        connection.execute(update(DAG_RUN).where(DAG_RUN.c.dag_id.in_(expected)).values(state="success"))
        assert mapping.moving_runs(connection, new, {0, 1, 2}) == []


def test_a_batch_of_refs_is_answered_in_one_query(engine: Engine) -> None:
    refs = [f"p.w{i}" for i in range(25)]
    with engine.begin() as connection:
        mapping.beat(connection, "w0", 0)
        mapping.beat(connection, "w1", 1)
        mapping.publish(connection, [0, 1], "two shards", 3)
        for ref in refs[:5]:
            start_run(connection, ref, "r1")
            mapping.shard_of_run(connection, ref, "r1", mapping.current_version(connection, 3), {0, 1})
    statements: list[Any] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with engine.connect() as connection:
        found = mapping.snapshot(connection, 3, TIMEOUT, refs)
    assert len(statements) == 1, statements
    assert (found.version.number, found.version.shards, found.live) == (1, (0, 1), {0, 1})
    assert {ref: len(pins) for ref, pins in found.pins.items() if pins} == dict.fromkeys(refs[:5], 1)
    assert found.pins[refs[0]][0] == ("r1", assign(refs[0], (0, 1)))


def test_processes_creating_the_tables_together_on_a_new_database_take_turns() -> None:
    import threading

    name = create_database("attune_shards_race")
    engines = [create_engine(f"postgresql+psycopg2://postgres@127.0.0.1:5432/{name}") for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def create(engine: Engine) -> None:
        try:
            barrier.wait(30)
            with engine.begin() as connection:
                tables.ensure_tables(connection)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    tables.forget_ready()
    # each engine has its own URL object but the same text: forget between them, as separate processes
    threads = [threading.Thread(target=create, args=(engine,)) for engine in engines]
    try:
        original = tables._ready
        tables._ready = _NeverReady()  # type: ignore[assignment]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        tables._ready = original
        for engine in engines:
            engine.dispose()
        drop_database(name)
    assert errors == []


class _NeverReady(set):  # type: ignore[type-arg]
    """Each thread acts as a new process: none sees the tables as created by another."""

    def __contains__(self, item: object) -> bool:
        return False


def test_a_heartbeat_stops_for_a_zombie_or_a_reused_pid() -> None:
    import os
    import time

    from attune_provider.shards.heartbeat import Watched

    child = os.fork()
    if child == 0:
        os._exit(0)
    watched = Watched(child)
    deadline = time.monotonic() + 10
    while watched.alive() and time.monotonic() < deadline:  # exited, not reaped: a zombie
        time.sleep(0.05)
    assert not watched.alive()
    os.waitpid(child, 0)
    assert not watched.alive()
    assert Watched(os.getpid()).alive() and Watched(None).alive()
    me = Watched(os.getpid())
    me.started = "0"  # the same pid with another start time: another process
    assert not me.alive()
