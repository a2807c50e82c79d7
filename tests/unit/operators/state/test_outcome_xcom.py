"""The `attune` outcome record and its reader (operators/state/outcome_xcom.py).

`Outcome` and `combine` are plain Python. `OutcomeReader` reads a run through the running
task instance (XComs and the run's task states, through the Task SDK): it is tested inside
a real run. One workflow runs once under `dag.test()`, on the session's Airflow database;
its last task calls a python-script action (which runs in the task's own process) that
reads the other tasks with an `OutcomeReader` of its own task instance and plan, and
returns what it read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from attune_provider.language.models import Task
from attune_provider.language.statuses import Status
from attune_provider.local_run import RunResult
from attune_provider.operators.state.outcome_xcom import Outcome, combine
from tests.support import write_pack

TASK = Task(
    name="t", action="x", on_success=["s"], on_failure=["f"], on_timeout=["to"], on_complete=["c", "s"]
)


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(Status.SUCCEEDED),
        Outcome(Status.SUCCEEDED, {"a": [1, None]}, None, ["b"], {"x": 1}, 12.5, 2, decided="b"),
        Outcome(Status.FAILED, None, {"type": "ValueError", "message": "no"}, ["oops"], attempts=3),
        Outcome(
            Status.TIMEOUT, [1, None], {"type": "ItemsFailed", "message": "m", "index": 1}, total_count=2
        ),
        Outcome(Status.FAILED, "partial", {"type": "E", "message": ""}, index=4),
    ],
    ids=repr,
)
def test_an_outcome_survives_its_xcom(outcome: Outcome) -> None:
    stored = outcome.to_xcom()
    assert set(stored) == set(Outcome.FIELDS)
    restored = Outcome.from_xcom(stored)
    assert restored is not None and restored.to_xcom() == stored


def test_what_is_not_an_outcome_reads_as_none_and_missing_fields_as_defaults() -> None:
    assert Outcome.from_xcom(None) is None
    assert Outcome.from_xcom("succeeded") is None
    assert Outcome.from_xcom({"result": 1}) is None  # no status: not an outcome
    short = Outcome.from_xcom({"status": Status.SKIPPED, "added_later": True})  # unknown keys are ignored
    assert short is not None
    assert short.to_xcom() == Outcome(Status.SKIPPED).to_xcom()
    assert (short.next, short.published, short.error) == ([], {}, None)


def test_the_task_scope_shows_status_result_error_and_a_with_items_count() -> None:
    plain = Outcome(Status.SUCCEEDED, 5, next=["x"], published={"v": 1}, attempts=2)
    assert plain.scope() == {"status": Status.SUCCEEDED, "result": 5, "error": None}
    items = Outcome(Status.FAILED, [1, None], {"type": "ItemsFailed", "message": "m"}, total_count=2)
    assert items.scope() == {
        "status": Status.FAILED,
        "result": [1, None],
        "error": {"type": "ItemsFailed", "message": "m"},
        "total_count": 2,
    }


def test_executions_that_all_succeeded_make_one_success_with_their_results_in_order() -> None:
    combined = combine(
        [Outcome(Status.SUCCEEDED, "a"), Outcome(Status.SUCCEEDED, None), Outcome(Status.SUCCEEDED, [3])],
        5,
        TASK,
    )
    assert (combined.status, combined.result, combined.error) == (Status.SUCCEEDED, ["a", None, [3]], None)
    assert combined.next == ["s", "c"]  # on_success then on_complete, without repeats
    assert combined.total_count == 5  # the items, batched into three executions
    assert (
        combine([], 0, TASK).to_xcom()
        == Outcome(Status.SUCCEEDED, [], next=["s", "c"], total_count=0).to_xcom()
    )


@pytest.mark.parametrize(
    ("statuses", "status", "next_"),
    [
        ([Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT], Status.FAILED, ["f", "c", "s"]),
        (
            [Status.SUCCEEDED, Status.TIMEOUT, Status.TIMEOUT],
            Status.TIMEOUT,
            ["to", "c", "s"],
        ),  # every failure timed out
        ([Status.FAILED, Status.FAILED, Status.SUCCEEDED], Status.FAILED, ["f", "c", "s"]),
    ],
)
def test_a_failed_execution_fails_the_task_naming_the_first(
    statuses: list[str], status: str, next_: list[str]
) -> None:
    executions = [
        Outcome(
            s,
            result=i if s == Status.SUCCEEDED else None,
            error=None if s == Status.SUCCEEDED else {"message": f"e{i}"},
        )
        for i, s in enumerate(statuses)
    ]
    combined = combine(executions, 3, TASK)
    first = statuses.index(next(s for s in statuses if s != Status.SUCCEEDED))
    failed = sum(s != Status.SUCCEEDED for s in statuses)
    assert (combined.status, combined.next, combined.total_count) == (status, next_, 3)
    assert combined.result == [o.result for o in executions]
    assert combined.error == {
        "type": "ItemsFailed",
        "message": f"{failed} of 3 executions failed; first, index {first}: e{first}",
        "index": first,
    }


# --- reading a real run ------------------------------------------------------------------

PROBE = """
def run(names, vars_order):
    from airflow.sdk import get_current_context

    from attune_provider.operators.state.outcome_xcom import OutcomeReader, merged_vars

    context = get_current_context()
    reader = OutcomeReader(context["ti"], context["task"].plan)
    routing = dict(zip(names, (o.to_xcom() for o in reader.routing(names))))
    return {
        "routing": routing,
        "read": {name: reader[name].to_xcom() for name in names},
        "scope": {name: dict(reader.scope()[name]) for name in names},
        "vars": merged_vars({"x": "initial", "kept": True}, reader, vars_order),
    }
"""
VALUE = """
def run(value=None, fail=False):
    if fail:
        raise ValueError(f"refused {value}")
    return value
"""
ACTIONS = {
    "actions/probe.yaml": "name: probe\nrunner_type: python-script\nentry_point: probe.py\n"
    "parameters:\n  names: {type: array}\n  vars_order: {type: array}\n",
    "actions/probe.py": PROBE,
    "actions/value.yaml": "name: value\nrunner_type: python-script\nentry_point: value.py\n"
    "parameters:\n  value: {}\n  fail: {type: boolean, default: false}\n",
    "actions/value.py": VALUE,
}
WORKFLOW = """
ref: reader.wf
tasks:
  - name: quiet
    action: reader.value
    input: {value: {v: 1}}
    on_complete: probe
  - name: loud
    action: reader.value
    input: {value: 2}
    publish: [{x: "{{ task.loud.result }}"}]
    on_success: louder
    on_complete: probe
  - name: louder
    action: reader.value
    input: {value: 3}
    publish: [{x: "{{ task.louder.result }}"}]
    on_complete: probe
  - name: broken
    action: reader.value
    input: {value: 4, fail: true}
    on_success: never
    on_complete: probe
  - name: never
    action: reader.value
    on_complete: probe
  - name: nulls
    action: reader.value
    with_items: [1, null, 3]
    input: {value: "{{ item }}"}
    on_complete: probe
  - name: some_fail
    action: reader.value
    with_items: [a, b, c]
    input: {value: "{{ item }}", fail: "{{ item != 'a' }}"}
    on_complete: probe
  - name: probe
    action: reader.probe
    input:
      names: [quiet, loud, louder, broken, never, nulls, some_fail]
      vars_order: [louder, broken, loud]
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunResult, dict[str, Any]]]:
    """The run of WORKFLOW, and what its probe read."""
    from attune_provider.local_run import ensure_database, prepare_environment, run_workflow

    packs = tmp_path_factory.mktemp("reader") / "packs"
    write_pack(packs, "reader", {"workflows/wf.yaml": WORKFLOW, **ACTIONS})
    before = os.environ.get("ATTUNE_PACKS_PATH")
    prepare_environment([packs])
    try:
        ensure_database()
        result = run_workflow("reader.wf", [packs], {})
    finally:
        if before is None:
            os.environ.pop("ATTUNE_PACKS_PATH", None)
        else:
            os.environ["ATTUNE_PACKS_PATH"] = before
    assert result.tasks["probe"].status == Status.SUCCEEDED, result.tasks["probe"]
    yield result, result.xcom("probe")


def test_a_quiet_success_is_read_from_airflows_state_its_result_only_when_asked(
    finished: tuple[RunResult, dict[str, Any]],
) -> None:
    result, seen = finished
    assert result.xcom("quiet", "attune") is None  # it pushed no outcome
    assert seen["routing"]["quiet"] == Outcome(Status.SUCCEEDED, next=["probe"]).to_xcom()  # result not read
    assert seen["read"]["quiet"]["result"] == {"v": 1}  # its return value
    assert seen["read"]["quiet"]["status"] == Status.SUCCEEDED and seen["read"]["quiet"]["next"] == ["probe"]


def test_a_pushed_outcome_is_read_as_the_task_pushed_it(finished: tuple[RunResult, dict[str, Any]]) -> None:
    result, seen = finished
    assert seen["read"]["loud"] == result.xcom("loud", "attune")
    loud = seen["read"]["loud"]
    assert (loud["status"], loud["result"], loud["published"], loud["attempts"]) == (
        Status.SUCCEEDED,
        2,
        {"x": 2},
        1,
    )
    assert loud["next"] == ["louder", "probe"] and loud["ended_at"] > 0
    assert seen["routing"]["loud"] == loud  # routing reads the outcome a task pushed as it is
    broken = seen["read"]["broken"]
    assert (broken["status"], broken["error"]) == (
        Status.FAILED,
        {"type": "ValueError", "message": "refused 4"},
    )
    assert broken["next"] == ["probe"]  # on_complete only: on_success did not fire


def test_a_task_skipped_before_it_started_reads_as_skipped(
    finished: tuple[RunResult, dict[str, Any]],
) -> None:
    """`broken` failing left `never` unreachable: it was skipped at once, without running
    or pushing anything, and its outcome comes from Airflow's state."""
    result, seen = finished
    assert result.xcom("never", "attune") is None
    assert seen["read"]["never"] == Outcome(Status.SKIPPED).to_xcom()
    assert seen["scope"]["never"] == {"status": Status.SKIPPED, "result": None, "error": None}


def test_a_task_mapped_directly_is_read_from_its_instances(
    finished: tuple[RunResult, dict[str, Any]],
) -> None:
    _, seen = finished
    nulls = seen["read"]["nulls"]  # a null result has no XCom: the results still line up
    assert (nulls["status"], nulls["result"], nulls["total_count"], nulls["next"]) == (
        Status.SUCCEEDED,
        [1, None, 3],
        3,
        ["probe"],
    )
    assert seen["scope"]["nulls"] == {
        "status": Status.SUCCEEDED,
        "result": [1, None, 3],
        "error": None,
        "total_count": 3,
    }
    failed = seen["read"]["some_fail"]
    assert (failed["status"], failed["result"], failed["next"]) == (
        Status.FAILED,
        ["a", None, None],
        ["probe"],
    )
    assert failed["error"] == {
        "type": "ItemsFailed",
        "message": "2 of 3 executions failed; first, index 1: refused b",
        "index": 1,
    }
    assert seen["routing"]["some_fail"] == failed


def test_vars_are_the_publishes_of_succeeded_tasks_in_the_order_they_ended(
    finished: tuple[RunResult, dict[str, Any]],
) -> None:
    """`louder` ran after `loud`: its `x` wins, whatever order the tasks are named in."""
    _, seen = finished
    assert seen["vars"] == {"x": 3, "kept": True}
