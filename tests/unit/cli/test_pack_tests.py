"""`attune-airflow test`: test files checked (FILE:LINE:COL), mocks, comparisons, JUnit XML.

Nothing here runs Airflow: invalid files stop the command before any case runs, and the
comparisons and mocks are exercised directly (tests/integration/test_pack_tests.py runs
cases for real).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from attune_provider.cli import build_parser, main
from attune_provider.cli.pack_tests import load_tests
from attune_provider.language.plan import ActionPlan
from attune_provider.local_run import RunResult, TaskRun
from attune_provider.runners.base import ActionFailed, Invocation
from attune_provider.runners.mocks import Mock, MockTable, Reply, installed, mocked_runner
from attune_provider.testing.junit import junit_xml
from attune_provider.testing.runner import CaseResult, compare, differences, same
from attune_provider.testing.spec import Expect, TestCase
from tests.support import write_pack

WORKFLOW = """
    ref: t.flow
    parameters:
      n: {type: integer, required: true}
    vars: {seen: null}
    tasks:
      - name: first
        action: t.act
        input: {value: "{{ parameters.n }}"}
        publish: [{seen: "{{ task.first.result }}"}]
        on_success: second
      - name: second
        action: core.echo
        input: {message: hi}
      - name: both
        type: parallel
        tasks:
          - name: left
            action: core.noop
          - name: right
            action: core.noop
"""
ACTION = """
    name: act
    runner_type: python-script
    entry_point: act.py
    parameters:
      value: {type: integer}
"""


@pytest.fixture
def packs(tmp_path: Path) -> Path:
    root = tmp_path / "packs"
    write_pack(
        root,
        "t",
        {
            "workflows/flow.yaml": WORKFLOW,
            "actions/act.yaml": ACTION,
            "actions/act.py": "def run(value=None):\n    return value\n",
        },
    )
    return root


def _test_file(packs: Path, text: str, name: str = "flow.yaml") -> Path:
    path = packs / "t" / "tests" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _errors(capsys: pytest.CaptureFixture[str], packs: Path, *paths: str) -> list[str]:
    assert main(["test", "--packs", str(packs), *paths]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-1].endswith("no case ran")
    return err[:-1]


def test_help_has_an_example_exit_codes_and_environment(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["test", "--help"])
    text = capsys.readouterr().out
    for needle in (
        "attune-airflow test --packs packs",
        "exit codes:",
        "ATTUNE_PACKS_PATH",
        "AIRFLOW_HOME",
        "--junit",
    ):
        assert needle in text


def test_an_invalid_test_file_is_reported_at_its_positions(
    packs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _test_file(
        packs,
        "workflow: t.flow\n"  # 1
        "colour: blue\n"  # 2
        "cases:\n"  # 3
        "  - name: one\n"  # 4
        "    parameters: {n: x}\n"  # 5
        "    mocks:\n"  # 6
        "      task:nosuch: {result: 1}\n"  # 7
        "      core.nosuch: {result: 1}\n"  # 8
        "      core.http: {result: 1}\n"  # 9
        "      task:both: {result: 1}\n"  # 10
        "      t.act: {fail: {type: E}}\n"  # 11
        "      core.echo: {reslt: 1}\n"  # 12
        "    expect:\n"  # 13
        "      status: ok\n"  # 14
        "      tasks: {nosuch: failed, left: done}\n"  # 15
        "      wat: 1\n",  # 16
    )
    shown = str(path)
    errors = _errors(capsys, packs, shown)
    expected = [
        f"{shown}:2:1: error: unknown key 'colour'",
        f"{shown}:5:17: error: invalid parameters for workflow 't.flow'",
        f"{shown}:7:7: error: unknown task 'nosuch' in a mock",
        f"{shown}:8:7: error: unknown action 'core.nosuch' in a mock",
        f"{shown}:9:7: error: action 'core.http' in a mock is not called by workflow 't.flow'",
        f"{shown}:10:7: error: task 'both' runs a parallel group",
        f"{shown}:11:21: error: 'fail' needs 'message'",
        f"{shown}:12:19: error: unknown key 'reslt' in a mock",
        f"{shown}:14:15: error: 'status' is one of succeeded, failed",
        f"{shown}:15:15: error: unknown task 'nosuch'",
        f"{shown}:15:37: error: a task's status is one of",
        f"{shown}:16:7: error: unknown key 'wat' in 'expect'",
    ]
    assert len(errors) == len(expected), errors
    for line, start in zip(errors, expected, strict=True):
        assert line.startswith(start), (line, start)


def test_an_unknown_workflow_and_a_missing_path(packs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _test_file(packs, "workflow: t.nope\ncases:\n  - name: one\n")
    errors = _errors(capsys, packs, str(path), str(packs / "missing.yaml"))
    assert sorted(errors) == sorted(
        [
            f"{path}:1:11: error: unknown workflow 't.nope'",
            f"{packs / 'missing.yaml'}:1:1: error: no such file or directory",
        ]
    )


def test_members_are_named_by_name_or_group_path(packs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid file passes the checks: parallel members by name or `<group>.<member>`."""
    _test_file(
        packs,
        "workflow: t.flow\ncases:\n  - name: one\n    parameters: {n: 1}\n"
        "    mocks: {task:left: {result: 1}, t.act: [{result: 1}, {fail: {type: E, message: m}}]}\n"
        "    expect: {tasks: {both.right: succeeded, left: skipped}, output_subset: {}}\n",
    )
    tests, problems = load_tests(build_parser().parse_args(["test", "--packs", str(packs)]))
    assert problems == []
    (case,) = tests[0].cases
    assert case.expect.tasks == {"both.right": "succeeded", "both.left": "skipped"}
    assert set(case.mocks) == {"task:left", "t.act"}
    assert case.mocks["t.act"][1] is True


def test_mocks_answer_by_task_first_then_action_one_per_call() -> None:
    table = MockTable(
        {
            "task:a": Mock("task:a", [Reply(result={"x": 1})]),
            "t.act": Mock(
                "t.act", [Reply(result=1), Reply(error={"type": "E", "message": "m"})], sequence=True
            ),
        }
    )
    context = {"run_id": "r1"}
    assert mocked_runner("t.act", "a", context) is None  # nothing installed
    with installed("r1", table):
        assert mocked_runner("t.act", "a", {"run_id": "other"}) is None
        invocation = Invocation(ActionPlan("t.act", "python-script", "t", Path("."), None, {}, None), {}, "a")
        runner = mocked_runner("t.act", "a", context)
        assert runner is not None and runner.run(invocation) == {"x": 1}
        runner = mocked_runner("t.act", "b", context)
        assert runner is not None
        assert runner.run(invocation._replace(task_name="b")) == 1
        with pytest.raises(ActionFailed) as failed:
            runner.run(invocation._replace(task_name="b"))
        assert failed.value.error == {"type": "E", "message": "m"}
        with pytest.raises(ActionFailed) as exhausted:
            runner.run(invocation._replace(task_name="b"))
        assert exhausted.value.error["type"] == "MockExhausted"
        assert mocked_runner("t.act", None, context) is not None  # inside a subworkflow: by action
    assert table.calls() == {"task:a": 1, "t.act": 3}
    assert mocked_runner("t.act", "a", context) is None


def test_comparisons_are_json_equality() -> None:
    assert same(1, 1.0) and not same(True, 1) and not same(None, "null") and same({"a": [1]}, {"a": [1.0]})
    assert differences({"a": 1}, {"a": 1, "b": 2}, "output", subset=True) == []
    assert differences({"a": 1}, {"a": 1, "b": 2}, "output", subset=False) == [
        "output.b: not expected, got 2"
    ]
    assert differences({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 3, "d": 4}]}}, "vars", True) == [
        "vars.a.b[1].c: expected 2, got 3"
    ]
    assert differences({"x": "1"}, {}, "output", True) == ['output.x: expected "1", got no such key']


def _case(expect: Expect) -> TestCase:
    return TestCase("case one", "packs/t/tests/flow.yaml", 3, {}, {}, expect)


def test_compare_names_what_differed_with_expected_and_actual() -> None:
    result = RunResult("t.flow", "run", "failed", vars={"seen": 1}, output={"a": 1})
    result.tasks = {
        "first": TaskRun("first", "failed", error={"type": "E", "message": "boom"}),
        "second": TaskRun("second", "skipped"),
    }
    expect = Expect(
        "succeeded", {"first": "succeeded", "second": "skipped"}, {"output": {"a": 2}}, {"vars_subset": {}}
    )
    found = compare(_case(expect), result)
    assert found == [
        "status: expected succeeded, got failed [first failed (E: boom)]",
        "tasks.first: expected succeeded, got failed (E: boom)",
        "output.a: expected 2, got 1",
    ]
    line = CaseResult(_case(expect), "t.flow", found).line()
    assert line.startswith("FAIL packs/t/tests/flow.yaml:3 case one: status: expected succeeded")
    assert CaseResult(_case(expect), "t.flow").line() == "PASS packs/t/tests/flow.yaml:3 case one"


def test_junit_report() -> None:
    passed = CaseResult(_case(Expect()), "t.flow", duration=0.5, run_id="r1")
    failed = CaseResult(_case(Expect()), "t.flow", ["status: expected a, got b"], duration=1.0)
    broken = CaseResult(_case(Expect()), "t.flow", error="RuntimeError: no", details="Traceback ...")
    root = junit_xml([passed, failed, broken]).getroot()
    assert root is not None
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    suite = root.find("testsuite")
    assert suite is not None and suite.get("name") == "packs/t/tests/flow.yaml" and suite.get("tests") == "3"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["t.flow"] * 3 and cases[0].get("line") == "3"
    assert cases[1].find("failure") is not None and cases[2].find("error") is not None
    assert ET.tostring(root)  # serialises


def test_validate_checks_test_files_too(packs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`validate` checks every file of a pack, tests/*.yaml included (code ATT601); a valid
    test file adds nothing."""
    bad = _test_file(packs, "workflow: t.nope\nbogus: 1\ncases: []\n")
    assert main(["validate", "--packs", str(packs), "--format", "json"]) == 1
    found = json.loads(capsys.readouterr().out)
    assert [(p["file"], p["line"], p["column"], p["code"]) for p in found] == [
        (str(bad), 1, 11, "ATT601"),
        (str(bad), 2, 1, "ATT601"),
    ]
    bad.write_text("workflow: t.flow\ncases:\n  - name: one\n    parameters: {n: 1}\n")
    assert main(["validate", "--packs", str(packs)]) == 0
