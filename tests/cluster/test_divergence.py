"""No divergence: every case of tests/integration/cases runs on the cluster (Celery
workers, PostgreSQL, Redis) with the outcome, task outcomes, vars and output that the
case expects, the same expectations `dag.test()` meets in test_cases.py.

Each case becomes its own pack (`c_<case>`) so that all of them load side by side; its
refs are renamed to that pack. Every run is triggered at once, then each is checked.

Left out, because their expectation holds only when tasks start within seconds of each
other (true of `dag.test()`, not of a busy Celery deployment; both behaviours are what
the language says): LATENCY_BOUND below.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

from attune_provider.local_run import RunResult, TaskRun
from tests.cluster.conftest import CLUSTER_PACKS, Cluster
from tests.integration.test_cases import CASES, check_expectations, load_case, pack_files
from tests.live_airflow import ApiError

pytestmark = pytest.mark.cluster

COMPARED = ("status", "tasks", "vars", "output")
RUN_TIMEOUT = 900.0
# case -> why its expected outcome depends on how fast tasks start
LATENCY_BOUND = {
    "subworkflow_timeout": "`quick`'s 30 s deadline covers queueing its child's tasks, which a cluster "
    "busy with every other case can exceed (CI saw it: the child ended, the call timed out)",
    "subworkflow_timeout_nested": "the inner call must start before the outer call's 2 s deadline, "
    "else it is skipped (the child never runs) instead of timing out mid-nap",
    "subworkflow_timeout_judged_by_its_tasks": "its calls' 2-3 s deadlines cover queueing their "
    "children's tasks, which a cluster busy with every other case can exceed (CI saw `fast` time out)",
    "vars_branches_in_end_order": "which of two parallel branches ends last depends on when the "
    "workers start them (vars are applied in the order the tasks really ended, on both)",
}
API_USER = "admin"  # who triggers the runs: `system.identity.login` on the cluster
RUNNABLE = [
    path for path in CASES if "invalid" not in load_case(path)["expect"] and path.stem not in LATENCY_BOUND
]


def pack_name(path: Path) -> str:
    return "c_" + re.sub(r"[^a-z0-9_]", "_", path.stem.lower())


def _renamed(text: str, pack: str) -> str:
    """A case's YAML with its pack `t` renamed: the refs it declares and the actions it calls."""
    return re.sub(r"^(\s*-?\s*(?:ref|action):\s*)t\.", rf"\g<1>{pack}.", text, flags=re.M)


def write_case_packs(packs: Path) -> None:
    for path in RUNNABLE:
        pack = pack_name(path)
        workflow, files = pack_files(load_case(path))
        directory = packs / pack
        (directory / "workflows").mkdir(parents=True)
        (directory / "pack.yaml").write_text(f"ref: {pack}\n")
        (directory / "workflows" / "wf.yaml").write_text(_renamed(workflow, pack))
        for rel, text in files.items():
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            body = textwrap.dedent(text)
            target.write_text(body if rel.endswith(".py") else _renamed(body, pack))


CLUSTER_PACKS.append(write_case_packs)


@pytest.fixture(scope="module")
def triggered(cluster: Cluster) -> Cluster:
    """Every case triggered on the cluster (their runs proceed together)."""
    for path in RUNNABLE:
        cluster.trigger(f"{pack_name(path)}.wf", load_case(path).get("params") or {}, label=path.stem)
    return cluster


def _for_cluster(value: Any, pack: str) -> Any:
    """An expected value as the cluster gives it: pack `t` is the case's own pack, and the
    login is the API user who triggered the run (`dag.test()` gives the process's user)."""
    if isinstance(value, str):
        if value == "t" or value.startswith("t."):
            return pack + value[1:]
        return value.replace("${user}", API_USER)
    if isinstance(value, list):
        return [_for_cluster(item, pack) for item in value]
    if isinstance(value, dict):
        return {key: _for_cluster(item, pack) for key, item in value.items()}
    return value


def cluster_result(cluster: Cluster, label: str) -> RunResult:
    """What the run did, read through the REST API as `run` reads it from the database."""
    dag_id, run_id, _ = cluster.runs[label]
    cluster.wait(label, timeout=RUN_TIMEOUT)
    report: dict[str, Any] = cluster.workflow(label)
    tasks = {task_id: TaskRun(task_id, status) for task_id, status in (report.get("tasks") or {}).items()}
    result = RunResult(dag_id, run_id, report.get("status") or "failed", tasks, report.get("vars") or {})
    try:
        result.output = cluster.xcom(label, "return_value")
    except ApiError as exc:  # a workflow without output_map returns nothing
        assert "HTTP 404" in str(exc), exc
    return result


@pytest.mark.parametrize("path", RUNNABLE, ids=[p.stem for p in RUNNABLE])
def test_case_on_the_cluster(path: Path, triggered: Cluster) -> None:
    expected = load_case(path)["expect"]
    expect = {key: _for_cluster(value, pack_name(path)) for key, value in expected.items() if key in COMPARED}
    check_expectations(cluster_result(triggered, path.stem), expect)
