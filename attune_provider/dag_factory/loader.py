"""Discovering packs on the packs path and parsing their files into the model.

The loader never raises for bad input: every file that cannot be read or parsed adds
problems to the `Catalog` (language/catalog.py), and everything else still loads.
Cross-file checks live in `validation/`.

`load_catalog` reads every pack of every workflow source (the packs path is source
`local`; the others come from sources/); closure.py reads only what one workflow needs
(Airflow parsing the DAG file to run one of its tasks). With a `FileCache`, a file whose
content is unchanged is not parsed again (see file_cache.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.language.catalog import (
    LOCAL_SOURCE,
    ActionEntry,
    Catalog,
    PackEntry,
    RuleEntry,
    SourcePacks,
    WorkflowEntry,
)
from attune_provider.language.model_errors import parse_model
from attune_provider.language.models import Action, Pack, Rule, Workflow
from attune_provider.language.source import (
    DEFAULT_MAX_FILE_BYTES,
    LoadedYaml,
    Location,
    Problem,
    Severity,
    load_yaml_file,
)

_E = TypeVar("_E", ActionEntry, WorkflowEntry)

CORE_PACKS_DIR = Path(__file__).resolve().parent.parent / "packs"
YAML_SUFFIXES = (".yaml", ".yml")


def display_path(path: Path) -> str:
    """The path as the user gave it (its packs directory, relative or absolute, joined
    with the path inside it: docs/language.md), normalised."""
    return os.path.normpath(str(path))


def yaml_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and p.is_file())


def _unreadable(directory: Path) -> list[Path]:
    """YAML names in `directory` that are not files: a dangling link, a directory."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in YAML_SUFFIXES and not p.is_file())


def _not_packs(packs_paths: Sequence[Path]) -> list[Path]:
    """Directories on the packs path that hold `workflows/` or `actions/` but no pack.yaml:
    meant as packs, yet not loaded (a forgotten pack.yaml would otherwise go unnoticed)."""
    found = []
    for root in packs_paths:
        if root.is_dir() and not (root / "pack.yaml").is_file():
            for child in sorted(root.iterdir()):
                looks_like_pack = any((child / folder).is_dir() for folder in ("workflows", "actions"))
                if child.is_dir() and looks_like_pack and not (child / "pack.yaml").is_file():
                    found.append(child)
    return found


def model_parser(cls: type[Any], display: str) -> Any:
    """Parses loaded YAML into `cls`: (model or None, the file's problems)."""

    def parse(loaded: LoadedYaml) -> tuple[Any, list[Problem]]:
        if any(p.is_error for p in loaded.problems):
            return None, list(loaded.problems)
        model, problems = parse_model(cls, loaded.data, Location(display))
        return model, [*loaded.problems, *problems]

    return parse


def _config_of(display: str) -> Any:
    """Parses loaded YAML as a pack's config schema: (the mapping or None, problems)."""

    def parse(loaded: LoadedYaml) -> tuple[Any, list[Problem]]:
        problems = list(loaded.problems)
        if isinstance(loaded.data, dict):
            return loaded.data, problems
        if loaded.data is not None:
            problems.append(
                Problem(Location(display), "config.yaml must be a JSON-Schema object (a mapping)")
            )
        return None, problems

    return parse


def parse_file(
    catalog: Catalog, path: Path, display: str, kind: str, parse: Any
) -> tuple[Any, list[Problem]]:
    """(value, problems) of one file, from the cache when the catalog has one."""
    if catalog.cache is not None:
        parsed = catalog.cache.parsed(path, display, kind, catalog.max_file_bytes, parse)
        if parsed is not None:
            catalog.digests[display] = parsed.digest
            return parsed.value, parsed.problems
        catalog.digests[display] = "unread"
    result: tuple[Any, list[Problem]] = parse(load_yaml_file(path, display, catalog.max_file_bytes))
    return result


def _load_model(catalog: Catalog, cls: type[Any], path: Path, display: str) -> Any:
    model, problems = parse_file(catalog, path, display, cls.__name__, model_parser(cls, display))
    catalog.problems.extend(problems)
    return model


def load_config_schema(catalog: Catalog, entry: PackEntry) -> None:
    path = entry.directory / "config.yaml"
    if not path.is_file():
        return
    display = f"{entry.display}/config.yaml"
    schema, problems = parse_file(catalog, path, display, "config", _config_of(display))
    catalog.problems.extend(problems)
    if schema is not None:
        entry.config_schema = schema
        entry.config_location = getattr(schema, "loc", Location(display))


def _load_folder(catalog: Catalog, pack: PackEntry, folder: str, cls: type[Any]) -> list[tuple[Path, Any]]:
    """The models of one folder of a pack (those that parsed) in the order their claims to a
    ref count: a file named after what it declares (`workflows/<name>.yaml`) first, then
    the others in scan order. A task's parse looks a ref up the same way (`Closure`), so
    both agree on which of two definitions of a ref is the one."""
    found = []
    for path in _unreadable(pack.directory / folder):
        catalog.add_problem(
            Location(f"{pack.display}/{folder}/{path.name}"), "not a readable file (a broken link?)"
        )
    for path in yaml_files(pack.directory / folder):
        model = _load_model(catalog, cls, path, f"{pack.display}/{folder}/{path.name}")
        if model is not None:
            found.append((path, model))
    named = [(path, model) for path, model in found if declared_ref(model, pack) == f"{pack.ref}.{path.stem}"]
    return named + [item for item in found if item not in named]


def load_pack(
    catalog: Catalog, directory: Path, display: str, meta: Pack, source: SourcePacks | None = None
) -> PackEntry:
    """Load one pack (its pack.yaml already parsed) into the catalog."""
    entry = PackEntry(directory, display, meta)
    if source is not None:
        entry.source, entry.paused = source.name, meta.ref in source.paused
    catalog.packs[meta.ref] = entry
    load_config_schema(catalog, entry)
    for path, action in _load_folder(catalog, entry, "actions", Action):
        add_action(catalog, entry, path, action)
    for path, workflow in _load_folder(catalog, entry, "workflows", Workflow):
        add_workflow(catalog, entry, path, workflow)
    for path, rule in _load_folder(catalog, entry, "rules", Rule):
        add_rule(catalog, entry, path, rule)
    return entry


def _clash(catalog: Catalog, ref: str) -> str:
    """Where `ref` is defined already, for the message of a second definition."""
    if ref in catalog.workflows:
        return f"workflow '{ref}' is already defined in {catalog.workflows[ref].display}"
    return f"action '{ref}' is already defined in {catalog.actions[ref].display}"


def add_action(catalog: Catalog, pack: PackEntry, path: Path, action: Action) -> None:
    ref = f"{pack.ref}.{action.name}"
    if ref in catalog.actions or ref in catalog.workflows:
        catalog.add_problem(action.loc("name"), f"action '{ref}' is defined twice: {_clash(catalog, ref)}")
        return
    catalog.actions[ref] = ActionEntry(ref, pack, action, path, f"{pack.display}/actions/{path.name}")


def add_workflow(catalog: Catalog, pack: PackEntry, path: Path, workflow: Workflow) -> None:
    ref = workflow.ref
    if ref in catalog.workflows or ref in catalog.actions:
        catalog.add_problem(workflow.loc("ref"), f"workflow '{ref}' is defined twice: {_clash(catalog, ref)}")
        return
    catalog.workflows[ref] = WorkflowEntry(ref, pack, workflow, path, f"{pack.display}/workflows/{path.name}")


def add_rule(catalog: Catalog, pack: PackEntry, path: Path, rule: Rule) -> None:
    ref = rule.ref
    if ref in catalog.rules or ref in catalog.workflows or ref in catalog.actions:
        where = catalog.rules[ref].display if ref in catalog.rules else _clash(catalog, ref)
        catalog.add_problem(rule.loc("ref"), f"rule '{ref}' is defined twice: {where}")
        return
    catalog.rules[ref] = RuleEntry(ref, pack, rule, path, f"{pack.display}/rules/{path.name}")


def pack_directories(packs_paths: Sequence[Path], with_core: bool = True) -> Iterable[tuple[Path, str]]:
    """The built-in core pack, then every directory holding a pack.yaml on the packs path."""
    if with_core:
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


def _packs_in_order(
    found: list[tuple[Path, tuple[str, Pack]]], roots: set[Path]
) -> list[tuple[Path, tuple[str, Pack]]]:
    """Pack directories in the order their claims to a ref count: a directory named after
    its ref (or a packs-path entry that is itself a pack) first, as a task's parse looks
    packs up (`Closure`), then the others in scan order."""
    first = [item for item in found if item[0].resolve() in roots or item[0].name == item[1][1].ref]
    return first + [item for item in found if item not in first]


def all_sources(packs_paths: Sequence[Path], sources: Sequence[SourcePacks] = ()) -> list[SourcePacks]:
    """The packs path (source `local`, with core) then the other sources, in the order
    their claims to a pack ref count."""
    return [SourcePacks(LOCAL_SOURCE, tuple(packs_paths)), *sources]


def _check_roots(catalog: Catalog, packs_paths: Sequence[Path]) -> None:
    """Packs path entries that are missing or are no directory, and pack-like directories
    without a pack.yaml."""
    for root in packs_paths:
        if not root.exists():
            catalog.add_problem(Location(display_path(root)), "packs directory does not exist")
        elif not root.is_dir():
            catalog.add_problem(
                Location(display_path(root)), "not a directory (the packs path names directories)"
            )
    for directory in _not_packs(packs_paths):
        catalog.add_problem(
            Location(display_path(directory)),
            "has workflows/ or actions/ but no pack.yaml: not loaded as a pack",
            Severity.WARNING,
        )


def _shadowed(catalog: Catalog, meta: Pack, display: str, source: SourcePacks) -> None:
    """A pack another source serves already: a warning naming both; the first one wins."""
    first = catalog.packs[meta.ref]
    if first.source == source.name:
        catalog.add_problem(meta.loc("ref"), f"pack '{meta.ref}' is already loaded from {first.display}")
        return
    problem = Problem(
        meta.loc("ref"),
        f"pack '{meta.ref}' of source '{source.name}' ({display}) is left out: source "
        f"'{first.source}', listed first, serves it from {first.display}",
        Severity.WARNING,
    )
    catalog.problems.append(problem)
    catalog.source_problems.append(problem)


def load_catalog(
    packs_paths: Sequence[Path],
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    *,
    cache: FileCache | None = None,
    sources: Sequence[SourcePacks] = (),
) -> Catalog:
    """Parse every pack of the packs path (plus core) and of the other sources into one
    catalog; a pack ref served by two sources comes from the one listed first."""
    catalog = Catalog(max_file_bytes=max_file_bytes, cache=cache)
    _check_roots(catalog, packs_paths)
    seen: set[Path] = set()
    for source in all_sources(packs_paths, sources):
        found: list[tuple[Path, tuple[str, Pack]]] = []
        for directory, display in pack_directories(source.paths, with_core=source.name == LOCAL_SOURCE):
            resolved = directory.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            meta = _load_model(catalog, Pack, directory / "pack.yaml", f"{display}/pack.yaml")
            if meta is not None:
                found.append((directory, (display, meta)))
        roots = {path.resolve() for path in source.paths}
        for directory, (display, meta) in _packs_in_order(found, roots):
            if meta.ref in catalog.packs:
                _shadowed(catalog, meta, display, source)
                continue
            load_pack(catalog, directory, display, meta, source)
    return catalog


def declared_ref(model: Any, pack: PackEntry) -> str | None:
    """The ref a loaded workflow (its `ref`) or action (`<pack>.<name>`) defines."""
    if isinstance(model, Workflow):
        return model.ref
    if isinstance(model, Action):
        return f"{pack.ref}.{model.name}"
    if isinstance(model, Rule):
        return model.ref
    return None
