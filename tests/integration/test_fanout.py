"""Fan-out and composition through Airflow: with_items, parallel groups and subworkflows.

`dag.test()` runs task instances one after another in this process, so overlap of
with_items executions is checked here only as "never above `concurrency`" plus the
compiled `max_active_tis_per_dagrun`; test_scheduler.py measures real overlap.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attune_provider.local_run import RunResult, resolve
from tests.support import RECORD_ACTION, max_overlap, records

GEN_YAML = """
name: gen
runner_type: python-script
entry_point: gen.py
parameters:
  n: {type: integer, required: true}
"""

GEN_PY = """
def run(n):
    return [f"item-{i}" for i in range(n)]
"""

MAYBE_YAML = """
name: maybe
runner_type: python-script
entry_point: maybe.py
parameters:
  value: {type: integer, required: true}
"""

MAYBE_PY = """
def run(value):
    return None if value % 2 == 0 else value * 10
"""

FILES = {
    **RECORD_ACTION,
    "actions/gen.yaml": GEN_YAML,
    "actions/gen.py": GEN_PY,
    "actions/maybe.yaml": MAYBE_YAML,
    "actions/maybe.py": MAYBE_PY,
}
Run = Callable[..., RunResult]


def test_max_overlap() -> None:
    def spans(*pairs: tuple[float, float]) -> list[dict[str, Any]]:
        return [{"start": a, "end": b} for a, b in pairs]

    assert max_overlap([]) == 0
    assert max_overlap(spans((0, 1), (1, 2), (2, 3))) == 1  # back to back is not overlap
    assert max_overlap(spans((0, 2), (1, 3), (2.5, 4))) == 2
    assert max_overlap(spans((0, 10), (1, 2), (1.5, 3), (4, 5))) == 3


def statuses(result: RunResult) -> dict[str, str]:
    return {task_id: task.status for task_id, task in result.tasks.items()}


# -- with_items --------------------------------------------------------------------------


def test_results_in_item_order_with_item_and_index(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        parameters:
          names: {type: array}
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ parameters.names }}"
            input:
              message: {item: "{{ item }}", index: "{{ index }}", label: "{{ index }}:{{ item | upper }}"}
        output_map:
          result: "{{ task.each.result }}"
          total: "{{ task.each.total_count }}"
          status: "{{ task.each.status }}"
        """,
        params={"names": ["c", "a", "b", "a"]},
    )
    assert result.status == "succeeded"
    assert result.tasks["each"].status == "succeeded"
    assert result.output == {
        "result": [
            {"message": {"item": "c", "index": 0, "label": "0:C"}},
            {"message": {"item": "a", "index": 1, "label": "1:A"}},
            {"message": {"item": "b", "index": 2, "label": "2:B"}},
            {"message": {"item": "a", "index": 3, "label": "3:A"}},
        ],
        "total": 4,
        "status": "succeeded",
    }


def test_result_order_is_item_order_not_end_order(run: Run, tmp_path: Path) -> None:
    """The first item is the slowest; results still come back in item order."""
    log = tmp_path / "log"
    result = run(
        """
        ref: t.wf
        parameters:
          log: {type: string}
        tasks:
          - name: each
            action: t.record
            with_items: "{{ [30, 20, 10] }}"
            input: {log: "{{ parameters.log }}", value: "{{ item }}", sleep: "{{ item / 100 }}"}
        output_map: "{{ task.each.result | map(attribute='value') | list }}"
        """,
        files=FILES,
        params={"log": str(log)},
    )
    assert result.status == "succeeded"
    assert result.output == [30, 20, 10]


def test_batch_size(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ [1, 2, 3, 4, 5] }}"
            batch_size: 2
            input: {message: {batch: "{{ item }}", index: "{{ index }}", size: "{{ item | length }}"}}
        output_map:
          result: "{{ task.each.result | map(attribute='message') | list }}"
          total: "{{ task.each.total_count }}"
        """
    )
    assert result.status == "succeeded"
    assert result.output == {
        "result": [
            {"batch": [1, 2], "index": 0, "size": 2},
            {"batch": [3, 4], "index": 1, "size": 2},
            {"batch": [5], "index": 2, "size": 1},
        ],
        "total": 5,
    }


def test_empty_list_succeeds_with_no_results(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        vars: {count: -1}
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ [] }}"
            input: {message: "{{ item }}"}
            publish:
              - count: "{{ task.each.total_count }}"
            on_success: after
          - name: after
            action: core.noop
        output_map:
          result: "{{ task.each.result }}"
          total: "{{ task.each.total_count }}"
        """
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "succeeded", "after": "succeeded"}
    assert result.output == {"result": [], "total": 0}
    assert result.vars == {"count": 0}


def test_when_false_skips_the_with_items_task(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: core.echo
            when: "{{ false }}"
            with_items: "{{ [1, 2] }}"
            input: {message: "{{ item }}"}
            on_complete: after
          - name: after
            action: core.noop
        output_map: {status: "{{ task.each.status }}", result: "{{ task.each.result }}"}
        """
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "skipped", "after": "skipped"}
    assert result.output == {"status": "skipped", "result": None}


def test_items_from_an_upstream_result(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        parameters:
          n: {type: integer}
        tasks:
          - name: make
            action: t.gen
            input: {n: "{{ parameters.n }}"}
            on_success: each
          - name: each
            action: core.echo
            with_items: "{{ task.make.result }}"
            input: {message: "{{ item | append('!') }}"}
        output_map: "{{ task.each.result | map(attribute='message') | list }}"
        """,
        files=FILES,
        params={"n": 3},
    )
    assert result.status == "succeeded"
    assert result.output == ["item-0!", "item-1!", "item-2!"]


def test_not_a_list_fails_the_task(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ 'abc' }}"
            input: {message: "{{ item }}"}
            on_failure: handler
          - name: handler
            action: core.noop
        """
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "failed", "handler": "succeeded"}
    assert "list" in result.tasks["each"].error["message"]


@pytest.mark.parametrize(
    ("items", "instances"),
    [("{{ [1, 2, 3] }}", "each"), ("{{ parameters.values }}", "each.run")],
    ids=["list-in-workflow", "list-rendered-at-run"],
)
def test_one_failing_item_fails_the_task_after_its_retries(
    run: Run, tmp_path: Path, tries: Callable, items: str, instances: str
) -> None:
    """Both forms of with_items (plan.mapped_items): one task mapped over a list written in
    the workflow, and the `items` / `run` / `attune_outcome` group for any other list."""
    log = tmp_path / "log"
    result = run(
        """
        ref: t.wf
        parameters:
          log: {type: string}
          values: {type: array, default: [1, 2, 3]}
        tasks:
          - name: each
            action: t.record
            with_items: "ITEMS"
            retry: {count: 1}
            input: {log: "{{ parameters.log }}", value: "{{ item }}", fail_on: [2]}
            on_success: won
            on_failure: handler
          - name: won
            action: core.noop
          - name: handler
            action: core.echo
            input: {message: "{{ task.each.error.message }}"}
        """.replace("ITEMS", items),
        files=FILES,
        params={"log": str(log)},
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "failed", "won": "skipped", "handler": "succeeded"}
    assert [len(tries(result, instances, i)) for i in range(3)] == [1, 2, 1]
    assert [r["value"] for r in records(log) if r["failed"]] == [2, 2]
    assert sorted(r["value"] for r in records(log) if not r["failed"]) == [1, 3]
    # the failure is reported once, by the one task instance that handles it
    assert [t.state for t in tries(result, "handler")] == ["success"]
    assert result.tasks["handler"].attempts == 1
    message = result.xcom("handler")["message"]
    assert result.tasks["each"].error["message"] == message
    assert result.tasks["each"].attempts == 2 and result.tasks["each"].duration is not None  # item 1 retried
    assert "1 of 3" in message and "index 1" in message and "value 2 is refused" in message, message


def test_timed_out_items_give_the_outcome_timeout(run: Run) -> None:
    """`timeout` is per execution; when the failed executions all timed out, the task's
    outcome is `timeout` and on_timeout fires."""
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: core.sleep
            with_items: "{{ [30, 30] }}"
            timeout: 1
            input: {seconds: "{{ item }}"}
            on_timeout: handler
            on_failure: wrong
          - name: handler
            action: core.noop
          - name: wrong
            action: core.noop
        output_map: "{{ task.each.status }}"
        """
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "timeout", "handler": "succeeded", "wrong": "skipped"}
    assert result.output == "timeout"


def test_failing_item_without_handler_fails_the_workflow(run: Run, tmp_path: Path) -> None:
    result = run(
        """
        ref: t.wf
        parameters:
          log: {type: string}
        tasks:
          - name: each
            action: t.record
            with_items: "{{ ['x', 'y'] }}"
            input: {log: "{{ parameters.log }}", value: "{{ item }}", fail_on: [x]}
        """,
        files=FILES,
        params={"log": str(tmp_path / "log")},
    )
    assert result.status == "failed"
    assert result.tasks["each"].status == "failed"


def test_on_error_false_stops_an_items_retries(run: Run, tmp_path: Path, tries: Callable) -> None:
    log = tmp_path / "log"
    result = run(
        """
        ref: t.wf
        parameters:
          log: {type: string}
        tasks:
          - name: each
            action: t.record
            with_items: "{{ ['keep', 'stop'] }}"
            retry: {count: 2, on_error: "{{ 'keep' in task.each.error.message }}"}
            input: {log: "{{ parameters.log }}", value: "{{ item }}", fail_on: [keep, stop]}
            on_failure: noop
        """,
        files=FILES,
        params={"log": str(log)},
    )
    assert result.tasks["each"].status == "failed"
    assert [len(tries(result, "each", i)) for i in range(2)] == [3, 1]
    assert sorted(r["value"] for r in records(log)) == ["keep", "keep", "keep", "stop"]


def test_concurrency_compiles_to_max_active_tis_and_is_respected(run: Run, tmp_path: Path) -> None:
    from attune_provider.dag_factory.compiler import build_dag

    workflow = """
        ref: t.wf
        parameters:
          log: {type: string}
        tasks:
          - name: each
            action: t.record
            with_items: "{{ range(6) | list }}"
            concurrency: 2
            input: {log: "{{ parameters.log }}", value: "{{ item }}", sleep: 0.2}
        output_map: "{{ task.each.result | length }}"
    """
    log = tmp_path / "log"
    result = run(workflow, files=FILES, params={"log": str(log)})
    assert result.status == "succeeded" and result.output == 6
    spans = records(log)
    assert len(spans) == 6
    assert max_overlap(spans) <= 2
    mapped = build_dag(resolve("t.wf", [tmp_path / "packs"])).get_task("each")
    assert mapped.max_active_tis_per_dagrun == 2


def test_which_with_items_tasks_are_mapped_directly(tmp_path: Path) -> None:
    """A list written in the workflow, without publish or decision: one mapped task named
    after the Attune task (as a hand-written DAG would have); otherwise the group."""
    from airflow.sdk.definitions.mappedoperator import MappedOperator

    from attune_provider.dag_factory.compiler import build_dag
    from tests.support import write_pack

    workflow = """
        ref: t.wf
        parameters:
          names: {type: array, default: [a]}
        tasks:
          - name: written
            action: core.echo
            with_items: [a, {b: 1}, "{{ 'c' | upper }}"]
            batch_size: 2
            input: {message: "{{ item }}"}
          - name: rendered
            action: core.echo
            with_items: "{{ parameters.names }}"
            input: {message: "{{ item }}"}
          - name: published
            action: core.echo
            with_items: "{{ [1, 2] }}"
            input: {message: "{{ item }}"}
            publish: [{n: "{{ task.published.result | length }}"}]
          - name: empty
            action: core.echo
            with_items: "{{ [] }}"
            input: {message: "{{ item }}"}
        """
    write_pack(tmp_path / "packs", "t", {"workflows/wf.yaml": workflow, **FILES})
    plan = resolve("t.wf", [tmp_path / "packs"])
    assert plan.mapped_items == {"written": [["a", {"b": 1}], ["C"]]}
    dag = build_dag(plan)
    written = dag.get_task("written")
    assert isinstance(written, MappedOperator) and written.expand_input.value == {
        "item": [["a", {"b": 1}], ["C"]]
    }
    for name in ("rendered", "published", "empty"):
        assert {f"{name}.items", f"{name}.run", f"{name}.attune_outcome"} <= set(dag.task_ids), name


def test_results_of_a_list_in_the_workflow_keep_their_place(run: Run, tries: Callable) -> None:
    """Executions that return null push no XCom: the results still line up with the items."""
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: t.maybe
            with_items: "{{ [1, 2, 3, 4, 5] }}"
            input: {value: "{{ item }}"}
            on_success: after
          - name: after
            action: core.echo
            input: {message: "{{ task.each.result }} of {{ task.each.total_count }}"}
        output_map: {result: "{{ task.each.result }}", after: "{{ task.after.result.message }}"}
        """,
        files=FILES,
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "succeeded", "after": "succeeded"}
    assert result.output == {"result": [10, None, 30, None, 50], "after": "[10, None, 30, None, 50] of 5"}
    assert [t.state for i in range(5) for t in tries(result, "each", i)] == ["success"] * 5
    assert result.xcom("each", "attune") is None  # successes push only their result


def test_publish_and_decision_on_a_with_items_task(run: Run) -> None:
    result = run(
        """
        ref: t.wf
        vars: {count: 0, words: []}
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ ['x', 'y', 'z'] }}"
            input: {message: "{{ item | upper }}"}
            publish:
              - count: "{{ task.each.total_count }}"
              - words: "{{ task.each.result | map(attribute='message') | list }}"
            decision:
              - when: "{{ vars.count > 5 }}"
                next: many
              - when: "{{ vars.count > 2 }}"
                next: some
              - default: few
          - name: many
            action: core.noop
          - name: some
            action: core.echo
            input: {message: "{{ vars.words | join('') }}"}
          - name: few
            action: core.noop
        output_map: "{{ task.some.result.message }}"
        """
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"each": "succeeded", "many": "skipped", "some": "succeeded", "few": "skipped"}
    assert result.vars == {"count": 3, "words": ["X", "Y", "Z"]}
    assert result.output == "XYZ"


def test_with_items_over_1000_items(run: Run, record_property: Callable[..., None]) -> None:
    """1,000 mapped executions under dag.test(): they all run and come back in order.

    Measured 164-172 s on a 2-core machine (233 s while other jobs loaded it): ~0.17 s per
    mapped task instance, nearly all of it Airflow's in-process execution-API calls. Under
    the 3-minute mark, so it stays in the normal run (not marked `slow`).
    """
    started = time.monotonic()
    result = run(
        """
        ref: t.wf
        tasks:
          - name: each
            action: core.echo
            with_items: "{{ range(1000) | list }}"
            input: {message: "{{ item * 2 }}"}
        output_map:
          total: "{{ task.each.total_count }}"
          last: "{{ task.each.result[-1].message }}"
          ordered: "{{ (task.each.result | map(attribute='message') | list) == (range(0, 2000, 2) | list) }}"
        """
    )
    elapsed = time.monotonic() - started
    print(f"with_items over 1,000 items under dag.test(): {elapsed:.1f}s")
    record_property("seconds", round(elapsed, 1))
    assert result.status == "succeeded"
    assert result.output == {"total": 1000, "last": 1998, "ordered": True}


# -- parallel groups ----------------------------------------------------------------------

PARALLEL = """
ref: t.wf
parameters:
  log: {type: string}
  refuse: {type: array, default: []}
tasks:
  - name: group
    type: parallel
    tasks:
      - name: left
        action: t.record
        input: {log: "{{ parameters.log }}", value: L, fail_on: "{{ parameters.refuse }}"}
      - name: right
        action: t.record
        input: {log: "{{ parameters.log }}", value: R, fail_on: "{{ parameters.refuse }}"}
    on_success: after
    on_failure: handler
  - name: after
    action: core.echo
    input: {message: "{{ task.left.result.value }}{{ task.right.result.value }}"}
  - name: handler
    action: core.echo
    input: {message: "{{ task.group.error.message }}"}
output_map:
  after: "{{ task.after.result.message }}"
  handler: "{{ task.handler.result.message }}"
  left: "{{ task.left.status }}"
  right: "{{ task.right.status }}"
"""


def test_parallel_group_success(run: Run, tmp_path: Path) -> None:
    result = run(PARALLEL, files=FILES, params={"log": str(tmp_path / "log")})
    assert result.status == "succeeded"
    assert statuses(result) == {
        "group": "succeeded",
        "group.left": "succeeded",
        "group.right": "succeeded",
        "after": "succeeded",
        "handler": "skipped",
    }
    assert result.output == {"after": "LR", "handler": None, "left": "succeeded", "right": "succeeded"}
    assert result.xcom("group.left") == {"value": "L"}


@pytest.mark.parametrize(
    "items", ["[1, 2]", '"{{ vars.items }}"'], ids=["list-in-workflow", "list-from-vars"]
)
def test_with_items_member_of_a_parallel_group(run: Run, items: str) -> None:
    """In both forms; the group form's outcome step used to look its member up in the
    workflow's graph, which holds only top-level tasks, and failed with every item done."""
    result = run(
        """
        ref: t.wf
        vars:
          items: [1, 2]
        tasks:
          - name: grp
            type: parallel
            tasks:
              - name: each
                action: core.echo
                with_items: ITEMS
                input: {message: "{{ item }}"}
              - name: other
                action: core.noop
            on_success: after
            on_failure: bad
          - name: after
            action: core.echo
            input: {message: "{{ task.each.result | length }} of {{ task.each.total_count }}"}
          - name: bad
            action: core.noop
        output_map: {result: "{{ task.each.result }}", after: "{{ task.after.result.message }}"}
        """.replace("ITEMS", items)
    )
    assert result.status == "succeeded"
    assert statuses(result) == {
        "grp": "succeeded",
        "grp.each": "succeeded",
        "grp.other": "succeeded",
        "after": "succeeded",
        "bad": "skipped",
    }
    assert result.output == {"result": [{"message": 1}, {"message": 2}], "after": "2 of 2"}


def test_parallel_group_fails_when_a_member_fails(run: Run, tmp_path: Path) -> None:
    result = run(PARALLEL, files=FILES, params={"log": str(tmp_path / "log"), "refuse": ["R"]})
    assert result.status == "succeeded"  # handled by the group's on_failure
    assert statuses(result) == {
        "group": "failed",
        "group.left": "succeeded",
        "group.right": "failed",
        "after": "skipped",
        "handler": "succeeded",
    }
    assert result.tasks["group.right"].error == {"type": "ValueError", "message": "value R is refused"}
    group = result.tasks["group"]
    assert group.error is not None and group.error["type"] == "ParallelFailed", group
    assert group.attempts == 1 and group.duration is not None, group
    assert "right" in result.output["handler"]
    assert (result.output["left"], result.output["right"]) == ("succeeded", "failed")


def test_parallel_group_failure_unhandled_fails_the_workflow(run: Run, tmp_path: Path) -> None:
    workflow = PARALLEL.replace("    on_failure: handler\n", "")
    result = run(workflow, files=FILES, params={"log": str(tmp_path / "log"), "refuse": ["L"]})
    assert result.status == "failed"
    assert result.tasks["group"].status == "failed"
    assert result.tasks["group.left"].status == "failed"


# -- subworkflows ---------------------------------------------------------------------------

CHILD = """
ref: t.child
parameters:
  who: {type: string, required: true}
  fail: {type: boolean, default: false}
  mood: {type: string, default: child-default}
vars: {shared: child-initial}
tasks:
  - name: greet
    action: core.echo
    input: {message: "hello {{ parameters.who }}"}
    publish:
      - shared: child-published
    on_success: maybe_fail
  - name: maybe_fail
    action: t.record
    input: {log: /dev/null, value: "{{ parameters.fail }}", fail_on: [true]}
output_map:
  greeting: "{{ task.greet.result.message }}"
  mood: "{{ parameters.mood }}"
  shared: "{{ vars.shared }}"
"""

PARENT = """
ref: t.wf
parameters:
  fail: {type: boolean, default: false}
  mood: {type: string, default: parent-mood}
vars: {shared: parent-initial, got: null}
tasks:
  - name: setup
    action: core.noop
    publish:
      - shared: parent-published
    on_success: sub
  - name: sub
    action: t.child
    input: {who: "{{ vars.shared }}", fail: "{{ parameters.fail }}"}
    publish:
      - got: "{{ task.sub.result }}"
    on_success: after
    on_failure: handler
  - name: after
    action: core.noop
  - name: handler
    action: core.echo
    input: {message: "{{ task.sub.error }}"}
output_map:
  sub: "{{ task.sub.result }}"
  shared: "{{ vars.shared }}"
"""


def test_subworkflow_output_is_the_task_result(run: Run) -> None:
    result = run(PARENT, files={**FILES, "workflows/child.yaml": CHILD})
    assert result.status == "succeeded"
    assert statuses(result) == {
        "setup": "succeeded",
        "sub": "succeeded",
        "after": "succeeded",
        "handler": "skipped",
    }
    child_output = {
        "greeting": "hello parent-published",
        "mood": "child-default",
        "shared": "child-published",
    }
    assert result.output == {"sub": child_output, "shared": "parent-published"}
    assert result.vars == {"shared": "parent-published", "got": child_output}
    # the child's tasks ran inside the calling task's group
    assert result.xcom("sub.greet") == {"message": "hello parent-published"}
    assert result.xcom("sub.attune_outcome", "attune")["status"] == "succeeded"


def test_child_scopes_do_not_leak(run: Run) -> None:
    """The child sees only its own parameters (not the parent's `mood`) and vars; its
    publishes stay in the child (the parent's `shared` is unchanged)."""
    result = run(PARENT, files={**FILES, "workflows/child.yaml": CHILD}, params={"mood": "parent-given"})
    assert result.status == "succeeded"
    assert result.output["sub"]["mood"] == "child-default"
    assert result.output["sub"]["shared"] == "child-published"
    assert result.vars["shared"] == "parent-published"
    assert set(result.vars) == {"shared", "got"}


def test_subworkflow_failure_fails_the_calling_task(run: Run) -> None:
    result = run(PARENT, files={**FILES, "workflows/child.yaml": CHILD}, params={"fail": True})
    assert result.status == "succeeded"  # the parent handles it with on_failure
    assert statuses(result) == {
        "setup": "succeeded",
        "sub": "failed",
        "after": "skipped",
        "handler": "succeeded",
    }
    error = result.tasks["sub"].error
    assert error is not None and error["type"] == "WorkflowFailed"
    assert "maybe_fail" in error["message"]
    assert result.xcom("handler")["message"] == error
    assert result.vars == {"shared": "parent-published", "got": None}


def test_subworkflow_failure_unhandled_fails_the_parent(run: Run) -> None:
    workflow = PARENT.replace("    on_failure: handler\n", "")
    result = run(workflow, files={**FILES, "workflows/child.yaml": CHILD}, params={"fail": True})
    assert result.status == "failed"
    assert result.tasks["sub"].status == "failed"


def test_subworkflow_with_invalid_input_fails_the_calling_task(run: Run) -> None:
    """The input is checked against the child's parameters: a bad value fails the task
    (naming the parameter) and the child's tasks do not run."""
    workflow = PARENT.replace('fail: "{{ parameters.fail }}"', "fail: \"{{ 'no' }}\"")
    result = run(workflow, files={**FILES, "workflows/child.yaml": CHILD})
    assert result.status == "succeeded"
    assert statuses(result) == {
        "setup": "succeeded",
        "sub": "failed",
        "after": "skipped",
        "handler": "succeeded",
    }
    assert "'fail'" in result.tasks["sub"].error["message"]
    assert result.xcom("sub.greet") is None and result.xcom("sub.maybe_fail") is None  # never ran


def test_subworkflow_not_routed_is_skipped(run: Run) -> None:
    workflow = PARENT.replace("    on_success: sub\n", "    on_failure: sub\n")
    result = run(workflow, files={**FILES, "workflows/child.yaml": CHILD})
    assert result.status == "succeeded"
    assert statuses(result) == {
        "setup": "succeeded",
        "sub": "skipped",
        "after": "skipped",
        "handler": "skipped",
    }
    assert result.output == {"sub": None, "shared": "parent-published"}


COMPOSITE_CHILD = """
ref: t.kid
parameters:
  words: {type: array, required: true}
tasks:
  - name: each
    action: core.echo
    with_items: "{{ parameters.words }}"
    concurrency: 1
    input: {message: "{{ item | upper }}"}
    on_success: both
  - name: both
    type: parallel
    tasks:
      - name: first
        action: core.echo
        input: {message: "{{ task.each.result[0].message }}"}
      - name: count
        action: core.echo
        input: {message: "{{ task.each.total_count }}"}
    on_success: grand
  - name: grand
    action: t.grandkid
    input: {text: "{{ task.first.result.message }}"}
output_map:
  words: "{{ task.each.result | map(attribute='message') | list }}"
  first: "{{ task.first.result.message }}"
  count: "{{ task.count.result.message }}"
  grand: "{{ task.grand.result }}"
"""

GRANDKID = """
ref: t.grandkid
parameters:
  text: {type: string, required: true}
tasks:
  - name: shout
    action: core.echo
    input: {message: "{{ parameters.text }}!"}
output_map: "{{ task.shout.result.message }}"
"""


def test_subworkflows_compose_with_items_parallel_and_nesting(run: Run) -> None:
    """A child with a with_items task, a parallel group and a grandchild, called twice."""
    result = run(
        """
        ref: t.wf
        tasks:
          - name: one
            action: t.kid
            input: {words: [a, b]}
          - name: two
            action: t.kid
            input: {words: [x, y, z]}
        output_map: ["{{ task.one.result }}", "{{ task.two.result }}"]
        """,
        files={"workflows/kid.yaml": COMPOSITE_CHILD, "workflows/grandkid.yaml": GRANDKID},
    )
    assert result.status == "succeeded"
    assert statuses(result) == {"one": "succeeded", "two": "succeeded"}
    assert result.output == [
        {"words": ["A", "B"], "first": "A", "count": 2, "grand": "A!"},
        {"words": ["X", "Y", "Z"], "first": "X", "count": 3, "grand": "X!"},
    ]
    assert result.xcom("two.grand.shout") == {"message": "X!"}
    assert result.xcom("one.both.count") == {"message": 2}
