"""Plans -> Airflow DAGs (compiler.py), checked on the real DAG objects: ids, params,
trigger rules, mapped tasks, task groups and edges as design.md's table says, and a DAG
Airflow can serialize (what its DAG processor stores) the same way at every parse.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk import DAG, TriggerRule
from airflow.sdk.definitions.mappedoperator import MappedOperator
from airflow.sdk.definitions.param import ParamValidationError
from airflow.serialization.serialized_objects import DagSerialization

from attune_provider.dag_factory.compiler import build_dag
from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.language.plan import WorkflowPlan, build_plan
from attune_provider.operators.action import AttuneTaskOperator
from attune_provider.operators.group_outcome import GroupOutcomeOperator
from attune_provider.operators.inquiry import InquiryTaskOperator
from attune_provider.operators.items import ItemOperator, ItemsOperator, MappedItemOperator
from attune_provider.operators.retry import AttuneRetryPolicy
from attune_provider.operators.subworkflow import SubworkflowInputOperator
from attune_provider.operators.workflow_outcome import WorkflowOutcomeOperator

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

CHILD = """
    ref: p.child
    parameters:
      n: {type: integer}
    tasks:
      - name: one
        action: core.noop
        on_success: two
      - name: two
        action: core.noop
"""

EVERY_SHAPE = """
    ref: p.wf
    label: Every shape
    description: One task of each kind
    version: 1.2
    tags: [demo, ops]
    parameters:
      times: {type: integer, default: 2}
    tasks:
      - name: a
        action: core.echo
        retry: {count: 2, delay: 3, backoff: exponential, max_delay: 10}
        timeout: 30
        on_success: [b, grp, each, items, call]
        on_complete: b
      - name: b
        action: core.noop
        decision: [{when: "{{ true }}", next: after}, {default: ask}]
      - name: grp
        type: parallel
        retry: {count: 5}
        tasks:
          - {name: m1, action: core.noop, retry: {count: 1}}
          - {name: m2, action: core.noop}
        on_success: after
      - name: each
        action: core.echo
        with_items: [1, 2, 3]
        batch_size: 2
        concurrency: 2
        timeout: 5
      - name: items
        action: core.echo
        with_items: "{{ [parameters.times] }}"
        concurrency: 3
        retry: {count: 1}
      - name: call
        action: p.child
        input: {n: 1}
      - name: after
        action: core.noop
      - name: ask
        action: core.inquiry
        input: {auto_answer: {approved: true}}
        timeout: 60
"""


def plan_of(packs: PackWriter, workflow: str, files: dict[str, str] | None = None) -> WorkflowPlan:
    """The plan of workflow `p.wf` (workflows/wf.yaml of pack `p`), which must be valid."""
    packs.pack("p", {"workflows/wf.yaml": workflow, **(files or {})})
    catalog = packs.catalog()
    report = validate_catalog(catalog)
    assert "p.wf" not in report.invalid_workflows, [p.format() for p in report.invalid_workflows["p.wf"]]
    return build_plan(catalog.workflows["p.wf"], catalog)


@pytest.fixture
def every_shape(packs: PackWriter) -> tuple[WorkflowPlan, DAG]:
    plan = plan_of(packs, EVERY_SHAPE, {"workflows/child.yaml": CHILD})
    return plan, build_dag(plan)


def test_the_dag_carries_the_workflows_identity(every_shape: tuple[WorkflowPlan, DAG]) -> None:
    _, dag = every_shape
    assert dag.dag_id == "p.wf" and dag.dag_display_name == "Every shape"
    assert dag.description == "One task of each kind"
    assert dag.doc_md.splitlines() == [
        "# Every shape",
        "",
        "One task of each kind",
        "",
        "Attune workflow `p.wf` v1.2 from `packs/p/workflows/wf.yaml`.",
    ]
    assert set(dag.tags) == {"demo", "ops", "pack:p", "source:local", "attune"}
    assert dag.schedule is None and dag.catchup is False
    dag.validate()


def test_a_workflow_without_label_is_shown_by_its_ref(packs: PackWriter) -> None:
    dag = build_dag(plan_of(packs, "ref: p.wf\ntasks:\n  - {name: a, action: core.noop}\n"))
    assert dag.dag_display_name == "p.wf" and dag.description is None
    assert dag.doc_md.splitlines() == [
        "# p.wf",
        "",
        "Attune workflow `p.wf` from `packs/p/workflows/wf.yaml`.",
    ]
    assert set(dag.tags) == {"pack:p", "source:local", "attune"}


PARAMETERS = """
    ref: p.wf
    parameters:
      who: {type: string, required: true, description: Who to greet}
      mood: {type: string, enum: [happy, sad]}
      times: {type: integer, default: 2, minimum: 1}
      token: {type: string, secret: true}
      api_key: {type: string, secret: true, default: sk-default-7f3e2a}
      day: {type: string, format: date, default: "2026-01-31"}
      settings: {type: object, default: {retries: [1, 2]}}
    tasks:
      - {name: a, action: core.noop}
"""


def test_parameters_become_typed_params_of_the_trigger_form(packs: PackWriter) -> None:
    params = build_dag(plan_of(packs, PARAMETERS)).params
    who = params.get_param("who")
    assert not who.has_value and who.description == "Who to greet"  # required: no default
    with pytest.raises(ParamValidationError):
        who.resolve()
    assert who.resolve(value="Ada") == "Ada"
    mood = params.get_param("mood")  # optional without default: null accepted, also in its enum
    assert mood.resolve() is None and mood.resolve(value="sad") == "sad"
    with pytest.raises(ParamValidationError):
        mood.resolve(value="angry")
    times = params.get_param("times")
    assert times.resolve() == 2
    with pytest.raises(ParamValidationError):
        times.resolve(value=0)  # the rest of the schema is kept
    token = params.get_param("token")
    assert token.resolve() is None and "secret" not in token.schema and "required" not in who.schema
    assert token.schema["format"] == "password"  # a password field in the form
    api_key = params.get_param("api_key")  # its default stays out of the (serialized) DAG
    assert api_key.resolve() is None and api_key.schema["format"] == "password"
    from airflow.serialization.serialized_objects import DagSerialization

    serialized = json.dumps(DagSerialization.to_dict(build_dag(plan_of(packs, PARAMETERS))))
    assert "sk-default-7f3e2a" not in serialized
    day = params.get_param("day")  # `format` is checked as everywhere else
    with pytest.raises(ParamValidationError):
        day.resolve(value="2026-02-30")
    assert {name: params.get_param(name).schema["title"] for name in params} == {
        name: name for name in ("who", "mood", "times", "token", "api_key", "day", "settings")
    }
    settings = params.get_param("settings").value  # plain data: no YAML positions to deep-copy
    assert type(settings) is dict and type(settings["retries"]) is list and settings == {"retries": [1, 2]}


def test_a_null_default_leaves_an_optional_parameter_empty(packs: PackWriter) -> None:
    workflow = """
        ref: p.wf
        parameters:
          who: {type: string, default: null}
        tasks:
          - {name: a, action: core.noop}
    """
    assert build_dag(plan_of(packs, workflow)).params.get_param("who").resolve() is None


def test_each_task_compiles_to_the_operators_design_names(every_shape: tuple[WorkflowPlan, DAG]) -> None:
    plan, dag = every_shape
    kinds = {task.task_id: getattr(task, "operator_class", type(task)) for task in dag.tasks}
    assert kinds == {
        "a": AttuneTaskOperator,
        "b": AttuneTaskOperator,
        "grp.m1": AttuneTaskOperator,
        "grp.m2": AttuneTaskOperator,
        "grp.attune_outcome": GroupOutcomeOperator,
        "each": MappedItemOperator,  # a list written in the workflow: one task mapped over it
        "items.items": ItemsOperator,
        "items.run": ItemOperator,
        "items.attune_outcome": GroupOutcomeOperator,
        "call.attune_input": SubworkflowInputOperator,
        "call.one": AttuneTaskOperator,
        "call.two": AttuneTaskOperator,
        "call.attune_outcome": WorkflowOutcomeOperator,
        "after": AttuneTaskOperator,
        "ask": InquiryTaskOperator,
        "attune_outcome": WorkflowOutcomeOperator,
    }
    assert set(dag.task_group_dict) == {"grp", "items", "call"}
    each = dag.get_task("each")
    assert isinstance(each, MappedOperator) and each.expand_input.value == {"item": [[1, 2], [3]]}
    run = dag.get_task("items.run")
    assert (
        isinstance(run, MappedOperator) and run.expand_input.value["call"].operator.task_id == "items.items"
    )
    # every operator knows its Attune task; the child's tasks run on the child's plan, and
    # its last step reports the outcome of the calling task
    assert (dag.get_task("grp.m1").task_name, dag.get_task("grp.m1").plan) == ("m1", plan)
    assert dag.get_task("call.one").plan is plan.children["call"]
    last = dag.get_task("call.attune_outcome")
    assert (last.plan, last.task_name, last.workflow) == (plan, "call", plan.children["call"])
    final = dag.get_task("attune_outcome")
    assert (final.plan, final.task_name, final.workflow) == (plan, "", plan)


def upstream(dag: DAG) -> dict[str, set[str]]:
    return {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}


def rules(dag: DAG) -> dict[str, str]:
    return {task.task_id: TriggerRule(task.trigger_rule).value for task in dag.tasks}


def test_edges_follow_the_transitions_into_and_out_of_groups(every_shape: tuple[WorkflowPlan, DAG]) -> None:
    _, dag = every_shape
    assert upstream(dag) == {
        "a": set(),
        "b": {"a"},  # on_success and on_complete: one edge
        "grp.m1": {"a"},  # into a parallel group: to each member
        "grp.m2": {"a"},
        "grp.attune_outcome": {"grp.m1", "grp.m2"},
        "each": {"a"},
        "items.items": {"a"},
        "items.run": {"items.items"},
        "items.attune_outcome": {"items.run"},
        "call.attune_input": {"a"},
        "call.one": {"call.attune_input"},  # the child's entry tasks start after its input
        "call.two": {"call.one"},
        "call.attune_outcome": {"call.two"},
        "after": {"b", "grp.attune_outcome"},  # out of a group: from its outcome step
        "ask": {"b"},  # a decision's entries are edges too
        "attune_outcome": {"after", "ask", "each", "items.attune_outcome", "call.attune_outcome"},
    }


def test_trigger_rules_leave_the_gate_to_the_tasks_except_where_airflow_keeps_it(
    every_shape: tuple[WorkflowPlan, DAG],
) -> None:
    plan, dag = every_shape
    assert plan.trigger_gated == {"each"}  # `b` has two transitions from `a`
    assert rules(dag) == {
        "a": "all_success",  # entry
        "b": "all_done",
        "grp.m1": "all_done",  # members take their group's rule
        "grp.m2": "all_done",
        "grp.attune_outcome": "all_done",
        "each": "all_success",  # only inbound: the on_success of one plain action
        "items.items": "all_done",
        "items.run": "all_success",  # runs when `items` produced the calls
        "items.attune_outcome": "all_done",
        "call.attune_input": "all_done",
        "call.one": "all_success",  # the child's entry, after its input step
        "call.two": "all_success",  # gated by Airflow inside the child too
        "call.attune_outcome": "all_done",
        "after": "all_done",
        "ask": "all_done",
        "attune_outcome": "all_done",
    }


def test_retries_timeouts_and_concurrency_go_on_the_tasks_that_run(
    every_shape: tuple[WorkflowPlan, DAG],
) -> None:
    plan, dag = every_shape
    a = dag.get_task("a")
    assert (a.retries, a.retry_delay, a.max_retry_delay) == (2, timedelta(seconds=3), timedelta(seconds=10))
    assert isinstance(a.retry_policy, AttuneRetryPolicy) and a.retry_policy.retry == plan.tasks["a"].retry
    assert a.execution_timeout == timedelta(seconds=30)
    assert dag.get_task("b").retries == 0 and dag.get_task("b").execution_timeout is None
    # a parallel group's own retry has no effect: its members keep theirs
    assert [dag.get_task(t).retries for t in ("grp.m1", "grp.m2", "grp.attune_outcome")] == [1, 0, 0]
    each = dag.get_task("each")  # per execution
    assert each.partial_kwargs["execution_timeout"] == timedelta(seconds=5)
    assert each.partial_kwargs["max_active_tis_per_dagrun"] == 2
    run = dag.get_task("items.run")
    assert (run.partial_kwargs["retries"], run.partial_kwargs["max_active_tis_per_dagrun"]) == (1, 3)
    assert dag.get_task("items.items").retries == 0
    ask = dag.get_task("ask")  # an inquiry's timeout bounds the wait for an answer
    assert ask.response_timeout == timedelta(seconds=60) and ask.execution_timeout is None
    assert all(dag.get_task(t).retries == 0 for t in ("attune_outcome", "call.attune_outcome"))


def _serialized(dag: DAG) -> dict[str, Any]:
    return json.loads(json.dumps(DagSerialization.serialize_dag(dag), sort_keys=True, default=str))


def test_the_dag_serializes_the_same_at_every_parse_and_keeps_its_shape(packs: PackWriter) -> None:
    """Airflow's DAG processor stores the serialized DAG and writes a new version when it
    changes: two compiles of the same files must serialize identically."""
    first = build_dag(plan_of(packs, EVERY_SHAPE, {"workflows/child.yaml": CHILD}))
    second = build_dag(plan_of(packs, EVERY_SHAPE, {"workflows/child.yaml": CHILD}))
    assert _serialized(first) == _serialized(second)
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(first))
    assert upstream(restored) == upstream(first)
    assert rules(restored) == rules(first)
    assert restored.get_task("each").expand_input.value == {"item": [[1, 2], [3]]}
    assert restored.dag_id == "p.wf" and restored.params.get_param("times").resolve() == 2
