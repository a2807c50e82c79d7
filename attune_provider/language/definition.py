"""The SHA-256 of a workflow's definition: the files a run of it executes.

The workflow's YAML file, the metadata file and entry point of every action its tasks
call, and the same for each subworkflow it calls, at any depth. Each file is named by its
pack and its path inside the pack, so that machines that keep the packs in different
places (a worker, the DAG processor, the workflow sources' store) compute the same digest
from the same content. Confidential runs check it before each task (docs/confidential.md).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from attune_provider.language.plan import WorkflowPlan


class DefinitionUnreadable(Exception):
    """A file of the definition that cannot be read on this machine (its name in `args`)."""


def definition_files(plan: WorkflowPlan) -> dict[str, Path]:
    """Every file of the definition, by its name (`<pack>/<path inside the pack>`)."""
    files: dict[str, Path] = {}

    def add(pack: str, pack_dir: Path, path: Path) -> None:
        inside = os.path.relpath(path, pack_dir)
        files[f"{pack}/{Path(inside).as_posix()}"] = path

    add(plan.pack, plan.pack_dir, plan.path)
    for action in plan.actions.values():
        if action.metadata_file is not None:
            add(action.pack, action.pack_dir, action.metadata_file)
        if action.entry_point is not None:
            add(action.pack, action.pack_dir, action.entry_point)
    for child in plan.children.values():
        files.update(definition_files(child))
    return files


def definition_digest(plan: WorkflowPlan) -> str:
    """The hex SHA-256 over the definition's files, each by name, length and content."""
    digest = hashlib.sha256()
    for name, path in sorted(definition_files(plan).items()):
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise DefinitionUnreadable(f"{name}: {exc.strerror or exc}") from None
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()


# The Airflow Variable in which the DAG processor publishes a confidential DAG's digest
# for the workers to check their files against (dag_factory/integrity.py).
DEFINITION_VARIABLE = "attune_definition__{dag_id}"
