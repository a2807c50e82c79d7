"""More executions than Airflow's [core] max_map_length: a clear task error, not a crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

WORKFLOW = """
ref: t.wf
tasks:
  - name: each
    action: core.echo
    with_items: "{{ range(5) | list }}"
    input: {message: "{{ item }}"}
    on_failure: handled
  - name: handled
    action: core.echo
    input: {message: "{{ task.each.error.message }}"}
output_map:
  message: "{{ task.handled.result.message }}"
"""


def test_too_many_items_fail_the_task_with_a_clear_message(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    result = run(WORKFLOW)
    assert result.tasks["each"].status == "failed"
    message = result.output["message"]
    assert "5 executions" in message and "max_map_length of 3" in message and "batch_size" in message
    assert result.status == "succeeded"  # the failure was handled by on_failure
