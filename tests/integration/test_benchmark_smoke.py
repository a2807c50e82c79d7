"""Smoke test of the benchmark (benchmarks/): the generated variants are the same workflows.

Correctness only, no timing: N=3 workflows of each variant load through Airflow's DagBag
with the same tasks and dependencies (Attune's without network, metadata database or
Variables), the task-time parse builds only the DAG asked for, and one Attune workflow
and its hand-written twin end in the same task states under `dag.test()`. Each load and run happens in a fresh
interpreter, as the benchmark measures them (dag-factory in its own virtualenv, created
on demand; that comparison is skipped when it cannot be installed).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import dagfactory_env, generate  # noqa: E402
from benchmarks.run import Bench, _migrated_home, child, variant_env  # noqa: E402

N = 3
OUTCOME = "attune_outcome"  # Attune's own last task: decides the run's state, no twin


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    out = tmp_path_factory.mktemp("bench")
    yield Bench(out, repeats=1, dagfactory=None, note="")


@pytest.fixture(scope="module")
def roots(bench: Bench) -> dict[str, Path]:
    return generate.generate(bench.out / "n3", N)


def logical(task_id: str) -> str:
    """The Attune task an Airflow task belongs to: `fanout.run` -> `fanout`."""
    return task_id.split(".", 1)[0]


def graph(structure: dict[str, Any]) -> tuple[set[str], set[tuple[str, str]]]:
    """Tasks and edges between tasks, Attune's TaskGroups and outcome task folded away."""
    tasks = {logical(t) for t in structure["tasks"]} - {OUTCOME}
    edges = {
        (logical(up), logical(down))
        for up, down in structure["edges"]
        if logical(up) != logical(down) and OUTCOME not in (logical(up), logical(down))
    }
    return tasks, edges


def load(bench: Bench, variant: str, root: Path) -> dict[str, Any]:
    env = variant_env(bench, variant, root, bench.out / "airflow-home", bench.out / "cache")
    data: dict[str, Any] = child(
        bench, variant, ["load", str(root / "dags"), "--structure", "--offline"], env
    )
    assert data["import_errors"] == {}
    assert data["dags"] == N
    return data["structure"]


def test_attune_workflows_compile_to_the_intended_graph(bench: Bench, roots: dict[str, Path]) -> None:
    structure = load(bench, "attune", roots["attune"])
    assert sorted(structure) == [generate.Names(i).dag_id for i in range(N)]
    tasks, edges = graph(structure[generate.Names(1).dag_id])
    assert tasks == {"start", "a1", "a2", "b1", "b2", "c1", "c2", "join", "fanout", "finish"}
    branches = {("start", f"{b}1") for b in "abc"} | {(f"{b}1", f"{b}2") for b in "abc"}
    assert edges == branches | {(f"{b}2", "join") for b in "abc"} | {("join", "fanout"), ("fanout", "finish")}


@pytest.mark.parametrize("twin", ["handwritten", "dagfactory"])
def test_twins_load_with_the_same_tasks_and_dependencies(
    bench: Bench, roots: dict[str, Path], twin: str
) -> None:
    if twin == "dagfactory":
        env = dagfactory_env.ensure(bench.out)
        if env.python is None:
            pytest.skip(env.note)
        bench.dagfactory = env.python
    attune = load(bench, "attune", roots["attune"])
    other = load(bench, twin, roots[twin])
    assert sorted(other) == sorted(attune)
    for dag_id in attune:
        assert graph(other[dag_id]) == graph(attune[dag_id]), dag_id


def test_task_time_parse_builds_only_that_dag(bench: Bench, roots: dict[str, Path]) -> None:
    dag_id = generate.Names(1).dag_id
    env = variant_env(bench, "attune", roots["attune"], bench.out / "airflow-home", bench.out / "cache-parse")
    for _cache in ("empty", "warm"):
        args = ["parse", str(roots["attune"] / "dags" / "attune_dags.py"), dag_id, "--offline"]
        data = child(bench, "attune", args, env)
        assert data["import_errors"] == {}
        assert data["dags"] == [dag_id]


def folded_states(states: dict[str, list[str]]) -> dict[str, str]:
    """One state per Attune task: a group (or mapped task) failed if any part failed."""
    parts: dict[str, set[str]] = {}
    for task_id, values in states.items():
        parts.setdefault(logical(task_id), set()).update(values)
    parts.pop(OUTCOME, None)
    folded = {}
    for name, values in parts.items():
        if values & {"failed", "upstream_failed"}:
            folded[name] = "failed"
        else:
            folded[name] = values.pop() if len(values) == 1 else "mixed: " + ",".join(sorted(values))
    return folded


def test_attune_and_its_hand_written_twin_end_in_the_same_task_states(
    bench: Bench, roots: dict[str, Path]
) -> None:
    dag_id = generate.Names(0).dag_id
    folded = {}
    for variant in ("attune", "handwritten"):
        home = _migrated_home(bench, f"home-{variant}")
        env = variant_env(bench, variant, roots[variant], home, bench.out / f"cache-{variant}")
        args = ["test", str(roots[variant] / "dags"), dag_id, "--runs", "0", "--conf", '{"route": "b"}']
        data = child(bench, variant, args, env)
        assert data["state"] == "success"
        folded[variant] = folded_states(data["states"])
    assert folded["attune"] == folded["handwritten"]
    assert folded["attune"]["b2"] == "success"
    assert folded["attune"]["a1"] == folded["attune"]["c2"] == "skipped"
