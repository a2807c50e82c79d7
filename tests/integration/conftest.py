"""Fixtures that run workflows through Airflow (`dag.test()` on the session's SQLite DB)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
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
