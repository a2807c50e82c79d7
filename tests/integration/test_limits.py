"""The limits of docs/validation.md ("Limits") on real runs, with the options set low
through the environment (Airflow reads `AIRFLOW__ATTUNE__*` when asked). The defaults are
covered by the cases `limit_max_items_at_run_time` and `limit_max_tasks_with_subworkflows`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from attune_provider.exceptions import ValidationError

ITEMS = """
ref: t.wf
parameters:
  count: {type: integer, default: 4}
tasks:
  - name: each
    action: core.echo
    with_items: "{{ range(parameters.count) | list }}"
    batch_size: BATCH
    input: {message: "{{ item }}"}
    on_failure: handled
  - name: handled
    action: core.echo
    input: {message: "{{ task.each.error.type }}: {{ task.each.error.message }}"}
output_map: "{{ task.handled.result.message }}"
"""


def test_max_items_is_checked_first_and_counts_items_not_batches(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 items in 2 batches, over max_items (3) and, as 2 executions, over max_map_length
    (1): the items limit is checked first, and counts items, not batches."""
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_ITEMS", "3")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "1")
    result = run(ITEMS.replace("BATCH", "2"))
    assert result.status == "succeeded"  # on_failure handled it
    assert result.tasks["each"].status == "failed"
    assert result.output == (
        "TooManyItems: with_items of 'each' has 4 items, more than the limit of 3 ([attune] max_items)"
    )


def test_within_max_items_airflows_max_map_length_still_applies(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_ITEMS", "4")
    monkeypatch.setenv("AIRFLOW__CORE__MAX_MAP_LENGTH", "3")
    result = run(ITEMS.replace("BATCH", "1"))
    assert result.tasks["each"].status == "failed"
    assert "4 executions" in result.output and "max_map_length of 3" in result.output


def test_within_both_limits_every_item_runs(run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_ITEMS", "4")
    result = run(ITEMS.replace("BATCH", "3"))
    assert result.status == "succeeded"
    assert result.tasks["each"].status == "succeeded" and result.tasks["handled"].status == "skipped"


def test_max_tasks_refuses_the_workflow_at_the_task_that_passes_it(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "2")
    with pytest.raises(ValidationError) as refused:
        run(
            "ref: t.wf\ntasks:\n"
            "  - {name: a, action: core.noop, on_success: b}\n"
            "  - {name: b, action: core.noop, on_success: c}\n"
            "  - {name: c, action: core.noop}\n"
        )
    assert (
        "t/workflows/wf.yaml:5:12: error: the workflow has 3 tasks (parallel members and subworkflows'"
        " tasks included), more than the limit of 2 ([attune] max_tasks): task 'c' passes it"
    ) in str(refused.value)
