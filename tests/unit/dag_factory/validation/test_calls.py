"""Calls to actions and subworkflows: inputs, recursion, nesting, id lengths, broken callees (calls.py)."""

from __future__ import annotations

from tests.unit.dag_factory.validation.helpers import GOOD_FILES, WF

# --- actions called by tasks ----------------------------------------------------------------


def test_unknown_actions_and_inputs(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.ecko
                  - name: b
                    action: core.echo
                    input:
                      mesage: hi
                  - name: c
                    action: core.local
                    input: {env: {}}
                  - name: d
                    action: core.local
                  - name: e
                    action: core.sleep
                    input:
                      seconds: 1
                  - name: f
                    action: nopack.thing
            """
        },
    )
    assert packs.problems(WF) == [
        "4:13: error: unknown action 'core.ecko' (did you mean 'core.echo'?)",
        "8:7: error: action 'core.echo' has no parameter 'mesage' (did you mean 'message'?)",
        "11:5: error: missing required parameter 'cmd' of action 'core.local'",
        "13:13: error: missing required parameter 'cmd' of action 'core.local'",
        "19:13: error: unknown action 'nopack.thing'",
    ]


def test_a_required_parameter_with_a_default_may_be_left_out(packs):
    packs.pack(
        "p",
        {
            "actions/a.yaml": """\
                name: a
                runner_type: noop
                parameters:
                  x: {type: integer, required: true, default: 1}
                  y: {type: integer, required: true}
            """,
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: t
                    action: p.a
                    input:
                      y: "{{ 2 }}"
            """,
        },
    )
    assert packs.problems() == []


# --- subworkflows ----------------------------------------------------------------------------


def _calls(ref: str, *targets: str) -> str:
    tasks = "".join(f"  - name: t{i}\n    action: {target}\n" for i, target in enumerate(targets))
    return f"ref: {ref}\ntasks:\n{tasks}"


def test_workflow_recursion(packs):
    packs.pack(
        "p",
        {
            "workflows/x.yaml": _calls("p.x", "p.y"),
            "workflows/y.yaml": _calls("p.y", "core.noop", "p.x"),
            "workflows/me.yaml": _calls("p.me", "p.me"),
        },
    )
    assert packs.problems() == [
        "packs/p/workflows/me.yaml:4:13: error: workflow recursion: p.me -> p.me",
        "packs/p/workflows/x.yaml:4:13: error: workflow recursion: p.x -> p.y -> p.x",
        "packs/p/workflows/y.yaml:6:13: error: workflow recursion: p.y -> p.x -> p.y",
    ]
    assert set(packs.validate().invalid_workflows) == {"p.x", "p.y", "p.me"}


def test_subworkflow_nesting_depth(packs):
    packs.pack(
        "p",
        {
            "workflows/d0.yaml": _calls("p.d0", "core.noop", "p.d1"),
            "workflows/d1.yaml": _calls("p.d1", "p.d2"),
            "workflows/d2.yaml": _calls("p.d2", "p.d3"),
            "workflows/d3.yaml": _calls("p.d3", "core.noop"),
        },
    )
    assert packs.problems(max_depth=3) == []
    assert packs.problems(max_depth=2) == [
        "packs/p/workflows/d0.yaml:6:13: error: subworkflows nest 3 levels deep, more than the limit of 2:"
        " p.d0 -> p.d1 -> p.d2 -> p.d3"
    ]
    assert set(packs.validate(max_depth=2).invalid_workflows) == {"p.d0"}


def test_subworkflow_input_is_checked_against_its_parameters(packs):
    packs.pack(
        "p",
        {
            "workflows/sub.yaml": """\
                ref: p.sub
                parameters:
                  name: {type: string, required: true}
                  level: {type: integer, default: 1}
                tasks:
                  - name: a
                    action: core.noop
            """,
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: call
                    action: p.sub
                    input:
                      nmae: x
                      level: 2
            """,
        },
    )
    assert packs.problems(WF) == [
        "5:5: error: missing required parameter 'name' of workflow 'p.sub'",
        "6:7: error: workflow 'p.sub' has no parameter 'nmae' (did you mean 'name'?)",
    ]


def test_task_ids_with_prefixes_within_airflows_limit(packs):
    child, parent, member = "b" * 150, "a" * 150, "m" * 120
    workflow = (
        f"ref: p.w\ntasks:\n  - {{name: {parent}, action: p.child}}\n"
        f"  - name: {parent[:130]}\n    type: parallel\n"
        f"    tasks: [{{name: {member}, action: core.noop}}]\n"
    )
    packs.pack(
        "p",
        {
            "workflows/child.yaml": f"ref: p.child\ntasks: [{{name: {child}, action: core.noop}}]\n",
            "workflows/w.yaml": workflow,
        },
    )
    found = [(p.location.line, p.message) for p in packs.validate().errors()]
    suffix = "(group and subworkflow prefixes included), more than Airflow's 250: shorten the names"
    assert found == [
        (3, f"task '{parent[:40]}' compiles to Airflow task ids of up to 301 characters {suffix}"),
        (6, f"task '{member[:40]}' compiles to Airflow task ids of up to 251 characters {suffix}"),
    ]


# --- what makes a workflow unusable ------------------------------------------------------------


def test_broken_action_makes_its_callers_invalid(packs):
    packs.pack(
        "p",
        {
            "actions/bad.yaml": "name: bad\nrunner_type: [unclosed\n",
            "actions/no_entry.yaml": "name: no_entry\nrunner_type: python-script\n",
            "actions/typo.yaml": "name: typo\nrunner_tpye: noop\n",
            "workflows/w.yaml": _calls("p.w", "p.bad", "p.no_entry", "p.typo", "core.noop"),
            "workflows/fine.yaml": _calls("p.fine", "core.noop"),
        },
    )
    assert packs.problems(WF) == [
        "4:13: error: action 'p.bad' is invalid: see packs/p/actions/bad.yaml",
        "6:13: error: action 'p.no_entry' is invalid: see packs/p/actions/no_entry.yaml",
        "8:13: error: action 'p.typo' is invalid: see packs/p/actions/typo.yaml",
    ]
    report = packs.validate()
    assert set(report.invalid_workflows) == {"p.w"}
    files = {p.location.file for p in report.invalid_workflows["p.w"]}
    assert files == {
        "packs/p/workflows/w.yaml",
        "packs/p/actions/bad.yaml",
        "packs/p/actions/no_entry.yaml",
        "packs/p/actions/typo.yaml",
    }
    assert all(p.is_error for p in report.invalid_workflows["p.w"])


def test_broken_subworkflows_make_their_callers_invalid(packs):
    packs.pack(
        "p",
        {
            "workflows/broken.yaml": "ref: p.broken\ntasks: 5\n",
            "workflows/sub.yaml": _calls("p.sub", "core.nope"),
            "workflows/mid.yaml": _calls("p.mid", "p.sub"),
            "workflows/top.yaml": _calls("p.top", "p.mid", "p.broken"),
        },
    )
    assert packs.problems() == [
        "packs/p/workflows/broken.yaml:2:8: error: invalid value for 'tasks': Input should be a list",
        "packs/p/workflows/mid.yaml:4:13: error: workflow 'p.sub' is invalid: see packs/p/workflows/sub.yaml",
        "packs/p/workflows/sub.yaml:4:13: error: unknown action 'core.nope' (did you mean 'core.noop'?)",
        "packs/p/workflows/top.yaml:4:13: error: workflow 'p.mid' is invalid: see packs/p/workflows/mid.yaml",
        "packs/p/workflows/top.yaml:6:13: error: workflow 'p.broken' is invalid:"
        " see packs/p/workflows/broken.yaml",
    ]
    invalid = packs.validate().invalid_workflows
    assert set(invalid) == {"p.sub", "p.mid", "p.top"}
    assert [p.message for p in invalid["p.sub"]] == ["unknown action 'core.nope' (did you mean 'core.noop'?)"]
    assert len(invalid["p.top"]) == 5  # its own two, mid's, sub's, and broken.yaml's


def test_warnings_do_not_make_a_workflow_invalid(packs):
    packs.pack("p", GOOD_FILES, meta="ref: p\ndependencies: [gone]\n")
    report = packs.validate()
    assert [p.severity.value for p in report.problems] == ["warning"]
    assert report.invalid_workflows == {}


def test_config_errors_make_the_packs_workflows_invalid(packs):
    packs.pack("p", {"config.yaml": "type: string\n", "workflows/w.yaml": _calls("p.w", "core.noop")})
    report = packs.validate()
    assert [p.location.file for p in report.invalid_workflows["p.w"]] == [
        "packs/p/config.yaml",
        "packs/p/workflows/w.yaml",
    ]
    at_workflow = [p.message for p in report.errors() if p.location.file == "packs/p/workflows/w.yaml"]
    assert at_workflow == ["the config of pack 'p' is invalid: see packs/p/config.yaml"]
