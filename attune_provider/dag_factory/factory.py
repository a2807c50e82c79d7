"""The two DAG files' calls: every valid workflow as a DAG, and every problem as an import error.

Isolation: Airflow's DAG processor records one import error per DAG file and marks every
DAG of a file that has one stale (hidden from the UI and the API), whatever an in-process
DagBag shows. So the problems are reported from a second DAG file that holds no DAG:

- `dags/attune_dags.py` calls `dags_for_airflow()`: the DAGs of the valid workflows, never
  an import error (problems go to the DAG processor log);
- `dags/attune_errors.py` calls `errors_for_airflow()`: nothing when all is well, else a
  stand-in DAG whose `validate()` raises, which the DagBag records as that file's import
  error (the UI's "Dag Import Errors", the DAG processor log) without storing a DAG.

Both files read the packs themselves, so each picks up a change on its own next parse.
The errors file compiles the valid workflows too (a workflow the compiler cannot build is
left out of the DAG file), unless a compile of the same inputs was recorded in the cache.

Speed (docs/performance.md): pack files and validation reports come from the cache
(cache.py) when their content is unchanged, and when Airflow parses the DAG file to run
one task (`get_parsing_context().dag_id` is set) only that workflow and what it calls are
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
from typing import Any, NamedTuple

from airflow.sdk import DAG

from attune_provider import settings
from attune_provider.dag_factory.building import compile_workflows, usable_rules
from attune_provider.dag_factory.closure import load_workflow_closure
from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.dag_factory.integrity import publish_definitions
from attune_provider.dag_factory.loader import all_sources, load_catalog
from attune_provider.dag_factory.parts import WHOLE, Part, load_part
from attune_provider.dag_factory.validation.cached import Findings, validate_cached, validation_key
from attune_provider.exceptions import AttuneError
from attune_provider.language.catalog import LOCAL_SOURCE, Catalog
from attune_provider.language.source import DEFAULT_MAX_FILE_BYTES, Problem
from attune_provider.language.templates.limits import limits_read_once
from attune_provider.sources import metrics
from attune_provider.sources.pause_sync import sync_paused
from attune_provider.sources.reconcile import Resolved, resolve_configured

log = logging.getLogger(__name__)
BROKEN_DAG_ID = "attune_broken_workflows"
ERRORS_FILE = "attune_errors.py"


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


class Loaded(NamedTuple):
    """What one parse of the packs gives: the DAGs of the valid workflows (by dag_id), and
    the import error that names every problem (None when there is none)."""

    dags: dict[str, DAG]
    problems: str | None


NO_SOURCES = Resolved([], [], {})


def _message(
    problems: Sequence[Problem], broken: Sequence[str], catalog: Catalog, notices: Sequence[Problem]
) -> str:
    """The import error: the workflows left out, the files whose errors kept them (or
    whatever they define) out, then one line per problem; the workflow sources' problems
    (a failed fetch, a pack two sources serve) come first."""
    lines = [p.format() for p in notices]
    if not problems and not broken:
        if any(p.is_error for p in notices):
            header = "Attune: its workflow sources are not loaded (the packs path is)"
        else:
            header = "Attune: its workflow sources need attention (every valid workflow is loaded)"
        return "\n".join([header, *lines])
    left_out = ", ".join(sorted(broken)) or "none"
    loaded = {e.display for e in catalog.workflows.values()} | {e.display for e in catalog.actions.values()}
    loaded |= {e.display for e in catalog.rules.values()}
    unread = sorted({p.location.file for p in problems if p.is_error and p.location.file not in loaded})
    header = f"Attune found errors in its packs; workflows left out: {left_out}"
    if unread:
        header += f"; files that could not be used (what they define is left out): {', '.join(unread)}"
    return "\n".join([header, *lines, *(p.format() for p in problems)])


def _parsing_dag_id() -> str | None:
    """The DAG Airflow is parsing this file for when it runs one task (else None)."""
    try:
        from airflow.sdk import get_parsing_context

        return get_parsing_context().dag_id
    except Exception:  # noqa: BLE001 - outside a parse, there is no context
        return None


class _Configured:
    """`load_packs(cache=CONFIGURED)`: the cache of cache.py's settings (or none when off)."""


CONFIGURED: Any = _Configured()


def _batch(cache: FileCache | None, scope: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext() if cache is None else cache.batch(scope)


def _scope(kind: str, packs_paths: Sequence[Path], sources: Resolved) -> str:
    """The cache scope of a parse: what it reads, every source's paths in order."""
    roots = [
        f"{source.name}={os.pathsep.join(os.path.abspath(p) for p in source.paths)}"
        for source in all_sources(packs_paths, sources.sources)
    ]
    return f"{kind}|{'|'.join(roots)}"


def _task_time_dags(
    packs_paths: Sequence[Path],
    ref: str,
    max_depth: int,
    max_file_bytes: int,
    cache: FileCache | None,
    sources: Resolved,
    part: Part = WHOLE,
) -> dict[str, DAG]:
    """The one DAG a worker needs to run a task of workflow `ref`, from `ref`'s files only;
    none when another part holds it (`airflow dags test` parses every DAG file so)."""
    scope = _scope(f"workflow:{ref}", packs_paths, sources)
    with _batch(cache, scope):
        catalog = load_workflow_closure(
            packs_paths, ref, max_file_bytes, cache=cache, sources=sources.sources
        )
    if catalog is None:
        log.warning("Attune workflow %s not found on the packs path or in any workflow source", ref)
        return {}
    entry = catalog.workflows.get(ref) or catalog.rules.get(ref)
    if entry is not None and not part.holds_file(entry.pack.ref, entry.file):
        return {}
    report = validate_cached(catalog, max_depth, cache, scope)
    if ref in catalog.rules:
        usable = usable_rules(catalog, report)
        if ref not in usable:
            log.error("Attune rule %s is disabled or has errors: `attune-airflow validate` shows them", ref)
        return {name: dag for name, dag in compile_workflows(catalog, [], usable)[0].items() if name == ref}
    if ref in report.invalid_workflows:
        for problem in report.invalid_workflows[ref]:
            log.error("%s", problem.format())
        return {}
    return compile_workflows(catalog, [ref])[0]


class _CompileCheck:
    """Which valid workflows failed to compile, remembered in the cache for the inputs of a
    validation report, so that the errors file need not compile what the DAG file did."""

    def __init__(self, cache: FileCache | None, scope: str, key: str) -> None:
        self.cache, self.scope, self.key = cache, f"compiled|{scope}", key

    def recorded(self) -> dict[str, list[Problem]] | None:
        stored = self.cache.report(self.scope, self.key) if self.cache is not None else None
        return dict(stored) if isinstance(stored, dict) else None

    def record(self, failed: dict[str, list[Problem]]) -> None:
        if self.cache is not None:
            self.cache.store_report(self.scope, self.key, dict(failed))


def load_packs(
    packs_paths: Sequence[Path],
    max_depth: int = settings.DEFAULT_MAX_DEPTH,
    *,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    cache: FileCache | None = CONFIGURED,
    want_dags: bool = True,
    sources: Resolved = NO_SOURCES,
    part: Part = WHOLE,
    compile_check: bool = True,
) -> Loaded:
    """The DAGs of the valid workflows and the problems of the others.

    When Airflow parses the DAG file to run a task, only that task's DAG is built. With
    `want_dags=False` (the errors file) no DAG is kept, and workflows are compiled only
    when no compile of the same inputs is recorded in the cache. `sources` are the
    workflow sources besides the packs path, resolved (sources/reconcile.py). A `part` of
    several builds only the workflows of its files (parts.py); the errors file beside parts
    passes `compile_check=False`: it validates but compiles nothing (each part logs what
    its compiler refuses), since compiling every workflow would not fit its import timeout.
    """
    if cache is CONFIGURED:
        cache = FileCache.open()
    collecting = gc.isenabled()
    gc.disable()  # building allocates much and frees little: collections would walk it all
    try:
        with limits_read_once():
            only = _parsing_dag_id() if want_dags else None
            if only:
                dags = _task_time_dags(packs_paths, only, max_depth, max_file_bytes, cache, sources, part)
                return Loaded(dags, None)
            if part.total > 1 and want_dags:
                return _load_part(packs_paths, part, max_depth, max_file_bytes, cache, sources)
            return _load_all(packs_paths, max_depth, max_file_bytes, cache, want_dags, sources, compile_check)
    finally:
        if collecting:
            gc.enable()


def _load_all(
    packs_paths: Sequence[Path],
    max_depth: int,
    max_file_bytes: int,
    cache: FileCache | None,
    want_dags: bool,
    sources: Resolved,
    compile_check: bool = True,
) -> Loaded:
    scope = _scope("all", packs_paths, sources)
    with _batch(cache, scope):
        catalog = load_catalog(packs_paths, max_file_bytes, cache=cache, sources=sources.sources)
    _report_sources(catalog, sources)
    key = validation_key(catalog, max_depth, cache)  # one fingerprint for both cache entries
    report: Findings = validate_cached(catalog, max_depth, cache, scope, key)
    valid = [ref for ref in sorted(catalog.workflows) if ref not in report.invalid_workflows]
    check = _CompileCheck(cache, scope, key)
    failed = None if want_dags else check.recorded() if compile_check else {}
    dags: dict[str, DAG] = {}
    if failed is None:
        dags, failed = compile_workflows(catalog, valid, usable_rules(catalog, report))
        check.record(failed)
    errors = [p for p in report.problems if p.is_error]
    broken = sorted({*report.invalid_workflows, *failed})
    notices = [*sources.problems, *catalog.source_problems]
    if not want_dags and sources.store is not None:  # the errors file: once per parse, its warnings shown
        notices += sync_paused(_pause_states(catalog, broken), sources.store)
    if not errors and not broken and not notices:
        return Loaded(dags if want_dags else {}, None)
    # a workflow that failed to compile, or one invalid through another file, has no error of its own above
    invalid = {**report.invalid_workflows, **failed}
    extra = [p for ref in broken for p in invalid[ref] if p not in errors]
    return Loaded(dags if want_dags else {}, _message([*errors, *extra], broken, catalog, notices))


def _load_part(
    packs_paths: Sequence[Path],
    part: Part,
    max_depth: int,
    max_file_bytes: int,
    cache: FileCache | None,
    sources: Resolved,
) -> Loaded:
    """The DAGs of one part's valid workflows and rules; its problems are only logged (the
    errors file reports every pack's)."""
    scope = _scope(f"part:{part.number}/{part.total}", packs_paths, sources)
    with _batch(cache, scope):
        loaded = load_part(packs_paths, part, max_file_bytes, cache=cache, sources=sources.sources)
    report = validate_cached(loaded.catalog, max_depth, cache, scope)
    valid = [ref for ref in loaded.workflows if ref not in report.invalid_workflows]
    rules = [ref for ref in usable_rules(loaded.catalog, report) if ref in loaded.rules]
    dags, failed = compile_workflows(loaded.catalog, valid, rules)
    invalid = {**report.invalid_workflows, **failed}
    problems = [p for ref in sorted(invalid) if ref in loaded.workflows for p in invalid[ref]]
    left_out = sorted({*failed, *(ref for ref in report.invalid_workflows if ref in loaded.workflows)})
    if not left_out:
        return Loaded(dags, None)
    message = f"Attune part {part.number} of {part.total}: workflows left out: {', '.join(left_out)}"
    return Loaded(dags, "\n".join([message, *(p.format() for p in problems)]))


def _pause_states(catalog: Catalog, broken: Sequence[str]) -> dict[str, bool]:
    """dag_id -> paused, for the loaded workflows that came from a source (not the packs path)."""
    return {
        ref: entry.pack.paused
        for ref, entry in catalog.workflows.items()
        if entry.pack.source != LOCAL_SOURCE and ref not in broken
    }


def _report_sources(catalog: Catalog, sources: Resolved) -> None:
    """Each source's gauges: how many workflows it serves now, how old its packs are."""
    if not sources.sources:
        return
    served = {source.name: 0 for source in sources.sources}
    for entry in catalog.workflows.values():
        if entry.pack.source in served:
            served[entry.pack.source] += 1
    for name, count in served.items():
        metrics.served(name, count, sources.ages.get(name))


def _settings() -> tuple[list[Path], int, int]:
    """The options loading needs; the limits read later are checked here too, so that an
    invalid one is reported by name (ValueError) instead of failing halfway through."""
    for limit in (
        settings.max_tasks,
        settings.max_items,
        settings.max_template_result_bytes,
        settings.template_timeout,
    ):
        limit()
    return settings.packs_paths(), settings.max_depth(), settings.max_file_bytes()


def _load_for_airflow(
    packs_paths: Sequence[Path] | None, want_dags: bool, part: Part = WHOLE, compile_check: bool = True
) -> Loaded:
    """`load_packs` with the configured settings; never raises: a failure is the problem."""
    try:
        paths, max_depth, max_file_bytes = _settings()
    except ValueError as exc:  # an invalid [attune] option: its message says which and why
        return Loaded({}, f"Attune could not load its packs: {exc}")
    if packs_paths is not None:
        paths = list(packs_paths)
    try:
        task_time = want_dags and _parsing_dag_id() is not None
        sources = resolve_configured(max_file_bytes, may_fetch=not task_time)
        return load_packs(
            paths,
            max_depth,
            max_file_bytes=max_file_bytes,
            want_dags=want_dags,
            sources=sources,
            part=part,
            compile_check=compile_check,
        )
    except Exception:  # noqa: BLE001 - report, never take the DAG file down
        return Loaded({}, "Attune could not load its packs:\n" + traceback.format_exc())


def dags_for_airflow(
    packs_paths: Sequence[Path] | None = None, *, part: int = 1, parts: int = 1
) -> dict[str, DAG]:
    """What `dags/attune_dags.py` puts into its globals: the valid workflows' DAGs (of
    part `part` of `parts`: `attune-airflow init-dags --parts`). Never raises, and never an
    import error of that file (it would hide every DAG of it)."""
    try:
        which = Part(part, parts).check()
    except ValueError as exc:
        log.error("Attune DAG file: %s; no DAG is loaded from it", exc)
        return {}
    loaded = _load_for_airflow(packs_paths, want_dags=True, part=which)
    publish_definitions(loaded.dags)
    if loaded.problems:
        log.error("%s\n(Airflow shows these as the import error of %s)", loaded.problems, ERRORS_FILE)
    return loaded.dags


def errors_for_airflow(
    packs_paths: Sequence[Path] | None = None, *, compile_check: bool = True
) -> dict[str, DAG]:
    """What `dags/attune_errors.py` puts into its globals: a stand-in whose validation
    fails with every problem, recorded as that file's import error; nothing when all is well.
    Beside DAG file parts, `compile_check=False`: see `load_packs`."""
    loaded = _load_for_airflow(packs_paths, want_dags=False, compile_check=compile_check)
    return {BROKEN_DAG_ID: _broken(loaded.problems)} if loaded.problems else {}
