"""`python -m benchmarks.run [--n 100 500] [--quick]`: Attune against hand-written DAGs and dag-factory.

Generates the workload (benchmarks/generate.py) for each N, measures every variant in
fresh interpreters (benchmarks/child.py) taking turns, prints a table of medians (time,
peak RSS, ratios to hand-written and to dag-factory) and exits 1 when a target of the
issue "Fast at scale" is missed (2 when the benchmark itself could not run). Results go
to benchmarks/out/results.json and results.md. docs/performance.md explains the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import dagfactory_env, generate
from benchmarks.report import Check, evaluate, markdown, text_table

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "benchmarks" / "out"
PROJECT_PYTHON = Path(sys.executable)
FILE_NAMES = {"attune": "attune_dags.py", "dagfactory": "dagfactory_dags.py"}
# A task-time parse takes ~30 ms: a burst of other work on the machine can double one run,
# so each sample is the fastest of a few (interference only ever adds time).
PARSE_TRIES = 3


class BenchmarkError(RuntimeError):
    """A measurement could not be taken (its log is named in the message)."""


@dataclass
class Bench:
    """Where things are, and every sample taken so far."""

    out: Path
    repeats: int
    dagfactory: Path | None
    note: str
    samples: dict[str, Any] = field(default_factory=dict)
    counter: int = 0

    def add(self, section: str, key: str, variant: str, value: Any) -> None:
        self.samples.setdefault(section, {}).setdefault(key, {}).setdefault(variant, []).append(value)


# --- running one child ------------------------------------------------------------------


def _base_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATTUNE_", "AIRFLOW__"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="30",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        AIRFLOW__DAG_FACTORY__ENABLE_TELEMETRY="False",  # dag-factory's usage reports
        DO_NOT_TRACK="1",
    )
    env.pop("PYTHONPATH", None)
    return env


def variant_env(
    bench: Bench, variant: str, root: Path, home: Path, cache: Path | None = None
) -> dict[str, str]:
    """The environment a variant's DAG folder is loaded in."""
    env = _base_env(home)
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(generate.dags_folder(root))
    if variant == "attune":
        env["ATTUNE_PACKS_PATH"] = str(root / "packs")
        env["ATTUNE_CACHE_DIR"] = str(cache) if cache is not None else "off"
    if variant == "dagfactory":
        env["PYTHONPATH"] = str(root / "lib")
    return env


def child(bench: Bench, variant: str, args: list[str], env: dict[str, str], timeout: int = 1200) -> Any:
    """Run `benchmarks.child` in a fresh interpreter of the variant's venv; its JSON result."""
    bench.counter += 1
    logs = bench.out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stem = f"{bench.counter:04d}-{variant}-{args[0]}"
    result, log = logs / f"{stem}.json", logs / f"{stem}.log"
    python = bench.dagfactory if variant == "dagfactory" else PROJECT_PYTHON
    command = [str(python), "-m", "benchmarks.child", *args, "--json", str(result)]
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
        )
    if done.returncode != 0 or not result.exists():
        raise BenchmarkError(f"{variant} {args[0]} failed (exit {done.returncode}): see {log}")
    data = json.loads(result.read_text(encoding="utf-8"))
    log.unlink()
    result.unlink()
    return data


def _fresh_cache(bench: Bench) -> Path:
    path = bench.out / "caches" / f"cache-{bench.counter:04d}"
    shutil.rmtree(path, ignore_errors=True)
    return path


# --- the measurements ---------------------------------------------------------------------


def _check_load(variant: str, n: int, data: dict[str, Any]) -> None:
    if data["dags"] != n or data["import_errors"]:
        errors = "; ".join(data["import_errors"].values())[:500]
        raise BenchmarkError(f"{variant} loaded {data['dags']} of {n} DAGs: {errors}")


def _load(bench: Bench, variant: str, root: Path, n: int, cache: Path | None = None) -> dict[str, Any]:
    env = variant_env(bench, variant, root, bench.out / "airflow-home", cache)
    data: dict[str, Any] = child(bench, variant, ["load", str(generate.dags_folder(root))], env)
    _check_load(variant, n, data)
    data["file_total"] = sum(data.pop("file_seconds").values())
    return data


def _variants(bench: Bench) -> list[str]:
    return ["handwritten", "attune", *(["dagfactory"] if bench.dagfactory else [])]


def _rotated(variants: list[str], by: int) -> list[str]:
    """The variants in turn order for a round: who goes first changes from round to round."""
    by %= len(variants)
    return variants[by:] + variants[:by]


def _round(
    bench: Bench, section: str, n: int, order: list[str], measure: Callable[[str, Path | None], Any]
) -> None:
    """One sample of each variant in `order`; Attune twice: with an empty cache, then warm."""
    for variant in order:
        if variant != "attune":
            bench.add(section, str(n), variant, measure(variant, None))
            continue
        cache = _fresh_cache(bench)
        bench.add(section, str(n), "attune_cold", measure("attune", cache))
        bench.add(section, str(n), "attune_warm", measure("attune", cache))
        shutil.rmtree(cache, ignore_errors=True)


def _load_round(bench: Bench, n: int, roots: dict[str, Path], round_: int) -> None:
    order = _rotated(_variants(bench), round_)
    _round(bench, "load", n, order, lambda variant, cache: _load(bench, variant, roots[variant], n, cache))


def measure_loads(bench: Bench, roots_by_n: dict[int, dict[str, Path]]) -> None:
    """DagBag of the whole folder; Attune with an empty cache, then again with it warm.

    Every round measures every N, so that growth with N is also a same-round ratio."""
    for n, roots in roots_by_n.items():  # once unmeasured: bytecode and the OS's file cache
        for variant in _variants(bench):
            _load(bench, variant, roots[variant], n, _fresh_cache(bench))
    for round_ in range(bench.repeats):
        for n, roots in roots_by_n.items():
            _load_round(bench, n, roots, round_)


def _parse(bench: Bench, variant: str, root: Path, dag_id: str, cache: Path | None = None) -> float:
    """One sample: the fastest of PARSE_TRIES runs for hand-written and Attune (Attune with
    an empty cache each time when `cache` does not exist yet; the last run leaves it warm),
    one run for dag-factory, whose parse takes seconds."""
    names = generate.Names(int(dag_id.rsplit("_", 1)[1]))
    file = FILE_NAMES.get(variant, f"{names.name}.py")
    env = variant_env(bench, variant, root, bench.out / "airflow-home", cache)
    empty = cache if cache is not None and not cache.exists() else None
    fastest = float("inf")
    for _ in range(1 if variant == "dagfactory" else PARSE_TRIES):
        if empty is not None:
            shutil.rmtree(empty, ignore_errors=True)
        data = child(bench, variant, ["parse", str(generate.dags_folder(root) / file), dag_id], env)
        if not data["found"] or data["import_errors"]:
            raise BenchmarkError(f"{variant}: task-time parse did not give {dag_id}: {data['import_errors']}")
        fastest = min(fastest, float(data["seconds"]))
    return fastest


def _parse_round(bench: Bench, n: int, roots: dict[str, Path], round_: int) -> None:
    dag_id = generate.Names(n // 2).dag_id
    order = _rotated(_variants(bench), round_ % 2)
    _round(
        bench, "parse", n, order, lambda variant, cache: _parse(bench, variant, roots[variant], dag_id, cache)
    )


def measure_parses(bench: Bench, roots_by_n: dict[int, dict[str, Path]]) -> None:
    """The parse a worker does to run one task; Attune cold, then warm from that parse."""
    for round_ in range(bench.repeats):
        for n, roots in roots_by_n.items():
            _parse_round(bench, n, roots, round_)


def _migrated_home(bench: Bench, name: str) -> Path:
    template = bench.out / "home-template"
    if not (template / "airflow.db").exists():
        template.mkdir(parents=True, exist_ok=True)
        child(bench, "migrate", ["migrate"], _base_env(template))
    home = bench.out / name
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy2(template / "airflow.db", home / "airflow.db")
    return home


def measure_runs(bench: Bench, roots: dict[str, Path], runs: int) -> dict[str, Any]:
    """`dag.test()` of one workflow, Attune and hand-written taking turns; the last task states.

    As many rounds as the other measurements: a run takes about a second, and on a shared
    machine either side's runs vary by a third within one benchmark."""
    dag_id = generate.Names(0).dag_id
    states: dict[str, Any] = {}
    for round_ in range(bench.repeats):
        for variant in ("attune", "handwritten")[round_ % 2 :] + ("attune", "handwritten")[: round_ % 2]:
            home = _migrated_home(bench, f"home-run-{variant}")
            env = variant_env(bench, variant, roots[variant], home, _fresh_cache(bench))
            folder = str(generate.dags_folder(roots[variant]))
            data = child(bench, variant, ["test", folder, dag_id, "--runs", str(runs)], env)
            if data["state"] != "success":
                raise BenchmarkError(f"{variant}: dag.test() ended {data['state']}")
            for seconds in data["runs"]:
                bench.add("run", "1", variant, seconds)
            states[variant] = data["states"]
    return states


def measure_scale(bench: Bench, n: int) -> None:
    """Attune's cold load of `n` workflows: within the DAG file import timeout (30 s)?"""
    root = generate.generate(bench.out / f"n{n}", n, ("attune",))["attune"]
    data = _load(bench, "attune", root, n, _fresh_cache(bench))
    bench.add("scale", str(n), "attune_cold", data)


# --- putting it together --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = "unknown"
    memory = "unknown"
    with contextlib.suppress(Exception):
        cpu = next(
            line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")
        )
    with contextlib.suppress(Exception):
        kib = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", help="workflow counts (default 100 500; quick: 20 100)")
    parser.add_argument("--quick", action="store_true", help="small N, fewer repeats, no 1,000-workflow run")
    parser.add_argument("--repeats", type=int, help="samples per measurement (default 5; quick: 2)")
    parser.add_argument("--scale", type=int, default=1000, help="workflows of the import-timeout check")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier run's results.json")
    args = parser.parse_args(argv)
    args.n = sorted(set(args.n or ([20, 100] if args.quick else [100, 500])))
    args.repeats = args.repeats or (2 if args.quick else 5)
    return args


def run(args: argparse.Namespace) -> tuple[Bench, dict[str, Any]]:
    args.out.mkdir(parents=True, exist_ok=True)
    env = dagfactory_env.ensure(args.out)
    print(env.note, flush=True)
    bench = Bench(args.out, args.repeats, env.python, env.note)
    # An installed provider has its bytecode; a working copy being edited may not, and with
    # PYTHONDONTWRITEBYTECODE every child would compile the provider from source.
    subprocess.run([str(PROJECT_PYTHON), "-m", "compileall", "-q", str(REPO / "attune_provider")], check=True)
    info = machine()
    started = time.time()
    roots_by_n = {n: generate.generate(args.out / f"n{n}", n, tuple(_variants(bench))) for n in args.n}
    print(f"loading the DAG folders, N = {args.n} ...", flush=True)
    measure_loads(bench, roots_by_n)
    print("task-time parses ...", flush=True)
    measure_parses(bench, roots_by_n)
    print("dag.test() of one workflow ...", flush=True)
    roots = generate.generate(args.out / "n1", 1, ("attune", "handwritten"))
    info["states"] = measure_runs(bench, roots, runs=2 if args.quick else 3)
    if not args.quick:
        print(f"{args.scale} workflows ...", flush=True)
        measure_scale(bench, args.scale)
    info["load_average_end"] = os.getloadavg()
    info["minutes"] = round((time.time() - started) / 60, 1)
    info["repeats"] = args.repeats
    info["dagfactory"] = env.note
    return bench, info


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        earlier = json.loads(args.from_json.read_text(encoding="utf-8"))
        samples, info = earlier["samples"], earlier["machine"]
        args.n = sorted(int(n) for n in samples.get("load", {}))
        args.scale = next((int(n) for n in samples.get("scale", {})), None)
    else:
        try:
            bench, info = run(args)
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        samples = bench.samples
    scale = args.scale if args.from_json or not args.quick else None
    checks: list[Check] = evaluate(samples, args.n, scale)
    print(text_table(checks, info))
    results = {"machine": info, "samples": samples, "checks": [c.as_dict() for c in checks]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    (args.out / "results.md").write_text(markdown(checks, info), encoding="utf-8")
    missed = [c for c in checks if c.ok is False]
    print(f"{len(missed)} target(s) missed" if missed else "every target met")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
