"""Fixtures that run workflows through Airflow (`dag.test()` on the session's SQLite DB)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from attune_provider.local_run import RunResult, ensure_database, prepare_environment, run_workflow
from tests.support import PackFiles, write_pack


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Migrate the session's metadata database once."""
    prepare_environment([])
    ensure_database()


@pytest.fixture
def run(airflow_db: None, tmp_path: Path) -> Callable[..., RunResult]:
    """run(workflow_yaml, files=..., **params): write pack `t` and run workflow `t.<name>`."""

    def _run(
        workflow: str,
        files: PackFiles | None = None,
        params: Mapping[str, Any] | None = None,
        name: str = "wf",
    ) -> RunResult:
        packs = tmp_path / "packs"
        write_pack(packs, "t", {f"workflows/{name}.yaml": workflow, **(files or {})})
        prepare_environment([packs])
        return run_workflow(f"t.{name}", [packs], params or {})

    return _run


@dataclass(frozen=True)
class Try:
    """One try of a task instance, from the metadata DB (history rows, then the current try)."""

    try_number: int
    state: str | None
    start: datetime | None
    end: datetime | None

    @property
    def duration(self) -> float:
        assert self.start is not None and self.end is not None, self
        return (self.end - self.start).total_seconds()


def task_tries(dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> list[Try]:
    """Every try of one task instance of a run, in try order."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session

    where = {"dag_id": dag_id, "run_id": run_id, "task_id": task_id, "map_index": map_index}
    with create_session() as session:
        rows = session.query(TaskInstanceHistory).filter_by(**where).all()
        found = {row.try_number: Try(row.try_number, row.state, row.start_date, row.end_date) for row in rows}
        ti = session.query(TaskInstance).filter_by(**where).one_or_none()
        if ti is not None and ti.try_number:
            found[ti.try_number] = Try(ti.try_number, ti.state, ti.start_date, ti.end_date)
    return [found[n] for n in sorted(found)]


@pytest.fixture
def tries(airflow_db: None) -> Callable[..., list[Try]]:
    """tries(result, task_id, map_index=-1): the tries of a task instance of a finished run."""

    def _tries(result: RunResult, task_id: str, map_index: int = -1) -> list[Try]:
        return task_tries(result.workflow, result.run_id, task_id, map_index)

    return _tries
