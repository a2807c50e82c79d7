"""Pause, resume and cancel through the REST API, on the cluster's real scheduler
(docs/design.md, "Pause, resume and cancel").

What Airflow 3.3 does, and what these tests hold Attune to:

- A run marked failed (`PATCH .../dagRuns/{run_id}` {"state": "failed"}, what the UI's
  "Mark as failed" sends): its running task instances become `failed`, the unfinished ones
  `skipped` (`attune_outcome` too), the run `failed`. A running task's supervisor hears at
  its next heartbeat ([workers] min_heartbeat_interval, 5 s) that it must stop and ends the
  task process (SIGTERM, SIGKILL 5 s later); the task's `on_kill` ends its shell command's
  process group. Nothing starts after. There is no `workflow` XCom: readers (`collect`,
  what `attune-airflow run` reports) derive `failed` / `cancelled` from the run.
- A running task marked failed (`PATCH .../taskInstances/{task_id}` {"new_state": "failed"}):
  the task is stopped the same way; the scheduler goes on. The tasks its failure routes to
  run (an `on_failure` cleanup); a task only its success leads to is `upstream_failed`,
  never started. `attune_outcome` runs and fails the workflow as cancelled: the task is
  `failed` with no outcome of its own.
- A running task marked success: stopped the same way, and taken as done: the task after it
  runs and the workflow succeeds (the task's result is null).
- A run marked success: running tasks `success`, unfinished ones `skipped`, the run
  `success`, no `workflow` XCom: reported `succeeded`.
- A paused DAG: the running task finishes, nothing new starts and the run stays `running`;
  unpaused, it goes on and succeeds.
- `attune-airflow run` (`dag.test()` in its own process, here on the cluster's database with
  the DAG paused so that the scheduler leaves its run alone) whose run is marked failed
  through the REST API: the running task finishes (no heartbeat in `dag.test()`), nothing
  starts after it, and the command says `failed (cancelled)`; marked success, `--json`
  says `succeeded`.

Each test waits for what it needs with generous limits and polls; none fails from load alone.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import CLUSTER_PACKS, Cluster, write_slow_action
from tests.live_airflow import ApiError, start_time
from tests.support import REPO

pytestmark = pytest.mark.cluster

WAIT = 600.0  # for a state the cluster reaches in seconds when idle: never the load alone
STOP_WAIT = 300.0  # for a cancelled task's process to end (measured: 7 to 9 s)
QUIET = 20.0  # how long "nothing new starts" is watched after the run ended
PAUSED_WATCH = 25.0  # how long a paused run is watched for a task starting
FINISHED = {"success", "failed", "skipped", "upstream_failed", "removed"}


def _workflow(name: str, slow: str, extra: str = "", seconds: int = 600) -> str:
    """first -> slow -> after, `slow` as given (its name in the marks: the workflow's)."""
    return f"""
ref: cancellation.{name}
parameters:
  marks: {{type: string, required: true}}
tasks:
  - name: first
    action: core.noop
    on_success: slow
{textwrap.indent(textwrap.dedent(slow).strip(), "  ")}
  - name: after
    action: core.echo
    input: {{message: done}}
{textwrap.indent(textwrap.dedent(extra).strip(), "  ")}
output_map:
  after: "{{{{ task.after.result.message }}}}"
""".replace("NAME", name).replace("SECONDS", str(seconds))


PYTHON_SLOW = """
- name: slow
  action: cancellation.slow
  input: {marks: "{{ parameters.marks }}", name: NAME, seconds: SECONDS}
  on_success: after
"""
SHELL_SLOW = """
- name: slow
  action: core.local
  input: {cmd: "echo '{\\"pid\\": '$$'}' >> {{ parameters.marks }}/NAME.jsonl; exec sleep SECONDS"}
  on_success: after
"""
HANDLED_SLOW = PYTHON_SLOW + "  on_failure: cleanup\n"
CLEANUP = """
- name: cleanup
  action: core.echo
  input: {message: cleaned}
"""
WORKFLOWS = {
    "run_failed": _workflow("run_failed", SHELL_SLOW),
    "task_failed": _workflow("task_failed", HANDLED_SLOW, CLEANUP),
    "task_success": _workflow("task_success", PYTHON_SLOW),
    "run_success": _workflow("run_success", PYTHON_SLOW),
    "paused": _workflow("paused", PYTHON_SLOW, seconds=10),
    "local_failed": _workflow("local_failed", PYTHON_SLOW, seconds=15),
    "local_success": _workflow("local_success", PYTHON_SLOW, seconds=15),
    "sub_child": _workflow("sub_child", PYTHON_SLOW),
    "items_failed": """
ref: cancellation.items_failed
parameters:
  marks: {type: string, required: true}
tasks:
  - name: each
    action: cancellation.slow
    with_items: [600, 1]
    input: {marks: "{{ parameters.marks }}", name: "items_failed_{{ index }}", seconds: "{{ item }}"}
    on_failure: cleanup
  - name: cleanup
    action: core.echo
    input: {message: cleaned}
""",
    "sub_failed": """
ref: cancellation.sub_failed
parameters:
  marks: {type: string, required: true}
tasks:
  - name: sub
    action: cancellation.sub_child
    input: {marks: "{{ parameters.marks }}"}
    on_failure: cleanup
  - name: cleanup
    action: core.echo
    input: {message: cleaned}
""",
}


def write_cancellation_pack(packs: Path) -> None:
    pack = packs / "cancellation"
    (pack / "actions").mkdir(parents=True)
    (pack / "workflows").mkdir()
    (pack / "pack.yaml").write_text("ref: cancellation\n")
    write_slow_action(pack)
    for name, text in WORKFLOWS.items():
        (pack / "workflows" / f"{name}.yaml").write_text(text)


CLUSTER_PACKS.append(write_cancellation_pack)


# -- helpers -------------------------------------------------------------------------------


def poll(what: str, check: Callable[[], Any], timeout: float = WAIT, every: float = 1.0) -> Any:
    """`check()`'s first true value, polled; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen after {timeout:.0f}s")
        time.sleep(every)


def started(marks: Path, name: str) -> dict[str, Any]:
    """The slow task's start mark (pid), once it wrote it."""

    def mark() -> dict[str, Any] | None:
        path = marks / f"{name}.jsonl"
        text = path.read_text() if path.exists() else ""
        return json.loads(text.splitlines()[0]) if text.strip() else None

    found: dict[str, Any] = poll(f"{name}: the slow task starts", mark)
    found["since"] = start_time(int(found["pid"]))  # tells the process from a reused pid
    return found


def wait_gone(mark: dict[str, Any], what: str) -> float:
    """Seconds until the process of `mark` has ended."""
    begun = time.monotonic()
    poll(what, lambda: start_time(int(mark["pid"])) != mark["since"], timeout=STOP_WAIT, every=0.2)
    return time.monotonic() - begun


def trigger(cluster: Cluster, name: str, marks: Path) -> str:
    dag_id = f"cancellation.{name}"
    cluster.wait_for_dags({dag_id}, WAIT)
    cluster.trigger(dag_id, {"marks": str(marks)}, label=name)
    return dag_id


def run_state(cluster: Cluster, label: str) -> str:
    return str(cluster.request("GET", cluster.run_path(label))["state"])


def wait_ended(cluster: Cluster, label: str) -> str:
    """The run's final state (polled every 2 s: the run, not the `workflow` XCom, which a
    cancelled run never gets)."""
    return str(
        poll(
            f"{label}: the run ends",
            lambda: (state := run_state(cluster, label)) in ("success", "failed") and state,
            every=2.0,
        )
    )


def instances(cluster: Cluster, label: str) -> dict[str, dict[str, Any]]:
    found = cluster.request("GET", f"{cluster.run_path(label)}/taskInstances?limit=100")
    return {ti["task_id"]: ti for ti in found["task_instances"] if ti["map_index"] == -1}


def mark_task(cluster: Cluster, label: str, task_id: str, state: str) -> None:
    cluster.request("PATCH", f"{cluster.run_path(label)}/taskInstances/{task_id}", {"new_state": state})


def mark_run(cluster: Cluster, label: str, state: str) -> None:
    assert cluster.request("PATCH", cluster.run_path(label), {"state": state})["state"] == state


def no_workflow_xcom(cluster: Cluster, label: str) -> bool:
    try:
        cluster.workflow(label)
    except ApiError as exc:
        if "HTTP 404" in str(exc):
            return True
        raise
    return False


def never_started(ti: dict[str, Any]) -> bool:
    return ti["try_number"] == 0 and ti["state"] in ("skipped", "upstream_failed")


def stays_unstarted(cluster: Cluster, label: str, task_ids: list[str], seconds: float = QUIET) -> None:
    """Nothing of `task_ids` starts for `seconds` (they stay as they were, never started)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = instances(cluster, label)
        assert all(never_started(found[t]) for t in task_ids), {t: found[t]["state"] for t in task_ids}
        time.sleep(2)


def cluster_environment(cluster: Cluster) -> dict[str, str]:
    """The environment of the cluster's processes (its env file, as `source` gives it)."""
    env_file = Path(cluster.env["ATTUNE_CLUSTER_HOME"]) / "env"
    done = subprocess.run(
        ["bash", "-c", 'source "$1" && env -0', "bash", str(env_file)],
        env=cluster.env,
        capture_output=True,
        check=True,
        timeout=60,
    )
    pairs = [item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item]
    return {name: value for name, value in pairs}


REPORT_PY = """
import json, os, sys
from pathlib import Path
from attune_provider.local_run import collect, prepare_environment, resolve

packs = [Path(p) for p in os.environ["ATTUNE_PACKS_PATH"].split(os.pathsep)]
prepare_environment(packs)
result = collect(resolve(sys.argv[1], packs), sys.argv[2])
print(json.dumps({
    "json": result.as_json(), "reasons": result.reasons, "cancelled": result.cancelled,
    "errors": {task_id: task.error for task_id, task in result.tasks.items() if task.error},
}))
"""


def collected(cluster: Cluster, label: str) -> dict[str, Any]:
    """What `attune-airflow run` would report of run `label` (`local_run.collect`, in a
    process of its own on the cluster's database)."""
    dag_id, run_id, _ = cluster.runs[label]
    done = subprocess.run(
        [sys.executable, "-c", REPORT_PY, dag_id, run_id],
        env=cluster_environment(cluster),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# -- the tests -----------------------------------------------------------------------------


def test_a_run_marked_failed_stops_its_task_and_is_reported_cancelled(
    cluster: Cluster, tmp_path: Path
) -> None:
    trigger(cluster, "run_failed", tmp_path)
    mark = started(tmp_path, "run_failed")  # the shell command's own process (`exec sleep`)
    assert instances(cluster, "run_failed")["slow"]["state"] == "running"
    mark_run(cluster, "run_failed", "failed")
    took = wait_gone(mark, "the running task's command ends")
    print(f"run marked failed: the running command ended {took:.1f}s after")
    assert wait_ended(cluster, "run_failed") == "failed"
    stays_unstarted(cluster, "run_failed", ["after", "attune_outcome"])
    assert run_state(cluster, "run_failed") == "failed"
    found = instances(cluster, "run_failed")
    assert found["first"]["state"] == "success"
    assert found["slow"]["state"] == "failed" and found["slow"]["try_number"] == 1
    assert no_workflow_xcom(cluster, "run_failed")  # the last step never ran

    report = collected(cluster, "run_failed")
    assert report["json"]["status"] == "failed" and report["cancelled"], report
    assert report["reasons"] == ["cancelled: the DAG run was marked failed before its last step ran"]
    assert report["json"]["tasks"] == {"first": "succeeded", "slow": "failed", "after": "skipped"}
    assert report["json"]["output"] is None and report["json"]["vars"] == {}
    assert report["errors"]["slow"]["type"] == "Cancelled", report["errors"]


def test_a_running_task_marked_failed_cancels_the_workflow(cluster: Cluster, tmp_path: Path) -> None:
    trigger(cluster, "task_failed", tmp_path)
    mark = started(tmp_path, "task_failed")  # the task process itself (python-script)
    mark_task(cluster, "task_failed", "slow", "failed")
    took = wait_gone(mark, "the task marked failed ends")
    print(f"task marked failed: its process ended {took:.1f}s after")
    state, _ = cluster.wait("task_failed", timeout=WAIT)
    assert state == "failed"
    found = instances(cluster, "task_failed")
    assert found["slow"]["state"] == "failed"
    assert never_started(found["after"])  # only its success led there
    assert found["cleanup"]["state"] == "success"  # its on_failure still ran
    report = cluster.workflow("task_failed")
    assert report["status"] == "failed"
    assert report["tasks"] == {
        "first": "succeeded",
        "slow": "failed",
        "after": "skipped",
        "cleanup": "succeeded",
    }
    assert report["reasons"] == [
        "cancelled: task 'slow' was ended from outside before it reported an outcome "
        "(marked failed in the UI or the REST API, or its process was killed)"
    ]
    assert report["errors"]["slow"]["type"] == "Cancelled"
    local = collected(cluster, "task_failed")
    assert local["json"]["status"] == "failed" and local["cancelled"], local


def test_a_task_of_a_subworkflow_marked_failed_cancels_its_caller(cluster: Cluster, tmp_path: Path) -> None:
    """The child is cancelled, so is the workflow that called it, though its on_failure
    handled the call's failure (docs/design.md, "Pause, resume and cancel")."""
    trigger(cluster, "sub_failed", tmp_path)
    mark = started(tmp_path, "sub_child")
    mark_task(cluster, "sub_failed", "sub.slow", "failed")
    wait_gone(mark, "the child's task marked failed ends")
    state, _ = cluster.wait("sub_failed", timeout=WAIT)
    assert state == "failed"
    report = cluster.workflow("sub_failed")
    assert report["status"] == "failed"
    assert report["tasks"] == {"sub": "failed", "cleanup": "succeeded"}
    assert report["errors"]["sub"]["type"] == "Cancelled", report["errors"]
    assert report["reasons"] == [
        "cancelled: task 'sub' was ended from outside before it reported an outcome "
        "(marked failed in the UI or the REST API, or its process was killed)"
    ]


def test_a_with_items_execution_marked_failed_cancels_the_workflow(cluster: Cluster, tmp_path: Path) -> None:
    """One execution marked failed: the others run to their end, the task fails with the
    error type Cancelled (its index), its on_failure runs, and the workflow is cancelled."""
    trigger(cluster, "items_failed", tmp_path)
    mark = started(tmp_path, "items_failed_0")
    mark_task(cluster, "items_failed", "each/0", "failed")
    wait_gone(mark, "the execution marked failed ends")
    state, _ = cluster.wait("items_failed", timeout=WAIT)
    assert state == "failed"
    report = cluster.workflow("items_failed")
    assert report["tasks"] == {"each": "failed", "cleanup": "succeeded"}
    assert report["errors"]["each"]["type"] == "Cancelled", report["errors"]
    assert report["errors"]["each"]["index"] == 0
    assert report["reasons"] == [
        "cancelled: task 'each' was ended from outside before it reported an outcome "
        "(marked failed in the UI or the REST API, or its process was killed)"
    ]


def test_a_running_task_marked_success_is_done_and_the_workflow_goes_on(
    cluster: Cluster, tmp_path: Path
) -> None:
    trigger(cluster, "task_success", tmp_path)
    mark = started(tmp_path, "task_success")
    mark_task(cluster, "task_success", "slow", "success")
    took = wait_gone(mark, "the task marked success ends")
    print(f"task marked success: its process ended {took:.1f}s after")
    state, _ = cluster.wait("task_success", timeout=WAIT)
    assert state == "success"
    report = cluster.workflow("task_success")
    assert report["status"] == "succeeded", report
    assert report["tasks"] == {"first": "succeeded", "slow": "succeeded", "after": "succeeded"}
    assert cluster.xcom("task_success", "return_value") == {"after": "done"}
    assert collected(cluster, "task_success")["json"]["status"] == "succeeded"


def test_a_run_marked_success_is_reported_succeeded(cluster: Cluster, tmp_path: Path) -> None:
    trigger(cluster, "run_success", tmp_path)
    mark = started(tmp_path, "run_success")
    mark_run(cluster, "run_success", "success")
    took = wait_gone(mark, "the running task of a run marked success ends")
    print(f"run marked success: the running task ended {took:.1f}s after")
    assert wait_ended(cluster, "run_success") == "success"
    stays_unstarted(cluster, "run_success", ["after", "attune_outcome"])
    found = instances(cluster, "run_success")
    assert found["slow"]["state"] == "success"
    assert no_workflow_xcom(cluster, "run_success")
    report = collected(cluster, "run_success")
    assert report["json"]["status"] == "succeeded" and not report["cancelled"], report
    assert report["json"]["tasks"] == {"first": "succeeded", "slow": "succeeded", "after": "skipped"}
    assert report["reasons"] == ["the DAG run was marked success before its last step ran"]


def test_a_paused_workflow_finishes_its_running_task_and_starts_nothing_until_resumed(
    cluster: Cluster, tmp_path: Path
) -> None:
    dag_id = trigger(cluster, "paused", tmp_path)
    started(tmp_path, "paused")
    cluster.request("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": True})
    try:
        poll(
            "the running task finishes while paused",
            lambda: instances(cluster, "paused")["slow"]["state"] == "success",
        )
        deadline = time.monotonic() + PAUSED_WATCH
        while time.monotonic() < deadline:
            found = instances(cluster, "paused")
            assert found["after"]["try_number"] == 0 and found["after"]["state"] in (None, "scheduled"), (
                found["after"]
            )
            assert run_state(cluster, "paused") == "running"
            time.sleep(2)
    finally:
        cluster.request("PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id)}", {"is_paused": False})
    state, _ = cluster.wait("paused", timeout=WAIT)
    assert state == "success"
    assert cluster.workflow("paused")["status"] == "succeeded"
    assert cluster.xcom("paused", "return_value") == {"after": "done"}


def _attune_run(
    cluster: Cluster, name: str, marks: Path, mark: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    """`attune-airflow run cancellation.<name>` on the cluster's database, its run marked
    `mark` through the REST API once its slow task started."""
    dag_id = f"cancellation.{name}"
    cluster.wait_for_dags({dag_id}, WAIT)
    quoted = urllib.parse.quote(dag_id)
    cluster.request("PATCH", f"/api/v2/dags/{quoted}", {"is_paused": True})  # the scheduler keeps off it
    env = cluster_environment(cluster)
    command = [
        str(Path(sys.executable).parent / "attune-airflow"),
        "run",
        dag_id,
        "-p",
        f"marks={marks}",
        *extra,
    ]
    with subprocess.Popen(
        command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            started(marks, name)
            runs = cluster.request("GET", f"/api/v2/dags/{quoted}/dagRuns?state=running")["dag_runs"]
            assert len(runs) == 1, runs
            cluster.runs[name] = (dag_id, runs[0]["dag_run_id"], time.monotonic())
            mark_run(cluster, name, mark)
            out, err = proc.communicate(timeout=WAIT)
        finally:
            if proc.poll() is None:
                proc.kill()
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def test_attune_airflow_run_marked_failed_through_the_rest_api_says_cancelled(
    cluster: Cluster, tmp_path: Path
) -> None:
    done = _attune_run(cluster, "local_failed", tmp_path, "failed")
    assert done.returncode == 1, (done.stdout, done.stderr[-3000:])
    assert "workflow cancellation.local_failed failed (cancelled) in " in done.stdout, done.stdout
    assert "Why: cancelled: the DAG run was marked failed before its last step ran" in done.stdout
    found = instances(cluster, "local_failed")
    assert found["slow"]["state"] == "success"  # dag.test() let it finish, and wrote its state
    assert never_started(found["after"]) and never_started(found["attune_outcome"])


def test_attune_airflow_run_json_marked_success_says_succeeded(cluster: Cluster, tmp_path: Path) -> None:
    done = _attune_run(cluster, "local_success", tmp_path, "success", "--json")
    assert done.returncode == 0, (done.stdout, done.stderr[-3000:])
    result = json.loads(done.stdout)
    assert result == {
        "workflow": "cancellation.local_success",
        "run_id": cluster.runs["local_success"][1],
        "status": "succeeded",
        "tasks": {"first": "succeeded", "slow": "succeeded", "after": "skipped"},
        "vars": {},
        "output": None,
    }
