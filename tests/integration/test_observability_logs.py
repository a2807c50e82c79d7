"""The audit lines of docs/observability.md in the task logs.

Under `dag.test()` no task log file is written: the task loggers (structlog) print each
record to standard output, `<time> [<level>] <message> [<logger>] loc=...`; the messages
are read from what pytest captures there (`capfd`), exactly as tools would parse them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

WORKFLOW = """
ref: t.wf
tasks:
  - name: pick
    action: core.echo
    input: {message: right}
    publish:
      - route: "{{ task.pick.result.message }}"
      - token: "s3cr3t-value-{{ task.pick.result.message }}"
    decision:
      - when: "{{ vars.route == 'left' }}"
        next: left
      - default: right
    on_complete: boom
  - name: left
    action: core.noop
  - name: right
    action: core.noop
  - name: boom
    action: t.boom
    retry: {count: 1, delay: 0}
    on_failure: cleanup
  - name: cleanup
    action: core.noop
"""
FILES = {
    "actions/boom.yaml": "name: boom\nrunner_type: python-script\nentry_point: boom.py\n",
    "actions/boom.py": "def run():\n    raise ValueError('always')\n",
}
SECONDS = r"\d+\.\d{3}s"


AUDIT = re.compile(
    r"\[info\s*\] ((?:Workflow execution|Task completed:|Publishing variables:|Scheduling next tasks:).*?)"
    r"\s+\[airflow\.task\.operators\."
)


def audit_lines(capfd: pytest.CaptureFixture[str]) -> list[str]:
    """The audit messages of the task logs printed so far, in order."""
    out = capfd.readouterr().out
    return [m.group(1) for line in out.splitlines() if (m := AUDIT.search(line))]


def test_audit_lines_in_the_task_logs(run: Callable[..., Any], capfd: pytest.CaptureFixture[str]) -> None:
    result = run(WORKFLOW, files=FILES)
    assert result.status == "succeeded", result.as_json()
    lines = audit_lines(capfd)
    text = "\n".join(lines)
    assert "s3cr3t" not in text  # names, never values
    run_id = re.escape(result.run_id)

    started = [line for line in lines if line.startswith("Workflow execution started")]
    assert started == [f"Workflow execution started: run={result.run_id}, workflow=t.wf, source=local"]

    def one(pattern: str) -> int:
        found = [i for i, line in enumerate(lines) if re.fullmatch(pattern, line)]
        assert len(found) == 1, (pattern, text)
        return found[0]

    pick = one(
        rf"Task completed: workflow=t\.wf, task=pick, status=succeeded, attempts=1, duration={SECONDS}"
    )
    assert lines[pick + 1] == "Publishing variables: route, token"
    assert lines[pick + 2] == "Scheduling next tasks: [right, boom]"  # the decision's target included
    one(rf"Task completed: workflow=t\.wf, task=right, status=succeeded, attempts=1, duration={SECONDS}")
    boom = one(rf"Task completed: workflow=t\.wf, task=boom, status=failed, attempts=2, duration={SECONDS}")
    assert lines[boom + 1] == "Scheduling next tasks: [cleanup]"
    assert not any("task=boom, status=failed, attempts=1" in line for line in lines)  # a retried try
    assert not any("task=left," in line for line in lines)  # skipped: not run
    one(r"Task completed: workflow=t\.wf, task=cleanup, status=succeeded, attempts=1, duration=.*")
    assert lines.count("Scheduling next tasks: []") >= 2  # right and cleanup fire nothing
    end = one(
        rf"Workflow execution completed: run={run_id}, workflow=t\.wf, status=succeeded, duration={SECONDS}"
    )
    assert end == len(lines) - 1


def test_a_failed_workflow_completes_failed(
    run: Callable[..., Any], capfd: pytest.CaptureFixture[str]
) -> None:
    workflow = "ref: t.wf\ntasks:\n  - name: boom\n    action: t.boom\n"
    result = run(workflow, files=FILES)
    assert result.status == "failed", result.as_json()
    lines = audit_lines(capfd)
    assert re.fullmatch(
        rf"Task completed: workflow=t\.wf, task=boom, status=failed, attempts=1, duration={SECONDS}", lines[1]
    ), lines
    assert lines[2] == "Scheduling next tasks: []"
    assert re.fullmatch(
        rf"Workflow execution completed: run={re.escape(result.run_id)}, workflow=t\.wf, "
        rf"status=failed, duration={SECONDS}",
        lines[-1],
    ), lines
