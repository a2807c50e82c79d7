"""Worker pools (shards, docs/shards.md): a lost pool on a cluster.

A cluster of its own (`scripts/cluster.sh` with ATTUNE_CLUSTER_SHARDS=3: every process has
`[attune] shards = 3` and a short `shard_timeout`; shared worker K consumes the queue
`attune-shard-<K-1>` and runs the heartbeat `heartbeat-K-<K-1>` beside it), because shards
route every Attune task and would move the other cluster modules' tasks: this module runs
last (its name sorts last) and stops the session's cluster first (`conftest.STARTED`).

(a) The pack `pools`: 30 one-task workflows `pools.w0..w29`, and `pools.long` and a
second long workflow that sleep (retries: 2).
(b) `shards status` shows the shards 0, 1, 2 live.
(c) One run of every workflow: each succeeds, and every task instance of each run is on
the queue of its workflow's rendezvous shard.
(d) `pools.long` runs on its shard V and the other long workflow on another shard; worker V
is SIGKILLed (with its pool: a lost machine) while `pools.long`'s task runs: its heartbeat
ends by itself, V stops being live a timeout later, `rebalance` publishes version 1 over the
two live shards; new runs of V's workflows go to their next choice and succeed, the other
workflows keep their shard, the run in flight on the other shard finishes; the system is in
`transition` while `pools.long`'s run waits on V (its retry is queued there).
(e) Worker V comes back (`cluster.sh start`, which launches its heartbeat too), V is live,
`rebalance` publishes version 2 over 0, 1, 2: exactly the workflows whose first choice is V
move back to it; `pools.long`'s retry runs on the new worker V and the run succeeds (no run
lost); `status` ends `steady`.

Every wait is generous (a loaded 2-core machine is slow, never wrong); the timings are printed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attune_provider.shards.rendezvous import assign, queue_name
from tests.cluster.conftest import PARSE_INTERVAL, STARTED, Cluster
from tests.live_airflow import descendants, drop_database, free_port

pytestmark = pytest.mark.cluster

SHARDS = (0, 1, 2)
WORKERS = 3  # worker K serves shard K-1 (cluster.sh: S mod WORKERS == K-1)
SHARD_TIMEOUT = 20  # ATTUNE_CLUSTER_SHARD_TIMEOUT: a lost worker's shard is not live 20 s later
SMALL = [f"pools.w{i}" for i in range(30)]
LONG = "pools.long"
LONG_SECONDS = 60
OTHER_SECONDS = 150  # in flight from before the kill until well after the rebalance
V = assign(LONG, SHARDS)  # the victim shard: pools.long's
# the other long workflow: the first of these names on another shard than pools.long
OTHER = next(ref for ref in (f"pools.other{i}" for i in range(100)) if assign(ref, SHARDS) != V)
REFS = [*SMALL, LONG, OTHER]
RUNS_TIMEOUT = 1500.0  # a batch of runs on a loaded machine
STATUS_TIMEOUT = 600.0
# the scheduler's (and API server's) router reads the version and the live shards at most
# every min(5, shard_timeout / 4) s (shards/router.py): a run created sooner after a change
# may still be routed by the previous view
ROUTER_TTL = min(5.0, SHARD_TIMEOUT / 4)


def worker_of(shard: int) -> str:
    return f"worker-{shard % WORKERS + 1}"


# -- the pack -------------------------------------------------------------------------------


def _small(ref: str) -> str:
    name = ref.split(".", 1)[1]
    return textwrap.dedent(
        f"""
        ref: {ref}
        tasks:
          - name: mark
            action: core.local
            input: {{cmd: "echo pools-marker-{name}"}}
        output_map:
          out: "{{{{ task.mark.result.stdout }}}}"
        """
    ).lstrip()


def _long(ref: str) -> str:
    """Appends its shell's pid to the file `marks` when it starts, then sleeps."""
    return textwrap.dedent(
        f"""
        ref: {ref}
        parameters:
          marks: {{type: string, required: true}}
          seconds: {{type: integer, required: true}}
        tasks:
          - name: nap
            action: core.local
            input: {{cmd: "echo $$ >> {{{{ parameters.marks }}}}; sleep {{{{ parameters.seconds }}}}"}}
            retry: {{count: 2, delay: 1}}
        output_map:
          slept: "{{{{ parameters.seconds }}}}"
        """
    ).lstrip()


def write_pools_pack(packs: Path) -> None:
    workflows = packs / "pools" / "workflows"
    workflows.mkdir(parents=True)
    (packs / "pools" / "pack.yaml").write_text("ref: pools\n")
    for ref in SMALL:
        (workflows / f"{ref.split('.')[1]}.yaml").write_text(_small(ref))
    for ref in (LONG, OTHER):
        (workflows / f"{ref.split('.')[1]}.yaml").write_text(_long(ref))


# -- the cluster ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    for other in STARTED:  # the session's cluster: its modules are done (this one sorts last)
        began = time.monotonic()
        other.stop()
        print(f"pools: stopped the session's cluster in {time.monotonic() - began:.0f}s")
    root = tmp_path_factory.mktemp("pools")
    packs = root / "packs"
    packs.mkdir()
    write_pools_pack(packs)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTUNE", "PYTEST"))}
    env.update(
        {
            "ATTUNE_CLUSTER_HOME": str(root / "home"),
            "ATTUNE_CLUSTER_PORT": str(port),
            "ATTUNE_CLUSTER_DB": f"attune_pools_{secrets.token_hex(4)}",
            "ATTUNE_PACKS_PATH": str(packs),
            "ATTUNE_CLUSTER_REDIS_PORT": str(free_port()),
            "ATTUNE_CLUSTER_PARSE_INTERVAL": str(PARSE_INTERVAL),
            "ATTUNE_CLUSTER_WORKERS": str(WORKERS),
            "ATTUNE_CLUSTER_CONCURRENCY": "2",
            "ATTUNE_CLUSTER_SHARDS": str(len(SHARDS)),
            "ATTUNE_CLUSTER_SHARD_TIMEOUT": str(SHARD_TIMEOUT),
        }
    )
    cluster = Cluster(root, port, env)
    try:
        began = time.monotonic()
        cluster.start()
        cluster.login(60)
        print(f"pools: cluster started in {time.monotonic() - began:.0f}s")
        yield cluster
    finally:
        cluster.stop()
        drop_database(env["ATTUNE_CLUSTER_DB"])


def home(cluster: Cluster) -> Path:
    return Path(cluster.env["ATTUNE_CLUSTER_HOME"])


def pid_of(cluster: Cluster, name: str) -> int:
    return int((home(cluster) / "run" / f"{name}.pid").read_text().split()[0])


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def kill_group(pid: int) -> None:
    """SIGKILL a process and everything it started, as a lost machine would end them."""
    for member in [pid, *descendants([pid])]:
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def attune(cluster: Cluster, *args: str) -> Any:
    """`attune-airflow ARGS... --json` with the cluster's settings (its env file); the JSON."""
    command = 'set -a; . "$ATTUNE_CLUSTER_HOME/env"; exec attune-airflow "$@" --json'
    done = subprocess.run(
        ["bash", "-c", command, "attune-airflow", *args],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"attune-airflow {' '.join(args)}: {done.returncode}\n{done.stderr[-3000:]}"
    text = done.stdout
    start = re.search(r"^\{", text, re.M)  # the JSON (any log line of Airflow's before it)
    assert start, f"attune-airflow {' '.join(args)}: no JSON in {text[-3000:]!r}"
    return json.JSONDecoder().raw_decode(text[start.start() :])[0]


def status(cluster: Cluster) -> dict[str, Any]:
    return attune(cluster, "shards", "status")  # type: ignore[no-any-return]


def shown(cluster: Cluster) -> tuple[int, dict[str, int]]:
    """`shards show` of every ref: (version, ref -> shard)."""
    found = attune(cluster, "shards", "show", *REFS)
    return found["version"], {w["ref"]: w["shard"] for w in found["workflows"]}


def wait_status(
    cluster: Cluster, what: str, check: Callable[[dict[str, Any]], bool], timeout: float = STATUS_TIMEOUT
) -> dict[str, Any]:
    began = time.monotonic()
    report = status(cluster)
    while not check(report):
        if time.monotonic() - began > timeout:
            raise AssertionError(f"{what}: not after {timeout:.0f}s: {json.dumps(report, indent=1)}")
        time.sleep(2)
        report = status(cluster)
    print(f"pools: {what} after {time.monotonic() - began:.0f}s (live {report['live']})")
    return report


# -- the database ---------------------------------------------------------------------------


def run_states(cluster: Cluster, labels: list[str]) -> dict[str, str | None]:
    rows = cluster.query("SELECT dag_id, run_id, state FROM dag_run WHERE dag_id LIKE 'pools.%%'")
    states = {(dag_id, run_id): state for dag_id, run_id, state in rows}
    return {label: states.get(cluster.runs[label][:2]) for label in labels}


def wait_runs(
    cluster: Cluster, labels: list[str], what: str, timeout: float = RUNS_TIMEOUT
) -> dict[str, str]:
    """Every run's final state (read from the database: no REST polling on a busy machine)."""
    began = time.monotonic()
    while True:
        states = run_states(cluster, labels)
        if all(state in ("success", "failed") for state in states.values()):
            break
        if time.monotonic() - began > timeout:
            waiting = {label: state for label, state in states.items() if state not in ("success", "failed")}
            raise AssertionError(f"{what}: runs not over after {timeout:.0f}s: {waiting}")
        time.sleep(3)
    print(f"pools: {what}: {len(labels)} run(s) over {time.monotonic() - began:.0f}s after waiting began")
    return states  # type: ignore[return-value]


def queues(cluster: Cluster, label: str) -> set[str]:
    found = cluster.tries(label)
    assert {t["task_id"] for t in found} >= {"attune_outcome"}, (label, found)
    return {t["queue"] for t in found}


def trigger_all(
    cluster: Cluster, refs: list[str], phase: str, conf: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    labels = []
    for ref in refs:
        label = f"{phase}:{ref}"
        cluster.trigger(ref, (conf or {}).get(ref, {}), label=label)
        labels.append(label)
    return labels


def check_runs(cluster: Cluster, labels: list[str], expected: dict[str, int], what: str) -> None:
    """Each run succeeded and all its task instances are on its expected shard's queue."""
    states = wait_runs(cluster, labels, what)
    failed = {label: state for label, state in states.items() if state != "success"}
    assert not failed, f"{what}: runs not successful: {failed}"
    wrong = {}
    for label in labels:
        ref = label.split(":", 1)[1]
        found = queues(cluster, label)
        if found != {queue_name(expected[ref])}:
            wrong[label] = (sorted(found), queue_name(expected[ref]))
    assert not wrong, f"{what}: task instances not on their workflow's shard: {wrong}"


def marks(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def wait_mark(path: Path, count: int, what: str, timeout: float = RUNS_TIMEOUT) -> int:
    """The pid the `count`th try of a long task wrote when it started."""
    began = time.monotonic()
    while len(marks(path)) < count:
        assert time.monotonic() - began < timeout, f"{what}: try {count} not started after {timeout:.0f}s"
        time.sleep(1)
    print(f"pools: {what}: try {count} started (waited {time.monotonic() - began:.0f}s)")
    return marks(path)[count - 1]


def runs_in_worker(cluster: Cluster, pid: int, worker: str) -> bool:
    root = pid_of(cluster, worker)
    return pid == root or pid in descendants([root])


# -- the scenario ---------------------------------------------------------------------------


def test_a_lost_worker_pool_moves_only_its_workflows_and_loses_no_run(pools: Cluster, tmp_path: Path) -> None:
    cluster = pools
    began = time.monotonic()
    first = {ref: assign(ref, SHARDS) for ref in REFS}
    on_v = [ref for ref in SMALL if first[ref] == V]
    print(
        f"pools: victim shard V={V} ({worker_of(V)}), {OTHER} on shard {first[OTHER]}; "
        f"{len(on_v)} of {len(SMALL)} small workflows on V: {on_v}"
    )
    assert on_v, "no small workflow has V as its first choice: nothing would move"

    # (b) every shard live, version 0
    report = wait_status(cluster, "shards 0, 1, 2 live", lambda r: r["live"] == list(SHARDS))
    assert report["version"] == 0 and report["state"] == "steady", report
    assert [row["workers"] for row in report["shards"]] == [[f"w{s + 1}-shard-{s}"] for s in SHARDS], report

    # (c) one run of every workflow, each on its rendezvous shard
    phase = time.monotonic()
    long_conf = {ref: {"marks": str(tmp_path / f"c-{ref}.pids"), "seconds": 3} for ref in (LONG, OTHER)}
    labels = trigger_all(cluster, REFS, "c", long_conf)
    check_runs(cluster, labels, first, "(c) a run of every workflow")
    for ref in SMALL[:3]:
        assert cluster.xcom(f"c:{ref}", "return_value") == {"out": f"pools-marker-{ref.split('.')[1]}"}
    print(f"pools: (c) {len(labels)} runs on their shards in {time.monotonic() - phase:.0f}s")

    # (d) worker V lost while pools.long runs on it
    phase = time.monotonic()
    long_marks, other_marks = tmp_path / "d-long.pids", tmp_path / "d-other.pids"
    cluster.trigger(OTHER, {"marks": str(other_marks), "seconds": OTHER_SECONDS}, label="d:other")
    cluster.trigger(LONG, {"marks": str(long_marks), "seconds": LONG_SECONDS}, label="d:long")
    wait_mark(other_marks, 1, OTHER)
    long_pid = wait_mark(long_marks, 1, LONG)
    victim = worker_of(V)
    assert runs_in_worker(cluster, long_pid, victim), f"{LONG}'s task is not in {victim}'s process tree"
    heartbeat = pid_of(cluster, f"heartbeat-{V % WORKERS + 1}-{V}")
    killed = time.monotonic()
    kill_group(pid_of(cluster, victim))
    print(f"pools: (d) killed {victim} {time.monotonic() - phase:.0f}s into (d)")
    while not gone(heartbeat):
        assert time.monotonic() - killed < 120, f"the heartbeat of shard {V} outlived its worker"
        time.sleep(0.5)
    print(f"pools: (d) the heartbeat of shard {V} ended {time.monotonic() - killed:.1f}s after the kill")
    alive = tuple(s for s in SHARDS if s != V)
    wait_status(cluster, f"shard {V} not live", lambda r: r["live"] == list(alive))
    not_live_after = time.monotonic() - killed
    print(
        f"pools: (d) shard {V} not live {not_live_after:.0f}s after the kill (shard_timeout {SHARD_TIMEOUT})"
    )
    assert not_live_after >= SHARD_TIMEOUT - 6, "a shard stopped being live before its timeout"
    rebalanced = attune(cluster, "shards", "rebalance")
    assert rebalanced == {"published": True, "version": 1, "shards": list(alive)}, rebalanced
    in_flight = run_states(cluster, ["d:other", "d:long"])
    assert in_flight == {"d:other": "running", "d:long": "running"}, in_flight
    report = status(cluster)
    moving = {(m["dag_id"], m["old_shard"], m["new_shard"]) for m in report["moving_runs"]}
    assert report["state"] == "transition", report
    assert moving == {(LONG, V, assign(LONG, SHARDS, alive))}, report["moving_runs"]
    version_1, during = shown(cluster)
    assert version_1 == 1
    expected = {ref: assign(ref, SHARDS, alive) for ref in REFS}
    assert during == expected, {
        ref: (during[ref], expected[ref]) for ref in REFS if during[ref] != expected[ref]
    }
    assert all(during[ref] == first[ref] for ref in REFS if first[ref] != V), (
        "a workflow of a live shard moved"
    )
    time.sleep(ROUTER_TTL + 1)  # the routers' view includes the lost shard no more
    labels = trigger_all(cluster, SMALL, "d")
    check_runs(cluster, labels, expected, "(d) new runs with shard V lost")
    other_state = wait_runs(cluster, ["d:other"], f"(d) {OTHER} in flight on shard {first[OTHER]}")
    assert other_state == {"d:other": "success"}, other_state
    assert queues(cluster, "d:other") == {queue_name(first[OTHER])}
    assert run_states(cluster, ["d:long"]) == {"d:long": "running"}, "pools.long's run did not wait for V"
    began_wait = time.monotonic()
    while True:  # the orphaned try failed by the scheduler, its retry queued on V
        current = [t for t in cluster.tries("d:long") if t["task_id"] == "nap"]
        retry = [t for t in current if t["try_number"] >= 2]
        if retry and retry[0]["state"] == "queued":
            break
        assert time.monotonic() - began_wait < 600, f"{LONG}'s retry never queued: {current}"
        time.sleep(3)
    assert {t["queue"] for t in cluster.tries("d:long")} == {queue_name(V)}, cluster.tries("d:long")
    print(
        f"pools: (d) {LONG}'s retry queued on {queue_name(V)} {time.monotonic() - killed:.0f}s after the kill"
    )
    print(f"pools: (d) done in {time.monotonic() - phase:.0f}s")

    # (e) worker V back: its workflows move back, pools.long finishes there
    phase = time.monotonic()
    restarted = cluster.cluster("start")
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    print(f"pools: (e) cluster.sh start took {time.monotonic() - phase:.0f}s")
    cluster.check_alive()  # every process, the heartbeats too, runs again
    wait_status(cluster, f"shard {V} live again", lambda r: r["live"] == list(SHARDS))
    rebalanced = attune(cluster, "shards", "rebalance")
    assert rebalanced == {"published": True, "version": 2, "shards": list(SHARDS)}, rebalanced
    version_2, after = shown(cluster)
    assert version_2 == 2
    moved = {ref for ref in REFS if after[ref] != during[ref]}
    assert moved == {ref for ref in REFS if first[ref] == V}, sorted(moved)
    assert all(after[ref] == V for ref in moved) and after == first, after
    print(f"pools: (e) {len(moved)} of {len(REFS)} workflows moved back to shard {V}: {sorted(moved)}")
    retry_pid = wait_mark(long_marks, 2, f"{LONG} on the restarted {victim}")
    assert runs_in_worker(cluster, retry_pid, victim), f"{LONG}'s retry is not in the new {victim}'s tree"
    time.sleep(ROUTER_TTL + 1)
    back = on_v[:3]
    labels = trigger_all(cluster, back, "e")
    check_runs(cluster, labels, first, f"(e) new runs of workflows back on shard {V}")
    long_state = wait_runs(cluster, ["d:long"], f"(e) {LONG}")
    assert long_state == {"d:long": "success"}, long_state
    long_tries = [t for t in cluster.tries("d:long") if t["task_id"] == "nap"]
    assert sorted(t["try_number"] for t in long_tries) == [1, 2], long_tries
    assert {t["queue"] for t in cluster.tries("d:long")} == {queue_name(V)}
    assert cluster.xcom("d:long", "return_value") == {"slept": LONG_SECONDS}
    assert len(marks(long_marks)) == 2, "pools.long's task ran more than twice"
    report = wait_status(cluster, "steady", lambda r: r["state"] == "steady", timeout=120)
    assert report["version"] == 2 and not report["moving_runs"], report
    all_runs = list(cluster.runs)
    final = run_states(cluster, all_runs)
    assert set(final.values()) == {"success"}, {label: s for label, s in final.items() if s != "success"}
    print(
        f"pools: (e) done in {time.monotonic() - phase:.0f}s; {len(all_runs)} runs, all successful; "
        f"scenario {time.monotonic() - began:.0f}s"
    )
