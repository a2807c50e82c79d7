"""`attune-airflow schema [KIND]`: JSON Schemas of pack files for editors (docs/editors.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from attune_provider.cli import main
from attune_provider.cli.schema import KINDS, schema_of

ROOT = Path(__file__).resolve().parents[3]
FOLDERS = {"action": "actions", "workflow": "workflows", "rule": "rules", "tests": "tests"}
TESTS_EXAMPLE = """\
workflow: my_pack.deploy_application
cases:
  - name: a failed build rolls back and reports
    parameters: {app_name: shop, version: "1.4.2"}
    mocks:
      docker.build_and_push: {fail: {type: BuildError, message: "no space left"}}
      task:health_check: {result: {status_code: 200}}
      http.get: [{result: {status_code: 503}}, {result: {status_code: 200}}]
    expect:
      status: failed
      tasks: {build_image: failed, cleanup_deployment: succeeded}
      output: {status: null}
"""


def printed(capsys: pytest.CaptureFixture[str], kind: str) -> dict:
    assert main(["schema", kind]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_prints_a_valid_json_schema(capsys, kind):
    schema = printed(capsys, kind)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert "attune-airflow validate" in schema["description"]


def _files(kind: str) -> list[Path]:
    roots = (ROOT / "packs", ROOT / "attune_provider" / "packs")  # the examples, and core
    pattern = "*/pack.yaml" if kind == "pack" else f"*/{FOLDERS[kind]}/*.yaml"
    return sorted(path for root in roots for path in root.glob(pattern))


@pytest.mark.parametrize("kind", ["pack", "action", "workflow", "rule"])
def test_the_example_packs_match_their_schemas(kind):
    files = _files(kind)
    assert files, kind
    validator = Draft202012Validator(schema_of(kind))
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
        assert errors == [], path


def test_editors_are_told_of_unknown_and_missing_keys():
    validator = Draft202012Validator(schema_of("workflow"))
    data = {"ref": "p.w", "tasks": [{"name": "a", "action": "core.noop", "on_sucess": "b"}]}
    assert any("on_sucess" in e.message for e in validator.iter_errors(data))
    assert any("'tasks' is a required property" in e.message for e in validator.iter_errors({"ref": "p.w"}))


def test_the_tests_schema_accepts_the_documented_example_and_refuses_a_typo():
    validator = Draft202012Validator(schema_of("tests"))
    example = yaml.safe_load(TESTS_EXAMPLE)
    assert list(validator.iter_errors(example)) == []
    example["cases"][0]["expect"]["satus"] = "failed"
    assert list(validator.iter_errors(example))
    example = yaml.safe_load(TESTS_EXAMPLE)
    example["cases"][0]["mocks"]["http.get"] = {"result": 1, "fail": {"type": "E", "message": "m"}}
    assert list(validator.iter_errors(example))


def test_output_dir_writes_one_file_per_kind(tmp_path, capsys):
    assert main(["schema", "--output-dir", str(tmp_path / "schemas")]) == 0
    written = sorted(p.name for p in (tmp_path / "schemas").iterdir())
    assert written == sorted(f"attune-{kind}.schema.json" for kind in KINDS)
    assert capsys.readouterr().out.splitlines() == [
        str(tmp_path / "schemas" / f"attune-{kind}.schema.json") for kind in KINDS
    ]
    stored = json.loads((tmp_path / "schemas" / "attune-workflow.schema.json").read_text(encoding="utf-8"))
    assert stored == schema_of("workflow")


def test_without_kind_or_output_dir_it_is_a_usage_error(capsys):
    assert main(["schema"]) == 2
    assert "give a KIND or --output-dir" in capsys.readouterr().err


def test_an_unknown_kind_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["schema", "config"])
    assert exit_info.value.code == 2


def test_docs_show_the_modeline_for_every_kind():
    docs = (ROOT / "docs" / "editors.md").read_text(encoding="utf-8")
    assert "# yaml-language-server: $schema=" in docs
    for kind in KINDS:
        assert f"attune-airflow schema {kind}" in docs or f"attune-{kind}.schema.json" in docs


def test_the_tests_schema_has_the_keys_of_the_test_file_checker():
    """`attune-airflow test` checks its files by hand (testing/spec.py): same keys here."""
    from attune_provider.testing import spec

    schema = schema_of("tests")
    case = schema["$defs"]["Case"]
    expect = case["properties"]["expect"]
    mock_keys = [next(iter(option["properties"])) for option in schema["$defs"]["Mock"]["oneOf"]]
    fail = schema["$defs"]["Mock"]["oneOf"][1]["properties"]["fail"]
    assert set(schema["properties"]) == set(spec.FILE_KEYS)
    assert set(case["properties"]) == set(spec.CASE_KEYS)
    assert set(expect["properties"]) == set(spec.EXPECT_KEYS)
    assert set(mock_keys) == set(spec.REPLY_KEYS)
    assert set(fail["properties"]) == set(spec.FAIL_KEYS)
    assert expect["properties"]["status"]["enum"] == list(spec.WORKFLOW_STATUSES)
    assert set(expect["properties"]["tasks"]["additionalProperties"]["enum"]) == set(spec.TASK_STATUSES)


def test_the_example_pack_tests_match_the_tests_schema():
    files = sorted((ROOT / "packs").glob("*/tests/*.yaml"))
    validator = Draft202012Validator(schema_of("tests"))
    for path in files:
        errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text(encoding="utf-8")))]
        assert errors == [], path
