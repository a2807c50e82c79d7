"""Validation with its findings cached: a warm parse reads them instead of validating.

The findings of `validate_catalog` for a scope (the whole packs path, or one workflow's
closure) are stored in the `FileCache` with a fingerprint of everything validation reads
(every file's hash, the entry points, the settings: depth, file size, task and item
limits), and used only when it matches. A warm parse never imports the checks (and what
they import).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from attune_provider import settings
from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.language.catalog import Catalog
from attune_provider.language.source import Problem


def fingerprint(parts: Iterable[object]) -> str:
    """One digest of everything a validation report depends on."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(repr(part).encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _entry_points(catalog: Catalog) -> Iterator[tuple[str, str, bool]]:
    """What the validator checks of each action's entry point on disk."""
    for ref, entry in sorted(catalog.actions.items()):
        if entry.action.entry_point:
            target = os.path.realpath(entry.file.parent / entry.action.entry_point)
            yield ref, target, os.path.isfile(target)


def validation_inputs(catalog: Catalog, max_depth: int) -> Iterator[object]:
    """Everything `validate_catalog` reads: the same inputs give the same report. The
    catalog must come from a cached load (`catalog.digests` holds every file's hash)."""
    yield max_depth, catalog.max_file_bytes, settings.max_tasks(), settings.max_items()
    yield sorted(catalog.digests.items())
    yield sorted((ref, os.path.realpath(pack.directory), pack.display) for ref, pack in catalog.packs.items())
    yield [problem.format() for problem in catalog.problems]
    yield list(_entry_points(catalog))


class Findings(Protocol):
    """What `build_dags` reads of a validation report (`validator.Report` has it too)."""

    @property
    def problems(self) -> list[Problem]: ...

    @property
    def invalid_workflows(self) -> dict[str, list[Problem]]: ...


class StoredReport(NamedTuple):
    """A `validator.Report` read back from the cache: the same problems, kept as plain data
    so that a warm parse never imports the validator (and what it imports)."""

    problems: list[Problem]
    invalid_workflows: dict[str, list[Problem]]


def validation_key(catalog: Catalog, max_depth: int, cache: FileCache | None) -> str:
    """The fingerprint of everything validation reads ("" without a cache, which needs none)."""
    return fingerprint(validation_inputs(catalog, max_depth)) if cache is not None else ""


def validate_cached(
    catalog: Catalog, max_depth: int, cache: FileCache | None, scope: str, key: str | None = None
) -> Findings:
    """`validate_catalog(catalog, max_depth)`, or the findings it gave for the same inputs
    before, stored under `scope` (e.g. the whole packs path, or one workflow's closure).
    `key` is `validation_key(...)` when the caller has it already."""
    if key is None:
        key = validation_key(catalog, max_depth, cache)
    if cache is not None:
        stored = cache.report(scope, key)
        if isinstance(stored, tuple) and len(stored) == 2:
            return StoredReport(list(stored[0]), dict(stored[1]))
    from attune_provider.dag_factory.validation.checks import (
        validate_catalog,  # only on a miss: cheap warm parses
    )

    report = validate_catalog(catalog, max_depth=max_depth)
    if cache is not None:
        cache.store_report(scope, key, (list(report.problems), dict(report.invalid_workflows)))
    return report
