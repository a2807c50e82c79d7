"""Reading only what one workflow needs: Airflow parsing the DAG file to run one task.

`load_workflow_closure` finds the workflow, the actions and subworkflows it calls
(transitively) and their packs' pack.yaml and config.yaml, looking each up where the full
load (loader.py) would find it: sources in order (the first one serving a pack ref wins),
and within a source the pack directory named after its ref first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.dag_factory.loader import (
    CORE_PACKS_DIR,
    YAML_SUFFIXES,
    all_sources,
    declared_ref,
    display_path,
    load_config_schema,
    model_parser,
    pack_directories,
    parse_file,
    yaml_files,
)
from attune_provider.language.catalog import (
    LOCAL_SOURCE,
    ActionEntry,
    Catalog,
    PackEntry,
    RuleEntry,
    SourcePacks,
    WorkflowEntry,
)
from attune_provider.language.models import Action, Pack, Rule, Workflow
from attune_provider.language.source import DEFAULT_MAX_FILE_BYTES, Problem

_E = TypeVar("_E", ActionEntry, WorkflowEntry, RuleEntry)


def _called_refs(workflow: Workflow) -> list[str]:
    """The action or workflow refs the tasks of a workflow (parallel members included) run."""
    refs = []
    for task in workflow.tasks:
        for member in (task, *task.tasks):
            if member.type != "parallel" and member.action:
                refs.append(member.action)
    return refs


class Closure:
    """Loads one workflow and, transitively, what it calls: packs by directory name
    (`<root>/<pack ref>/pack.yaml`), actions and workflows by file name
    (`actions/<name>.yaml`, `workflows/<name>.yaml`), each time falling back to a scan in
    `load_catalog`'s order when the convention does not hold."""

    def __init__(self, catalog: Catalog, sources: Sequence[SourcePacks]) -> None:
        self.catalog = catalog
        self.sources = list(sources)
        self.probed: dict[Path, tuple[Path, str, Pack | None, list[Problem]]] = {}
        self.parsed: dict[Path, tuple[Any, list[Problem]]] = {}
        self.reported: set[Path] = set()

    @staticmethod
    def _candidates(source: SourcePacks, ref: str) -> Iterable[tuple[Path, str]]:
        """The directories that may hold pack `ref` in one source, conventional first."""
        local = source.name == LOCAL_SOURCE
        if local and ref == "core":
            yield CORE_PACKS_DIR / "core", display_path(CORE_PACKS_DIR / "core")
        for root in source.paths:
            if (root / "pack.yaml").is_file():
                yield root, display_path(root)
            elif (root / ref / "pack.yaml").is_file():
                yield root / ref, display_path(root / ref)
        yield from pack_directories(source.paths, with_core=local)

    def probe(self, directory: Path, display: str) -> tuple[Path, str, Pack | None, list[Problem]]:
        resolved = directory.resolve()
        if resolved not in self.probed:
            meta_display = f"{display}/pack.yaml"
            parse = model_parser(Pack, meta_display)
            meta, problems = parse_file(self.catalog, directory / "pack.yaml", meta_display, "Pack", parse)
            self.probed[resolved] = (directory, display, meta, problems)
        return self.probed[resolved]

    def pack(self, ref: str) -> PackEntry | None:
        if ref in self.catalog.packs:
            return self.catalog.packs[ref]
        for source in self.sources:
            entry = self._pack_in(source, ref)
            if entry is not None:
                return entry
        return None

    def _pack_in(self, source: SourcePacks, ref: str) -> PackEntry | None:
        for candidate in self._candidates(source, ref):
            directory, display, meta, problems = self.probe(*candidate)
            if meta is not None and meta.ref == ref:
                self.catalog.problems.extend(problems)
                entry = PackEntry(directory, display, meta, source.name, ref in source.paused)
                self.catalog.packs[ref] = entry
                load_config_schema(self.catalog, entry)
                return entry
        return None

    def _files(self, pack: PackEntry, folder: str, name: str) -> Iterable[tuple[Path, bool]]:
        """(file, whether it is the conventional one) in the order to try them."""
        directory = pack.directory / folder
        first = [directory / f"{name}{suffix}" for suffix in YAML_SUFFIXES]
        first = [path for path in first if path.is_file()]
        yield from ((path, True) for path in first)
        yield from ((path, False) for path in yaml_files(directory) if path not in first)

    def _parsed(self, path: Path, display: str, cls: type[Any]) -> tuple[Any, list[Problem]]:
        """A file's model and problems, parsed once however many refs it is tried for."""
        if path not in self.parsed:
            self.parsed[path] = parse_file(
                self.catalog, path, display, cls.__name__, model_parser(cls, display)
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
            declared = declared_ref(model, pack)
            if (declared == ref or (conventional and model is None)) and path not in self.reported:
                self.reported.add(path)  # the problems of the files the lookup stands on
                self.catalog.problems.extend(problems)
            if declared == ref:
                return pack, model, path, display
        return None

    def file_entry(self, pack: PackEntry, path: Path, folder: str, cls: type[Any]) -> Any:
        """The workflow or rule entry that file `path` of `pack` defines (a DAG file part
        reads its files so); None when the file has errors or its ref is taken already."""
        display = f"{pack.display}/{folder}/{path.name}"
        model, problems = self._parsed(path, display, cls)
        if path not in self.reported:
            self.reported.add(path)
            self.catalog.problems.extend(problems)
        ref = declared_ref(model, pack)
        if ref is None:
            return None
        if ref != f"{pack.ref}.{path.stem}":  # named otherwise: it counts where a lookup finds it
            found = self._find(ref, folder, cls)
            if found is None or found[2] != path:
                return None
        if self.action(ref) is not None or (cls is Rule and self.workflow(ref) is not None):
            return None  # an action (or, for a rule, a workflow) of that ref comes first: an error
        known: dict[str, Any] = self.catalog.workflows if cls is Workflow else self.catalog.rules
        if ref not in known:
            make = WorkflowEntry if cls is Workflow else RuleEntry
            known[ref] = make(ref, pack, model, path, display)
        return known[ref] if known[ref].file == path else None

    def workflow(self, ref: str) -> WorkflowEntry | None:
        return self._entry(ref, "workflows", Workflow, self.catalog.workflows, WorkflowEntry)

    def action(self, ref: str) -> ActionEntry | None:
        return self._entry(ref, "actions", Action, self.catalog.actions, ActionEntry)

    def rule(self, ref: str) -> RuleEntry | None:
        return self._entry(ref, "rules", Rule, self.catalog.rules, RuleEntry)

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
    sources: Sequence[SourcePacks] = (),
) -> Catalog | None:
    """Only what workflow (or rule) `ref` needs: its file, the actions and subworkflows it calls
    (transitively), and their packs' pack.yaml and config.yaml; None when `ref` is not
    found. Validating this catalog decides about `ref` as validating the whole packs path
    does, unless a ref is defined twice (an error the full parse reports): then the file
    found by the naming convention wins here.
    """
    catalog = Catalog(max_file_bytes=max_file_bytes, cache=cache)
    closure = Closure(catalog, all_sources(packs_paths, sources))
    entry = closure.workflow(ref)
    if entry is None:  # a rule's DAG: the rule, and the workflow it starts (its parameters)
        rule = closure.rule(ref)
        if rule is None:
            return None
        entry = closure.workflow(rule.rule.action.ref)
        if entry is None:
            return catalog  # validation reports the unknown workflow
    closure.follow(entry)
    return catalog
