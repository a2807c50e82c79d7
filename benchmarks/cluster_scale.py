"""`python -m benchmarks.cluster_scale [--runs 100] [--items 1000] [--quick]`: Attune against
hand-written DAGs on the same distributed Airflow (scripts/cluster.sh: CeleryExecutor,
PostgreSQL, Redis, two Celery workers).

Two workloads per variant, the variants taking turns on clusters started alike: `--runs`
concurrent runs of the benchmark's 10-task workflow (benchmarks/generate.py), and one run
of a task mapped over `--items` items (Attune: `with_items` over a list written in the
workflow; hand-written: `.expand()` over the same list). Prints the wall time of each
(first trigger to last run ended), failed runs, and Attune / hand-written; exits 1 when a
target is missed (at most 1.2x hand-written, no failed run), 2 when it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks import generate

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out" / "cluster"
SCRIPT = REPO / "scripts" / "cluster.sh"
DAG_ID = "bench_00.wf_0000"
MAPPED_ID = "bench_00.mapped"
TARGET = 1.2

MAPPED_WORKFLOW = """\
ref: bench_00.mapped
tasks:
  - name: each
    action: bench_00.step
    with_items: "{{{{ range({items}) | list }}}}"
    input: {{message: "item {{{{ item }}}}"}}
"""

MAPPED_DAG = '''\
"""Hand-written twin of bench_00.mapped (airflow DAG)."""

from airflow.sdk import DAG, task


def echo(message=None):
    return {{"message": message}}


with DAG(dag_id="bench_00.mapped", schedule=None, catchup=False):
    task(task_id="each")(echo).expand(message=[f"item {{i}}" for i in range({items})])
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    """The REST API of one cluster (a token from the admin password `start` printed)."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password})[
            "access_token"
        ]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if getattr(self, "token", None):
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        for attempt in range(5):  # a busy server may drop a connection: retry, as a client would
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return json.loads(response.read() or b"null")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if attempt == 4:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def trigger(self, dag_id: str) -> str:
        run = self.call("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": {}})
        return str(run["dag_run_id"])

    def wait(self, dag_id: str, count: int, timeout: float) -> tuple[list[str], float]:
        """The final states of the DAG's runs once `count` have ended, and the last end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.call("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit={count}")["dag_runs"]
            ended = [r for r in runs if r["state"] in ("success", "failed")]
            if len(ended) >= count:
                return [r["state"] for r in ended], time.monotonic()
            time.sleep(2)
        raise TimeoutError(f"{dag_id}: runs not ended after {timeout:.0f}s")


def write_variant(variant: str, root: Path, items: int) -> tuple[Path, Path | None]:
    """(DAGs folder, packs folder or None) of one variant with both workloads."""
    generate.generate(root.parent, 1, (variant,))
    if variant == "attune":
        (root / "packs" / "bench_00" / "workflows" / "mapped.yaml").write_text(
            MAPPED_WORKFLOW.format(items=items)
        )
        return root / "dags", root / "packs"
    (root / "dags" / "mapped.py").write_text(MAPPED_DAG.format(items=items))
    return root / "dags", None


def measure(variant: str, runs: int, items: int, out: Path) -> dict[str, Any]:
    root = out / variant
    dags, packs = write_variant(variant, root, items)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTUNE"))}
    env.update(
        {
            "ATTUNE_CLUSTER_HOME": str(root / "home"),
            "ATTUNE_CLUSTER_PORT": str(port),
            "ATTUNE_CLUSTER_DB": f"attune_bench_{variant}_{secrets.token_hex(3)}",
            "ATTUNE_CLUSTER_REDIS_PORT": str(free_port()),
            "ATTUNE_CLUSTER_DAGS_FOLDER": str(dags),
            "ATTUNE_PACKS_PATH": str(packs or root / "no-packs"),
        }
    )
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True)
    if started.returncode != 0:
        raise RuntimeError(f"cluster.sh start failed for {variant}:\n{started.stderr[-3000:]}")
    try:
        lines = dict(line.split(": ", 1) for line in started.stdout.splitlines() if ": " in line)
        api = Api(lines["api"], lines["password"])
        first = time.monotonic()
        for _ in range(runs):
            api.trigger(DAG_ID)
        states, last = api.wait(DAG_ID, runs, timeout=3600)
        concurrent = {"seconds": last - first, "failed": sum(s != "success" for s in states)}
        first = time.monotonic()
        api.trigger(MAPPED_ID)
        states, last = api.wait(MAPPED_ID, 1, timeout=7200)
        mapped = {"seconds": last - first, "failed": sum(s != "success" for s in states)}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True)
        drop = f'DROP DATABASE IF EXISTS "{env["ATTUNE_CLUSTER_DB"]}" WITH (FORCE)'
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc", drop], capture_output=True)
    return {"concurrent": concurrent, "mapped": mapped}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="concurrent runs of the 10-task workflow")
    parser.add_argument("--items", type=int, default=1000, help="items of the mapped task")
    parser.add_argument("--quick", action="store_true", help="10 runs, 100 items")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    runs, items = (10, 100) if args.quick else (args.runs, args.items)
    try:
        results = {variant: measure(variant, runs, items, args.out) for variant in ("handwritten", "attune")}
    except Exception as exc:  # noqa: BLE001 - the benchmark itself could not run
        print(f"cluster benchmark could not run: {exc}", file=sys.stderr)
        return 2
    missed = False
    print(f"{'workload':38} {'hand-written':>13} {'Attune':>9} {'ratio':>6} {'failed':>7}  target")
    for key, label in (
        ("concurrent", f"{runs} concurrent runs, 10 tasks"),
        ("mapped", f"1 run, {items} mapped"),
    ):
        hand, attune = results["handwritten"][key], results["attune"][key]
        ratio = attune["seconds"] / hand["seconds"]
        failed = hand["failed"] + attune["failed"]
        ok = ratio <= TARGET and failed == 0
        missed |= not ok
        print(
            f"{label:38} {hand['seconds']:12.1f}s {attune['seconds']:8.1f}s {ratio:6.2f} {failed:7d}"
            f"  <= {TARGET}x, 0 failed: {'ok' if ok else 'MISSED'}"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"runs": runs, "items": items, **results}, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
