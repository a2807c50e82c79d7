"""Cancellation at the level of `dag.test()` (what `attune-airflow run` runs), without mocks.

A run marked failed from outside while a task runs: a second thread calls what
`PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}` {"state": "failed"} calls
(`set_dag_run_state_to_failed`, on the same metadata database) once the slow task has
started. Measured (docs/design.md, "Pause, resume and cancel"): `dag.test()` runs the
task in the calling process, with no heartbeat, so the task is not stopped: it
ends, its own result overwrites the state the mark gave it, nothing after it starts (the
mark skipped it), and `dag.test()` sets the run's state again from its tasks: `success`,
its only leaf having been skipped. `collect` reports the workflow failed and cancelled
all the same: its last step never ran. The same through the REST API and a real
scheduler: tests/cluster/test_cancellation.py.

Tasks marked success: `dag.test(mark_success_pattern=...)`, Airflow's own way to set a
task `success` without running it. A task marked failed cannot be simulated here:
`dag.test()` writes the state of the task it ran over the mark (measured), so only the
cluster test shows it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from attune_provider.local_run import planned_run_id, prepare_environment, resolve, run_plan
from tests.support import write_pack

SLOW_YAML = """
name: slow
runner_type: python-script
entry_point: slow.py
parameters:
  marks: {type: string, required: true}
  seconds: {type: number, required: true}
"""
SLOW_PY = """
import json, os, time


def run(marks, seconds):
    with open(os.path.join(marks, "slow.jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start": time.time()}) + "\\n")
    time.sleep(seconds)
    return {"slept": seconds}
"""
WORKFLOW = """
ref: t.cancelled
parameters:
  marks: {type: string, required: true}
tasks:
  - name: slow
    action: t.slow
    input: {marks: "{{ parameters.marks }}", seconds: 6}
    on_success: after
  - name: after
    action: core.echo
    input: {message: after}
output_map:
  after: "{{ task.after.result.message }}"
"""
MARK_TIMEOUT = 120.0


def _mark_failed_once_started(dag_id: str, run_id: str, marks: Path, done: list[str]) -> None:
    deadline = time.monotonic() + MARK_TIMEOUT
    while not (marks / "slow.jsonl").exists():
        if time.monotonic() > deadline:
            done.append("the slow task never started")
            return
        time.sleep(0.2)
    from airflow.api.common.mark_tasks import set_dag_run_state_to_failed
    from airflow.models.dagbag import DBDagBag
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=dag_id, run_id=run_id).one()
        dag = DBDagBag().get_dag_for_run(run, session=session)
        set_dag_run_state_to_failed(dag=dag, run_id=run_id, commit=True, session=session)
    done.append("marked")


def test_a_run_marked_failed_under_dag_test_is_reported_failed_and_cancelled(
    airflow_db: None, tmp_path: Path
) -> None:
    packs, marks = tmp_path / "packs", tmp_path / "marks"
    marks.mkdir()
    write_pack(
        packs,
        "t",
        {"actions/slow.yaml": SLOW_YAML, "actions/slow.py": SLOW_PY, "workflows/cancelled.yaml": WORKFLOW},
    )
    prepare_environment([packs])
    plan = resolve("t.cancelled", [packs])
    when = datetime.now(timezone.utc)
    run_id = planned_run_id(when)
    done: list[str] = []
    marker = threading.Thread(
        target=_mark_failed_once_started, args=(plan.ref, run_id, marks, done), daemon=True
    )
    marker.start()
    result = run_plan(plan, {"marks": str(marks)}, when)
    marker.join(10)
    assert done == ["marked"]

    assert result.status == "failed" and result.cancelled, result.reasons
    # no audit-log record of a REST call here, and dag.test()'s run state says nothing: a cancellation
    assert result.reasons == ["cancelled: the DAG run was ended from outside before its last step ran"]
    assert result.as_json() == {
        "workflow": "t.cancelled",
        "run_id": run_id,
        "status": "failed",
        "tasks": {"slow": "succeeded", "after": "skipped"},  # dag.test() let slow finish
        "vars": {},
        "output": None,  # rendered by the last step, which never ran
    }

    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        state = session.query(DagRun.state).filter_by(dag_id=plan.ref, run_id=run_id).scalar()
        tis = {ti.task_id: ti for ti in session.query(TaskInstance).filter_by(dag_id=plan.ref, run_id=run_id)}
    assert state == "success"  # dag.test() set it again from its tasks: Attune does not trust it
    assert tis["after"].state == "skipped" and tis["after"].try_number == 0  # never started
    assert tis["attune_outcome"].state == "skipped" and tis["attune_outcome"].try_number == 0


MARKED = """
ref: t.marked
vars: {v: initial}
tasks:
  - name: pick
    action: core.echo
    input: {message: x}
    decision:
      - {when: "{{ task.pick.result.message == 'x' }}", next: a}
      - {default: b}
  - name: a
    action: core.echo
    input: {message: a}
  - name: b
    action: core.echo
    input: {message: b}
  - name: pub
    action: core.echo
    input: {message: published}
    publish:
      - v: "{{ task.pub.result.message }}"
    on_success: after
  - name: after
    action: core.echo
    input: {message: "{{ vars.v }}"}
  - name: plain
    action: core.echo
    input: {message: plain}
    on_success: next
  - name: next
    action: core.echo
    input: {message: next}
output_map:
  after: "{{ task.after.result.message }}"
  pub: "{{ task.pub.result }}"
"""


def test_tasks_marked_success_are_done_without_a_result(airflow_db: None, tmp_path: Path) -> None:
    """`dag.test(mark_success_pattern=...)` sets tasks `success` without running them: what
    a task marked success in the UI leaves (Airflow's state, no outcome of its own). Such a
    task is done with a null result: the tasks after it run, a `publish` publishes nothing;
    one with a `decision` has nothing to decide on, so none of its branches runs and the
    workflow is cancelled."""
    from attune_provider.dag_factory.compiler import build_dag
    from attune_provider.local_run import collect

    packs = tmp_path / "packs"
    write_pack(packs, "t", {"workflows/marked.yaml": MARKED})
    prepare_environment([packs])
    plan = resolve("t.marked", [packs])
    when = datetime.now(timezone.utc)
    build_dag(plan).test(logical_date=when, run_after=when, mark_success_pattern="pick|pub|plain")
    result = collect(plan, planned_run_id(when))

    assert result.status == "failed" and result.cancelled
    assert result.reasons == [
        "cancelled: task 'pick' was marked success from outside before it reported a result: "
        "its decision chose no branch"
    ]
    assert result.as_json()["tasks"] == {
        "pick": "succeeded",
        "a": "skipped",
        "b": "skipped",
        "pub": "succeeded",
        "after": "succeeded",
        "plain": "succeeded",
        "next": "succeeded",
    }
    assert result.tasks["pick"].error == {
        "type": "Cancelled",
        "message": "was marked success from outside before it reported a result",
    }
    assert result.vars == {"v": "initial"}  # `pub` published nothing
    assert result.output == {"after": "initial", "pub": None}
