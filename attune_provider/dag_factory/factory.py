"""The DAG file's one call: every valid workflow on the packs path as a DAG.

Isolation: nothing here may raise into the DAG file, because Airflow drops every DAG of
a file whose import fails (dag-factory's best-known complaint). Each broken workflow is
left out, and all their problems together become one import error of the DAG file,
raised by a stand-in DAG's `validate()`: Airflow's DagBag records that as an import error
(shown in the UI's "Dag Import Errors" and the DAG processor log) and still loads every
other DAG of the file.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from attune_provider.dag_factory.loader import load_catalog
from attune_provider.dag_factory.plan import build_plan
from attune_provider.dag_factory.source import Problem
from attune_provider.dag_factory.validator import validate_catalog
from attune_provider.exceptions import AttuneError

log = logging.getLogger(__name__)
BROKEN_DAG_ID = "attune_broken_workflows"


class AttuneImportError(AttuneError):
    """Raised by `BrokenWorkflows.validate()`: Airflow shows it as the file's import error."""


class BrokenWorkflows(DAG):
    """A stand-in that never loads: its validate() reports the broken workflows."""

    attune_message: str = ""

    def validate(self) -> None:
        raise AttuneImportError(self.attune_message)


def _broken(message: str) -> BrokenWorkflows:
    dag = BrokenWorkflows(dag_id=BROKEN_DAG_ID, schedule=None, auto_register=False)
    dag.attune_message = message
    return dag


def _message(problems: Sequence[Problem], broken: Sequence[str]) -> str:
    left_out = ", ".join(sorted(broken)) or "none"
    lines = [f"Attune found errors in its packs; workflows left out: {left_out}"]
    lines += [p.format() for p in problems]
    return "\n".join(lines)


def _parsing_dag_id() -> str | None:
    """The DAG Airflow is parsing this file for when it runs one task (else None)."""
    try:
        from airflow.sdk import get_parsing_context

        return get_parsing_context().dag_id
    except Exception:  # noqa: BLE001 - outside a parse, there is no context
        return None


def build_dags(packs_paths: Sequence[Path], max_depth: int = 5) -> dict[str, Any]:
    """DAGs by dag_id, plus the stand-in reporting broken workflows when there are any."""
    catalog = load_catalog(packs_paths)
    report = validate_catalog(catalog, max_depth=max_depth)
    only = _parsing_dag_id()
    dags: dict[str, Any] = {}
    for ref, entry in sorted(catalog.workflows.items()):
        if ref in report.invalid_workflows or (only and ref != only):
            continue
        try:
            from attune_provider.dag_factory.compiler import build_dag

            dags[ref] = build_dag(build_plan(entry, catalog))
        except Exception as exc:  # noqa: BLE001 - one workflow must not take the others down
            log.exception("could not compile workflow %s", ref)
            report.invalid_workflows[ref] = [Problem(entry.workflow.loc(), f"could not compile: {exc}")]
    errors = [p for p in report.problems if p.is_error]
    broken = sorted(report.invalid_workflows)
    if errors and not only:
        for problem in errors:
            log.error("%s", problem.format())
        extra = [p for ref in broken for p in report.invalid_workflows[ref] if p not in errors]
        dags[BROKEN_DAG_ID] = _broken(_message([*errors, *extra], broken))
    return dags


def dags_for_airflow(packs_paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """What `dags/attune_dags.py` puts into its globals; never raises."""
    try:
        from attune_provider import settings

        paths = list(packs_paths) if packs_paths is not None else settings.packs_paths()
        return build_dags(paths, max_depth=settings.max_depth())
    except Exception:  # noqa: BLE001 - report, never take the DAG file down
        message = "Attune could not load its packs:\n" + traceback.format_exc()
        log.error("%s", message)
        return {BROKEN_DAG_ID: _broken(message)}
