"""`python -m benchmarks.pack_tests [--rounds R] [--cases N] [--json OUT]`: `attune-airflow test`'s cost.

Targets of the issue (pack tests):

- one test case costs at most 1.2x an `attune-airflow run` of the same workflow;
- a file of 20 cases costs at most 10x a file of one case.

The workload is one pack written to a temporary directory: a workflow of four tasks (a
python-script action, a decision, `core.echo`, `core.noop`), a test file of one case (no
mocks: every action runs, as under `run`) and a file of N cases (default 20; half mock the
python-script action by ref or by task, one per call, the others run it). Each sample is a
fresh `attune-airflow` process, as a user or CI starts it, on one shared AIRFLOW_HOME whose
metadata database is migrated by an untimed warm-up run first. Variants take turns in each
of R rounds (the order rotates); the ratios compare each variant's fastest sample (other
work on the machine only ever adds time; benchmarks/run.py keeps the fastest of a few
parses for the same reason), and the medians of the same-round ratios are shown too.
Exit status: 0 when both targets hold, 1 when one does not, 2 when the benchmark could
not run (a command failed: its output is shown).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CLI = str(Path(sys.executable).parent / "attune-airflow")
ONE_CASE_MAX = 1.2  # one case / one run
MANY_CASES_MAX = 10.0  # 20 cases / one case

WORKFLOW = """
    ref: bench.flow
    parameters:
      n: {type: integer, default: 3}
    vars: {doubled: null}
    tasks:
      - name: compute
        action: bench.compute
        input: {n: "{{ parameters.n }}"}
        publish: [{doubled: "{{ task.compute.result.doubled }}"}]
        decision:
          - when: "{{ vars.doubled > 100 }}"
            next: big
          - default: small
      - name: big
        action: core.echo
        input: {message: "big {{ vars.doubled }}"}
      - name: small
        action: core.noop
    output_map:
      doubled: "{{ vars.doubled }}"
"""
ACTION = """
    name: compute
    runner_type: python-script
    entry_point: compute.py
    parameters:
      n: {type: integer, required: true}
"""
SCRIPT = "def run(n):\n    return {'doubled': n * 2}\n"


def _case(index: int) -> str:
    """Case `index` of the many-case file: every other one mocks compute (by ref or by task)."""
    if index % 2 == 0:
        return f"""
  - name: case {index} runs compute
    parameters: {{n: {index}}}
    expect: {{status: succeeded, output: {{doubled: {index * 2}}}}}"""
    key = "bench.compute" if index % 4 == 1 else "task:compute"
    return f"""
  - name: case {index} mocks compute
    mocks: {{{key}: [{{result: {{doubled: {1000 + index}}}}}]}}
    expect: {{status: succeeded, tasks: {{big: succeeded, small: skipped}}}}"""


def write_workload(root: Path, cases: int) -> Path:
    packs = root / "packs"
    pack = packs / "bench"
    files = {
        "pack.yaml": "ref: bench\n",
        "workflows/flow.yaml": textwrap.dedent(WORKFLOW).lstrip(),
        "actions/compute.yaml": textwrap.dedent(ACTION).lstrip(),
        "actions/compute.py": SCRIPT,
        "tests/one.yaml": "workflow: bench.flow\ncases:\n"
        + "  - name: the default runs compute\n    expect: {status: succeeded, output: {doubled: 6}}\n",
        "tests/many.yaml": "workflow: bench.flow\ncases:" + "".join(_case(i) for i in range(cases)) + "\n",
    }
    for rel, text in files.items():
        path = pack / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return packs


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATTUNE_", "AIRFLOW__"))}
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    return env


class BenchmarkError(RuntimeError):
    pass


def timed(command: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return elapsed


def measure(rounds: int, cases: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="attune-bench-tests-") as tmp:
        root = Path(tmp)
        packs = write_workload(root, cases)
        home = root / "airflow-home"
        env = _env(home)
        variants = {
            "run": [CLI, "run", "bench.flow", "--packs", str(packs), "--json"],
            "test 1 case": [CLI, "test", "--packs", str(packs), str(packs / "bench/tests/one.yaml")],
            f"test {cases} cases": [CLI, "test", "--packs", str(packs), str(packs / "bench/tests/many.yaml")],
        }
        timed(variants["run"], env, root)  # warm-up: migrates the metadata database
        samples: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for number in range(rounds):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                samples[name].append(timed(variants[name], env, root))
                print(f"round {number + 1}: {name}: {samples[name][-1]:.2f}s", file=sys.stderr)
    one, many, run = samples["test 1 case"], samples[f"test {cases} cases"], samples["run"]
    return {
        "rounds": rounds,
        "cases": cases,
        "fastest_s": {name: min(values) for name, values in samples.items()},
        "medians_s": {name: statistics.median(values) for name, values in samples.items()},
        # the fastest of each variant: interference from other work only ever adds time
        "one_case_vs_run": min(one) / min(run),
        "many_vs_one_case": min(many) / min(one),
        # the medians of the same-round ratios, for comparison
        "one_case_vs_run_median": statistics.median(o / r for o, r in zip(one, run, strict=True)),
        "many_vs_one_case_median": statistics.median(m / o for m, o in zip(many, one, strict=True)),
        "samples_s": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.pack_tests", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    try:
        results = measure(args.rounds, args.cases)
    except (BenchmarkError, subprocess.TimeoutExpired) as exc:
        print(f"benchmark could not run: {exc}", file=sys.stderr)
        return 2
    for name, value in results["fastest_s"].items():
        median = results["medians_s"][name]
        print(f"{name:>16}: {value:6.2f} s fastest, {median:6.2f} s median of {args.rounds}")
    one_ok = results["one_case_vs_run"] <= ONE_CASE_MAX
    many_ok = results["many_vs_one_case"] <= MANY_CASES_MAX
    for label, key, target, ok in (
        ("one case / run", "one_case_vs_run", ONE_CASE_MAX, one_ok),
        (f"{args.cases} cases / one case", "many_vs_one_case", MANY_CASES_MAX, many_ok),
    ):
        print(
            f"{label:>20}: {results[key]:.2f}x (target <= {target}x, same-round median"
            f" {results[key + '_median']:.2f}x) {'ok' if ok else 'MISSED'}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if one_ok and many_ok else 1


if __name__ == "__main__":
    sys.exit(main())
