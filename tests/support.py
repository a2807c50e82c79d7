"""Helpers shared by the tests (import as `tests.support`)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

PackFiles = Mapping[str, str]


def write_pack(root: Path, name: str, files: PackFiles) -> Path:
    """Write a pack `name` under `root`: `files` maps relative paths to (dedented) text."""
    pack = root / name
    pack.mkdir(parents=True, exist_ok=True)
    files = {"pack.yaml": f"ref: {name}\n", **files}
    for rel, text in files.items():
        path = pack / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return pack
