"""`python -m benchmarks.sources [--workflows N] [--runs R] [--json OUT] [--profile]`: workflow sources.

Measures what an http workflow source (docs/sources.md) costs the DAG file against
the same packs read from a directory, with a warm parse cache. Target of the issue: "with a
warm cache, loading 500 workflows from an http source costs at most 1.1x the same packs
from a directory".

The N workflows of the benchmark workload (benchmarks/generate.py: 10 tasks each, 100 to a
pack) are published with `attune-airflow registry build` and served on 127.0.0.1
(tests/registry_server.py). Each sample is a fresh interpreter, as each parse of the DAG
processor is a new process: Airflow is imported first (its DagBag and `airflow.sdk.DAG`,
loaded before the DAG processor parses a file), then the clock starts, `attune_provider` is
imported and `dags_for_airflow()` (the DAG file's call) returns the DAGs; peak RSS is
`getrusage`'s. The variants share one AIRFLOW_HOME and one parse cache, and each is warmed
by one untimed run:

- dir: `ATTUNE_PACKS_PATH=<packs>`, no sources;
- http: an empty packs path, `ATTUNE_SOURCES` = one http source (`refresh_seconds` 3600)
  whose store (`ATTUNE_SOURCES_DIR`) holds the packs: no request is made;
- http, due refresh: the same with `refresh_seconds` 1, more than a second after the last
  fetch: each run GETs index.json again (the archives are in the store already).

R rounds, the variants taking turns (the order rotates); medians are shown, and the ratio
to dir is the median of the same-round ratios (as benchmarks/run.py takes them). Exit
status: 0 when the target holds, 1 when it does not, 2 when the benchmark could not run.
`--profile` adds one cProfiled load of each variant: what the http ones call that dir does not.
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
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

from attune_provider.cli import main as attune_airflow
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


def _sample(work: Path, variant: str, env: dict[str, str], registry: Registry, n: int) -> dict[str, Any]:
    """One timed load, checked: N DAGs of the right source, the expected requests, no failed fetch."""
    if variant == "refresh":
        _wait_until_due(work)
    before = len(registry.requests)
    data = load(env, work)
    _check(variant, data, n)
    data["requests"] = [path for path, _ in registry.requests[before:]]
    expected = ["/reg/index.json"] if variant == "refresh" else []
    if data["requests"] != expected:
        raise BenchmarkError(f"{variant} requested {data['requests']}, expected {expected}")
    if variant != "dir" and _state(work, variant).error:
        raise BenchmarkError(f"{variant}: the fetch failed: {_state(work, variant).error}")
    del data["log"]
    return data


def _code_stamp() -> int:
    """The newest modification time of the provider's code: a change during the run (another
    checkout being edited) changes the parse cache's code version, and a warm load turns cold."""
    return max(path.stat().st_mtime_ns for path in (REPO / "attune_provider").rglob("*.py"))


def _warm(work: Path, envs: dict[str, dict[str, str]], n: int) -> int:
    """Bytecode (as an installed provider has), then one untimed load of each variant; the
    code stamp they were made with."""
    stamp = _code_stamp()
    subprocess.run([str(PROJECT_PYTHON), "-m", "compileall", "-q", str(REPO / "attune_provider")], check=True)
    for variant, env in envs.items():
        _check(variant, load(env, work), n)
    return stamp


def measure(
    work: Path, envs: dict[str, dict[str, str]], registry: Registry, n: int, runs: int
) -> dict[str, list[dict[str, Any]]]:
    """R rounds of every variant, the order rotating; the samples. A round during which the
    provider's code changed (a checkout being edited) is taken again after warming again."""
    samples: dict[str, list[dict[str, Any]]] = {variant: [] for variant in envs}
    stamp, order, repeated = _warm(work, envs, n), list(envs), 0
    while len(samples["dir"]) < runs:
        shift = (len(samples["dir"]) + repeated) % len(order)
        taken = {
            variant: _sample(work, variant, envs[variant], registry, n)
            for variant in order[shift:] + order[:shift]
        }
        if _code_stamp() != stamp:
            repeated += 1
            if repeated > runs:
                raise BenchmarkError("the provider's code keeps changing: no warm sample")
            print("the provider's code changed during a round: warming again, round taken again", flush=True)
            stamp = _warm(work, envs, n)
            continue
        for variant, data in taken.items():
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


def table(summary: dict[str, Any], info: dict[str, Any], n: int, runs: int) -> str:
    lines = [
        f"workflow sources, N = {n}, warm parse cache, medians of {runs} runs (fresh interpreters)",
        "| variant | load | whole process | peak RSS | DAGs | /dir |",
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
    start, end = (" ".join(f"{x:.1f}" for x in info[k]) for k in ("load_average_start", "load_average_end"))
    lines.append(f"{info['cores']} cores, load average {start} -> {end}")
    return "\n".join(lines)


Profile = dict[tuple[str, int, str], tuple[int, float, float]]


def _profiled(work: Path, variant: str, env: dict[str, str]) -> Profile:
    """One cProfiled load: (file, line, function) -> (calls, own seconds, cumulative seconds)."""
    if variant == "refresh":
        _wait_until_due(work)
    stats_file = work / f"{variant}.prof"
    load(env, work, stats_file)
    raw = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]
    return {key: (calls, own, cumulative) for key, (_, calls, own, cumulative, _) in raw.items()}


def _where(key: tuple[str, int, str]) -> str:
    file, line, function = key
    for prefix in (f"{REPO}/", f"{Path(sysconfig.get_paths()['purelib'])}/"):
        file = file.removeprefix(prefix)
    return f"{file}:{line}({function})"


def profile(work: Path, envs: dict[str, dict[str, str]], top: int = 15) -> None:
    """One cProfiled load of each variant; what the http ones do that dir does not: the
    functions only they call (by cumulative time), and those they call more often."""
    profiles = {variant: _profiled(work, variant, env) for variant, env in envs.items()}
    base = profiles.pop("dir")
    for variant, prof in profiles.items():
        total = sum(v[1] for v in prof.values()) - sum(v[1] for v in base.values())
        print(f"\n--- {VARIANTS[variant]} against dir, profiled: {total * 1000:+.0f} ms own time in all ---")
        only = sorted((key for key in prof if key not in base), key=lambda key: -prof[key][2])
        ours = [key for key in only if key[0].startswith(str(REPO / "attune_provider"))]
        for label, keys in (("the provider's", ours[:top]), ("any", only[:top])):
            print(f"{label} functions called only here: calls, own ms, cumulative ms, where")
            for key in keys:
                calls, own, cumulative = prof[key]
                print(f"  {calls:8d} {own * 1000:8.1f} {cumulative * 1000:8.1f}  {_where(key)}")
        print("called more often here: extra calls, where")
        extra = {key: calls - base[key][0] for key, (calls, _, _) in prof.items() if key in base}
        for key in sorted(extra, key=lambda key: -extra[key])[:top]:
            print(f"  {extra[key]:+8d}  {_where(key)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sources", description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", type=int, default=500, help="workflows to load (default 500)")
    parser.add_argument("--runs", type=int, default=5, help="timed rounds (default 5)")
    parser.add_argument("--json", type=Path, help="write the samples and medians here")
    parser.add_argument("--profile", action="store_true", help="then one cProfiled load of each variant")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="attune-bench-sources-") as temp:
        work = Path(temp)
        registry: Registry | None = None
        try:
            packs, out = publish(work, args.workflows)
            registry = Registry(out)
            envs = environments(work, packs, registry.url)
            samples = measure(work, envs, registry, args.workflows, args.runs)
            summary = summarize(samples)
            info["load_average_end"] = os.getloadavg()
            print(table(summary, info, args.workflows, args.runs), flush=True)
            if args.profile:
                profile(work, envs)
        except (BenchmarkError, subprocess.TimeoutExpired) as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 2
        finally:
            if registry is not None:
                registry.stop()
    met = summary["http"]["ratio_to_dir"] <= TARGET
    if args.json:
        results = {
            "machine": info,
            "workflows": args.workflows,
            "runs": args.runs,
            "target": TARGET,
            "met": met,
            "summary": summary,
            "samples": samples,
        }
        args.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
