"""The shard mapping in the metadata database: versions, heartbeats and pinned runs.

A version is the list of shards workflows are spread over; a workflow's shard under it is
the first live shard of its rendezvous ranking (rendezvous.py), so a shard that stops
beating loses its workflows at once, each to its next choice, exactly as the version that
`rebalance` publishes without it assigns them. A DAG run is pinned to the shard it
started on: its later task instances (mapped ones, clears) go there too while that shard
is live. The system is in `transition` while a run of a workflow that the current version
moved is still in flight on its old shard, else `steady`.

Every function takes a SQLAlchemy connection: the cluster policy passes the scheduler's
own (the pin is written in the transaction that creates the run), the commands their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Column, MetaData, String, Table, and_, cast, literal, select, union_all
from sqlalchemy.engine import Connection

from attune_provider.shards import tables
from attune_provider.shards.rendezvous import assign

IN_FLIGHT = ("queued", "running")  # DAG run states whose tasks may still be queued

# Airflow's `dag_run` table, only read (the state of the runs pinned to a shard)
_DAG_RUN = Table(
    "dag_run", MetaData(), Column("dag_id", String), Column("run_id", String), Column("state", String)
)
_PINNED_RUNS = tables.runs.join(
    _DAG_RUN, and_(_DAG_RUN.c.dag_id == tables.runs.c.dag_id, _DAG_RUN.c.run_id == tables.runs.c.run_id)
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes: they are UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment


@dataclass(frozen=True)
class Version:
    number: int  # 0: nothing published yet, every configured shard
    shards: tuple[int, ...]
    published_at: datetime | None
    reason: str


@dataclass(frozen=True)
class Beat:
    worker: str
    shard: int
    last_seen: datetime


def initial(count: int) -> Version:
    return Version(0, tuple(range(count)), None, "initial: every configured shard")


def _shards_of(stored: str, count: int) -> tuple[int, ...]:
    """A version's stored shards below `count` (`[attune] shards` lowered since): all of the
    configured ones when none is left."""
    return tuple(s for s in json.loads(stored) if 0 <= s < count) or tuple(range(count))


def current_version(connection: Connection, count: int) -> Version:
    """The latest published version (shards beyond `count` left out), else the initial one."""
    latest = select(tables.versions).order_by(tables.versions.c.version.desc()).limit(1)
    row = connection.execute(latest).first()
    if row is None:
        return initial(count)
    return Version(row.version, _shards_of(row.shards, count), _aware(row.published_at), row.reason)


def beats(connection: Connection) -> list[Beat]:
    ordered = select(tables.workers).order_by(tables.workers.c.shard, tables.workers.c.worker)
    rows = connection.execute(ordered)
    return [Beat(row.worker, row.shard, _aware(row.last_seen) or utcnow()) for row in rows]


def live_shards(found: Iterable[Beat], count: int, timeout: float, now: datetime | None = None) -> set[int]:
    """Shards below `count` with a heartbeat in the last `timeout` seconds."""
    limit = (now or utcnow()) - timedelta(seconds=timeout)
    return {beat.shard for beat in found if 0 <= beat.shard < count and beat.last_seen >= limit}


def beat(connection: Connection, worker: str, shard: int, now: datetime | None = None) -> None:
    """Record that `worker` serves `shard`, now."""
    moment = now or utcnow()
    done = connection.execute(
        tables.workers.update().where(tables.workers.c.worker == worker).values(shard=shard, last_seen=moment)
    )
    if not done.rowcount:
        connection.execute(tables.workers.insert().values(worker=worker, shard=shard, last_seen=moment))


def forget(connection: Connection, worker: str) -> None:
    """A worker that stops cleanly says so: its shard is not live a timeout later, but now."""
    connection.execute(tables.workers.delete().where(tables.workers.c.worker == worker))


def shard_of_run(
    connection: Connection, dag_id: str, run_id: str, version: Version, live: set[int]
) -> int:
    """The shard of a task instance of run `run_id`: its run's pinned shard while that is
    live, else (and for a new run) the workflow's shard under `version`, pinned."""
    key = and_(tables.runs.c.dag_id == dag_id, tables.runs.c.run_id == run_id)
    pinned = connection.execute(select(tables.runs.c.shard).where(key)).scalar()
    if pinned is not None and pinned in live:
        return int(pinned)
    shard = assign(dag_id, version.shards, live)
    if pinned is None:
        connection.execute(
            tables.runs.insert().values(dag_id=dag_id, run_id=run_id, version=version.number, shard=shard)
        )
    elif pinned != shard:  # its shard was lost: the rest of the run moves
        connection.execute(tables.runs.update().where(key).values(version=version.number, shard=shard))
    return shard


def publish(connection: Connection, shards: Sequence[int], reason: str, count: int) -> Version | None:
    """Publish a version over `shards` unless the current one has the same; None: no change."""
    current = current_version(connection, count)
    wanted = tuple(sorted(set(shards)))
    if not wanted:
        raise ValueError("no shard to publish a version over")
    if current.number and tuple(sorted(current.shards)) == wanted:
        return None
    if not current.number and wanted == current.shards:
        return None  # the initial version already spreads over exactly these
    version = Version(current.number + 1, wanted, utcnow(), reason)
    connection.execute(
        tables.versions.insert().values(
            version=version.number, shards=json.dumps(list(wanted)), published_at=version.published_at,
            reason=reason,
        )
    )
    return version


@dataclass(frozen=True)
class Moving:
    """A run in flight on its old shard, of a workflow the current version moved."""

    dag_id: str
    run_id: str
    old_shard: int
    new_shard: int
    version: int


def moving_runs(connection: Connection, version: Version, live: set[int]) -> list[Moving]:
    """Runs in flight pinned to a shard other than their workflow's shard now (one query)."""
    query = (
        select(tables.runs.c.dag_id, tables.runs.c.run_id, tables.runs.c.shard, tables.runs.c.version)
        .select_from(_PINNED_RUNS)
        .where(_DAG_RUN.c.state.in_(IN_FLIGHT))
    )
    found = []
    for row in connection.execute(query):
        now = assign(row.dag_id, version.shards, live)
        if now != row.shard:
            found.append(Moving(row.dag_id, row.run_id, row.shard, now, row.version))
    return found




@dataclass(frozen=True)
class Snapshot:
    """What routing needs, read in one round trip: the version, the live shards and the
    runs in flight of some workflows with the shard each is pinned to."""

    version: Version
    live: set[int]
    pins: dict[str, list[tuple[str, int]]]


def snapshot(connection: Connection, count: int, timeout: float, refs: Sequence[str] = ()) -> Snapshot:
    """One query (a UNION ALL) for the current version, the live shards and `refs`' pins."""
    latest = select(tables.versions.c.version).order_by(tables.versions.c.version.desc()).limit(1)
    parts = [
        select(
            literal("version").label("kind"),
            cast(tables.versions.c.version, String).label("a"),
            tables.versions.c.shards.label("b"),
        ).where(tables.versions.c.version == latest.scalar_subquery()),
        select(literal("live"), cast(tables.workers.c.shard, String), literal("")).where(
            tables.workers.c.last_seen >= utcnow() - timedelta(seconds=timeout)
        ),
    ]
    if refs:
        pinned = cast(tables.runs.c.shard, String) + ":" + tables.runs.c.run_id
        parts.append(
            select(literal("pin"), tables.runs.c.dag_id, pinned)
            .select_from(_PINNED_RUNS)
            .where(_DAG_RUN.c.state.in_(IN_FLIGHT), tables.runs.c.dag_id.in_(list(refs)))
        )
    version, live = initial(count), set()
    pins: dict[str, list[tuple[str, int]]] = {ref: [] for ref in refs}
    for kind, a, b in connection.execute(union_all(*parts)):
        if kind == "version":
            version = Version(int(a), _shards_of(b, count), None, "")
        elif kind == "live" and 0 <= int(a) < count:
            live.add(int(a))
        elif kind == "pin":
            shard, _, run_id = b.partition(":")
            pins[a].append((run_id, int(shard)))
    return Snapshot(version, live, pins)
