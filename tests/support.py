"""Helpers shared by the tests (import as `tests.support`)."""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PackFiles = Mapping[str, str]
REPO = Path(__file__).resolve().parent.parent
DAG_FILES = ("attune_dags.py", "attune_errors.py")


def install_dag_files(dags_folder: Path) -> None:
    """Copy the provider's two DAG files into `dags_folder`, as the README tells users to."""
    dags_folder.mkdir(parents=True, exist_ok=True)
    for name in DAG_FILES:
        shutil.copy(REPO / "dags" / name, dags_folder / name)


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


# The `record` action: appends {value, start, end, failed} to the file `log` (one JSON
# line per execution), sleeps `sleep` seconds, fails for a value in `fail_on`.
RECORD_YAML = """
name: record
runner_type: python-script
entry_point: record.py
parameters:
  log: {type: string, required: true}
  value: {}
  sleep: {type: number, default: 0}
  fail_on: {type: array, default: []}
"""

RECORD_PY = """
import json
import time


def run(log, value=None, sleep=0, fail_on=()):
    start = time.time()
    time.sleep(sleep)
    failed = value in fail_on
    with open(log, "a") as f:
        f.write(json.dumps({"value": value, "start": start, "end": time.time(), "failed": failed}) + "\\n")
    if failed:
        raise ValueError(f"value {value} is refused")
    return {"value": value}
"""

RECORD_ACTION: PackFiles = {"actions/record.yaml": RECORD_YAML, "actions/record.py": RECORD_PY}


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def max_overlap(spans: list[dict[str, Any]]) -> int:
    """The largest number of executions running at the same instant."""
    events = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = peak = 0
    for _, step in events:  # at equal times an end (-1) sorts before a start (+1)
        running += step
        peak = max(peak, running)
    return peak
