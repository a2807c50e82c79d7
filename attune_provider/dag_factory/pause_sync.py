"""A source's `status: paused` applied to DAGs that exist already (LANGUAGE.md section 9).

A new DAG takes its pause state from `is_paused_upon_creation` (compiler.py); Airflow
never applies that to a DAG it knows, and a DAG file's parse has no API to pause one (the
DAG processor blocks its ORM for DAG files). So the DAG file's parse writes the `dag`
table's `is_paused` itself, in one short transaction on Airflow's own database, and only
when a source changes a workflow's status (or first reports it paused): a user who pauses
or unpauses a DAG by hand is not overruled on every parse. What was applied is recorded
in the source store (`paused-dags.json`), so each change is written once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

from airflow.sdk import DAG

from attune_provider.language.catalog import LOCAL_SOURCE
from attune_provider.sources.store import Store, configured_store_dir

log = logging.getLogger(__name__)
MARKS_FILE = "paused-dags.json"


def _source(dag: DAG) -> str | None:
    return next((tag.split(":", 1)[1] for tag in dag.tags if tag.startswith("source:")), None)


def wanted_states(dags: Iterable[DAG]) -> dict[str, bool]:
    """dag_id -> paused, for the DAGs of workflows that came from a source (not the packs path)."""
    return {
        dag.dag_id: bool(dag.is_paused_upon_creation)
        for dag in dags
        if _source(dag) not in (None, LOCAL_SOURCE)
    }


def changes(wanted: Mapping[str, bool], applied: Mapping[str, bool]) -> dict[str, bool]:
    """What to write: a status that changed, or one seen for the first time as paused."""
    return {dag_id: paused for dag_id, paused in wanted.items() if applied.get(dag_id, False) != paused}


def sync_paused(dags: Iterable[DAG], store: Store | None = None) -> None:
    """Pause or unpause the existing DAGs whose source status changed. Never raises."""
    try:
        wanted = wanted_states(dags)
        if not wanted:
            return
        store = store or Store(configured_store_dir())
        applied = _read_marks(store)
        todo = changes(wanted, applied)
        if todo:
            _write_is_paused(todo)
            log.info("Attune applied its sources' pause states: %s", todo)
        if {**applied, **wanted} != applied:
            _save_marks(store, {**applied, **wanted})
    except Exception:  # noqa: BLE001 - retried on the next parse; never fails the DAG file
        log.warning("Attune could not apply its sources' pause states", exc_info=True)


def _write_is_paused(todo: Mapping[str, bool]) -> None:
    """`UPDATE dag SET is_paused` on Airflow's database (a DAG not created yet is left to
    `is_paused_upon_creation`)."""
    from airflow.configuration import conf
    from sqlalchemy import bindparam, create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(conf.get("database", "sql_alchemy_conn"), poolclass=NullPool)
    statement = text("UPDATE dag SET is_paused = :paused WHERE dag_id IN :ids").bindparams(
        bindparam("ids", expanding=True)
    )
    try:
        with engine.begin() as connection:
            for paused in (True, False):
                ids = sorted(dag_id for dag_id, value in todo.items() if value is paused)
                if ids:
                    connection.execute(statement, {"paused": paused, "ids": ids})
    finally:
        engine.dispose()


def _read_marks(store: Store) -> dict[str, bool]:
    try:
        data = json.loads((store.root / MARKS_FILE).read_text(encoding="utf-8"))
        return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_marks(store: Store, marks: Mapping[str, bool]) -> None:
    store.write_json(store.root / MARKS_FILE, dict(sorted(marks.items())))
