"""The shell runners run through Airflow (`dag.test()`): timeouts, parameters, streaming, failures.

Under `dag.test()` no task log file is written: the task's log records go through the
process's logging (to standard output), so the task log is read from the records pytest
captures (`caplog`), with the time each line was logged.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attune_provider.runners import shell


def live_processes_with(marker: str) -> list[str]:
    """Command lines of live processes containing `marker` (zombies have no command line)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline)
    return found


def test_a_timed_out_command_leaves_no_process_behind(run: Callable[..., Any]) -> None:
    marker = f"{40 + uuid.uuid4().int % 10**6 / 10**7:.7f}"
    result = run(
        f"""
        ref: t.wf
        tasks:
          - name: slow
            action: core.local
            input:
              cmd: "sleep {marker} & sleep {marker} & wait"
            timeout: 2
            on_timeout: after
          - name: after
            action: core.echo
            input:
              message: "{{{{ task.slow.status }}}} {{{{ task.slow.error.type }}}}"
        output_map:
          seen: "{{{{ task.after.result.message }}}}"
        """
    )
    assert result.tasks["slow"].status == "timeout"
    assert result.status == "succeeded"
    assert result.output == {"seen": "timeout timeout"}
    assert live_processes_with(f"sleep {marker}") == []


ACTIONS = {
    "actions/show.yaml": """
        name: show
        runner_type: local-shell-cmd
        parameters:
          cmd: {type: string, default: "env | grep '^ATTUNE_PARAM_' | sort"}
          name: {type: string}
          count: {type: integer}
          tags: {type: array}
          options: {type: object}
          enabled: {type: boolean, default: false}
        """,
    "actions/script.yaml": """
        name: script
        runner_type: local-shell-script
        entry_point: script.sh
        parameters:
          who: {type: string, required: true}
          times: {type: integer, default: 2}
        """,
    "actions/script.sh": """
        echo "hello $ATTUNE_PARAM_WHO x$ATTUNE_PARAM_TIMES in $(basename "$PWD")"
        echo "to stderr" >&2
        """,
}


def test_parameters_reach_the_child_as_environment_variables(
    run: Callable[..., Any], tmp_path: Path
) -> None:
    result = run(
        f"""
        ref: t.wf
        tasks:
          - name: show
            action: t.show
            input:
              name: "{{{{ 'plain' }}}}"
              count: 3
              tags: [a, 1]
              options: {{nested: {{x: null}}}}
            on_success: local
          - name: local
            action: core.local
            input:
              cmd: 'echo "$GREETING from $(pwd)"; echo "${{ATTUNE_PARAM_CMD:-no cmd var}}"; echo $N $O'
              env: {{GREETING: hi, N: 42, O: {{a: [1, true]}}}}
              cwd: "{tmp_path}"
            on_success: script
          - name: script
            action: t.script
            input: {{who: world}}
        """,
        files=ACTIONS,
    )
    assert result.status == "succeeded", result.tasks
    shown = result.xcom("show")
    assert shown["stdout"].splitlines() == [
        "ATTUNE_PARAM_COUNT=3",
        "ATTUNE_PARAM_ENABLED=false",
        'ATTUNE_PARAM_NAME=plain',
        'ATTUNE_PARAM_OPTIONS={"nested": {"x": null}}',
        'ATTUNE_PARAM_TAGS=["a", 1]',
    ]
    assert result.xcom("local") == {
        "stdout": f"hi from {tmp_path}\nno cmd var\n42 {{\"a\": [1, true]}}",
        "stderr": "",
        "return_code": 0,
    }
    assert result.xcom("script") == {
        "stdout": "hello world x2 in actions",
        "stderr": "to stderr",
        "return_code": 0,
    }


def test_output_reaches_the_task_log_while_the_command_runs(
    run: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    result = run(
        """
        ref: t.wf
        tasks:
          - name: talk
            action: core.local
            input:
              cmd: "echo early-line; echo warning-line >&2; sleep 2; echo late-line"
        """
    )
    assert result.status == "succeeded"
    stamps = {r.getMessage(): r.created for r in caplog.records if r.name == shell.__name__}
    assert set(stamps) >= {"[stdout] early-line", "[stderr] warning-line", "[stdout] late-line"}
    assert stamps["[stdout] late-line"] - stamps["[stdout] early-line"] > 1.5


def test_a_non_zero_exit_keeps_the_result_for_the_failure_path(run: Callable[..., Any]) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: x
            action: core.local
            input:
              cmd: "echo partial-output; echo broken >&2; exit 4"
            on_failure: report
          - name: report
            action: core.echo
            input:
              message: "{{ task.x.result.stdout }}|{{ task.x.result.stderr }}|{{ task.x.result.return_code }}"
        output_map:
          report: "{{ task.report.result.message }}"
          error: "{{ task.x.error }}"
        """
    )
    assert result.tasks["x"].status == "failed"
    assert result.status == "succeeded"
    assert result.output == {
        "report": "partial-output|broken|4",
        "error": {"type": "NonZeroExit", "message": "command exited with 4"},
    }
