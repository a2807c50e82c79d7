"""What was found on the packs path: packs, actions and workflows with their files.

A `Catalog` is filled by the loader (dag_factory/loader.py) and read by validation, the
plan and the CLI; it holds every file's problems, so nothing that reads it raises for
bad input. No Airflow, no disk access here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.language.models import Action, Pack, Rule, Workflow, release_sources
from attune_provider.language.source import DEFAULT_MAX_FILE_BYTES, Location, Problem, Severity

LOCAL_SOURCE = "local"  # the source name of the packs path


class SourcePacks(NamedTuple):
    """Where one workflow source's packs are: packs directories or pack directories, in
    the order their claims count, and the refs of the packs the source has paused."""

    name: str
    paths: tuple[Path, ...]
    paused: frozenset[str] = frozenset()


class PackEntry:
    """One pack directory: its metadata, config schema and the files found in it."""

    __slots__ = ("directory", "display", "meta", "config_schema", "config_location", "source", "paused")

    def __init__(
        self,
        directory: Path,
        display: str,
        meta: Pack | None = None,
        source: str = LOCAL_SOURCE,
        paused: bool = False,
    ) -> None:
        self.directory = directory
        self.display = display
        self.meta = meta
        self.source = source  # the workflow source it came from (docs/sources.md)
        self.paused = paused  # its source marks it paused: its workflows' DAGs are paused
        self.config_schema: dict[str, Any] | None = None
        self.config_location: Location | None = None

    def __repr__(self) -> str:
        return f"PackEntry({self.display!r})"

    @property
    def ref(self) -> str:
        return self.meta.ref if self.meta else self.directory.name


class ActionEntry(NamedTuple):
    ref: str
    pack: PackEntry
    action: Action
    file: Path
    display: str


class WorkflowEntry(NamedTuple):
    ref: str
    pack: PackEntry
    workflow: Workflow
    file: Path
    display: str


class RuleEntry(NamedTuple):
    ref: str
    pack: PackEntry
    rule: Rule
    file: Path
    display: str


class Catalog:
    """Everything found on the packs path, with the problems of each file."""

    __slots__ = (
        "packs", "actions", "workflows", "rules", "problems", "source_problems", "max_file_bytes", "cache",
        "digests", "planned",
    )

    def __init__(self, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, cache: Any = None) -> None:
        self.packs: dict[str, PackEntry] = {}
        self.actions: dict[str, ActionEntry] = {}
        self.workflows: dict[str, WorkflowEntry] = {}
        self.rules: dict[str, RuleEntry] = {}  # pack rules (rules/<name>.yaml), by ref
        self.problems: list[Problem] = []
        self.source_problems: list[Problem] = []  # about workflow sources: shown with import errors
        self.max_file_bytes = max_file_bytes
        self.cache = cache  # the loader's FileCache (dag_factory/file_cache.py), None when off
        self.digests: dict[str, str] = {}  # display -> SHA-256 (when cached)
        self.planned: dict[str, Any] = {}  # action ref -> its ActionPlan, shared by every task calling it

    def add_problem(self, location: Location, message: str, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(location, message, severity))

    def files_with_errors(self) -> set[str]:
        return {p.location.file for p in self.problems if p.is_error}

    def release_sources(self) -> None:
        """Let go of every model's YAML positions once validation no longer needs them:
        they are most of a model's memory, and DAGs keep their workflow's models alive."""
        for entry in self.workflows.values():
            release_sources(entry.workflow)
        for action in self.actions.values():
            release_sources(action.action)
        for rule in self.rules.values():
            release_sources(rule.rule)
