"""`attune-airflow test --packs packs` as CI runs it: every example pack's tests pass.

One subprocess running exactly that command from the repository (the session's Airflow
home), asserting exit 0, one PASS line per case and the summary line; the JUnit report is
checked on the way. Takes ~30 s: the packs' failure paths wait out their retries' delays.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMMAND = [str(Path(sys.executable).parent / "attune-airflow"), "test", "--packs", "packs"]


def test_the_example_packs_tests_pass(tmp_path: Path) -> None:
    env = dict(os.environ)
    for name in (
        "ATTUNE_PACKS_PATH",
        "AIRFLOW__ATTUNE__PACKS_PATH",
        "ATTUNE_SOURCES",
        "AIRFLOW__ATTUNE__SOURCES",
    ):
        env.pop(name, None)
    junit = tmp_path / "report.xml"
    done = subprocess.run(
        [*COMMAND, "--junit", str(junit)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    lines = done.stdout.splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    case_lines = lines[:-1]
    assert case_lines and all(line.startswith("PASS packs/") for line in case_lines), done.stdout
    assert re.fullmatch(rf"{len(case_lines)} passed, 0 failed", lines[-1]), done.stdout
    # every example pack with workflows has tests, and each of its workflows is tested
    tested = {line.split()[1].split(":")[0] for line in case_lines}
    for workflow in sorted(REPO.glob("packs/*/workflows/*.yaml")):
        expected = workflow.parent.parent / "tests" / workflow.name
        assert str(expected.relative_to(REPO)) in tested, f"no tests for {workflow}"
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == (str(len(case_lines)), "0", "0")


ITEMS_WORKFLOW = """\
ref: m.fan
tasks:
  - name: each
    action: core.echo
    with_items: "{{ ['a', 'b', 'c', 'd'] }}"
    input: {message: "{{ item }}"}
    retry: {count: 1}
    on_complete: noop
output_map:
  results: "{{ task.each.result }}"
  status: "{{ task.each.status }}"
"""
ITEMS_TESTS = """\
workflow: m.fan
cases:
  - name: execution i takes reply i; a retry takes the replies after them
    mocks:
      core.echo:
        - {result: r0}
        - {fail: {type: Flaky, message: once}}
        - {result: r2}
        - {result: r3}
        - {result: r1-retried}
    expect:
      status: succeeded
      output: {results: [r0, r1-retried, r2, r3], status: succeeded}
"""


def test_list_mocks_go_to_with_items_executions_by_item(tmp_path: Path) -> None:
    """Airflow runs a with_items task's executions in no fixed order: the first tries still
    take the list's replies by item index, every time (the case runs three times)."""
    pack = tmp_path / "packs" / "m"
    for folder, name, text in (("workflows", "fan.yaml", ITEMS_WORKFLOW), ("tests", "fan.yaml", ITEMS_TESTS)):
        (pack / folder).mkdir(parents=True, exist_ok=True)
        (pack / folder / name).write_text(text)
    (pack / "pack.yaml").write_text("ref: m\n")
    command = [COMMAND[0], "test", "--packs", str(tmp_path / "packs")]
    for _ in range(3):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.splitlines()[-1] == "1 passed, 0 failed", done.stdout
