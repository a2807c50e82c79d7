"""The DAG file's one call: every valid workflow on the packs path as a DAG.

Isolation: nothing here may raise into the DAG file, because Airflow drops every DAG of
a file whose import fails (dag-factory's best-known complaint). Each broken workflow is
left out, and all their problems together become one import error of the DAG file,
raised by a stand-in DAG's `validate()`: Airflow's DagBag records that as an import error
(shown in the UI's "Dag Import Errors" and the DAG processor log) and still loads every
other DAG of the file.

Speed (docs/performance.md): pack files and validation reports come from the cache
(cache.py) when their content is unchanged, and when Airflow parses the file to run one
task (`get_parsing_context().dag_id` is set) only that workflow and what it calls are
read, validated and compiled.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import DAG

from attune_provider.dag_factory.cache import FileCache, Findings, validate_cached
from attune_provider.dag_factory.loader import Catalog, load_catalog, load_workflow_closure
from attune_provider.dag_factory.source import DEFAULT_MAX_FILE_BYTES, Location, Problem
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


def _message(problems: Sequence[Problem], broken: Sequence[str], catalog: Catalog) -> str:
    """The import error: the workflows left out, the files whose errors kept them (or
    whatever they define) out, then one line per problem."""
    left_out = ", ".join(sorted(broken)) or "none"
    loaded = {e.display for e in catalog.workflows.values()} | {e.display for e in catalog.actions.values()}
    unread = sorted({p.location.file for p in problems if p.is_error and p.location.file not in loaded})
    header = f"Attune found errors in its packs; workflows left out: {left_out}"
    if unread:
        header += f"; files that could not be used (what they define is left out): {', '.join(unread)}"
    return "\n".join([header, *(p.format() for p in problems)])


def _parsing_dag_id() -> str | None:
    """The DAG Airflow is parsing this file for when it runs one task (else None)."""
    try:
        from airflow.sdk import get_parsing_context

        return get_parsing_context().dag_id
    except Exception:  # noqa: BLE001 - outside a parse, there is no context
        return None


class _Configured:
    """`build_dags(cache=CONFIGURED)`: the cache of cache.py's settings (or none when off)."""


CONFIGURED: Any = _Configured()


def _compile(catalog: Catalog, refs: Sequence[str], report: Findings) -> dict[str, Any]:
    """DAGs of the given (valid) workflows; a compile failure makes its workflow invalid."""
    from attune_provider.dag_factory.compiler import build_dag
    from attune_provider.dag_factory.plan import build_plan

    catalog.release_sources()  # validated: the DAGs need no YAML positions
    dags: dict[str, Any] = {}
    for ref in refs:
        entry = catalog.workflows[ref]
        try:
            dags[ref] = build_dag(build_plan(entry, catalog))
        except Exception as exc:  # noqa: BLE001 - one workflow must not take the others down
            log.exception("could not compile workflow %s", ref)
            report.invalid_workflows[ref] = [Problem(Location(entry.display), f"could not compile: {exc}")]
    return dags


def _batch(cache: FileCache | None, scope: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if cache is None else cache.batch(scope)


def _scope(kind: str, packs_paths: Sequence[Path]) -> str:
    return f"{kind}|{os.pathsep.join(os.path.abspath(p) for p in packs_paths)}"


def _task_time_dags(
    packs_paths: Sequence[Path], ref: str, max_depth: int, max_file_bytes: int, cache: FileCache | None
) -> dict[str, Any]:
    """The one DAG a worker needs to run a task of workflow `ref`, from `ref`'s files only."""
    with _batch(cache, _scope(f"workflow:{ref}", packs_paths)):
        catalog = load_workflow_closure(packs_paths, ref, max_file_bytes, cache=cache)
    if catalog is None:
        log.warning("Attune workflow %s not found on the packs path", ref)
        return {}
    report = validate_cached(catalog, max_depth, cache, _scope(f"workflow:{ref}", packs_paths))
    if ref in report.invalid_workflows:
        for problem in report.invalid_workflows[ref]:
            log.error("%s", problem.format())
        return {}
    return _compile(catalog, [ref], report)


def build_dags(
    packs_paths: Sequence[Path],
    max_depth: int = 5,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    cache: FileCache | None = CONFIGURED,
) -> dict[str, Any]:
    """DAGs by dag_id, plus the stand-in reporting broken workflows when there are any.

    When Airflow parses the DAG file to run a task, only that task's DAG is built.
    """
    if cache is CONFIGURED:
        cache = FileCache.open()
    collecting = gc.isenabled()
    gc.disable()  # building allocates much and frees little: collections would walk it all
    try:
        return _build(packs_paths, max_depth, max_file_bytes, cache)
    finally:
        if collecting:
            gc.enable()


def _build(
    packs_paths: Sequence[Path], max_depth: int, max_file_bytes: int, cache: FileCache | None
) -> dict[str, Any]:
    only = _parsing_dag_id()
    if only:
        return _task_time_dags(packs_paths, only, max_depth, max_file_bytes, cache)
    with _batch(cache, _scope("all", packs_paths)):
        catalog = load_catalog(packs_paths, max_file_bytes, cache=cache)
    report = validate_cached(catalog, max_depth, cache, _scope("all", packs_paths))
    valid = [ref for ref in sorted(catalog.workflows) if ref not in report.invalid_workflows]
    dags = _compile(catalog, valid, report)
    errors = [p for p in report.problems if p.is_error]
    broken = sorted(report.invalid_workflows)
    if errors or broken:  # a workflow that failed to compile is broken without an error above
        for problem in errors:
            log.error("%s", problem.format())
        extra = [p for ref in broken for p in report.invalid_workflows[ref] if p not in errors]
        dags[BROKEN_DAG_ID] = _broken(_message([*errors, *extra], broken, catalog))
    return dags


def dags_for_airflow(packs_paths: Sequence[Path] | None = None) -> dict[str, Any]:
    """What `dags/attune_dags.py` puts into its globals; never raises."""
    try:
        from attune_provider import settings

        paths = list(packs_paths) if packs_paths is not None else settings.packs_paths()
        max_depth, max_file_bytes = settings.max_depth(), settings.max_file_bytes()
    except ValueError as exc:  # an invalid [attune] option: its message says which and why
        log.error("Attune could not load its packs: %s", exc)
        return {BROKEN_DAG_ID: _broken(f"Attune could not load its packs: {exc}")}
    try:
        return build_dags(paths, max_depth=max_depth, max_file_bytes=max_file_bytes)
    except Exception:  # noqa: BLE001 - report, never take the DAG file down
        message = "Attune could not load its packs:\n" + traceback.format_exc()
        log.error("%s", message)
        return {BROKEN_DAG_ID: _broken(message)}
