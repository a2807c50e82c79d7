"""Tasks that no transition can reach any more are skipped by the task that settled it,
without starting (AttuneOperator.settle), and never wrongly: not while a retry may still
take another path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.integration.conftest import Try

BRANCHES = """
    ref: t.wf
    parameters:
      route: {type: string, default: a}
    tasks:
      - name: start
        action: core.noop
        decision:
          - when: "{{ parameters.route == 'a' }}"
            next: a1
          - default: b1
      - name: a1
        action: core.noop
        on_success: join
      - name: b1
        action: core.noop
        on_success: b2
      - name: b2
        action: core.noop
        on_success: join
      - name: join
        action: core.echo
        input: {message: "{{ task.b2.status }}"}
    output_map:
      join: "{{ task.join.result.message }}"
"""


def test_a_branch_not_taken_never_starts(run: Callable[..., Any], tries: Callable[..., list[Try]]) -> None:
    result = run(BRANCHES)
    assert result.status == "succeeded"
    assert {n: t.status for n, t in result.tasks.items()} == {
        "start": "succeeded",
        "a1": "succeeded",
        "b1": "skipped",
        "b2": "skipped",
        "join": "succeeded",
    }
    assert result.output == {"join": "skipped"}
    for name in ("b1", "b2"):
        assert tries(result, name) == [], f"{name} started"  # no try: Airflow skipped it
        assert result.xcom(name, "attune") is None
    assert [t.state for t in tries(result, "a1")] == ["success"]


def test_a_mapped_task_on_a_branch_not_taken_never_starts(
    run: Callable[..., Any], tries: Callable[..., list[Try]]
) -> None:
    """A with_items task over a list written in the workflow is one mapped task whose
    instances exist from the start of the run: they are skipped without starting too."""
    result = run(
        BRANCHES.replace(
            "      - name: b2\n        action: core.noop\n",
            "      - name: b2\n        action: core.echo\n"
            "        with_items: [1, 2, 3]\n"
            '        input: {message: "{{ item }}"}\n',
        )
    )
    assert result.status == "succeeded"
    assert result.tasks["b2"].status == "skipped" and result.tasks["join"].status == "succeeded"
    assert result.output == {"join": "skipped"}
    for index in range(3):
        assert tries(result, "b2", index) == [], f"b2[{index}] started"


FLAKY = """
    import pathlib

    def run(marker):
        path = pathlib.Path(marker)
        if not path.exists():
            path.write_text("failed once")
            raise RuntimeError("first attempt fails")
        return "ok"
"""
RETRIED = """
    ref: t.wf
    parameters:
      marker: {type: string, required: true}
    tasks:
      - name: flaky
        action: t.flaky
        input: {marker: "{{ parameters.marker }}"}
        retry: {count: 1, delay: 0}
        on_success: next
        on_failure: recover
      - name: next
        action: core.noop
      - name: recover
        action: core.noop
"""


def test_a_failed_attempt_with_a_retry_left_settles_nothing(run: Callable[..., Any], tmp_path: Any) -> None:
    files = {
        "actions/flaky.yaml": "name: flaky\nrunner_type: python-script\nentry_point: flaky.py\n"
        "parameters: {marker: {type: string, required: true}}\n",
        "actions/flaky.py": FLAKY,
    }
    result = run(RETRIED, files=files, params={"marker": str(tmp_path / "marker")})
    assert result.status == "succeeded"
    assert {n: t.status for n, t in result.tasks.items()} == {
        "flaky": "succeeded",
        "next": "succeeded",
        "recover": "skipped",
    }
    assert result.tasks["flaky"].attempts == 2


GATED = """
    ref: t.wf
    parameters:
      fail: {type: boolean, default: false}
    tasks:
      - name: first
        action: t.maybe
        input: {fail: "{{ parameters.fail }}"}
        on_success: second
        on_failure: recover
      - name: second
        action: core.noop
        on_success: fanout
      - name: fanout
        action: core.echo
        with_items: [1, 2]
        input: {message: "{{ item }}"}
      - name: recover
        action: core.noop
"""
MAYBE = {
    "actions/maybe.yaml": "name: maybe\nrunner_type: python-script\nentry_point: maybe.py\n"
    "parameters: {fail: {type: boolean, required: true}}\n",
    "actions/maybe.py": "def run(fail):\n    if fail:\n        raise RuntimeError('asked to fail')\n"
    "    return 'ok'\n",
}


def _airflow_states(result: Any) -> dict[tuple[str, int], str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter_by(dag_id=result.workflow, run_id=result.run_id).all()
        return {(row.task_id, row.map_index): str(row.state) for row in rows}


def test_tasks_reached_only_by_one_success_leave_their_gate_to_airflow(run: Callable[..., Any]) -> None:
    """`second` (only `first`'s on_success) and the mapped `fanout` (only `second`'s) run
    under Airflow's all_success without reading their gate (plan.trigger_gated); when
    `first` fails, its settle skips them before its own failure is recorded, so they end
    `skipped`, never `upstream_failed`."""
    ran = run(GATED, files=MAYBE)
    assert ran.status == "succeeded"
    assert {n: t.status for n, t in ran.tasks.items()} == {
        "first": "succeeded",
        "second": "succeeded",
        "fanout": "succeeded",
        "recover": "skipped",
    }
    failed = run(GATED, files=MAYBE, params={"fail": True})
    assert failed.status == "succeeded"  # the failure is handled by on_failure
    assert {n: t.status for n, t in failed.tasks.items()} == {
        "first": "failed",
        "second": "skipped",
        "fanout": "skipped",
        "recover": "succeeded",
    }
    states = _airflow_states(failed)
    assert states[("second", -1)] == "skipped"
    assert states[("fanout", 0)] == states[("fanout", 1)] == "skipped"
    assert "upstream_failed" not in states.values()


def test_a_retry_refused_by_on_error_settles_at_once(run: Callable[..., Any]) -> None:
    """`retry.on_error` false ends the task at its first failure although tries are left:
    that failure is the last, so it settles (else the task after it, trigger-gated, would
    be left to Airflow as `upstream_failed`)."""
    workflow = GATED.replace(
        "        on_failure: recover\n",
        '        on_failure: recover\n        retry: {count: 2, delay: 0, on_error: "{{ false }}"}\n',
        1,
    )
    failed = run(workflow, files=MAYBE, params={"fail": True})
    assert failed.tasks["first"].status == "failed" and failed.tasks["first"].attempts == 1
    assert failed.tasks["second"].status == "skipped" and failed.tasks["recover"].status == "succeeded"
    states = _airflow_states(failed)
    assert states[("second", -1)] == "skipped"
    assert "upstream_failed" not in states.values()
