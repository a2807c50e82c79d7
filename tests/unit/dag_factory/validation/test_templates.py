"""Checks of a workflow's templates: the names they read, filters, syntax and locations (templates.py)."""

from __future__ import annotations

from attune_provider.dag_factory.validation.templates import template_location
from attune_provider.language.source import Location
from tests.unit.dag_factory.validation.helpers import WF

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


def test_a_macro_may_call_itself(packs):
    """Its own name is bound inside its body (black-box finding); other names still checked."""
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.echo
                    input:
                      message: "{% macro f(n) %}{{ n and n * f(n - 1) }}{% endmacro %}{{ f(5) }}{{ g }}"
                output_map: {}
            """
        },
    )
    assert packs.problems(WF) == ["6:16: error: unknown name 'g' in template"]
