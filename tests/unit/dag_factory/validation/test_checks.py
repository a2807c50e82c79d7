"""Checks of packs, actions, config, parameter schemas, tags, entry points and the whole run (checks.py)."""

from __future__ import annotations

import os

import pytest

from attune_provider.dag_factory.validation.checks import Report, validate_catalog
from tests.unit.dag_factory.validation.helpers import GOOD_FILES, NO_OUTPUT_MAP, WF

# --- the whole catalog --------------------------------------------------------------


def test_good_pack_has_no_problem(packs):
    packs.pack("p", GOOD_FILES)
    report = packs.validate()
    assert report.problems == []
    assert report.errors() == []
    assert report.invalid_workflows == {}


def test_core_pack_alone_is_clean(packs):
    report = packs.validate()
    assert report.problems == []


def test_report_lists_errors_and_warnings_sorted(packs):
    packs.pack(
        "p",
        {
            "workflows/b.yaml": """\
                ref: p.b
                tasks:
                  - name: a
                    action: core.nope
                  - name: c
                    action: core.noop
                    on_success: [d]
                  - name: d
                    action: core.noop
                    on_success: c
            """,
            "workflows/a.yaml": "ref: p.a\ntasks: []\n",
        },
    )
    report = packs.validate()
    found = [(p.location.file, p.location.line, p.location.col, p.severity.value) for p in report.problems]
    assert found == sorted(found)
    assert [p.location.file for p in report.problems][0] == "packs/p/workflows/a.yaml"
    assert {p.severity.value for p in report.problems} == {"error", "warning"}
    assert report.errors() == [p for p in report.problems if p.is_error]


def test_report_errors_helper():
    from attune_provider.language.catalog import Catalog

    report: Report = validate_catalog(Catalog())
    assert report.problems == [] and report.errors() == [] and report.warnings() == []


def test_a_checker_that_crashes_costs_only_the_file_it_was_reading(packs, monkeypatch):
    """An unforeseen input that makes a check itself fail is that workflow's error, found
    at its file; the other workflows stay valid (their DAGs still load)."""
    from attune_provider.dag_factory.validation import checks as validator

    workflow = "ref: p.{}\ntasks:\n  - name: a\n    action: core.noop\n"
    packs.pack("p", {f"workflows/{name}.yaml": workflow.format(name) for name in ("odd", "fine")})
    real = validator.check_workflow_structure

    def crashes_on_odd(workflow):
        if workflow.ref == "p.odd":
            raise RecursionError("maximum recursion depth exceeded")
        return real(workflow)

    monkeypatch.setattr(validator, "check_workflow_structure", crashes_on_odd)
    report = packs.validate()
    assert set(report.invalid_workflows) == {"p.odd"}
    assert packs.problems("p/workflows/odd.yaml") == [
        "1:1: error: internal error while validating this file (RecursionError: maximum recursion "
        "depth exceeded); please report it"
    ]


# --- problems of the loader ----------------------------------------------------------


def test_parse_problems_are_kept(packs):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    action: [unclosed\n"})
    problems = packs.problems(WF)
    assert len(problems) == 1
    assert problems[0].startswith("5:1: error: invalid YAML:")
    report = packs.validate()
    assert report.invalid_workflows == {}  # it never loaded


def test_model_problems_are_kept(packs):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: a\n    actoin: core.noop\n"})
    assert packs.problems(WF) == ["4:5: error: unknown key 'actoin' (did you mean 'action'?)"]


def test_every_bad_list_item_is_reported_at_the_item(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success:
                      - b
                      - 5
                      - [c]
                    publish:
                      - v1: ok
                      - v2: 1
                        v3: 2
                      - bad
                  - name: b
                    action: core.noop
            """
        },
    )
    targets = "invalid value for 'tasks.0.on_success': expected a task name or a list of task names"
    publish = "invalid value for 'tasks.0.publish': each publish entry is a mapping with exactly one key:"
    assert packs.problems(WF) == [
        f"7:9: error: {targets}",
        f"8:9: error: {targets}",
        f"11:9: error: {publish} '- var: template'",
        f"13:9: error: {publish} '- var: template'",
    ]


def test_numbers_are_not_read_from_strings_or_booleans(packs):
    workflow = """\
        ref: p.w
        tasks:
          - name: a
            action: core.echo
            with_items: "{{ [1] }}"
            input: {message: "{{ item }}"}
            concurrency: "2"
            retry: {count: true, delay: 1}
            timeout: 2.5
        """
    packs.pack("p", {"workflows/w.yaml": workflow})
    assert packs.problems(WF) == [
        "7:18: error: invalid value for 'tasks.0.concurrency': Input should be a valid integer",
        "8:20: error: invalid value for 'tasks.0.retry.count': Input should be a valid integer",
    ]


def test_durations_must_be_finite_and_bounded(packs):
    workflow = (
        "ref: p.w\n"
        "tasks:\n"
        "  - {name: a, action: core.noop, timeout: .inf}\n"
        "  - {name: b, action: core.noop, retry: {count: 2, delay: 1.0e+300}}\n"
    )
    packs.pack("p", {"workflows/w.yaml": workflow})
    found = [(p.location.line, p.message) for p in packs.validate().errors()]
    assert [line for line, _ in found] == [3, 4]
    assert "finite" in found[0][1] and "less than or equal to" in found[1][1]


def test_yaml_limits_name_what_was_exceeded(packs):
    nested = "[" * 250 + "1" + "]" * 250
    deep = f"ref: p.w\ntasks: [{{name: t, action: core.echo, input: {{message: {nested}}}}}]\n"
    bomb, previous = "ref: p.b\na: &a [" + ", ".join(["ha"] * 50) + "]\n", "a"
    for level in "bcdefghij":  # 50 * 10^9 scalars once expanded
        bomb += f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
        previous = level
    packs.pack("p", {"workflows/w.yaml": deep, "workflows/b.yaml": bomb})
    found = {p.location.file: p.message for p in packs.validate().errors()}
    assert found["packs/p/workflows/w.yaml"] == "the document nests collections more than 200 levels deep"
    assert found["packs/p/workflows/b.yaml"].startswith("document expands past the limit of")


def test_clearer_messages_for_common_slips(packs):
    files = {
        "workflows/l.yaml": "- a\n- b\n",
        "workflows/t.yaml": "ref: p.t\ntags: x\ntasks: [{name: a, action: core.echo, input: {on: x}}]\n",
        "actions/d/keep.txt": "",
        "actions/a.yaml": "name: a\nrunner_type: python-script\nentry_point: d\n",
        "actions/b.yaml": "name: b\nrunner_type: python-script\nentry_point: b.py/\n",
        "actions/b.py": "def run():\n    return 1\n",
    }
    packs.pack("p", files)
    found = {(p.location.file.rsplit("/", 1)[-1], p.message) for p in packs.validate().errors()}
    assert found == {
        ("l.yaml", "expected a mapping at the top of the file, found a list"),
        ("t.yaml", "invalid value for 'tags': Input should be a list"),
        (
            "t.yaml",
            "invalid value for 'tasks.0.input.1': Input should be a valid string"
            " (YAML reads this key as true/false, like on/off/yes/no: quote it)",
        ),
        ("a.yaml", "entry_point 'd' is a directory, not a file"),
        ("b.yaml", "entry_point 'b.py/' is not a file name"),
    }


# --- packs --------------------------------------------------------------------------


def test_pack_with_invalid_pack_yaml_loads_nothing(packs):
    packs.pack("q", {"actions/thing.yaml": "name: thing\nrunner_type: noop\n"}, meta="ref: Not-Valid\n")
    packs.pack(
        "p",
        {"workflows/w.yaml": "ref: p.w\ntasks:\n  - name: t\n    action: q.thing\n"},
    )
    assert packs.problems() == [
        "packs/p/workflows/w.yaml:4:13: error: unknown action 'q.thing'",
        "packs/q/pack.yaml:1:6: error: invalid value for 'ref': pack ref 'Not-Valid' must match ^[a-z0-9_]+$",
    ]


def test_pack_dependencies_must_be_loaded(packs):
    packs.pack("p", meta="ref: p\ndependencies: [core, missing_pack]\n")
    assert packs.problems("p/pack.yaml") == [
        "2:22: warning: pack 'p' depends on pack 'missing_pack', which is not loaded"
    ]


# --- action entry points ---------------------------------------------------------------------

PY = "runner_type: python-script\n"
SH = "runner_type: local-shell-script\n"


def test_entry_points(packs, tmp_path):
    (tmp_path / "secret.py").write_text("def run(): pass\n")
    (tmp_path / "packs" / "outside.py").write_text("def run(): pass\n")
    directory = packs.pack(
        "p",
        {
            "actions/no_entry.yaml": "name: no_entry\nrunner_type: python-script\n",
            "actions/escape.yaml": f"name: escape\n{PY}entry_point: ../../outside.py\n",
            "actions/link.yaml": f"name: link\n{PY}entry_point: link.py\n",
            "actions/missing.yaml": f"name: missing\n{SH}entry_point: nope.sh\n",
            "actions/absolute.yaml": f"name: absolute\n{PY}entry_point: {tmp_path}/secret.py\n",
            "actions/good.yaml": f"name: good\n{SH}entry_point: scripts/good.sh\n",
            "actions/inner_link.yaml": f"name: inner_link\n{PY}entry_point: inner.py\n",
            "actions/scripts/good.sh": "echo hi\n",
            "lib/real.py": "def run(): pass\n",
        },
    )
    os.symlink(tmp_path / "secret.py", directory / "actions" / "link.py")
    os.symlink(directory / "lib" / "real.py", directory / "actions" / "inner.py")
    assert packs.problems() == [
        f"packs/p/actions/absolute.yaml:3:14: error: entry_point '{tmp_path}/secret.py'"
        " resolves outside the pack directory",
        "packs/p/actions/escape.yaml:3:14: error: entry_point '../../outside.py'"
        " resolves outside the pack directory",
        "packs/p/actions/link.yaml:3:14: error: entry_point 'link.py' resolves outside the pack directory",
        "packs/p/actions/missing.yaml:3:14: error: entry_point 'nope.sh' does not exist",
        "packs/p/actions/no_entry.yaml:2:14: error: runner_type 'python-script' needs an 'entry_point'",
    ]


def test_action_names_must_be_valid(packs):
    packs.pack("p", {"actions/a.yaml": "name: a.b\nrunner_type: noop\n"})
    assert packs.problems("p/actions/a.yaml") == [
        "1:7: error: action name 'a.b' must match ^[A-Za-z0-9_][A-Za-z0-9_-]*$"
    ]


# --- refs, schemas and tags ----------------------------------------------------------


@pytest.mark.parametrize("ref", ["q.w", "p.", "p.a.b", "pw"])
def test_workflow_ref_must_name_its_pack(packs, ref):
    packs.pack("p", {"workflows/w.yaml": f"ref: '{ref}'\ntasks:\n  - name: a\n    action: core.noop\n"})
    assert packs.problems(WF) == [
        f"1:6: error: workflow ref '{ref}' must be 'p.<name>' (the ref of its pack, a dot,"
        " and a name matching ^[A-Za-z0-9_][A-Za-z0-9_-]*$)"
    ]


def test_invalid_json_schemas_in_workflows(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                parameters:
                  a:
                    type: strin
                    required: true
                  b: {type: string, secret: true, required: true}
                  c:
                    type: object
                    required: [x]
                  d: {type: object, required: x}
                output:
                  type: object
                  properties:
                    r: {type: 5}
                tasks:
                  - name: a
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "4:11: error: invalid JSON Schema for parameter 'a' of workflow 'p.w':"
        " 'strin' is not valid under any of the given schemas",
        "10:31: error: 'required' of parameter 'd' of workflow 'p.w' must be true or false (or, for an"
        " object, JSON Schema's list of its required keys)",
        "11:1: warning: " + NO_OUTPUT_MAP,
        "14:15: error: invalid JSON Schema for output of workflow 'p.w':"
        " 5 is not valid under any of the given schemas",
    ]


def test_invalid_json_schemas_in_actions_and_config(packs):
    packs.pack(
        "p",
        {
            "actions/a.yaml": """\
                name: a
                runner_type: noop
                parameters:
                  x:
                    minimum: many
                output:
                  type: [object, wrong]
            """,
            "config.yaml": """\
                type: array
                properties:
                  region: {type: nope}
            """,
        },
    )
    assert packs.problems() == [
        "packs/p/actions/a.yaml:5:14: error: invalid JSON Schema for parameter 'x' of action 'p.a':"
        " 'many' is not of type 'number'",
        "packs/p/actions/a.yaml:7:9: error: invalid JSON Schema for output of action 'p.a':"
        " ['object', 'wrong'] is not valid under any of the given schemas",
        "packs/p/config.yaml:1:7: error: config.yaml must be a JSON Schema with 'type: object'",
        "packs/p/config.yaml:3:18: error: invalid JSON Schema for the config of pack 'p':"
        " 'nope' is not valid under any of the given schemas",
    ]


def test_config_without_type_is_reported_at_its_start(packs):
    packs.pack("p", {"config.yaml": "properties:\n  region: {type: string}\n"})
    assert packs.problems("p/config.yaml") == [
        "1:1: error: config.yaml must be a JSON Schema with 'type: object'"
    ]


def test_parameter_and_config_defaults_must_match_their_schema(packs):
    workflow = (
        "ref: p.w\n"
        "parameters:\n"
        "  a: {type: string, enum: [x, y], default: z}\n"
        "  b: {type: integer, default: 2}\n"
        "  c: {type: string, default: null}\n"
        "tasks: [{name: t, action: core.noop}]\n"
    )
    config = "type: object\nproperties:\n  size: {type: integer, default: big}\n"
    packs.pack("p", {"workflows/w.yaml": workflow, "config.yaml": config})
    found = [(p.location.file, p.location.line, p.message) for p in packs.validate().errors()]
    assert (
        "packs/p/config.yaml",
        3,
        "the default of 'size' in the config of pack 'p' does not match its schema:"
        " 'big' is not of type 'integer'",
    ) in found
    assert (
        "packs/p/workflows/w.yaml",
        3,
        "the default of parameter 'a' of workflow 'p.w' does not match its schema:"
        " 'z' is not one of ['x', 'y']",
    ) in found
    assert not [m for f, line, m in found if line in (4, 5) and f.endswith("w.yaml")]


def test_tags_within_airflows_limit(packs):
    long_tag = "x" * 101
    workflow = f"ref: p.w\ntags: [ok, {long_tag}]\ntasks: [{{name: a, action: core.noop}}]\n"
    packs.pack("p", {"workflows/w.yaml": workflow})
    assert packs.problems(WF) == ["2:12: error: tag is 101 characters long, more than Airflow's 100"]
