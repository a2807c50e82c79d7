"""More executions than Airflow's [core] max_map_length: a clear task error, not a crash.

The limit is Airflow's guard on lists a task pushes at run time; a list written out in the
workflow is mapped as it stands (like a literal list in `expand`), whatever its length.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

WORKFLOW = """
ref: t.wf
parameters:
  count: {type: integer, default: 5}
tasks:
  - name: each
    action: core.echo
    with_items: "ITEMS"
    input: {message: "{{ item }}"}
    on_failure: handled
  - name: handled
    action: core.echo
    input: {message: "{{ task.each.error.message }}"}
output_map:
  message: "{{ task.handled.result.message }}"
  count: "{{ task.each.total_count }}"
"""


def test_too_many_items_fail_the_task_with_a_clear_message(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    result = run(WORKFLOW.replace("ITEMS", "{{ range(parameters.count) | list }}"))
    assert result.tasks["each"].status == "failed"
    message = result.output["message"]
    assert "5 executions" in message and "max_map_length of 3" in message and "batch_size" in message
    assert result.status == "succeeded"  # the failure was handled by on_failure


def test_a_list_written_in_the_workflow_is_not_limited(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    result = run(WORKFLOW.replace("ITEMS", "{{ [0, 1, 2, 3, 4] }}"))
    assert result.status == "succeeded"
    assert result.tasks["each"].status == "succeeded" and result.tasks["handled"].status == "skipped"
    assert result.output == {"message": None, "count": 5}
