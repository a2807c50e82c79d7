"""The provider's Airflow plugin (entry point `airflow.plugins`): a DAG run listener that
writes the run's summary into the DAG run's note when an Attune workflow's run ends.

The Task SDK has no call that writes a DAG run's note, so the final step pushes the
summary as an XCom (operators/steps/summary.py) and this listener, which runs where the
run's state is decided (the scheduler; the `dag.test()` loop of `attune-airflow run`),
copies it on the run's own database session: it is committed with the run's final state.
Kept light: the scheduler imports it at start.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

SUMMARY_KEY = "summary"  # operators/steps/summary.py
OUTCOME_TASK_ID = "attune_outcome"  # language/statuses.py

log = logging.getLogger(__name__)


def write_note(dag_run: Any) -> None:
    """Copy the run's summary (the `summary` XCom of its final step) into its note, on the
    session the run's state is being written with: the scheduler's (the run is attached to
    it), or the thread's scoped session (`dag.test()` passes a detached run)."""
    from airflow import settings
    from airflow.models.dagrun import DagRunNote
    from airflow.models.xcom import XComModel
    from sqlalchemy import select
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    if session is None and settings.Session is not None:
        session = settings.Session()
    if session is None:
        return
    query = select(XComModel).where(
        XComModel.dag_id == dag_run.dag_id,
        XComModel.run_id == dag_run.run_id,
        XComModel.task_id == OUTCOME_TASK_ID,
        XComModel.map_index == -1,
        XComModel.key == SUMMARY_KEY,
    )
    row = session.scalars(query).first()
    if row is None:  # not an Attune workflow, or its final step did not run
        return
    summary = XComModel.deserialize_value(row)
    if not isinstance(summary, str) or not summary:
        return
    note = session.get(DagRunNote, dag_run.id)
    if note is None:
        note = DagRunNote(content=summary)
        note.dag_run_id = dag_run.id
        session.add(note)
    else:
        note.content = summary


@hookimpl
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _safely(dag_run)


@hookimpl
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _safely(dag_run)


def _safely(dag_run: Any) -> None:
    try:
        write_note(dag_run)
    except Exception:  # noqa: BLE001 - a note must never stop the scheduler
        log.exception("Attune: could not write the summary of %s into its note", dag_run)


class AttunePlugin(AirflowPlugin):
    name = "attune"
    listeners = [sys.modules[__name__]]
