"""Every configured source resolved to the pack directories it serves now.

Each source is reconciled on its own (docs/sources.md): an http source is fetched
when its `refresh_seconds` have passed since the last try, and a fetch that fails for
any reason leaves the source serving its last known good packs, with a warning that
names the source, the reason and the age of what it serves. No source's failure changes
what another one serves.

A task's parse (`may_fetch=False`) never fetches: it serves the copy on disk, which the
DAG processor's last good fetch left there. Only a machine that has no copy at all (a
worker that shares no disk with the DAG processor) fetches once, to have one.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

from attune_provider.exceptions import AttuneError
from attune_provider.language.catalog import SourcePacks
from attune_provider.language.source import Location, Problem, Severity
from attune_provider.settings import airflow_option
from attune_provider.sources import metrics, registry
from attune_provider.sources.config import SourceConfigError, SourceSpec, configured_sources, configured_text
from attune_provider.sources.connections import bearer_token
from attune_provider.sources.store import SourceState, Store, configured_store_dir

log = logging.getLogger(__name__)

MAX_FETCH_SECONDS = 20.0  # all fetches of one parse, at most (and half of dagbag_import_timeout)


class Resolved(NamedTuple):
    """The sources besides the packs path, in the configured order, and what went wrong."""

    sources: list[SourcePacks]
    problems: list[Problem]
    ages: dict[str, float | None]  # seconds since each source's last good fetch (0 for a dir)
    store: Store | None = None  # where the http sources' packs and the applied pause states are


def fetch_budget() -> float:
    """Seconds all fetches of one parse may take: well inside Airflow's import timeout."""
    raw = airflow_option("dagbag_import_timeout", "core")
    try:
        timeout = float(raw) if raw and raw.strip() else 30.0
    except ValueError:
        timeout = 30.0
    return min(MAX_FETCH_SECONDS, timeout / 2) if timeout > 0 else MAX_FETCH_SECONDS


def resolve_quietly(max_file_bytes: int) -> Resolved:
    """`resolve_configured` for the command line: what fetching logs (and Airflow, when a
    connection must be looked up through it) goes to standard error, never to standard
    output, which holds the command's result."""
    with contextlib.redirect_stdout(sys.stderr):
        return resolve_configured(max_file_bytes, may_fetch=True)


def resolve_configured(max_file_bytes: int, *, may_fetch: bool) -> Resolved:
    """The configured sources resolved; a configuration error is one problem, no source."""
    try:
        specs = configured_sources()
    except SourceConfigError as exc:
        origin = configured_text()[1]
        return Resolved([], [Problem(Location(origin), f"sources not loaded: {exc}")], {})
    if not specs:
        return Resolved([], [], {})
    return resolve(specs, Store(configured_store_dir()), max_file_bytes, may_fetch=may_fetch)


def resolve(
    specs: Sequence[SourceSpec],
    store: Store,
    max_file_bytes: int,
    *,
    may_fetch: bool,
    token_for: Callable[[str], str | None] = bearer_token,
) -> Resolved:
    """Each source's packs now. The http sources that are due are fetched at once, each in
    its own thread against the same deadline: a registry that hangs costs the parse its
    budget once, and never the fetch of another source."""
    deadline = time.monotonic() + fetch_budget()
    states: dict[str, SourceState] = {}
    due = [
        spec for spec in specs if spec.kind == "http" and _due(spec, store, store.state(spec.name), may_fetch)
    ]
    if due:
        with ThreadPoolExecutor(max_workers=len(due), thread_name_prefix="attune-source") as pool:
            fetches = {
                spec.name: pool.submit(_refresh, spec, store, max_file_bytes, deadline, token_for)
                for spec in due
            }
            states = {name: future.result() for name, future in fetches.items()}
    resolved = Resolved([], [], {}, store)
    for spec in specs:
        if spec.kind == "dir":
            _resolve_dir(spec, resolved)
        else:
            _serve_http(spec, store, states.get(spec.name) or store.state(spec.name), resolved)
    return resolved


def _resolve_dir(spec: SourceSpec, resolved: Resolved) -> None:
    assert spec.path is not None
    if spec.path.is_dir():
        resolved.sources.append(SourcePacks(spec.name, (spec.path,)))
        resolved.ages[spec.name] = 0.0
        return
    resolved.sources.append(SourcePacks(spec.name, ()))
    resolved.ages[spec.name] = None
    message = f"source '{spec.name}': {spec.path} is not a directory: it serves no workflows"
    resolved.problems.append(Problem(Location(str(spec.path)), message, Severity.WARNING))


def _serve_http(spec: SourceSpec, store: Store, state: SourceState, resolved: Resolved) -> None:
    present = [pack for pack in state.packs if store.pack_path(pack).is_dir()]
    paths = tuple(store.pack_path(pack) for pack in present)
    paused = frozenset(pack.ref for pack in present if pack.status == "paused")
    resolved.sources.append(SourcePacks(spec.name, paths, paused))
    age = None if state.fetched_at is None else max(0.0, time.time() - state.fetched_at)
    resolved.ages[spec.name] = age
    served = f"serving its packs of {_age(age)} ago" if age is not None else "it serves nothing yet"
    if state.error:
        message = f"source '{spec.name}' could not be fetched: {state.error}; {served}"
    elif state.fetched_at is None:
        message = f"source '{spec.name}' has not been fetched yet: {served}"
    elif len(present) < len(state.packs):
        missing = ", ".join(pack.ref for pack in state.packs if pack not in present)
        message = f"source '{spec.name}': pack(s) {missing} gone from the store {store.root}: fetched again"
    else:
        return
    resolved.problems.append(Problem(Location(spec.url), message, Severity.WARNING))


def _due(spec: SourceSpec, store: Store, state: SourceState, may_fetch: bool) -> bool:
    """Whether to fetch now: never fetched here, a pack gone from the store (even a task's
    parse then fetches, to have a copy), else for the DAG processor when refresh_seconds
    have passed since the last try."""
    if state.fetched_at is None and state.checked_at is None:
        return True
    if any(not store.pack_path(pack).is_dir() for pack in state.packs):
        return True
    if not may_fetch:
        return False
    return state.checked_at is None or time.time() - state.checked_at >= spec.refresh_seconds


def _refresh(
    spec: SourceSpec,
    store: Store,
    max_file_bytes: int,
    deadline: float,
    token_for: Callable[[str], str | None],
) -> SourceState:
    """Fetch the source unless another process is fetching it; its state afterwards. When
    there is nothing to serve yet, wait (within the deadline) for the process that fetches."""
    wait = store.state(spec.name).fetched_at is None
    with store.fetch_lock(spec.name, wait_until=deadline if wait else None) as mine:
        state = store.state(spec.name)
        fresh = state.checked_at is not None and time.time() - state.checked_at < spec.refresh_seconds
        complete = all(store.pack_path(pack).is_dir() for pack in state.packs)
        if not mine or (fresh and complete):
            return state  # another process fetches (or just did): serve what is there
        started = time.monotonic()
        try:
            token = token_for(spec.conn_id) if spec.conn_id else None
            new, attempts = registry.fetch(spec.url, token, store, deadline, max_file_bytes)
        except Exception as exc:  # noqa: BLE001 - any failure of one source is that source's alone
            if not isinstance(exc, (AttuneError, OSError)):
                log.exception("Attune source %s: unexpected failure while fetching", spec.name)
            failed = state._replace(checked_at=time.time(), error=str(exc) or type(exc).__name__)
            store.save(spec.name, failed)
            metrics.fetch_failed(spec.name)
            log.warning("Attune source %s: fetch failed: %s", spec.name, exc)
            return failed
        store.save(spec.name, new)
        metrics.fetch_ok(spec.name)
        log.info(
            "Attune source %s: fetched %d pack(s) in %.2fs (%d request(s))",
            spec.name, len(new.packs), time.monotonic() - started, attempts,
        )
        return new


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60}m"
