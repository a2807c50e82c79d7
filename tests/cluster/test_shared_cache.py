"""Fault (4): two DAG processors sharing one parse cache never serve a corrupt or stale DAG.

A second `airflow dag-processor` runs beside the cluster's, with the same settings, so the
same `attune_cache` directory: both parse the DAG files every interval and write cache
entries at the same time. A workflow is edited several times; after each edit its DAG
must show the new version (its task is named after it) within two intervals, no import
error may appear, and a run of the last version must give that version's output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.conftest import CLUSTER_PACKS, PARSE_INTERVAL, Cluster

pytestmark = pytest.mark.cluster

VERSIONS = 4
SHOW_LIMIT = 2 * PARSE_INTERVAL + 60.0  # two parses, and their time on a loaded machine
PACKS: list[Path] = []


def _workflow(version: int) -> str:
    return (
        "ref: shared.w\n"
        "tasks:\n"
        f"  - name: step_{version}\n"
        "    action: core.echo\n"
        f"    input: {{message: v{version}}}\n"
        "output_map:\n"
        f'  version: "{{{{ task.step_{version}.result.message }}}}"\n'
    )


def write_shared_pack(packs: Path) -> None:
    (packs / "shared" / "workflows").mkdir(parents=True)
    (packs / "shared" / "pack.yaml").write_text("ref: shared\n")
    (packs / "shared" / "workflows" / "w.yaml").write_text(_workflow(0))
    PACKS.append(packs)


CLUSTER_PACKS.append(write_shared_pack)


@pytest.fixture
def second_dag_processor(cluster: Cluster) -> Iterator[subprocess.Popen[bytes]]:
    """Another DAG processor with the cluster's settings (`source $ATTUNE_CLUSTER_HOME/env`)."""
    home = Path(cluster.env["ATTUNE_CLUSTER_HOME"])
    log = (home / "log" / "dag-processor-2.log").open("w")
    command = f'set -a; . "{home}/env"; exec airflow dag-processor'
    proc = subprocess.Popen(
        ["bash", "-c", command], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def _tasks(cluster: Cluster) -> set[str]:
    return {t["task_id"] for t in cluster.request("GET", "/api/v2/dags/shared.w/tasks")["tasks"]}


def test_two_dag_processors_share_the_cache_without_stale_dags(
    cluster: Cluster, second_dag_processor: subprocess.Popen[bytes]
) -> None:
    workflow_file = PACKS[0] / "shared" / "workflows" / "w.yaml"
    for version in range(1, VERSIONS + 1):
        workflow_file.write_text(_workflow(version))
        wanted = {f"step_{version}", "attune_outcome"}
        started = time.monotonic()
        while _tasks(cluster) != wanted:
            assert second_dag_processor.poll() is None, "the second DAG processor died"
            assert time.monotonic() - started < SHOW_LIMIT, f"v{version} not served: {_tasks(cluster)}"
            time.sleep(1)
        print(f"shared cache: v{version} served {time.monotonic() - started:.1f}s after the edit")
        errors = cluster.request("GET", "/api/v2/importErrors")
        assert errors["total_entries"] == 0, errors
    cluster.trigger("shared.w", {}, label="shared")
    state, _ = cluster.wait("shared")
    assert state == "success"
    assert cluster.xcom("shared", "return_value") == {"version": f"v{VERSIONS}"}
