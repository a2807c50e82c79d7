"""DAG file parts: the workflows split over several DAG files, so that Airflow parses them
in parallel.

Airflow's DAG processor parses one DAG file in one process, however many
`parsing_processes` it has, and gives each file `dagbag_import_timeout` (30 s). With
thousands of workflows one file is both the bottleneck and a risk. `attune-airflow
init-dags DIR --parts K` writes K DAG files; file `i` holds the workflows and rules whose
*file* (`<pack ref>/<workflows|rules>/<name>`) hashes to part `i` (CRC-32, stable across
processes and machines), so every file of the packs belongs to exactly one part. A part reads
only its own files and what they call (the closure lookup a task's parse uses), validates
that, and caches it under its own scope: an edit redoes the work of one part only.

The problems of every pack are still reported by the one errors file (`attune_errors.py`),
which reads everything (docs/scale.md).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from attune_provider.dag_factory.closure import Closure
from attune_provider.dag_factory.file_cache import FileCache
from attune_provider.dag_factory.loader import all_sources, pack_directories, yaml_files
from attune_provider.language.catalog import LOCAL_SOURCE, Catalog, PackEntry, SourcePacks
from attune_provider.language.models import Rule, Workflow

MAX_PARTS = 256


class Part(NamedTuple):
    """Part `number` (1-based) of `total`."""

    number: int
    total: int

    def check(self) -> Part:
        if not 1 <= self.total <= MAX_PARTS:
            raise ValueError(f"parts must be between 1 and {MAX_PARTS}, not {self.total}")
        if not 1 <= self.number <= self.total:
            raise ValueError(f"part must be between 1 and {self.total}, not {self.number}")
        return self

    def holds(self, pack_ref: str, folder: str, file_name: str) -> bool:
        """Whether the file `<pack_ref>/<folder>/<file_name>` belongs to this part."""
        key = f"{pack_ref}/{folder}/{file_name}".encode()
        return zlib.crc32(key) % self.total + 1 == self.number

    def holds_file(self, pack_ref: str, path: Path) -> bool:
        """Whether the workflow or rule file `path` of pack `pack_ref` belongs to this part."""
        return self.holds(pack_ref, path.parent.name, path.name)


WHOLE = Part(1, 1)


class PartCatalog(NamedTuple):
    """A part's catalog (its files and their closures), and the refs it builds DAGs for."""

    catalog: Catalog
    workflows: list[str]
    rules: list[str]


def _serving_packs(closure: Closure, sources: Sequence[SourcePacks]) -> list[PackEntry]:
    """Every pack the full load would use, once: the directory that serves its ref."""
    packs: dict[str, PackEntry] = {}
    for source in sources:
        for directory, display in pack_directories(source.paths, with_core=source.name == LOCAL_SOURCE):
            meta = closure.probe(directory, display)[2]
            if meta is None or meta.ref in packs:
                continue
            entry = closure.pack(meta.ref)
            if entry is not None and entry.directory.resolve() == directory.resolve():
                packs[meta.ref] = entry
    return list(packs.values())


def load_part(
    packs_paths: Sequence[Path],
    part: Part,
    max_file_bytes: int,
    *,
    cache: FileCache | None = None,
    sources: Sequence[SourcePacks] = (),
) -> PartCatalog:
    """The workflow and rule files of `part`, with everything they call, in one catalog."""
    catalog = Catalog(max_file_bytes=max_file_bytes, cache=cache)
    closure = Closure(catalog, all_sources(packs_paths, sources))
    workflows: list[str] = []
    rules: list[str] = []
    for pack in _serving_packs(closure, closure.sources):
        for path in yaml_files(pack.directory / "workflows"):
            if part.holds(pack.ref, "workflows", path.name):
                entry = closure.file_entry(pack, path, "workflows", Workflow)
                if entry is not None:
                    workflows.append(entry.ref)
                    closure.follow(entry)
        for path in yaml_files(pack.directory / "rules"):
            if part.holds(pack.ref, "rules", path.name):
                rule = closure.file_entry(pack, path, "rules", Rule)
                if rule is not None:
                    rules.append(rule.ref)
                    target = closure.workflow(rule.rule.action.ref)
                    if target is not None:
                        closure.follow(target)
    return PartCatalog(catalog, sorted(set(workflows)), sorted(set(rules)))
