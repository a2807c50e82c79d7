"""The Airflow-free plan of a workflow (plan.py): how each task compiles, which Airflow id
holds its outcome, which tasks Airflow's trigger rule gates, which with_items tasks are
mapped directly, and the actions and subworkflows every task resolves to.

Each plan is built as Airflow's DAG file builds it: a pack written into tmp_path, loaded,
validated (the workflow must be valid), then planned.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.language.catalog import Catalog
from attune_provider.language.plan import WorkflowPlan, batches, build_plan
from attune_provider.language.statuses import OUTCOME_TASK_ID

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

SHOUT = {
    "actions/shout.yaml": """
        name: shout
        runner_type: python-script
        entry_point: shout.py
        parameters:
          text: {type: string, required: true}
          token: {type: string, secret: true}
          times: {type: integer, default: 1}
        output: {type: string}
    """,
    "actions/shout.py": "def run(text, token=None, times=1):\n    return text.upper() * times\n",
}
CHILD = """
    ref: p.child
    parameters:
      n: {type: integer, required: true}
      password: {type: string, secret: true}
    output: {type: object}
    tasks:
      - name: only
        action: core.noop
"""


def load(packs: PackWriter, workflow: str, files: dict[str, str] | None = None) -> Catalog:
    """Pack `p` with workflow `p.wf` (workflows/wf.yaml) and `files`, loaded; `p.wf` must be valid."""
    packs.pack("p", {"workflows/wf.yaml": workflow, **(files or {})})
    catalog = packs.catalog()
    report = validate_catalog(catalog)
    assert "p.wf" not in report.invalid_workflows, [p.format() for p in report.invalid_workflows["p.wf"]]
    return catalog


def plan_of(packs: PackWriter, workflow: str, files: dict[str, str] | None = None) -> WorkflowPlan:
    catalog = load(packs, workflow, files)
    return build_plan(catalog.workflows["p.wf"], catalog)


EVERY_SHAPE = """
    ref: p.wf
    parameters:
      names: {type: array, default: [x]}
    tasks:
      - name: plain
        action: core.echo
        on_success: [ask, grp, rendered, written, call]
      - name: ask
        action: core.inquiry
        input: {auto_answer: {approved: true}}
      - name: grp
        type: parallel
        tasks:
          - {name: m1, action: core.noop}
          - name: m2
            action: core.echo
            with_items: "{{ parameters.names }}"
            input: {message: "{{ item }}"}
      - name: rendered
        action: core.echo
        with_items: "{{ parameters.names }}"
        input: {message: "{{ item }}"}
      - name: written
        action: core.echo
        with_items: [a, b]
        input: {message: "{{ item }}"}
      - name: call
        action: p.child
        input: {n: 1}
"""


def test_each_shape_compiles_to_its_kind_and_reports_where_users_look(packs: PackWriter) -> None:
    plan = plan_of(packs, EVERY_SHAPE, {"workflows/child.yaml": CHILD})
    kinds = {name: plan.kind(name) for name in plan.tasks}
    assert kinds == {
        "plain": "action",
        "ask": "action",  # an inquiry is a task of its own, like any action
        "grp": "parallel",
        "m1": "action",
        "m2": "with_items",
        "rendered": "with_items",
        "written": "with_items",
        "call": "workflow",
    }
    assert plan.group_of == {"m1": "grp", "m2": "grp"}
    assert plan.task_ids["m1"] == "grp.m1" and plan.airflow_id("m2") == "grp.m2"
    # a task that is one Airflow task reports there; a TaskGroup reports from its last step
    assert plan.outcome_ids == {
        "plain": "plain",
        "ask": "ask",
        "grp": f"grp.{OUTCOME_TASK_ID}",
        "m1": "grp.m1",
        "m2": f"grp.m2.{OUTCOME_TASK_ID}",
        "rendered": f"rendered.{OUTCOME_TASK_ID}",
        "written": "written",  # mapped directly: its instances report
        "call": f"call.{OUTCOME_TASK_ID}",
    }


def test_a_subworkflow_is_planned_again_inside_its_callers_group(packs: PackWriter) -> None:
    caller = """
        ref: p.wf
        tasks:
          - name: outer
            action: p.middle
    """
    middle = """
        ref: p.middle
        tasks:
          - name: first
            action: core.noop
            on_success: inner
          - name: inner
            action: p.child
            input: {n: 2}
    """
    plan = plan_of(packs, caller, {"workflows/middle.yaml": middle, "workflows/child.yaml": CHILD})
    middle_plan = plan.children["outer"]
    assert middle_plan.ref == "p.middle" and middle_plan.prefix == "outer."
    assert middle_plan.parent == (plan, "outer")
    assert middle_plan.airflow_id("first") == "outer.first"
    assert middle_plan.outcome_ids["inner"] == f"outer.inner.{OUTCOME_TASK_ID}"
    child = middle_plan.children["inner"]
    assert child.prefix == "outer.inner." and child.parent == (middle_plan, "inner")
    assert child.outcome_ids == {"only": "outer.inner.only"}
    assert plan.actions["outer"].runner_type == "workflow"
    assert plan.actions["outer"].entry_point is None


def test_text_of_a_plan_is_stable_across_parses_and_changes_with_the_workflow(packs: PackWriter) -> None:
    """Airflow stores `str(plan)` with a mapped task's arguments: the same files must give
    the same text at every parse (else the DAG looks changed each time), an edit another."""
    workflow = "ref: p.wf\ntasks:\n  - name: a\n    action: p.child\n    input: {n: 1}\n"
    catalog = load(packs, workflow, {"workflows/child.yaml": CHILD})
    first = build_plan(catalog.workflows["p.wf"], catalog)
    reparsed = packs.catalog()
    again = build_plan(reparsed.workflows["p.wf"], reparsed)
    assert str(first) == str(again) and str(first).startswith("WorkflowPlan(p.wf@")
    child_alone = build_plan(catalog.workflows["p.child"], catalog)
    assert str(first.children["a"]) == str(child_alone).replace("(p.child@", "(a.p.child@")
    packs.pack("p", {"workflows/wf.yaml": workflow.replace("{n: 1}", "{n: 2}")})
    reparsed = packs.catalog()
    edited = build_plan(reparsed.workflows["p.wf"], reparsed)
    assert str(edited) != str(first)


def test_actions_resolve_to_how_they_run_and_what_they_accept(packs: PackWriter, tmp_path: Path) -> None:
    workflow = """
        ref: p.wf
        tasks:
          - name: loud
            action: p.shout
            input: {text: hi}
            on_success: sub
          - name: sub
            action: p.child
            input: {n: 1}
    """
    impl = tmp_path / "packs" / "p" / "lib" / "impl.py"
    packs.write(impl, SHOUT["actions/shout.py"])
    (tmp_path / "packs" / "p" / "actions").mkdir()
    (tmp_path / "packs" / "p" / "actions" / "shout.py").symlink_to(impl)  # the entry point is a link
    plan = plan_of(
        packs, workflow, {"actions/shout.yaml": SHOUT["actions/shout.yaml"], "workflows/child.yaml": CHILD}
    )
    shout = plan.actions["loud"]
    assert (shout.ref, shout.runner_type, shout.pack) == ("p.shout", "python-script", "p")
    assert shout.entry_point == impl.resolve()  # what the link names: the file that runs
    assert shout.input_schema == {
        "type": "object",
        "properties": {
            "text": {"type": "string"},
            "token": {"type": ["string", "null"]},  # optional without default: null accepted
            "times": {"type": "integer", "default": 1},
        },
        "required": ["text"],
        "additionalProperties": False,
    }
    assert shout.output_schema == {"type": "string"}
    assert shout.secret_inputs == frozenset({"token"})
    sub = plan.actions["sub"]
    assert (sub.runner_type, sub.entry_point, sub.output_schema) == ("workflow", None, {"type": "object"})
    assert sub.input_schema["required"] == ["n"] and sub.secret_inputs == frozenset({"password"})


def test_secret_parameters_and_config_keys(packs: PackWriter) -> None:
    workflow = """
        ref: p.wf
        parameters:
          user: {type: string}
          password: {type: string, secret: true}
          shown: {type: string, secret: false}
        tasks:
          - name: a
            action: core.noop
    """
    config = "type: object\nproperties:\n  token: {type: string, secret: true}\n  region: {type: string}\n"
    plan = plan_of(packs, workflow, {"config.yaml": config})
    assert plan.secret_parameters == frozenset({"password"})
    assert plan.secret_config_keys == frozenset({"token"})
    assert plan.params_schema["properties"]["password"] == {"type": ["string", "null"]}  # `secret` dropped


def test_quiet_successes_are_the_plain_actions_without_publish_or_decision(packs: PackWriter) -> None:
    """Their success says everything (result = return value, fired = on_success): readers
    take it from Airflow's state, so only these may skip pushing an outcome."""
    workflow = """
        ref: p.wf
        tasks:
          - name: plain
            action: core.echo
            on_success: [publishes, decides, ask, each, grp]
          - name: publishes
            action: core.echo
            publish: [{x: 1}]
          - name: decides
            action: core.echo
            decision: [{default: plain_after}]
          - name: plain_after
            action: core.noop
          - name: ask
            action: core.inquiry
            input: {auto_answer: {approved: true}}
          - name: each
            action: core.echo
            with_items: [1, 2]
          - name: grp
            type: parallel
            tasks:
              - {name: member, action: core.noop}
    """
    plan = plan_of(packs, workflow)
    assert plan.quiet_successes == frozenset({"plain", "plain_after", "ask", "member"})


TRIGGER_GATED = """
    ref: p.wf
    parameters:
      names: {type: array, default: [x]}
    tasks:
      - name: a
        action: core.noop
        on_success: [gated, mapped, group, twice, two_sources]
        on_complete: [completes, twice]
      - name: gated
        action: core.noop
        on_success: two_sources
      - name: mapped
        action: core.echo
        with_items: [1, 2]
        on_success: after_items
      - name: group
        action: core.echo
        with_items: "{{ parameters.names }}"
      - name: twice
        action: core.noop
      - name: completes
        action: core.noop
      - name: two_sources
        action: core.noop
      - name: after_items
        action: core.noop
      - name: ask
        action: core.inquiry
        input: {auto_answer: {approved: true}}
        on_success: after_inquiry
      - name: after_inquiry
        action: core.noop
      - name: par
        type: parallel
        tasks:
          - {name: m, action: core.noop}
        on_success: after_parallel
      - name: after_parallel
        action: core.noop
"""


def test_trigger_gated_is_exactly_one_on_success_of_one_plain_action(packs: PackWriter) -> None:
    plan = plan_of(packs, TRIGGER_GATED)
    # not gated by Airflow: a group target, a second transition from the same task, an
    # on_complete, two sources, a with_items / inquiry / parallel source, and entry tasks
    assert plan.trigger_gated == frozenset({"gated", "mapped"})
    assert plan.graph.inbound["twice"] and len(plan.graph.inbound["twice"]) == 2


def test_which_with_items_tasks_are_mapped_directly(packs: PackWriter) -> None:
    """A list written in the workflow (no template reading anything), not empty, of JSON-like
    data, without publish or decision, whose `<task>_<n>` names no other task."""
    workflow = """
        ref: p.wf
        parameters:
          names: {type: array, default: [x]}
        tasks:
          - {name: yaml_list, action: core.echo, with_items: [a, {b: [1, null]}], batch_size: 1}
          - {name: constant, action: core.echo, with_items: "{{ range(5) | list }}", batch_size: 2}
          - {name: from_params, action: core.echo, with_items: "{{ parameters.names }}"}
          - {name: random, action: core.echo, with_items: "{{ [[1, 2], [3]] | random }}"}
          - {name: empty, action: core.echo, with_items: []}
          - {name: int_keys, action: core.echo, with_items: "{{ [{1: 'a'}] }}"}
          - {name: publishes, action: core.echo, with_items: [1], publish: [{n: 1}]}
          - {name: decides, action: core.echo, with_items: [1], decision: [{default: yaml_list}]}
          - {name: each, action: core.echo, with_items: [1, 2]}
          - {name: each_1, action: core.noop}
          - {name: other, action: core.echo, with_items: [1, 2]}
          - {name: other_x, action: core.noop}
    """
    plan = plan_of(packs, workflow)
    assert plan.mapped_items == {
        "yaml_list": [["a"], [{"b": [1, None]}]],
        "constant": [[0, 1], [2, 3], [4]],
        "other": [1, 2],
    }
    assert plan.outcome_ids["each"] == f"each.{OUTCOME_TASK_ID}"  # `each_1` would read as its instance


@pytest.mark.parametrize("size", [None, 1, 2, 3, 7])
def test_batches_keep_every_item_in_order(size: int | None) -> None:
    items = list(range(7))
    executions = batches(items, size)
    if size is None:
        assert executions == items
    else:
        assert [item for batch in executions for item in batch] == items
        assert all(len(batch) == size for batch in executions[:-1])
        assert 0 < len(executions[-1]) <= size
