"""One distributed Airflow for the cluster tests: `scripts/cluster.sh` (CeleryExecutor,
PostgreSQL, Redis, two Celery workers) in a temporary home, on its own database and port.

The packs are written before the cluster starts (each test module adds its own through
`CLUSTER_PACKS`); the cluster is stopped at the end of the session. When PostgreSQL or
Redis can be neither reached nor started, `start` fails and so do these tests, with the
script's reason: they are never skipped.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from tests.live_airflow import POSTGRES, STARTUP_TIMEOUT, LiveAirflow, drop_database, free_port
from tests.support import REPO

# A python-script action that records each start (pid, time) in `<marks>/<name>.jsonl`, then
# sleeps: the cluster tests see from outside which tries ran where, and when.
SLOW_PY = """
import json, os, time


def run(marks, name, seconds):
    with open(os.path.join(marks, name + ".jsonl"), "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "start": time.time()}) + "\\n")
    time.sleep(seconds)
    return {"slept": seconds}
"""
SLOW_YAML = """
name: slow
runner_type: python-script
entry_point: slow.py
parameters:
  marks: {type: string, required: true}
  name: {type: string, required: true}
  seconds: {type: integer, required: true}
"""


def write_slow_action(pack: Path) -> None:
    """The `slow` action (SLOW_PY) into pack directory `pack`."""
    (pack / "actions").mkdir(parents=True, exist_ok=True)
    (pack / "actions" / "slow.py").write_text(SLOW_PY)
    (pack / "actions" / "slow.yaml").write_text(SLOW_YAML)


SCRIPT = REPO / "scripts" / "cluster.sh"
PackWriter = Callable[[Path], None]
CLUSTER_PACKS: list[PackWriter] = []  # each cluster test module registers its packs here
# NAME -> VALUE given to the confidential worker alone (cluster.sh's ATTUNE_CLUSTER_CONFIDENTIAL_ENV
# file, written before the cluster starts); each cluster test module adds the ones it needs
CLUSTER_CONFIDENTIAL_ENV: dict[str, str] = {}
CONFIDENTIAL_QUEUE = "attune-confidential"  # the queue cluster.sh's worker-confidential consumes
PARSE_INTERVAL = 10  # [dag_processor] min_file_process_interval of the test cluster, seconds
# every Cluster the session fixture started (or tried to): a module that needs a cluster of its
# own (test_worker_pools) stops them first, to spare the machine; stopping again is a no-op
STARTED: list[Cluster] = []


class Cluster(LiveAirflow):
    """A LiveAirflow whose processes `scripts/cluster.sh` starts and stops."""

    stopped = False  # set by stop(), cleared by start(): a second stop does nothing

    def cluster(
        self, command: str, timeout: float = STARTUP_TIMEOUT + 240
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def start(self) -> None:
        self.stopped = False
        done = self.cluster("start")
        if done.returncode != 0:
            raise AssertionError(f"cluster.sh start failed ({done.returncode}):\n{done.stderr[-4000:]}")
        lines = dict(line.split(": ", 1) for line in done.stdout.splitlines() if ": " in line)
        assert set(lines) == {"api", "user", "password"}, done.stdout
        self.password = lines["password"]

    def login(self, timeout: float) -> None:
        self.token = self.request("POST", "/auth/token", {"username": "admin", "password": self.password})[
            "access_token"
        ]

    def check_alive(self) -> None:
        status = self.cluster("status", timeout=60)
        if status.returncode != 0:
            raise AssertionError(f"the cluster is not whole:\n{status.stdout}{status.stderr[-2000:]}")

    def stop(self, grace: float = 30.0) -> None:
        if self.stopped:
            return
        done = self.cluster("stop", timeout=grace + 120)
        assert done.returncode == 0, done.stderr[-2000:]
        self.stopped = True

    def connect(self) -> Any:
        """A connection to the cluster's PostgreSQL database (the caller closes it)."""
        return psycopg2.connect(**{**POSTGRES, "dbname": self.env["ATTUNE_CLUSTER_DB"]}, connect_timeout=10)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return list(cursor.fetchall())
        finally:
            connection.close()

    def tries(self, label: str) -> list[dict[str, Any]]:
        """Every try of every task instance of run `label` (current and history): its
        task-instance id, task, map index, try number, state, queue, host and executor."""
        dag_id, run_id, _ = self.runs[label]
        columns = "task_id, map_index, try_number, state, queue, hostname, executor"
        rows = self.query(
            f"SELECT id::text, {columns} FROM task_instance WHERE dag_id = %s AND run_id = %s "
            f"UNION ALL SELECT task_instance_id::text, {columns} FROM task_instance_history "
            "WHERE dag_id = %s AND run_id = %s",
            (dag_id, run_id, dag_id, run_id),
        )
        names = ["id", *(c.strip() for c in columns.split(","))]
        return [dict(zip(names, row, strict=True)) for row in rows]

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / "home" / "log" / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    packs = root / "packs"
    packs.mkdir()
    for write in CLUSTER_PACKS:
        write(packs)
    confidential_env = root / "confidential.env"  # outside the cluster's home: only cluster.sh reads it
    confidential_env.touch(mode=0o600)
    confidential_env.write_text(
        "# the confidential worker's own variables (cluster.sh ATTUNE_CLUSTER_CONFIDENTIAL_ENV)\n"
        + "".join(f"{name}={value}\n" for name, value in CLUSTER_CONFIDENTIAL_ENV.items())
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTUNE", "PYTEST"))}
    env.update(
        {
            "ATTUNE_CLUSTER_HOME": str(root / "home"),
            "ATTUNE_CLUSTER_PORT": str(port),
            "ATTUNE_CLUSTER_DB": f"attune_test_{secrets.token_hex(4)}",
            "ATTUNE_PACKS_PATH": str(packs),
            # a Redis of the cluster's own (started and stopped by cluster.sh), so that a test
            # may restart the broker without touching the machine's
            "ATTUNE_CLUSTER_REDIS_PORT": str(free_port()),
            "ATTUNE_CLUSTER_PARSE_INTERVAL": str(PARSE_INTERVAL),
            "ATTUNE_CLUSTER_CONFIDENTIAL_ENV": str(confidential_env),
        }
    )
    airflow = Cluster(root, port, env)
    STARTED.append(airflow)
    try:
        airflow.start()
        airflow.login(60)
        yield airflow
    finally:
        airflow.stop()
        drop_database(env["ATTUNE_CLUSTER_DB"])
