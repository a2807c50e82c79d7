"""`python -m benchmarks.sources [--workflows N] [--runs R] [--json OUT] [--profile]`: workflow sources.

Measures what an http workflow source (LANGUAGE.md section 9) costs the DAG file against
the same packs read from a directory, with a warm parse cache. Target of the issue: "with a
warm cache, loading 500 workflows from an http source costs at most 1.1x the same packs
from a directory".

The N workflows of the benchmark workload (benchmarks/generate.py: 10 tasks each, 100 to a
pack) are published with `attune-airflow registry build` and served on 127.0.0.1
(tests/registry_server.py). Each sample is a fresh interpreter, as the DAG processor parses
in a fresh process: Airflow is imported first (its DagBag and `airflow.sdk.DAG`, loaded in
the DAG processor before it parses a file), then the clock starts, `attune_provider` is imported and `dags_for_airflow()` (the DAG file's call)
returns the DAGs; peak RSS is `getrusage`'s. Variants, sharing one AIRFLOW_HOME and one
parse cache, each warmed by one untimed run:

- dir: `ATTUNE_PACKS_PATH=<packs>`, no sources;
- http: an empty packs path, `ATTUNE_SOURCES` = one http source (`refresh_seconds` 3600)
  whose store (`ATTUNE_SOURCES_DIR`) holds the packs: no request is made;
- http, due refresh: the same with `refresh_seconds` 1, more than a second after the last
  fetch: each run GETs index.json again (the archives are in the store already).

R rounds, the variants taking turns (the order rotates); medians are shown, and the ratio
to dir is the median of the same-round ratios (as benchmarks/run.py takes them). Exit
status: 0 when the target holds, 1 when it does not, 2 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from attune_provider.sources.store import SourceState, Store
from benchmarks import generate
from benchmarks.run import PROJECT_PYTHON, REPO, BenchmarkError, _base_env, machine
from tests.registry_server import Registry

TARGET = 1.1
SOURCE = "central"
VARIANTS = {"dir": "dir (packs path)", "http": "http, warm store", "refresh": "http, due refresh"}

# The child: Airflow first (what the DAG processor has loaded when it parses a file), then
# the timed import of the provider and load.
CHILD = """\
import json, resource, sys, time
import airflow.dag_processing.dagbag
from airflow.sdk import DAG
started = time.perf_counter()
profile = None
if len(sys.argv) > 2:
    import cProfile
    profile = cProfile.Profile()
    profile.enable()
from attune_provider.dag_factory.factory import dags_for_airflow
dags = dags_for_airflow()
seconds = time.perf_counter() - started
if profile is not None:
    profile.disable()
    profile.dump_stats(sys.argv[2])
tags = {}
for dag in dags.values():
    for tag in dag.tags:
        if tag.startswith("source:"):
            tags[tag] = tags.get(tag, 0) + 1
result = {"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
          "dags": len(dags), "tags": tags}
open(sys.argv[1], "w").write(json.dumps(result))
"""


def publish(work: Path, n: int) -> tuple[Path, Path]:
    """The generated packs directory and the registry directory built from it."""
    packs = generate.generate(work, n, ("attune",))["attune"] / "packs"
    out = work / "registry"
    from attune_provider.cli import main as attune_airflow

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = attune_airflow(["registry", "build", str(packs), str(out)])
    if code != 0:
        raise BenchmarkError(f"registry build exited {code}:\n{printed.getvalue()[-2000:]}")
    return packs, out


def environments(work: Path, packs: Path, url: str) -> dict[str, dict[str, str]]:
    """Each variant's environment: one AIRFLOW_HOME and parse cache, a store per http variant."""
    base = _base_env(work / "airflow-home")
    base["ATTUNE_CACHE_DIR"] = str(work / "cache")
    empty = work / "empty-packs"
    empty.mkdir(exist_ok=True)
    envs = {"dir": {**base, "ATTUNE_PACKS_PATH": str(packs)}}
    for variant, refresh in (("http", 3600), ("refresh", 1)):
        source = {"name": SOURCE, "kind": "http", "url": url, "refresh_seconds": refresh}
        envs[variant] = {
            **base,
            "ATTUNE_PACKS_PATH": str(empty),
            "ATTUNE_SOURCES": json.dumps([source]),
            "ATTUNE_SOURCES_DIR": str(work / f"store-{variant}"),
        }
    return envs


def load(env: dict[str, str], work: Path, profile: Path | None = None) -> dict[str, Any]:
    """One `dags_for_airflow()` in a fresh interpreter: seconds, peak RSS, DAGs, source tags."""
    out = work / "child.json"
    out.unlink(missing_ok=True)
    command = [str(PROJECT_PYTHON), "-c", CHILD, str(out), *([str(profile)] if profile else [])]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not out.exists():
        raise BenchmarkError(f"child exited {done.returncode}:\n{done.stderr[-3000:]}")
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["process_seconds"] = time.perf_counter() - started
    data["log"] = done.stderr[-3000:]
    return data


def _state(work: Path, variant: str) -> SourceState:
    return Store(work / f"store-{variant}").state(SOURCE)


def _wait_until_due(work: Path) -> None:
    """Sleep until the refresh variant's last fetch is more than its 1 s refresh ago."""
    checked = _state(work, "refresh").checked_at
    if checked is not None:
        time.sleep(max(0.0, 1.2 - (time.time() - checked)))


def _check(variant: str, data: dict[str, Any], n: int) -> None:
    tag = "source:local" if variant == "dir" else f"source:{SOURCE}"
    if data["dags"] != n or data["tags"] != {tag: n}:
        raise BenchmarkError(f"{variant} gave {data['dags']} DAGs {data['tags']}, not {n}:\n{data['log']}")


def measure(work: Path, envs: dict[str, dict[str, str]], registry: Registry, n: int, runs: int) -> dict[str, Any]:
    """R rounds of every variant (after one untimed warm-up each); the samples."""
    samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in envs}
    for variant, env in envs.items():
        _check(variant, load(env, work), n)
    order = list(envs)
    for round_ in range(runs):
        for variant in order[round_ % 3 :] + order[: round_ % 3]:
            if variant == "refresh":
                _wait_until_due(work)
            before = len(registry.requests)
            data = load(envs[variant], work)
            _check(variant, data, n)
            paths = [path for path, _ in registry.requests[before:]]
            data["requests"] = paths
            expected = ["/reg/index.json"] if variant == "refresh" else []
            if paths != expected:
                raise BenchmarkError(f"{variant} requested {paths}, expected {expected}")
            if variant != "dir" and _state(work, variant).error:
                raise BenchmarkError(f"{variant}: the fetch failed: {_state(work, variant).error}")
            del data["log"]
            samples[variant].append(data)
    return samples


def summarize(samples: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per variant, and each variant's median same-round ratio to dir."""
    summary: dict[str, Any] = {}
    for variant, rows in samples.items():
        ratios = [row["seconds"] / base["seconds"] for row, base in zip(rows, samples["dir"], strict=True)]
        summary[variant] = {
            "seconds": statistics.median(row["seconds"] for row in rows),
            "process_seconds": statistics.median(row["process_seconds"] for row in rows),
            "peak_rss_mb": statistics.median(row["peak_rss_mb"] for row in rows),
            "dags": rows[0]["dags"],
            "ratio_to_dir": statistics.median(ratios),
        }
    return summary


def table(summary: dict[str, Any], n: int, runs: int) -> str:
    lines = [
        f"workflow sources, N = {n}, warm parse cache, medians of {runs} runs (fresh interpreters)",
        f"| variant | load | whole process | peak RSS | DAGs | /dir |",
        "|---|---|---|---|---|---|",
    ]
    for variant, row in summary.items():
        lines.append(
            f"| {VARIANTS[variant]} | {row['seconds'] * 1000:.0f} ms | {row['process_seconds']:.2f} s"
            f" | {row['peak_rss_mb']:.0f} MB | {row['dags']} | {row['ratio_to_dir']:.2f}x |"
        )
    ratio = summary["http"]["ratio_to_dir"]
    lines.append(f"ratio http/dir: {ratio:.2f}x (due refresh/dir: {summary['refresh']['ratio_to_dir']:.2f}x)")
    lines.append(f"target {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'}")
    return "\n".join(lines)


def profile(work: Path, envs: dict[str, dict[str, str]], top: int = 25) -> None:
    """One cProfiled load of each variant: the functions taking the most time, by own time."""
    for variant, env in envs.items():
        if variant == "refresh":
            _wait_until_due(work)
        stats_file = work / f"{variant}.prof"
        load(env, work, stats_file)
        print(f"\n--- cProfile, {VARIANTS[variant]} (own time) ---")
        stats = pstats.Stats(str(stats_file), stream=sys.stdout)
        stats.strip_dirs().sort_stats("tottime").print_stats(top)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sources", description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=500, help="workflows to load (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--json", type=Path, help="write the samples and medians here")
    parser.add_argument("--profile", action="store_true", help="then one cProfiled load of each variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Bytecode for the provider, as an installed one has (see benchmarks/run.py).
    subprocess.run([str(PROJECT_PYTHON), "-m", "compileall", "-q", str(REPO / "attune_provider")], check=True)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="attune-bench-sources-") as temp:
        work = Path(temp)
        registry: Registry | None = None
        try:
            packs, out = publish(work, args.workflows)
            registry = Registry(out)
            envs = environments(work, packs, registry.url)
            samples = measure(work, envs, registry, args.workflows, args.runs)
            if args.profile:
                profile(work, envs)
        except (BenchmarkError, subprocess.TimeoutExpired) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        finally:
            if registry is not None:
                registry.stop()
    summary = summarize(samples)
    print(table(summary, args.workflows, args.runs))
    met = summary["http"]["ratio_to_dir"] <= TARGET
    if args.json:
        info["load_average_end"] = os.getloadavg()
        results = {"machine": info, "workflows": args.workflows, "runs": args.runs, "target": TARGET,
                   "met": met, "summary": summary, "samples": samples}
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
