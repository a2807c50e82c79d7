"""Validated workflows -> Airflow DAGs: the one place that builds Airflow objects.

One DAG per valid workflow: dag_id = workflow ref, one Airflow task per plain Attune
task wired by its transitions, a mapped task for a with_items task over a list written in
the workflow (`plan.mapped_items`), a TaskGroup for any other with_items task (mapped),
parallel group and subworkflow, and a final `attune_outcome` task that decides the run's
state.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, NamedTuple, cast

from airflow.sdk import DAG, Asset, Label, Param, TaskGroup
from airflow.sdk.definitions._internal.expandinput import DictOfListsExpandInput
from airflow.sdk.definitions.param import NOTSET
from airflow.sdk.definitions.taskgroup import MappedTaskGroup

from attune_provider import settings
from attune_provider.dag_factory.graph_render import airflow_edge_labels
from attune_provider.exceptions import AttuneError
from attune_provider.language.catalog import RuleEntry
from attune_provider.language.definition import definition_digest
from attune_provider.language.models import AssetSchedule, Rule, Task, Workflow
from attune_provider.language.parameters import (
    cheap_to_check,
    has_default,
    is_required,
    nullable,
    property_schema,
)
from attune_provider.language.plan import WorkflowPlan, attempt_group
from attune_provider.language.statuses import MAPPED_CALL_ID, OUTCOME_TASK_ID, SUBWORKFLOW_INPUT_ID, TaskKind
from attune_provider.operators.action import AttuneTaskOperator
from attune_provider.operators.base import AttuneOperator
from attune_provider.operators.group_outcome import GroupOutcomeOperator
from attune_provider.operators.items import ItemOperator, ItemsOperator, MappedItemOperator
from attune_provider.operators.retry import AttuneRetryPolicy
from attune_provider.operators.rule_trigger import RuleTriggerOperator
from attune_provider.operators.subworkflow import (
    ItemAttemptsOperator,
    SubworkflowInputOperator,
    SubworkflowItemInputOperator,
    SubworkflowItemRetryOperator,
    SubworkflowRetryOperator,
)
from attune_provider.operators.workflow_outcome import WorkflowOutcomeOperator
from attune_provider.runners.airflow_operator import check_action as check_operator_action

log = logging.getLogger(__name__)


class Node(NamedTuple):
    """A compiled Attune task: where inbound edges attach, and where its outcome is."""

    heads: list[Any]
    tail: Any


def _plain(value: Any) -> Any:
    """YAML values without their source positions: every operator deep-copies the DAG's
    params, and copying the positions of a marked list or mapping is most of that cost."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _param(name: str, prop: dict[str, Any]) -> Param:
    """A workflow parameter as a typed Airflow Param (the trigger form's field).

    A `secret: true` parameter is a password field, and its default stays out of the DAG
    (the serialized DAG is stored in clear): the field starts empty, and a run triggered
    without a value gets the workflow's default when its tasks check the parameters
    (`WorkflowPlan.withheld_defaults`).
    """
    secret = prop.get("secret") is True
    prop = _plain(prop)
    schema = property_schema(prop)
    schema.pop("default", None)
    withheld = secret and has_default(prop)
    default = prop["default"] if has_default(prop) and not withheld else NOTSET
    if (withheld or not is_required(prop)) and default is NOTSET:
        default = None
        schema = nullable(schema)
    if secret:
        schema["format"] = "password"
    schema.setdefault("title", name)
    return Param(default, **cheap_to_check(schema))


def _doc(workflow: Workflow, file: str) -> str:
    lines = [f"# {workflow.label or workflow.ref}", ""]
    if workflow.description:
        lines += [workflow.description, ""]
    version = f" v{workflow.version}" if workflow.version else ""
    lines += [f"Attune workflow `{workflow.ref}`{version} from `{file}`."]
    return "\n".join(lines)


def _retry_kwargs(task: Task) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"retries": 0}
    if task.retry is not None:
        kwargs["retries"] = task.retry.count
        kwargs["retry_delay"] = timedelta(seconds=task.retry.delay)
        if task.retry.max_delay is not None:
            kwargs["max_retry_delay"] = timedelta(seconds=task.retry.max_delay)
        kwargs["retry_policy"] = AttuneRetryPolicy(task.retry)
    if task.timeout is not None:
        kwargs["execution_timeout"] = timedelta(seconds=task.timeout)
    return kwargs


def _concurrency(task: Task) -> dict[str, Any]:
    return {"max_active_tis_per_dagrun": task.concurrency} if task.concurrency else {}


class _Builder:
    """Compiles the tasks of one workflow (or subworkflow) into a DAG or TaskGroup."""

    def __init__(self, dag: DAG) -> None:
        self.dag = dag

    def workflow(self, plan: WorkflowPlan, group: TaskGroup | None, upstream: Any = None) -> Node:

        nodes: dict[str, Node] = {}
        for task in plan.workflow.tasks:
            entry = not plan.graph.predecessors[task.name]
            direct = entry or task.name in plan.trigger_gated
            nodes[task.name] = self.task(plan, task, group, "all_success" if direct else "all_done")
            if entry and upstream is not None:
                upstream >> nodes[task.name].heads
        # each edge labelled with the transitions that make it (`on failure`, `decision: ...`),
        # set on the tasks themselves: `>> Label() >>` would wire whole TaskGroups across groups
        for (source, target), label in airflow_edge_labels(plan.graph).items():
            nodes[source].tail.set_downstream(nodes[target].heads, edge_modifier=Label(label))
        produced: dict[str, Any] = {}
        if group is None and plan.workflow.produces:  # the run's success updates these Assets
            produced["outlets"] = [Asset(uri) for uri in plan.workflow.produces]
        outcome = WorkflowOutcomeOperator.create(
            task_id=OUTCOME_TASK_ID,
            trigger_rule="all_done",
            retries=0,
            dag=self.dag,
            task_group=group,
            **produced,
            **WorkflowOutcomeOperator.reporting(plan),
        )
        outcome.workflow = plan  # the workflow it concludes (one attempt's, for a retried call)
        for leaf in plan.graph.leaves:
            nodes[leaf].tail >> outcome
        heads = [op for name in plan.graph.entries for op in nodes[name].heads]
        return Node(heads, outcome)

    def task(self, plan: WorkflowPlan, task: Task, group: TaskGroup | None, rule: str) -> Node:
        kind = plan.kind(task.name)
        check_operator_action(plan.actions.get(task.name))  # runner_type airflow: its operator
        common: dict[str, Any] = {"plan": plan, "task_name": task.name, "dag": self.dag}
        if kind == TaskKind.ACTION:
            operator: type[AttuneOperator] = AttuneTaskOperator
            if getattr(plan.actions.get(task.name), "runner_type", None) == "inquiry":
                # only for workflows that ask: it imports Airflow's human-in-the-loop operators
                from attune_provider.operators.inquiry import InquiryTaskOperator

                operator = InquiryTaskOperator
            op = operator.create(
                task_id=task.name, trigger_rule=rule, task_group=group, **common, **_retry_kwargs(task)
            )
            return Node([op], op)
        if task.name in plan.mapped_items:
            return self.mapped(plan, task, group, rule, common)
        inner = TaskGroup(task.name, parent_group=group, dag=self.dag, tooltip=task.action or task.type)
        if kind == TaskKind.PARALLEL:
            return self.parallel(plan, task, inner, rule, common)
        if kind == TaskKind.WITH_ITEMS:
            return self.with_items(plan, task, inner, rule, common)
        return self.subworkflow(plan, task, inner, rule, common)

    def parallel(self, plan: WorkflowPlan, task: Task, group: TaskGroup, rule: str, common: dict) -> Node:

        members = [self.task(plan, member, group, rule) for member in task.tasks]
        collect = GroupOutcomeOperator.create(
            task_id=OUTCOME_TASK_ID, trigger_rule="all_done", task_group=group, **common
        )
        for member in members:
            member.tail >> collect
        return Node([op for member in members for op in member.heads], collect)

    def mapped(
        self, plan: WorkflowPlan, task: Task, group: TaskGroup | None, rule: str, common: dict
    ) -> Node:
        """A with_items task over a list written in the workflow: one task mapped over it."""

        op = MappedItemOperator.partial(
            task_id=task.name,
            trigger_rule=rule,
            task_group=group,
            **common,
            **_concurrency(task),
            **_retry_kwargs(task),
        ).expand(item=plan.mapped_items[task.name])
        return Node([op], op)

    def with_items(self, plan: WorkflowPlan, task: Task, group: TaskGroup, rule: str, common: dict) -> Node:

        items = ItemsOperator.create(task_id="items", trigger_rule=rule, task_group=group, **common)
        if plan.calls_workflow(task.name):
            return self.subworkflow_items(plan, task, group, items, common)
        run = ItemOperator.partial(
            task_id=MAPPED_CALL_ID,
            task_group=group,
            **common,
            **_concurrency(task),
            **_retry_kwargs(task),
        ).expand(call=items.output)
        collect = GroupOutcomeOperator.create(
            task_id=OUTCOME_TASK_ID, trigger_rule="all_done", task_group=group, **common
        )
        run >> collect
        return Node([items], collect)

    def subworkflow_items(
        self, plan: WorkflowPlan, task: Task, group: TaskGroup, items: ItemsOperator, common: dict
    ) -> Node:
        """with_items over a subworkflow: the child's tasks in a TaskGroup mapped over the
        executions `items` made, one instance of each per item (operators/subworkflow.py);
        `concurrency` bounds the running instances of each of them."""
        run = MappedTaskGroup(
            group_id=MAPPED_CALL_ID,
            parent_group=group,
            dag=self.dag,
            expand_input=DictOfListsExpandInput({"call": items.output}),
            default_args=cast(Any, _concurrency(task)),  # attrs types it by its converter
            tooltip=f"{task.action}, once per item",
        )
        if task.name in plan.attempts:  # per item: its attempts, then the item's outcome
            last = self.attempts(plan, task, run, "all_success", common, items=True).tail
            tail = ItemAttemptsOperator.create(
                task_id=OUTCOME_TASK_ID, trigger_rule="all_done", task_group=run, **common
            )
            last >> tail
        else:
            start = SubworkflowItemInputOperator.create(
                task_id=SUBWORKFLOW_INPUT_ID, task_group=run, **common
            )
            tail = self.workflow(plan.children[task.name], run, upstream=start).tail
        items >> run  # the group's upstream: how Airflow knows `items` feeds its mapping
        collect = GroupOutcomeOperator.create(
            task_id=OUTCOME_TASK_ID, trigger_rule="all_done", task_group=group, **common
        )
        tail >> collect
        return Node([items], collect)

    def subworkflow(self, plan: WorkflowPlan, task: Task, group: TaskGroup, rule: str, common: dict) -> Node:

        if task.name in plan.attempts:  # its attempts, then the task's outcome step
            attempts = self.attempts(plan, task, group, rule, common, items=False)
            collect = GroupOutcomeOperator.create(
                task_id=OUTCOME_TASK_ID, trigger_rule="all_done", task_group=group, **common
            )
            attempts.tail >> collect
            return Node(attempts.heads, collect)
        start = SubworkflowInputOperator.create(
            task_id=SUBWORKFLOW_INPUT_ID, trigger_rule=rule, task_group=group, **common
        )
        child = self.workflow(plan.children[task.name], group, upstream=start)
        return Node([start], child.tail)

    def attempts(
        self, plan: WorkflowPlan, task: Task, group: TaskGroup, rule: str, common: dict, items: bool
    ) -> Node:
        """A subworkflow call with `retry`: the child once per attempt, each in its TaskGroup
        `attempt_<n>`, chained through their outcome steps; attempt n+1 starts (after the
        retry's delay) only when attempt n failed or timed out and `on_error` allows it, else
        it is skipped whole (operators/subworkflow.py). `items`: one item's attempts."""
        first_step, retry_step = (
            (SubworkflowItemInputOperator, SubworkflowItemRetryOperator)
            if items
            else (SubworkflowInputOperator, SubworkflowRetryOperator)
        )
        heads: list[Any] = []
        previous: Node | None = None
        for attempt in plan.attempts[task.name]:
            inner = TaskGroup(attempt_group(attempt.attempt), parent_group=group, dag=self.dag)
            if previous is None:
                start: AttuneOperator = first_step.create(
                    task_id=SUBWORKFLOW_INPUT_ID, trigger_rule=rule, task_group=inner, **common
                )
                heads = [start]
            else:
                start = retry_step.create(
                    task_id=SUBWORKFLOW_INPUT_ID, trigger_rule="all_done", task_group=inner, **common
                )
                start.attempt = attempt.attempt  # type: ignore[attr-defined]
                previous.tail >> start
            previous = self.workflow(attempt, inner, upstream=start)
        assert previous is not None
        return Node(heads, previous.tail)


class ConfidentialRoutingError(AttuneError):
    """A confidential workflow with nowhere isolated to run: it is not compiled."""


def _confidential_routing(plan: WorkflowPlan) -> dict[str, str]:
    """The `default_args` that put every task of a confidential run on the isolated queue
    or executor; none for a plain run. Without either configured the workflow is not
    compiled, so it can never run on shared workers."""
    if not plan.confidential:
        return {}
    configured = (("queue", settings.confidential_queue()), ("executor", settings.confidential_executor()))
    routing = {key: value for key, value in configured if value}
    if not routing:
        raise ConfidentialRoutingError(
            f"workflow {plan.ref} is confidential (itself or a subworkflow it calls) but neither "
            "[attune] confidential_queue nor [attune] confidential_executor is set: it would run on "
            "shared workers, so it is not loaded (docs/confidential.md)"
        )
    log.info("routing workflow to confidential execution: %s (%s)", plan.ref, routing)
    return routing


def _schedule(schedule: str | AssetSchedule | None) -> Any:
    """A workflow's `schedule` as Airflow's: cron or preset as it is, assets as Assets."""
    if isinstance(schedule, AssetSchedule):
        return [Asset(uri) for uri in schedule.assets]
    return schedule


def _continuous(schedule: Any) -> dict[str, Any]:
    """`@continuous` runs one run after the other: Airflow requires max_active_runs = 1."""
    return {"max_active_runs": 1} if schedule == "@continuous" else {}


def _trigger_schedule(rule: Rule) -> Any:
    trigger = rule.trigger
    if trigger.type == "core.cron":
        return trigger.parameters["expression"]
    if trigger.type == "core.interval":
        return timedelta(seconds=int(trigger.parameters["seconds"]))
    return [Asset(uri) for uri in trigger.parameters["uris"]]


def build_rule_dag(entry: RuleEntry, params_schema: dict[str, Any]) -> DAG:
    """A rule's DAG: scheduled by its trigger, one task starting its workflow (whose
    parameters are `params_schema`)."""
    rule = entry.rule
    schedule = _trigger_schedule(rule)
    dag = DAG(
        dag_id=rule.ref,
        description=rule.description,
        doc_md=f"# Rule {rule.ref}\n\nStarts workflow `{rule.action.ref}` when its trigger "
        f"({rule.trigger.type}) fires. From `{entry.display}`.",
        tags=sorted({f"pack:{entry.pack.ref}", f"source:{entry.pack.source}", "attune-rule"}),
        schedule=schedule,
        catchup=False,
        **_continuous(schedule),
        is_paused_upon_creation=True if entry.pack.paused else None,
        auto_register=False,
    )
    RuleTriggerOperator(
        task_id="start_workflow",
        trigger_dag_id=rule.action.ref,
        rule_parameters=_plain(dict(rule.action.parameters)),
        params_schema=_plain(params_schema),
        dag=dag,
    )
    return dag


def build_dag(plan: WorkflowPlan) -> DAG:
    """Compile one resolved workflow into a DAG."""
    workflow = plan.workflow
    routing = _confidential_routing(plan)
    tags = {*workflow.tags, f"pack:{plan.pack}", f"source:{plan.source}", "attune"}
    doc = _doc(workflow, plan.file)
    if routing:
        tags.add("confidential")
        plan.definition_sha256 = definition_digest(plan)
        doc += f"\n\nConfidential: its definition's SHA-256 is `{plan.definition_sha256}`."
    dag = DAG(
        dag_id=workflow.ref,
        dag_display_name=workflow.label or workflow.ref,
        description=workflow.description,
        doc_md=doc,
        tags=sorted(tags),
        params={name: _param(name, prop) for name, prop in workflow.parameters.items()},
        schedule=_schedule(workflow.schedule),
        catchup=False,
        **_continuous(workflow.schedule),
        is_paused_upon_creation=True if plan.paused else None,  # an existing DAG: sources/pause_sync.py
        default_args=dict(routing),
        auto_register=False,
    )
    _Builder(dag).workflow(plan, None)
    plan.forget_derived()
    return dag
