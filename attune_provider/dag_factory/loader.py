"""Discovering packs on the packs path and parsing their files into the model.

The loader never raises for bad input: every file that cannot be read or parsed adds
problems to the `Catalog`, and everything else still loads. Cross-file checks live in
`validator.py`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attune_provider.dag_factory.source import (
    DEFAULT_MAX_FILE_BYTES,
    Location,
    Problem,
    Severity,
    load_yaml_file,
)
from attune_provider.dag_factory.spec import Action, Pack, Workflow, parse_model

CORE_PACKS_DIR = Path(__file__).resolve().parent.parent / "packs"
YAML_SUFFIXES = (".yaml", ".yml")


def display_path(path: Path) -> str:
    """The path as a user reaches it from the current directory (relative when below it)."""
    text = os.path.normpath(str(path))
    if not os.path.isabs(text):
        return text
    cwd = os.getcwd()
    if text == cwd or text.startswith(cwd.rstrip(os.sep) + os.sep):
        return os.path.relpath(text, cwd)
    return text


@dataclass
class PackEntry:
    """One pack directory: its metadata, config schema and the files found in it."""

    directory: Path
    display: str
    meta: Pack | None = None
    config_schema: dict[str, Any] | None = None
    config_location: Location | None = None

    @property
    def ref(self) -> str:
        return self.meta.ref if self.meta else self.directory.name


@dataclass
class ActionEntry:
    ref: str
    pack: PackEntry
    action: Action
    file: Path
    display: str


@dataclass
class WorkflowEntry:
    ref: str
    pack: PackEntry
    workflow: Workflow
    file: Path
    display: str


@dataclass
class Catalog:
    """Everything found on the packs path, with the problems of each file."""

    packs: dict[str, PackEntry] = field(default_factory=dict)
    actions: dict[str, ActionEntry] = field(default_factory=dict)
    workflows: dict[str, WorkflowEntry] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def add_problem(self, location: Location, message: str, severity: Severity = Severity.ERROR) -> None:
        self.problems.append(Problem(location, message, severity))

    def files_with_errors(self) -> set[str]:
        return {p.location.file for p in self.problems if p.is_error}


def _yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())


def _load_model(catalog: Catalog, cls: type[Any], path: Path, display: str) -> Any:
    loaded = load_yaml_file(path, display, catalog.max_file_bytes)
    catalog.problems.extend(loaded.problems)
    if any(p.is_error for p in loaded.problems):
        return None
    model, problems = parse_model(cls, loaded.data, Location(display))
    catalog.problems.extend(problems)
    return model


def _load_config_schema(catalog: Catalog, entry: PackEntry) -> None:
    path = entry.directory / "config.yaml"
    if not path.is_file():
        return
    display = f"{entry.display}/config.yaml"
    loaded = load_yaml_file(path, display, catalog.max_file_bytes)
    catalog.problems.extend(loaded.problems)
    if isinstance(loaded.data, dict):
        entry.config_schema = loaded.data
        entry.config_location = getattr(loaded.data, "loc", Location(display))
    elif loaded.data is not None:
        catalog.add_problem(Location(display), "config.yaml must be a JSON-Schema object (a mapping)")


def load_pack(catalog: Catalog, directory: Path, display: str) -> PackEntry | None:
    """Parse one pack directory into the catalog; a pack with a bad pack.yaml loads nothing."""
    entry = PackEntry(directory, display)
    meta_file = directory / "pack.yaml"
    entry.meta = _load_model(catalog, Pack, meta_file, f"{display}/pack.yaml")
    if entry.meta is None:
        return None
    if entry.meta.ref in catalog.packs:
        other = catalog.packs[entry.meta.ref].display
        catalog.add_problem(entry.meta.loc("ref"), f"pack '{entry.meta.ref}' is already loaded from {other}")
        return None
    catalog.packs[entry.meta.ref] = entry
    _load_config_schema(catalog, entry)
    for path in _yaml_files(directory / "actions"):
        load_action(catalog, entry, path)
    for path in _yaml_files(directory / "workflows"):
        load_workflow(catalog, entry, path)
    return entry


def load_action(catalog: Catalog, pack: PackEntry, path: Path) -> None:
    display = f"{pack.display}/actions/{path.name}"
    action = _load_model(catalog, Action, path, display)
    if action is None:
        return
    ref = f"{pack.ref}.{action.name}"
    if ref in catalog.actions or ref in catalog.workflows:
        catalog.add_problem(action.loc("name"), f"action '{ref}' is defined twice")
        return
    catalog.actions[ref] = ActionEntry(ref, pack, action, path, display)


def load_workflow(catalog: Catalog, pack: PackEntry, path: Path) -> None:
    display = f"{pack.display}/workflows/{path.name}"
    workflow = _load_model(catalog, Workflow, path, display)
    if workflow is None:
        return
    if workflow.ref in catalog.workflows or workflow.ref in catalog.actions:
        catalog.add_problem(workflow.loc("ref"), f"workflow '{workflow.ref}' is defined twice")
        return
    catalog.workflows[workflow.ref] = WorkflowEntry(workflow.ref, pack, workflow, path, display)


def pack_directories(packs_paths: Sequence[Path]) -> Iterable[tuple[Path, str]]:
    """The built-in core pack, then every directory holding a pack.yaml on the packs path."""
    core = CORE_PACKS_DIR / "core"
    yield core, display_path(core)
    for root in packs_paths:
        if (root / "pack.yaml").is_file():  # the path names one pack directly
            yield root, display_path(root)
            continue
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if child.is_dir() and (child / "pack.yaml").is_file():
                yield child, display_path(child)


def load_catalog(packs_paths: Sequence[Path], max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Catalog:
    """Parse every pack on the packs path (plus core) into one catalog."""
    catalog = Catalog(max_file_bytes=max_file_bytes)
    for root in packs_paths:
        if not root.exists():
            catalog.add_problem(Location(display_path(root)), "packs directory does not exist")
    seen: set[Path] = set()
    for directory, display in pack_directories(packs_paths):
        resolved = directory.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        load_pack(catalog, directory, display)
    return catalog
