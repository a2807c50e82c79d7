"""`attune-airflow run` (docs/language.md), run as a subprocess like a user would.

The runs through Airflow take ~10-15 s each, so there are three of them (JSON success,
JSON failure, readable failure); every "could not start" case stops before Airflow is
imported and takes well under a second.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from attune_provider.cli.run import UsageError, parse_params
from attune_provider.language.parameters import value_from_text
from tests.integration.conftest import write_pack

COMPUTE_META = """
    name: compute
    runner_type: python-script
    entry_point: compute.py
    parameters:
      n: {type: integer, required: true}
      s: {type: string}
"""
COMPUTE_PY = """
    import os


    def run(n, s=None):
        print("ACTION-STDOUT-MARKER")
        os.system("echo CHILD-STDOUT-MARKER")
        return {"double": n * 2, "s": s}
"""
EXPLODE_META = """
    name: explode
    runner_type: python-script
    entry_point: explode.py
"""
EXPLODE_PY = """
    def run():
        raise ValueError("kaboom")
"""
OK_WORKFLOW = """
    ref: rc.ok
    parameters:
      n: {type: integer, required: true}
      s: {type: string, default: x}
      level: {type: string, enum: [low, high], default: low}
      day: {type: string, format: date, default: "2026-01-31"}
    vars:
      doubled: null
    tasks:
      - name: compute
        action: rc.compute
        input: {n: "{{ parameters.n }}", s: "{{ parameters.s }}"}
        publish:
          - doubled: "{{ task.compute.result.double }}"
        on_success: say
      - name: say
        action: core.echo
        input: {message: "{{ parameters.s }}-{{ vars.doubled }}"}
    output_map:
      n: "{{ parameters.n }}"
      s: "{{ parameters.s }}"
      doubled: "{{ vars.doubled }}"
      said: "{{ task.say.result.message }}"
"""
BAD_WORKFLOW = """
    ref: rc.bad
    vars:
      before: 1
    tasks:
      - name: prepare
        action: core.echo
        input: {message: hello}
        publish:
          - before: "{{ 2 }}"
        on_success: explode
      - name: explode
        action: rc.explode
        on_success: after
      - name: after
        action: core.noop
    output_map:
      message: "{{ task.explode.error.message }}"
      greeting: "{{ task.prepare.result.message }}"
"""
BROKEN_WORKFLOW = """
    ref: rcbroken.w
    tasks:
      - name: a
        action: core.noop
        on_success: nowhere
"""
PARAMS_AT = r"packs/rc/workflows/ok\.yaml:\d+:\d+: error: "


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `packs/` (pack `rc`, and pack `rcbroken` with an invalid workflow)."""
    root = tmp_path_factory.mktemp("run-command")
    write_pack(
        root / "packs",
        "rc",
        {
            "actions/compute.yaml": COMPUTE_META,
            "actions/compute.py": COMPUTE_PY,
            "actions/explode.yaml": EXPLODE_META,
            "actions/explode.py": EXPLODE_PY,
            "workflows/ok.yaml": OK_WORKFLOW,
            "workflows/bad.yaml": BAD_WORKFLOW,
        },
    )
    write_pack(root / "other-packs", "rcbroken", {"workflows/w.yaml": BROKEN_WORKFLOW})
    return root


def run_command(*args: str, packs: str = "packs", home: Path | None = None) -> dict[str, Any]:
    """The arguments of a subprocess running `attune-airflow run ARGS --packs PACKS` on the
    session's AIRFLOW_HOME (tests/conftest.py), or on `home`."""
    env = dict(os.environ)
    env.pop("ATTUNE_PACKS_PATH", None)
    env.pop("AIRFLOW__ATTUNE__PACKS_PATH", None)
    if home is not None:
        env["AIRFLOW_HOME"] = str(home)
    command = [sys.executable, "-m", "attune_provider", "run", *args, "--packs", packs]
    return {"args": command, "env": env, "text": True}


def attune(workdir: Path, *args: str, packs: str = "packs") -> subprocess.CompletedProcess[str]:
    """`attune-airflow run ARGS --packs PACKS` in `workdir`, on the session's AIRFLOW_HOME."""
    return subprocess.run(**run_command(*args, packs=packs), cwd=workdir, capture_output=True, timeout=300)


def json_result(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object standard output must hold, and nothing else."""
    assert proc.stdout.count("\n") == 1, proc.stdout
    result = json.loads(proc.stdout)
    assert isinstance(result, dict)
    assert set(result) == {"workflow", "run_id", "status", "tasks", "vars", "output"}
    assert result["run_id"]
    return result


# --- VALUE parsing ---------------------------------------------------------------------------


NUMBER = {"type": "integer"}
TEXT = {"type": "string"}
OPTIONAL_TEXT = {"type": ["string", "null"]}


@pytest.mark.parametrize(
    ("text", "prop", "value"),
    [
        ("5", NUMBER, 5),
        ("2.5", {"type": "number"}, 2.5),
        ("true", {"type": "boolean"}, True),
        ("null", NUMBER, None),
        ("[1, 2]", {"type": "array"}, [1, 2]),
        ('{"a": 1}', {"type": "object"}, {"a": 1}),
        ("abc", NUMBER, "abc"),  # not JSON: the text, which the check then refuses
        ("NaN", NUMBER, "NaN"),
        ("1", TEXT, "1"),  # a string parameter takes the text as given
        ("1.0", TEXT, "1.0"),
        ("true", OPTIONAL_TEXT, "true"),
        ("null", TEXT, "null"),
        ('"42"', TEXT, "42"),  # a JSON string literal is decoded
        ('"unterminated', TEXT, '"unterminated'),
        ("[1]", TEXT, "[1]"),
        ("", TEXT, ""),
        ("a=b", TEXT, "a=b"),
        ("7", None, 7),  # an undeclared name: JSON (the check names it unknown)
    ],
)
def test_a_value_is_read_by_its_parameter_s_declared_type(text: str, prop: Any, value: Any) -> None:
    read = value_from_text(text, prop)
    assert read == value and type(read) is type(value)


def test_params_split_at_the_first_equals_sign() -> None:
    assert parse_params(["n=5", "s=abc", "q=a=b", "n=6"]) == {"n": "6", "s": "abc", "q": "a=b"}
    for bad in ("n", "=5"):
        with pytest.raises(UsageError, match="NAME=VALUE"):
            parse_params([bad])


# --- runs through Airflow --------------------------------------------------------------------


def test_json_success(airflow_db: None, workdir: Path) -> None:
    proc = attune(workdir, "rc.ok", "-p", "n=5", "-p", "s=1", "--json")  # a string parameter: "1"
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json_result(proc)
    assert result["workflow"] == "rc.ok"
    assert result["status"] == "succeeded"
    assert result["tasks"] == {"compute": "succeeded", "say": "succeeded"}
    assert result["vars"] == {"doubled": 10}
    assert result["output"] == {"n": 5, "s": "1", "doubled": 10, "said": "1-10"}
    assert type(result["output"]["n"]) is int
    # what the action and its child process printed went to standard error, like Airflow's logs
    assert "ACTION-STDOUT-MARKER" in proc.stderr
    assert "CHILD-STDOUT-MARKER" in proc.stderr
    assert "DAG TEST" in proc.stderr


def test_runs_started_together_on_a_new_home_all_finish(workdir: Path, tmp_path: Path) -> None:
    """Each migrates the new database and writes the DAGs: they must not trip on each other."""
    command = run_command("rc.ok", "-p", "n=1", "-p", "s=x", "--json", home=tmp_path / "home")
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    procs = [subprocess.Popen(**command, cwd=workdir, **pipes) for _ in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, stderr) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, stderr[-3000:]
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert [result["status"] for result in results] == ["succeeded"] * 3
    assert len({result["run_id"] for result in results}) == 3


def test_json_failure_still_renders_the_output(airflow_db: None, workdir: Path) -> None:
    proc = attune(workdir, "rc.bad", "--json")
    assert proc.returncode == 1, proc.stderr[-3000:]
    result = json_result(proc)
    assert result["status"] == "failed"
    assert result["tasks"] == {"prepare": "succeeded", "explode": "failed", "after": "skipped"}
    assert result["vars"] == {"before": 2}
    assert result["output"] == {"message": "kaboom", "greeting": "hello"}


def test_readable_failure(airflow_db: None, workdir: Path) -> None:
    proc = attune(workdir, "rc.bad")
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    out = proc.stdout
    assert out.startswith("workflow rc.bad\n")
    run_id = re.search(r"^run +(\S+)$", out, re.M)
    assert run_id, out
    assert re.search(r"^ +prepare +succeeded +1 attempt +\d+\.\d\ds$", out, re.M), out
    assert re.search(r"^ +explode +failed +1 attempt +\d+\.\d\ds\n +ValueError: kaboom$", out, re.M), out
    assert re.search(r"^ +after +skipped$", out, re.M), out
    # `after` is skipped the moment explode fails, before explode's own state is final;
    # it is still listed after the task it follows
    assert out.index(" explode ") < out.index(" after "), out
    assert re.search(r"^workflow rc\.bad failed in ", out, re.M), out
    assert '"message": "kaboom"' in out
    assert "airflow api-server" in out
    # Airflow's chatter went to the log file, not to the terminal
    assert "DAG TEST" not in out and "DAG TEST" not in proc.stderr
    logs = re.search(r"^logs: (.+)$", out, re.M)
    assert logs, out
    log_file = Path(logs.group(1))
    expected_dir = Path(os.environ["AIRFLOW_HOME"]) / "logs" / "attune" / "rc.bad"
    assert log_file == expected_dir / f"{run_id.group(1)}.log"
    assert "DAG TEST" in log_file.read_text()


# --- could not start (exit 2, before Airflow is imported) -------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["rc.ok"], PARAMS_AT + r".*missing required parameter 'n'"),
        (["rc.ok", "-p", "n=abc"], PARAMS_AT + r".*parameter 'n': 'abc' is not of type 'integer'"),
        (["rc.ok", "-p", "n=1", "-p", "level=medium"], PARAMS_AT + r".*parameter 'level': 'medium'"),
        (["rc.ok", "-p", "n=1", "-p", "colour=red"], PARAMS_AT + r".*unknown parameter 'colour'"),
        (["rc.ok", "-p", "n=1", "-p", "day=2026-02-30"], PARAMS_AT + r".*'2026-02-30' is not a 'date'"),
        (["rc.ok", "-p", "n"], r"expected NAME=VALUE, got 'n'"),
        (["rc.nope"], r"^packs:1:1: error: unknown workflow 'rc\.nope'"),
    ],
    ids=["missing", "wrong-type", "enum", "undeclared", "format-date", "no-equals", "unknown"],
)
def test_could_not_start(workdir: Path, args: list[str], expected: str) -> None:
    for extra in ([], ["--json"]):
        proc = attune(workdir, *args, *extra)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert re.search(expected, proc.stderr, re.M), proc.stderr
        assert "DAG TEST" not in proc.stdout + proc.stderr


def test_invalid_workflow_names_file_and_line(workdir: Path) -> None:
    proc = attune(workdir, "rcbroken.w", "--json", packs="other-packs")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    where = r"^other-packs/rcbroken/workflows/w\.yaml:5:\d+: error: .*'nowhere'"
    assert re.search(where, proc.stderr, re.M), proc.stderr
