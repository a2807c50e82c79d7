"""Faults on the cluster: a worker lost mid-task, the scheduler and the broker restarted.

(1) A Celery worker is SIGKILLed (with its pool: as a lost machine) while it runs a task
that has retries: the scheduler fails the orphaned try once its heartbeat is older than
`[scheduler] task_instance_heartbeat_timeout` (set low by cluster.sh), the retry runs on
the other worker, and the run succeeds with consistent outcome XComs. (2) The scheduler is
SIGKILLed mid-run and started again: the run finishes. (3) The cluster's own Redis (the
Celery broker) is SIGKILLed mid-run and started again: the run finishes. Each restores the
cluster after (`cluster.sh start` restarts what died).
"""

from __future__ import annotations

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.cluster.conftest import CLUSTER_PACKS, Cluster, write_slow_action
from tests.live_airflow import descendants

pytestmark = pytest.mark.cluster

FAULT_TIMEOUT = 900.0


def _workflow(name: str, seconds: int) -> str:
    return textwrap.dedent(
        f"""
        ref: faults.{name}
        parameters:
          marks: {{type: string, required: true}}
        tasks:
          - name: first
            action: core.noop
            on_success: slow
          - name: slow
            action: faults.slow
            input: {{marks: "{{{{ parameters.marks }}}}", name: {name}, seconds: {seconds}}}
            retry: {{count: 2, delay: 1}}
            on_success: after
          - name: after
            action: core.echo
            input: {{message: done}}
        output_map:
          slept: "{{{{ task.slow.result.slept }}}}"
          after: "{{{{ task.after.result.message }}}}"
        """
    )


def write_fault_packs(packs: Path) -> None:
    pack = packs / "faults"
    (pack / "actions").mkdir(parents=True)
    (pack / "workflows").mkdir()
    (pack / "pack.yaml").write_text("ref: faults\n")
    write_slow_action(pack)
    (pack / "workflows" / "lost_worker.yaml").write_text(_workflow("lost_worker", 45))
    (pack / "workflows" / "lost_scheduler.yaml").write_text(_workflow("lost_scheduler", 20))
    (pack / "workflows" / "lost_broker.yaml").write_text(_workflow("lost_broker", 20))


CLUSTER_PACKS.append(write_fault_packs)


def starts(marks: Path, name: str) -> list[dict[str, float]]:
    path = marks / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for_start(marks: Path, name: str, count: int, timeout: float = 300.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = starts(marks, name)
        if len(found) >= count:
            return found[count - 1]
        time.sleep(1)
    raise AssertionError(f"{name}: try {count} never started ({starts(marks, name)})")


def pid_file(cluster: Cluster, name: str) -> int:
    return int((Path(cluster.env["ATTUNE_CLUSTER_HOME"]) / "run" / f"{name}.pid").read_text().split()[0])


def worker_running(cluster: Cluster, pid: int) -> str:
    """Which worker's process tree holds the process `pid`."""
    for k in (1, 2):
        worker = pid_file(cluster, f"worker-{k}")
        if pid == worker or pid in descendants([worker]):
            return f"worker-{k}"
    raise AssertionError(f"process {pid} belongs to no Celery worker")


def kill_group(pid: int) -> None:
    """SIGKILL a process and everything it started, as a lost machine would end them."""
    family = [pid, *descendants([pid])]
    for member in family:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_lost_worker_costs_one_try_and_the_run_succeeds(cluster: Cluster, tmp_path: Path) -> None:
    cluster.trigger("faults.lost_worker", {"marks": str(tmp_path)}, label="lost_worker")
    first = wait_for_start(tmp_path, "lost_worker", 1)
    victim = worker_running(cluster, int(first["pid"]))
    killed_at = time.monotonic()
    kill_group(pid_file(cluster, victim))
    second = wait_for_start(tmp_path, "lost_worker", 2, timeout=FAULT_TIMEOUT)
    print(f"lost worker: try 2 started {time.monotonic() - killed_at:.0f}s after the kill")
    assert worker_running(cluster, int(second["pid"])) != victim
    cluster.cluster("start")  # bring the killed worker back for the other tests
    state, elapsed = cluster.wait("lost_worker", timeout=FAULT_TIMEOUT)
    print(f"lost worker: run {state} {elapsed:.0f}s after its trigger")
    assert state == "success"
    report = cluster.workflow("lost_worker")
    assert report["status"] == "succeeded"
    assert report["tasks"] == {"first": "succeeded", "slow": "succeeded", "after": "succeeded"}
    assert cluster.xcom("lost_worker", "return_value") == {"slept": 45, "after": "done"}
    assert len(starts(tmp_path, "lost_worker")) == 2  # one lost try, one retry: no run lost or doubled


def test_a_killed_scheduler_restarted_finishes_the_run(cluster: Cluster, tmp_path: Path) -> None:
    cluster.trigger("faults.lost_scheduler", {"marks": str(tmp_path)}, label="lost_scheduler")
    wait_for_start(tmp_path, "lost_scheduler", 1)
    kill_group(pid_file(cluster, "scheduler"))
    time.sleep(5)
    restarted = cluster.cluster("start")
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    state, elapsed = cluster.wait("lost_scheduler", timeout=FAULT_TIMEOUT)
    print(f"lost scheduler: run {state} {elapsed:.0f}s after its trigger")
    assert state == "success"
    assert cluster.workflow("lost_scheduler")["status"] == "succeeded"
    assert cluster.xcom("lost_scheduler", "return_value") == {"slept": 20, "after": "done"}


def test_a_restarted_broker_loses_no_run(cluster: Cluster, tmp_path: Path) -> None:
    cluster.trigger("faults.lost_broker", {"marks": str(tmp_path)}, label="lost_broker")
    wait_for_start(tmp_path, "lost_broker", 1)
    kill_group(pid_file(cluster, "redis"))
    time.sleep(5)
    restarted = cluster.cluster("start")  # starts the cluster's Redis again
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    state, elapsed = cluster.wait("lost_broker", timeout=FAULT_TIMEOUT)
    print(f"lost broker: run {state} {elapsed:.0f}s after its trigger")
    assert state == "success"
    assert cluster.workflow("lost_broker")["status"] == "succeeded"
    assert cluster.xcom("lost_broker", "return_value") == {"slept": 20, "after": "done"}
