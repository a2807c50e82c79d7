"""Rehearsal-style cases: each `cases/*.yaml` is a workflow, its actions and what must happen.

A case file holds:

- `workflow`: the workflow document (`ref` defaults to `t.wf`), written as pack `t`; a
  string is written as it is (so that expected problems can name its lines);
- `workflows` (optional): other workflows of pack `t` by name (subworkflows), `ref` `t.<name>`;
- `actions` (optional): name -> `{yaml: metadata, python: source}`; `name` defaults to the
  key and, when `python` is given, `runner_type` to `python-script` and `entry_point` to
  `<name>.py`;
- `files` (optional): other pack files (e.g. `config.yaml`) by relative path;
- `params` (optional): the run's parameters;
- `expect`: `status`, `tasks` (every task's outcome), `vars`, `output`, `attempts` (name ->
  tries), `errors` (name -> `{type, message}` or `{type, message_contains}`) and `xcoms`
  (Airflow task id -> key -> value; a mapping value checks only the keys it lists); or
  `invalid`: texts the validation error must contain (`wf.yaml:LINE:COL: error: ...`),
  when the workflow must be refused before anything runs.

Expected values compare strictly (`1` is not `true`, `4` is not `"4"`). The string
`${run_id}` in an expected value stands for the run's id, `${user}` for who runs the tests.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from attune_provider.exceptions import ValidationError
from attune_provider.local_run import RunResult

CASES_DIR = Path(__file__).parent / "cases"
CASES = sorted(CASES_DIR.glob("*.yaml"))
CASE_KEYS = {"description", "workflow", "workflows", "actions", "files", "params", "expect"}
EXPECT_KEYS = {"status", "tasks", "vars", "output", "attempts", "errors", "xcoms"}
INVALID_KEYS = {"invalid"}


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def pack_files(case: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """(the workflow's YAML text, the other files of pack `t`) of a case."""
    if isinstance(case["workflow"], str):
        workflow_text: str = case["workflow"]
    else:
        workflow_text = _dump({"ref": "t.wf", **case["workflow"]})
    files: dict[str, str] = dict(case.get("files") or {})
    for name, document in (case.get("workflows") or {}).items():
        files[f"workflows/{name}.yaml"] = _dump({"ref": f"t.{name}", **document})
    for name, action in (case.get("actions") or {}).items():
        meta = dict(action.get("yaml") or {})
        meta.setdefault("name", name)
        if "python" in action:
            meta.setdefault("runner_type", "python-script")
            meta.setdefault("entry_point", f"{name}.py")
            files[f"actions/{meta['entry_point']}"] = action["python"]
        files[f"actions/{name}.yaml"] = _dump(meta)
    return workflow_text, files


def _canonical(value: Any) -> str:
    """JSON text that tells `1` from `true` and `4` from `"4"` (and keeps tuples as lists)."""
    return json.dumps(value, sort_keys=True, default=str)


def _substitute(value: Any, run_id: str) -> Any:
    if isinstance(value, str):
        return value.replace("${run_id}", run_id).replace("${user}", getpass.getuser())
    if isinstance(value, list):
        return [_substitute(item, run_id) for item in value]
    if isinstance(value, dict):
        return {key: _substitute(item, run_id) for key, item in value.items()}
    return value


def assert_same(actual: Any, expected: Any, what: str) -> None:
    assert _canonical(actual) == _canonical(expected), f"{what}: expected {expected!r}, got {actual!r}"


def _check_errors(result: RunResult, expected: Mapping[str, Any]) -> None:
    for name, want in expected.items():
        error = result.tasks[name].error
        assert error is not None, f"task {name} has no error (status {result.tasks[name].status})"
        if "type" in want:
            assert error.get("type") == want["type"], f"error of {name}: {error}"
        if "message" in want:
            assert error.get("message") == want["message"], f"error of {name}: {error}"
        if "message_contains" in want:
            assert want["message_contains"] in str(error.get("message")), f"error of {name}: {error}"


def _check_xcoms(result: RunResult, expected: Mapping[str, Mapping[str, Any]]) -> None:
    for task_id, keys in expected.items():
        for key, want in keys.items():
            actual = result.xcom(task_id, key)
            if isinstance(want, dict) and isinstance(actual, dict):
                actual = {k: actual.get(k) for k in want}
            assert_same(actual, want, f"XCom {task_id}/{key}")


def check_expectations(result: RunResult, expect: Mapping[str, Any]) -> None:
    """Assert everything a case's `expect` names about a finished run."""
    unknown = set(expect) - EXPECT_KEYS
    assert not unknown, f"unknown expect keys {sorted(unknown)}"
    expect = _substitute(dict(expect), result.run_id)
    outcomes = {task_id: task.status for task_id, task in result.tasks.items()}
    summary = f"status={result.status} tasks={outcomes} vars={result.vars} output={result.output!r}"
    if "status" in expect:
        assert result.status == expect["status"], summary
    if "tasks" in expect:
        assert outcomes == expect["tasks"], summary
    if "attempts" in expect:
        attempts = {name: result.tasks[name].attempts for name in expect["attempts"]}
        assert attempts == expect["attempts"], summary
    if "vars" in expect:
        assert_same(result.vars, expect["vars"], "vars")
    if "output" in expect:
        assert_same(result.output, expect["output"], "output")
    _check_errors(result, expect.get("errors") or {})
    _check_xcoms(result, expect.get("xcoms") or {})


def load_case(path: Path) -> dict[str, Any]:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(case, dict), f"{path.name}: a case is a mapping"
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{path.name}: unknown keys {sorted(unknown)}"
    assert "workflow" in case and "expect" in case, f"{path.name}: needs `workflow` and `expect`"
    return case


def test_there_are_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_case(path: Path, run: Callable[..., RunResult]) -> None:
    case = load_case(path)
    workflow, files = pack_files(case)
    params = case.get("params") or {}
    if "invalid" in case["expect"]:
        assert set(case["expect"]) == INVALID_KEYS, f"{path.name}: `invalid` goes alone"
        with pytest.raises(ValidationError) as refused:
            run(workflow, files=files, params=params)
        for text in case["expect"]["invalid"]:
            assert text in str(refused.value), str(refused.value)
        return
    result = run(workflow, files=files, params=params)
    check_expectations(result, case["expect"])


def test_unloadable_workflow_reports_its_own_errors(run: Callable[..., RunResult]) -> None:
    """A workflow file that does not even load is refused with its problem, not as unknown."""
    with pytest.raises(ValidationError) as refused:
        run("ref: t.wf\ntasks:\n  - name: a\n    action: core.noop\n    on_success: true\n")
    text = str(refused.value)
    assert "unknown workflow 't.wf'" in text
    assert "t/workflows/wf.yaml:5:17: error: invalid value for 'tasks.0.on_success'" in text


def test_core_sleep_waits(run: Callable[..., RunResult]) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: nap
            action: core.sleep
            input: {seconds: 1.5}
        """
    )
    assert result.status == "succeeded"
    assert result.tasks["nap"].duration is not None and result.tasks["nap"].duration >= 1.5


def test_kv_and_pack_config_read_airflow_variables(run: Callable[..., RunResult]) -> None:
    """`kv.get` reads an Airflow Variable; `attune_pack_config__<pack>` overrides config defaults."""
    from airflow.models.variable import Variable

    Variable.set("attune_test_kv", "from-variable")
    Variable.set("attune_pack_config__t", json.dumps({"size": 9}))
    try:
        result = run(
            """
            ref: t.wf
            tasks:
              - name: t
                action: core.echo
                input:
                  message:
                    kv: "{{ kv.get('attune_test_kv', default='unused') }}"
                    region: "{{ pack.config.region }}"
                    size: "{{ pack.config.size }}"
            output_map: "{{ task.t.result.message }}"
            """,
            files={
                "config.yaml": """
                    type: object
                    properties:
                      region: {type: string, default: eu-west-1}
                      size: {type: integer, default: 3}
                """
            },
        )
    finally:
        Variable.delete("attune_test_kv")
        Variable.delete("attune_pack_config__t")
    assert result.status == "succeeded"
    assert result.output == {"kv": "from-variable", "region": "eu-west-1", "size": 9}
