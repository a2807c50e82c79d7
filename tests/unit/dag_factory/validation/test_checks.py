"""Every rule of the validator, each with a small pack written into tmp_path.

Problems are compared as `LINE:COL: severity: message` of one file, so each test states
exactly where the validator points. Line 1 is the first line of the YAML text below.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from attune_provider.dag_factory.validation.checks import Report, validate_catalog
from attune_provider.dag_factory.validation.templates import template_location
from attune_provider.language.source import Location

EXAMPLE = Path(__file__).resolve().parents[5] / "shared" / "spec" / "examples" / "deploy_application.yaml"
WF = "p/workflows/w.yaml"


# --- good files ------------------------------------------------------------------------

GOOD_WORKFLOW = """\
    ref: p.w
    parameters:
      name: {type: string, required: true}
      count: {type: integer, default: 1}
      secret_token: {type: string, secret: true}
    output:
      type: object
      properties: {out: {type: string}}
    vars:
      greeting: "hello {{ parameters.name }}"
    tasks:
      - name: first
        action: core.echo
        input:
          message: "{{ vars.greeting }} in {{ pack.config.region }} ({{ pack.ref }})"
        publish:
          - said: "{{ task.first.result.message }}"
          - again: "{{ vars.said }}"
        on_success: each
        on_failure: fail
      - name: each
        action: p.greet
        with_items: "{{ range(parameters.count) | list }}"
        batch_size: 2
        concurrency: 1
        when: "{{ parameters.count > 0 }}"
        input:
          who: "{{ item }} #{{ index }}"
        decision:
          - when: "{{ task.each.total_count > 1 and task.each.result }}"
            next: group
          - default: succeed
      - name: group
        type: parallel
        tasks:
          - name: m1
            action: core.noop
          - name: m2
            action: core.local
            input:
              cmd: |
                {% for line in [vars.said, vars.again] %}
                echo {{ line | upper }} {{ loop.index }}
                {% endfor %}
            retry: {count: 2, delay: 1, on_error: "{{ task.m2.error.type != 'X' }}"}
        on_complete: [noop]
    output_map:
      out: "{{ task.m1.status }} {{ system.execution_id }} {{ kv.get('x', default=1) }}"
      who: "{{ system.identity.login }} {{ kv.get_secret('k') | length }} {{ task.group.status }}"
"""

GOOD_FILES = {
    "config.yaml": """\
        type: object
        properties:
          region: {type: string, default: eu}
          token: {type: string, secret: true}
    """,
    "actions/greet.yaml": """\
        name: greet
        runner_type: python-script
        entry_point: greet.py
        parameters:
          who: {type: string, required: true}
          greeting: {type: string, required: true, default: hi}
        output: {type: object}
    """,
    "actions/greet.py": "def run(**params):\n    return params\n",
    "workflows/w.yaml": GOOD_WORKFLOW,
}


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


# --- task names --------------------------------------------------------------------------


def test_duplicate_task_names_at_the_second_occurrence(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                  - name: g
                    type: parallel
                    tasks:
                      - name: a
                        action: core.noop
                  - name: g
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "8:15: error: duplicate task name 'a'",
        "10:11: error: duplicate task name 'g'",
    ]


def test_task_names_must_be_valid_and_not_reserved(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: fail
                    action: core.noop
                  - name: attune_outcome
                    action: core.noop
                  - name: "bad name"
                    action: core.noop
                  - name: noop
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "3:11: error: task name 'fail' is reserved",
        "5:11: error: task name 'attune_outcome' is reserved",
        "7:11: error: task name 'bad name' must match ^[A-Za-z0-9_][A-Za-z0-9_-]*$",
        "9:11: error: task name 'noop' is reserved",
    ]


# --- transitions and the graph -----------------------------------------------------------


def test_unknown_transition_targets_with_suggestions(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: build
                    action: core.noop
                    on_success: deploi
                    on_failure: [build2, notify]
                  - name: deploy
                    action: core.noop
                    decision:
                      - when: "{{ true }}"
                        next: deploy2
                      - default: fial
                  - name: notify
                    action: core.noop
                    on_timeout: zzz
            """
        },
    )
    assert packs.problems(WF) == [
        "5:17: error: task 'build' transitions to unknown task 'deploi' (did you mean 'deploy'?)",
        "6:18: error: task 'build' transitions to unknown task 'build2' (did you mean 'build'?)",
        "11:15: error: task 'deploy' transitions to unknown task 'deploy2' (did you mean 'deploy'?)",
        "12:18: error: task 'deploy' transitions to unknown task 'fial' (did you mean 'fail'?)",
        "15:17: error: task 'notify' transitions to unknown task 'zzz'",
    ]


def test_cycle_is_reported_at_the_closing_transition(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: start
                    action: core.noop
                    on_success: a
                  - name: a
                    action: core.noop
                    on_success: b
                  - name: b
                    action: core.noop
                    on_success: [c]
                  - name: c
                    action: core.noop
                    on_complete: a
            """
        },
    )
    assert packs.problems(WF) == ["14:18: error: cycle: a -> b -> c -> a"]


def test_self_loop_is_a_cycle(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: start
                    action: core.noop
                    on_success: again
                  - name: again
                    action: core.noop
                    on_failure: again
            """
        },
    )
    assert packs.problems(WF) == ["8:17: error: cycle: again -> again"]


def test_no_entry_task(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: b
                  - name: b
                    action: core.noop
                    on_failure: a
            """
        },
    )
    assert packs.problems(WF) == [
        "3:3: error: workflow has no entry task: every task is the target of a transition",
        "8:17: error: cycle: a -> b -> a",
    ]


def test_every_cycle_is_reported(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - {name: e, action: core.noop, on_success: [a, c]}
                  - {name: a, action: core.noop, on_success: b, on_failure: a}
                  - {name: b, action: core.noop, on_success: a}
                  - {name: c, action: core.noop, on_success: d}
                  - {name: d, action: core.noop, on_success: c}
            """
        },
    )
    assert packs.problems(WF) == [
        "4:61: error: cycle: a -> a",
        "5:46: error: cycle: a -> b -> a",
        "7:46: error: cycle: c -> d -> c",
    ]


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


def test_unreachable_tasks_are_warnings(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                  - name: b
                    action: core.noop
                    on_success: c
                  - name: c
                    action: core.noop
                    on_success: b
            """
        },
    )
    assert packs.problems(WF) == [
        "5:11: warning: task 'b' is unreachable from the entry tasks",
        "8:11: warning: task 'c' is unreachable from the entry tasks",
        "10:17: error: cycle: b -> c -> b",
    ]


def test_join_all_that_can_never_run_is_a_warning(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: j
                    on_failure: j
                  - name: b
                    action: core.noop
                    on_success: j
                    on_complete: j
                  - name: j
                    action: core.noop
                    join: all
            """
        },
    )
    assert packs.problems(WF) == [
        "13:11: warning: task 'j' joins all its inbound transitions but can never run:"
        " no outcome of 'a' fires its on_success and on_failure together"
    ]


def test_decision_and_on_success_is_a_warning(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: b
                    decision:
                      - default: b
                  - name: b
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "5:5: warning: task 'a' has both 'decision' and 'on_success': 'decision' governs success"
    ]
    assert packs.validate().invalid_workflows == {}


# --- task shapes ---------------------------------------------------------------------------


def test_task_shapes(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: no_action
                    input: {}
                    on_success: g
                  - name: g
                    type: parallel
                    action: core.noop
                    with_items: "{{ [1] }}"
                    tasks:
                      - name: m
                        action: core.noop
                        on_failure: fail
                        decision:
                          - default: noop
                  - name: empty
                    type: parallel
                  - name: plain
                    action: core.noop
                    batch_size: 2
                    concurrency: 1
                    tasks:
                      - name: inner
                        action: core.noop
            """
        },
    )
    member = "(the group's transitions handle its members)"
    assert packs.problems(WF) == [
        "3:5: error: task 'no_action' needs an 'action'",
        "8:5: error: parallel task 'g' takes no 'action'",
        "9:5: error: parallel task 'g' takes no 'with_items'",
        f"13:9: error: task 'm' is a member of parallel group 'g' and takes no 'on_failure' {member}",
        f"14:9: error: task 'm' is a member of parallel group 'g' and takes no 'decision' {member}",
        "17:11: error: parallel task 'empty' needs 'tasks'",
        "20:5: error: 'batch_size' needs 'with_items' (task 'plain')",
        "21:5: error: 'concurrency' needs 'with_items' (task 'plain')",
        "22:5: error: 'tasks' is only for 'type: parallel' (task 'plain')",
    ]


def test_parallel_groups_do_not_nest_and_members_are_not_targets(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: outer
                    type: parallel
                    tasks:
                      - name: inner
                        type: parallel
                        tasks:
                          - name: leaf
                            action: core.noop
                    on_success: leaf
            """
        },
    )
    assert packs.problems(WF) == [
        "7:15: error: parallel group 'inner' cannot be a member of group 'outer'",
        "11:17: error: task 'outer' transitions to 'leaf', a member of a parallel group",
    ]


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


# --- refs and schemas ------------------------------------------------------------------------


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


# --- templates -------------------------------------------------------------------------------

TEMPLATES = """\
    ref: p.w
    parameters:
      name: {type: string}
    vars:
      greeting: "{{ parameters.nmae }}"
    tasks:
      - name: a
        action: core.echo
        input:
          message: "{{ vars.greting }} {{ task.b.result }} {{ task.a.reslt }}"
        publish:
          - out: "{{ item }}"
        when: "{{ foo }}"
        on_success: b
      - name: b
        action: core.echo
        with_items: "{{ index }}"
        input:
          message: "{{ item }} {{ pack.config.x }} {{ pack.other }} {{ system.executionid }} {{ kv.put(1) }}"
        retry:
          count: 1
          on_error: "{{ x | nofilter }}"
        decision:
          - when: "{{ task.b._secret }}"
            next: c
          - default: noop
      - name: c
        action: core.echo
        input:
          message: "{{ unclosed"
    output_map:
      value: "{{ task.nope.result }}"
      items: ["{{ parameters.name }}", {deep: "{{ task.c.status }}{{ vars.out.x }}{{ tasks }}"}]
"""


def test_template_problems(packs):
    packs.pack(
        "p", {"workflows/w.yaml": TEMPLATES, "config.yaml": "type: object\nproperties: {region: {}}\n"}
    )
    assert packs.problems(WF) == [
        "5:13: error: unknown parameter 'nmae' in template (did you mean 'name'?)",
        "10:16: error: unknown attribute 'reslt' of task 'a' in template (did you mean 'result'?):"
        " use result, status, error, total_count",
        "10:16: error: unknown variable 'greting' in template: not in 'vars' nor published by a task"
        " (did you mean 'greeting'?)",
        "12:14: error: 'item' is only available in the 'input' of a task with 'with_items'",
        "13:11: error: unknown name 'foo' in template",
        "17:17: error: 'index' cannot be used in the 'with_items' that defines it",
        "19:16: error: unknown attribute 'executionid' of 'system' in template"
        " (did you mean 'execution_id'?): use execution_id, timestamp, workflow, identity",
        "19:16: error: unknown attribute 'other' of 'pack' in template: use pack.config or pack.ref",
        "19:16: error: unknown attribute 'put' of 'kv' in template: use get, get_secret",
        "19:16: error: unknown config key 'x' in template: not a property of config.yaml of pack 'p'",
        "22:17: error: unknown filter 'nofilter'",
        "22:17: error: unknown name 'x' in template",
        "24:15: error: attribute '_secret' is unsafe in templates",
        "30:16: error: Jinja syntax error: unexpected end of template, expected 'end of print statement'.",
        "32:10: error: unknown task 'nope' in template",
        "33:43: error: unknown name 'tasks' in template (did you mean 'task'?)",
    ]


def test_pack_config_keys_are_not_checked_without_a_config_schema(packs):
    text = (
        'ref: p.w\ntasks:\n  - name: a\n    action: core.echo\n    input: {message: "{{ pack.config.x }}"}\n'
    )
    packs.pack("p", {"workflows/w.yaml": text})
    assert packs.problems() == []


def test_templates_in_block_scalars_point_at_their_line(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                parameters:
                  a: {}
                tasks:
                  - name: a
                    action: core.local
                    input:
                      cmd: |
                        echo one
                        echo {{ parameters.missing }}
                      env:
                        X: >-
                          {{ parameters.b }}
                        Y: "{{ parameters.a }} {% if parameters.c %}
                          {{ parameters.d }}{% endif %}"
                    when: |-
                      {% if true %}
                        {{ parameters.a | nope }}
                      {% endif %}
            """
        },
    )
    assert packs.problems(WF) == [
        "10:9: error: unknown parameter 'missing' in template",
        "13:11: error: unknown parameter 'b' in template",
        "14:12: error: unknown parameter 'c' in template",
        "14:12: error: unknown parameter 'd' in template",
        "18:9: error: unknown filter 'nope'",
    ]


def test_template_location_arithmetic(tmp_path):
    lines = ["key: |", "  first", "    second", "other: 'x'"]
    start = Location("f.yaml", 1, 6)
    assert template_location(start, 1, lines) == Location("f.yaml", 2, 3)
    assert template_location(start, 2, lines) == Location("f.yaml", 3, 5)
    assert template_location(start, 4, lines) == Location("f.yaml", 5, 6)  # past the end
    plain = Location("f.yaml", 4, 8)
    assert template_location(plain, 1, lines) == plain
    assert template_location(plain, 3, lines) == plain  # a string's lines are not the file's
    folded = ["key: >", "  first", "  second"]
    assert template_location(Location("f.yaml", 1, 6), 1, folded) == Location("f.yaml", 2, 3)


def test_vars_may_be_published_by_any_task(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.echo
                    input: {message: "{{ vars.later }}"}
                  - name: g
                    type: parallel
                    tasks:
                      - name: m
                        action: core.noop
                        publish:
                          - later: "{{ task.m.result }}"
                output_map: "{{ vars.later }} {{ task.m.result }} {{ task.g.total_count }}"
            """
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


def test_a_chain_of_thousands_of_tasks_is_valid(packs):
    tasks = "".join(f"  - {{name: t{i}, action: core.noop, on_success: t{i + 1}}}\n" for i in range(2999))
    packs.pack(
        "p", {"workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}  - {{name: t2999, action: core.noop}}\n"}
    )
    assert packs.validate().errors() == []


def test_a_cycle_at_the_end_of_a_long_chain_is_found(packs):
    tasks = "".join(f"  - {{name: t{i}, action: core.noop, on_success: t{i + 1}}}\n" for i in range(2999))
    packs.pack(
        "p",
        {
            "workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}"
            "  - {name: t2999, action: core.noop, on_failure: t2990}\n"
        },
    )
    assert [p.message for p in packs.validate().errors()] == [
        "cycle: " + " -> ".join(f"t{i}" for i in [*range(2990, 3000), 2990])
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


def test_subworkflow_with_a_task_named_like_a_step_is_refused(packs):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - {name: attune_input, action: core.noop}\n"})
    assert [p.message for p in packs.validate().errors()] == ["task name 'attune_input' is reserved"]


# --- the design's example ----------------------------------------------------------------------

STAND_INS = {
    "my_pack": {
        "create_deployment_record": ["app_name", "version", "environment"],
        "update_deployment_status": ["deployment_id", "status"],
        "cleanup_resources": ["deployment_id", "rollback"],
    },
    "docker": {"build_and_push": ["app_name", "version", "registry"]},
    "kubernetes": {
        "apply_deployment": ["app_name", "image", "replicas"],
        "wait_for_ready": ["deployment", "timeout"],
        "rollback_deployment": ["app_name"],
    },
    "http": {"get": ["url", "expected_status"]},
    "slack": {"post_message": ["channel", "message"]},
}


def _example_packs(packs, config: str, http_parameters: list[str]) -> None:
    for pack, actions in STAND_INS.items():
        files = {}
        for name, parameters in actions.items():
            if pack == "http":
                parameters = http_parameters
            props = "".join(f"  {p}: {{required: true}}\n" for p in parameters)
            files[f"actions/{name}.yaml"] = f"name: {name}\nrunner_type: echo\nparameters:\n{props}"
        packs.pack(pack, files)
    (packs.root / "my_pack" / "workflows").mkdir()
    shutil.copy(EXAMPLE, packs.root / "my_pack" / "workflows" / "deploy_application.yaml")
    (packs.root / "my_pack" / "config.yaml").write_text(config)


def test_the_design_example_validates_clean(packs):
    config = "type: object\nproperties:\n  docker_registry: {type: string, default: registry.local}\n"
    _example_packs(packs, config, ["url", "expected_status"])
    report = packs.validate()
    assert report.problems == []


def test_the_design_example_flags_what_its_stand_ins_do_not_provide(packs):
    _example_packs(packs, "type: object\nproperties:\n  registry: {type: string}\n", ["url"])
    assert packs.problems("my_pack/workflows/deploy_application.yaml") == [
        "54:17: error: unknown config key 'docker_registry' in template: not a property of config.yaml"
        " of pack 'my_pack' (did you mean 'registry'?)",
        "82:7: error: action 'http.get' has no parameter 'expected_status'",
    ]
    assert set(packs.validate().invalid_workflows) == {"my_pack.deploy_application"}


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


def test_item_and_index_only_in_the_input_of_a_with_items_task(packs):
    workflow = """\
        ref: p.w
        tasks:
          - name: a
            action: core.echo
            with_items: "{{ [1, 2] }}"
            when: "{{ item }}"
            input: {message: "{{ item }} {{ index }}"}
            publish: [{x: "{{ item }}"}]
            decision: [{when: "{{ index == 0 }}", next: b}, {default: b}]
          - name: b
            action: core.noop
        """
    packs.pack("p", {"workflows/w.yaml": workflow})
    assert packs.problems(WF) == [
        "6:11: error: 'item' is only available in the 'input' of a task with 'with_items'",
        "8:19: error: 'item' is only available in the 'input' of a task with 'with_items'",
        "9:23: error: 'index' is only available in the 'input' of a task with 'with_items'",
    ]


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


NO_OUTPUT_MAP = "'output' without 'output_map': the output is null, which fails unless the schema allows it"


def test_options_that_would_be_ignored_are_warnings(packs):
    child = "ref: p.c\ntasks: [{name: x, action: core.noop}]\n"
    workflow = """\
        ref: p.w
        output: {type: object}
        tasks:
          - {name: s, action: p.c, retry: {count: 2}, timeout: 5, on_success: g}
          - name: g
            type: parallel
            input: {a: 1}
            tasks:
              - {name: m, action: core.noop}
        """
    packs.pack("p", {"workflows/c.yaml": child, "workflows/w.yaml": workflow})
    assert packs.problems(WF) == [
        "2:1: warning: " + NO_OUTPUT_MAP,
        "4:28: warning: 'retry' of task 's' has no effect on a subworkflow (not supported)",
        "7:5: warning: 'input' of parallel task 'g' has no effect (set it on its members)",
    ]


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


def test_tags_within_airflows_limit(packs):
    long_tag = "x" * 101
    workflow = f"ref: p.w\ntags: [ok, {long_tag}]\ntasks: [{{name: a, action: core.noop}}]\n"
    packs.pack("p", {"workflows/w.yaml": workflow})
    assert packs.problems(WF) == ["2:12: error: tag is 101 characters long, more than Airflow's 100"]


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
