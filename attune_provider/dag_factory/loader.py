"""Discovering packs on the packs path and parsing their files into the model.

The loader never raises for bad input: every file that cannot be read or parsed adds
problems to the `Catalog` (language/catalog.py), and everything else still loads.
Cross-file checks live in `validation/`.

`load_catalog` reads every pack; `load_workflow_closure` reads only what one workflow
needs (Airflow parsing the DAG file to run one of its tasks). With a `FileCache`, a
file whose content is unchanged is not parsed again (see file_cache.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.language.catalog import ActionEntry, Catalog, PackEntry, WorkflowEntry
from attune_provider.language.model_errors import parse_model
from attune_provider.language.models import Action, Pack, Workflow
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


def _yaml_files(directory: Path) -> list[Path]:
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


def _model_of(cls: type[Any], display: str) -> Any:
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


def _parse_file(
    catalog: Catalog, path: Path, display: str, kind: str, parse: Any
) -> tuple[Any, list[Problem]]:
    """(value, problems) of one file, from the cache when the catalog has one."""
    if catalog.cache is not None:
        parsed = catalog.cache.parsed(path, display, kind, catalog.max_file_bytes, parse)
        if parsed is not None:
            catalog.sources[display] = parsed.digest
            return parsed.value, parsed.problems
        catalog.sources[display] = "unread"
    result: tuple[Any, list[Problem]] = parse(load_yaml_file(path, display, catalog.max_file_bytes))
    return result


def _load_model(catalog: Catalog, cls: type[Any], path: Path, display: str) -> Any:
    model, problems = _parse_file(catalog, path, display, cls.__name__, _model_of(cls, display))
    catalog.problems.extend(problems)
    return model


def _load_config_schema(catalog: Catalog, entry: PackEntry) -> None:
    path = entry.directory / "config.yaml"
    if not path.is_file():
        return
    display = f"{entry.display}/config.yaml"
    schema, problems = _parse_file(catalog, path, display, "config", _config_of(display))
    catalog.problems.extend(problems)
    if schema is not None:
        entry.config_schema = schema
        entry.config_location = getattr(schema, "loc", Location(display))


def _load_folder(catalog: Catalog, pack: PackEntry, folder: str, cls: type[Any]) -> list[tuple[Path, Any]]:
    """The models of one folder of a pack (those that parsed) in the order their claims to a
    ref count: a file named after what it declares (`workflows/<name>.yaml`) first, then
    the others in scan order. A task's parse looks a ref up the same way (`_Closure`), so
    both agree on which of two definitions of a ref is the one."""
    found = []
    for path in _unreadable(pack.directory / folder):
        catalog.add_problem(
            Location(f"{pack.display}/{folder}/{path.name}"), "not a readable file (a broken link?)"
        )
    for path in _yaml_files(pack.directory / folder):
        model = _load_model(catalog, cls, path, f"{pack.display}/{folder}/{path.name}")
        if model is not None:
            found.append((path, model))
    named = [
        (path, model) for path, model in found if _declared_ref(model, pack) == f"{pack.ref}.{path.stem}"
    ]
    return named + [item for item in found if item not in named]


def load_pack(catalog: Catalog, directory: Path, display: str, meta: Pack) -> PackEntry:
    """Load one pack (its pack.yaml already parsed) into the catalog."""
    entry = catalog.packs[meta.ref] = PackEntry(directory, display, meta)
    _load_config_schema(catalog, entry)
    for path, action in _load_folder(catalog, entry, "actions", Action):
        add_action(catalog, entry, path, action)
    for path, workflow in _load_folder(catalog, entry, "workflows", Workflow):
        add_workflow(catalog, entry, path, workflow)
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


def _packs_in_order(
    found: list[tuple[Path, tuple[str, Pack]]], roots: set[Path]
) -> list[tuple[Path, tuple[str, Pack]]]:
    """Pack directories in the order their claims to a ref count: a directory named after
    its ref (or a packs-path entry that is itself a pack) first, as a task's parse looks
    packs up (`_Closure`), then the others in scan order."""
    first = [item for item in found if item[0].resolve() in roots or item[0].name == item[1][1].ref]
    return first + [item for item in found if item not in first]


def load_catalog(
    packs_paths: Sequence[Path],
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    *,
    cache: FileCache | None = None,
) -> Catalog:
    """Parse every pack on the packs path (plus core) into one catalog."""
    catalog = Catalog(max_file_bytes=max_file_bytes, cache=cache)
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
    seen: set[Path] = set()
    found: list[tuple[Path, tuple[str, Pack]]] = []
    for directory, display in pack_directories(packs_paths):
        resolved = directory.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        meta = _load_model(catalog, Pack, directory / "pack.yaml", f"{display}/pack.yaml")
        if meta is not None:
            found.append((directory, (display, meta)))
    roots = {path.resolve() for path in packs_paths}
    for directory, (display, meta) in _packs_in_order(found, roots):
        if meta.ref in catalog.packs:
            other = catalog.packs[meta.ref].display
            catalog.add_problem(meta.loc("ref"), f"pack '{meta.ref}' is already loaded from {other}")
            continue
        load_pack(catalog, directory, display, meta)
    return catalog


# --- one workflow and what it calls -----------------------------------------------------


def _called_refs(workflow: Workflow) -> list[str]:
    """The action or workflow refs the tasks of a workflow (parallel members included) run."""
    refs = []
    for task in workflow.tasks:
        for member in (task, *task.tasks):
            if member.type != "parallel" and member.action:
                refs.append(member.action)
    return refs


def _declared_ref(model: Any, pack: PackEntry) -> str | None:
    """The ref a loaded workflow (its `ref`) or action (`<pack>.<name>`) defines."""
    if isinstance(model, Workflow):
        return model.ref
    if isinstance(model, Action):
        return f"{pack.ref}.{model.name}"
    return None


class _Closure:
    """Loads one workflow and, transitively, what it calls: packs by directory name
    (`<root>/<pack ref>/pack.yaml`), actions and workflows by file name
    (`actions/<name>.yaml`, `workflows/<name>.yaml`), each time falling back to a scan in
    `load_catalog`'s order when the convention does not hold."""

    def __init__(self, catalog: Catalog, packs_paths: Sequence[Path]) -> None:
        self.catalog = catalog
        self.paths = list(packs_paths)
        self.probed: dict[Path, tuple[Path, str, Pack | None, list[Problem]]] = {}
        self.parsed: dict[Path, tuple[Any, list[Problem]]] = {}
        self.reported: set[Path] = set()

    def _conventional(self, ref: str) -> Iterable[tuple[Path, str]]:
        if ref == "core":
            yield CORE_PACKS_DIR / "core", display_path(CORE_PACKS_DIR / "core")
        for root in self.paths:
            if (root / "pack.yaml").is_file():
                yield root, display_path(root)
            elif (root / ref / "pack.yaml").is_file():
                yield root / ref, display_path(root / ref)

    def _probe(self, directory: Path, display: str) -> tuple[Path, str, Pack | None, list[Problem]]:
        resolved = directory.resolve()
        if resolved not in self.probed:
            meta_display = f"{display}/pack.yaml"
            parse = _model_of(Pack, meta_display)
            meta, problems = _parse_file(self.catalog, directory / "pack.yaml", meta_display, "Pack", parse)
            self.probed[resolved] = (directory, display, meta, problems)
        return self.probed[resolved]

    def pack(self, ref: str) -> PackEntry | None:
        if ref in self.catalog.packs:
            return self.catalog.packs[ref]
        for candidate in (*self._conventional(ref), *pack_directories(self.paths)):
            directory, display, meta, problems = self._probe(*candidate)
            if meta is not None and meta.ref == ref:
                self.catalog.problems.extend(problems)
                entry = PackEntry(directory, display, meta)
                self.catalog.packs[ref] = entry
                _load_config_schema(self.catalog, entry)
                return entry
        return None

    def _files(self, pack: PackEntry, folder: str, name: str) -> Iterable[tuple[Path, bool]]:
        """(file, whether it is the conventional one) in the order to try them."""
        directory = pack.directory / folder
        first = [directory / f"{name}{suffix}" for suffix in YAML_SUFFIXES]
        first = [path for path in first if path.is_file()]
        yield from ((path, True) for path in first)
        yield from ((path, False) for path in _yaml_files(directory) if path not in first)

    def _parsed(self, path: Path, display: str, cls: type[Any]) -> tuple[Any, list[Problem]]:
        """A file's model and problems, parsed once however many refs it is tried for."""
        if path not in self.parsed:
            self.parsed[path] = _parse_file(
                self.catalog, path, display, cls.__name__, _model_of(cls, display)
            )
        return self.parsed[path]

    def _find(self, ref: str, folder: str, cls: type[Any]) -> Any:
        """The model declaring `ref` in the pack its ref names, with its file and display."""
        pack_ref, dot, name = ref.partition(".")
        pack = self.pack(pack_ref) if dot else None
        if pack is None:
            return None
        for path, conventional in self._files(pack, folder, name):
            display = f"{pack.display}/{folder}/{path.name}"
            model, problems = self._parsed(path, display, cls)
            declared = _declared_ref(model, pack)
            if (declared == ref or (conventional and model is None)) and path not in self.reported:
                self.reported.add(path)  # the problems of the files the lookup stands on
                self.catalog.problems.extend(problems)
            if declared == ref:
                return pack, model, path, display
        return None

    def workflow(self, ref: str) -> WorkflowEntry | None:
        return self._entry(ref, "workflows", Workflow, self.catalog.workflows, WorkflowEntry)

    def action(self, ref: str) -> ActionEntry | None:
        return self._entry(ref, "actions", Action, self.catalog.actions, ActionEntry)

    def _entry(
        self, ref: str, folder: str, cls: type[Any], known: dict[str, _E], make: Callable[..., _E]
    ) -> _E | None:
        """The catalog entry of `ref` (looked up in `folder`, added to `known` once found)."""
        if ref in known:
            return known[ref]
        found = self._find(ref, folder, cls)
        if found is None:
            return None
        pack, model, path, display = found
        known[ref] = make(ref, pack, model, path, display)
        return known[ref]

    def follow(self, entry: WorkflowEntry) -> None:
        """Load every action and subworkflow `entry` calls, transitively."""
        pending = [entry]
        while pending:
            for ref in _called_refs(pending.pop().workflow):
                if ref in self.catalog.actions or ref in self.catalog.workflows:
                    continue
                if self.action(ref) is None:
                    sub = self.workflow(ref)
                    if sub is not None:
                        pending.append(sub)


def load_workflow_closure(
    packs_paths: Sequence[Path],
    ref: str,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    *,
    cache: FileCache | None = None,
) -> Catalog | None:
    """Only what workflow `ref` needs: its file, the actions and subworkflows it calls
    (transitively), and their packs' pack.yaml and config.yaml; None when `ref` is not
    found. Validating this catalog decides about `ref` as validating the whole packs path
    does, unless a ref is defined twice (an error the full parse reports): then the file
    found by the naming convention wins here.
    """
    catalog = Catalog(max_file_bytes=max_file_bytes, cache=cache)
    closure = _Closure(catalog, packs_paths)
    entry = closure.workflow(ref)
    if entry is None:
        return None
    closure.follow(entry)
    return catalog
