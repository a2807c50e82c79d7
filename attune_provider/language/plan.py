"""What a compiled workflow needs at run time, resolved once from the catalog.

A `WorkflowPlan` is shared by every task of a DAG: the workflow model, its routing
graph, and for each task the action it calls. Pure Python (no Airflow), so it can be
built and inspected in tests without a DAG.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.language.catalog import Catalog, WorkflowEntry
from attune_provider.language.models import Task, Workflow
from attune_provider.language.parameters import has_default, parameters_schema, secret_names
from attune_provider.language.routing import Graph
from attune_provider.language.statuses import MAPPED_CALL_ID, OUTCOME_TASK_ID, TaskKind
from attune_provider.language.templates.render import NotConstant, constant


class ActionPlan(NamedTuple):
    """The action a task calls: how to run it and what input it accepts."""

    ref: str
    runner_type: str
    pack: str
    pack_dir: Path
    entry_point: Path | None
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    secret_inputs: frozenset[str] = frozenset()  # input parameters marked `secret: true`
    metadata_file: Path | None = None  # the action's YAML (None: a subworkflow, planned itself)
    operator: str | None = None  # runner_type airflow: the operator class's dotted path
    display: str = ""  # the action's YAML as messages show it (packs/<pack>/actions/<name>.yaml)


_PLAIN_TYPES = (str, int, float, bool, type(None))


def batches(items: list[Any], size: int | None) -> list[Any]:
    """The executions of a with_items task: its items, or lists of `size` of them."""
    if size is None:
        return items
    return [items[i : i + size] for i in range(0, len(items), size)]


def _plain_data(value: Any) -> bool:
    """JSON-like data, as a serialized DAG holds the arguments of a mapped task."""
    if isinstance(value, list):
        return all(_plain_data(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _plain_data(item) for key, item in value.items())
    return isinstance(value, _PLAIN_TYPES)


class WorkflowPlan:
    """One workflow resolved against its catalog, ready to compile or run.

    A subworkflow is planned again inside its parent: `prefix` is the TaskGroup path its
    tasks live under (`deploy.`), `parent` the calling task's plan and name.
    """

    def __init__(
        self,
        entry: WorkflowEntry,
        prefix: str = "",
        parent: tuple[WorkflowPlan, str] | None = None,
    ) -> None:
        self.ref = entry.ref
        self.workflow: Workflow = entry.workflow
        self.file = entry.display
        self.path = entry.file  # the workflow's YAML file on this machine
        self.pack = entry.pack.ref
        self.pack_dir = entry.pack.directory
        self.source = entry.pack.source  # the workflow source it came from (`local`: the packs path)
        self.paused = entry.pack.paused  # its source has paused it
        self.config_schema = entry.pack.config_schema
        self.actions: dict[str, ActionPlan] = {}
        self.prefix = prefix
        self.parent = parent
        self.children: dict[str, WorkflowPlan] = {}
        # a subworkflow task with `retry`: one plan per attempt (`<task>.attempt_<n>.`)
        self.attempts: dict[str, list[WorkflowPlan]] = {}
        self.attempt = 1  # which attempt of its calling task this child plan runs
        self.definition_sha256: str | None = None  # set when a confidential DAG is compiled
        model = entry.workflow.model_dump_json().encode()
        self.digest = hashlib.sha1(model, usedforsecurity=False).hexdigest()[:12]

    def __str__(self) -> str:
        """Stable text for Airflow's serializer (a mapped task's partial kwargs)."""
        return f"WorkflowPlan({self.prefix}{self.ref}@{self.digest})"

    __repr__ = __str__

    def forget_derived(self) -> None:
        """Drop what the cached properties computed (the routing graph, the task index...):
        compiling needed them; a task that runs computes them again, and a DAG processor
        holding thousands of DAGs keeps none of them (docs/performance.md)."""
        for name, attribute in type(self).__dict__.items():
            if isinstance(attribute, cached_property):
                self.__dict__.pop(name, None)
        for plans in (list(self.children.values()), *self.attempts.values()):
            for plan in plans:
                plan.forget_derived()

    def calls_workflow(self, name: str) -> bool:
        """Whether task `name` runs a subworkflow (once, or once per item with `with_items`)."""
        action = self.actions.get(name)
        return action is not None and action.runner_type == "workflow"

    @property
    def mapped_call(self) -> bool:
        """Whether this plan is the child of a `with_items` call: its tasks live in a mapped
        TaskGroup, one instance of each per item (or batch), at the item's map index."""
        return self.parent is not None and self.parent[0].tasks[self.parent[1]].with_items is not None

    @property
    def reports_execution(self) -> bool:
        """Whether this child's end is one execution of its calling task, not the task's
        outcome: one item of a with_items call, or one attempt of a retried call; the
        task's outcome step then makes the outcome of them all (group_outcome.py)."""
        if self.parent is None:
            return False
        caller, name = self.parent
        return self.mapped_call or name in caller.attempts

    @property
    def in_mapped_group(self) -> bool:
        """Whether this plan's tasks run inside a mapped TaskGroup (its own, or a caller's)."""
        plan: WorkflowPlan | None = self
        while plan is not None:
            if plan.mapped_call:
                return True
            plan = plan.parent[0] if plan.parent is not None else None
        return False

    def kind(self, name: str) -> TaskKind:
        """How a task compiles: parallel, with_items, workflow (a subworkflow) or action."""
        task = self.tasks[name]
        if task.type == "parallel":
            return TaskKind.PARALLEL
        if task.with_items is not None:
            return TaskKind.WITH_ITEMS
        return TaskKind.WORKFLOW if self.calls_workflow(name) else TaskKind.ACTION

    @property
    def confidential(self) -> bool:
        """Whether the run holds a confidential workflow's data: the workflow is marked
        confidential, or a subworkflow it calls (at any depth) is (docs/confidential.md)."""
        return self.workflow.attributes.confidential or any(c.confidential for c in self.children.values())

    @cached_property
    def group_of(self) -> dict[str, str]:
        """Parallel member name -> its group's name."""
        return {m.name: t.name for t in self.workflow.tasks for m in t.tasks}

    @cached_property
    def graph(self) -> Graph:
        return Graph.build(self.workflow.tasks)

    @cached_property
    def params_schema(self) -> dict[str, Any]:
        return parameters_schema(self.workflow.parameters)

    @cached_property
    def tasks(self) -> dict[str, Task]:
        """Every task by name, parallel members included."""
        found: dict[str, Task] = {}
        for task in self.workflow.tasks:
            found[task.name] = task
            for member in task.tasks:
                found[member.name] = member
        return found

    @cached_property
    def task_ids(self) -> dict[str, str]:
        """Each task's path as users see it: parallel members are `<group>.<member>`."""
        ids: dict[str, str] = {}
        for task in self.workflow.tasks:
            ids[task.name] = task.name
            for member in task.tasks:
                ids[member.name] = f"{task.name}.{member.name}"
        return ids

    def airflow_id(self, name: str) -> str:
        """The Airflow task id (or TaskGroup id) a task compiles to."""
        return self.prefix + self.task_ids[name]

    @cached_property
    def outcome_ids(self) -> dict[str, str]:
        """The Airflow task id holding each task's `attune` outcome XCom."""
        ids = {}
        for name in self.tasks:
            base = self.airflow_id(name)
            direct = self.kind(name) == TaskKind.ACTION or name in self.mapped_items
            ids[name] = base if direct else f"{base}.{OUTCOME_TASK_ID}"
        return ids

    @cached_property
    def quiet_successes(self) -> frozenset[str]:
        """Tasks whose success says everything by itself: an action task without `publish`
        or `decision` succeeded with its result (its return_value) and fired `on_success`
        and `on_complete`. They push an `attune` XCom only when they do not succeed;
        readers take a success from Airflow's state (outcomes.py)."""
        return frozenset(
            name
            for name, task in self.tasks.items()
            if self.kind(name) == TaskKind.ACTION and not task.publish and not task.decision
        )

    @cached_property
    def trigger_gated(self) -> frozenset[str]:
        """Tasks whose gate Airflow's `all_success` trigger rule keeps, so they never read it.

        A plain action task (or one mapped directly) whose only inbound transition is the
        `on_success` of one plain action task runs exactly when that task succeeded: when
        it fails (its last attempt) or skips, it marks this one skipped before its own state
        is final (`AttuneOperator.settle`), and Airflow skips this one after a skipped
        predecessor. Only a predecessor that died without settling leaves it
        `upstream_failed`, which readers take as skipped, as its gate would have decided.
        Saves the one call a gate costs (the run's task states) for such tasks.
        """
        return frozenset(
            name
            for name, edges in self.graph.inbound.items()
            if len(edges) == 1
            and edges[0].key == "on_success"
            and self._plain_action(edges[0].source)
            and (self._plain_action(name) or name in self.mapped_items)
        )

    def _plain_action(self, name: str) -> bool:
        action = self.actions.get(name)
        return self.kind(name) == TaskKind.ACTION and (action is None or action.runner_type != "inquiry")

    @cached_property
    def mapped_items(self) -> dict[str, list[Any]]:
        """with_items tasks compiled to one mapped task: name -> its executions.

        When the list is written out in the workflow (its templates name nothing) and the
        task has no `publish` or `decision`, nothing is left to work out at run time
        beyond each execution: the task is one Airflow task mapped over that list, as a
        hand-written DAG would be, and its outcome is read from its mapped instances
        (outcomes.py). Otherwise a TaskGroup renders the list first and decides the
        outcome after (`items`, `run`, `attune_outcome`). An empty list keeps the group:
        Airflow skips a task mapped over nothing, and Attune's empty with_items succeeds.
        """
        found: dict[str, list[Any]] = {}
        ids = set(self.task_ids.values())
        for name, task in self.tasks.items():
            if task.with_items is None or task.publish or task.decision or self.calls_workflow(name):
                continue
            try:
                items = constant(task.with_items)
            except NotConstant:
                continue
            if not isinstance(items, list) or not items or not _plain_data(items):
                continue
            # Airflow reports mapped instances' states as `<task_id>_<map_index>`
            if any(re.fullmatch(re.escape(self.task_ids[name]) + r"_\d+", other) for other in ids):
                continue
            found[name] = batches(items, task.batch_size)
        return found

    @cached_property
    def secret_config_keys(self) -> frozenset[str]:
        return secret_names((self.config_schema or {}).get("properties"))

    @cached_property
    def secret_parameters(self) -> frozenset[str]:
        return secret_names(self.workflow.parameters)

    @cached_property
    def withheld_defaults(self) -> frozenset[str]:
        """Secret parameters whose default the DAG's Param does not hold (compiler.py): an
        empty value for one of them (the trigger form's) means "not given"."""
        return frozenset(n for n in self.secret_parameters if has_default(self.workflow.parameters[n]))


def _action_plan(ref: str, catalog: Catalog) -> ActionPlan | None:
    """How task calls to `ref` run; one plan per action of a catalog, however many tasks
    call it (its input schema is most of a task's memory otherwise)."""
    if ref not in catalog.planned:
        catalog.planned[ref] = _plan_action(ref, catalog)
    return catalog.planned[ref]


def _plan_action(ref: str, catalog: Catalog) -> ActionPlan | None:
    entry = catalog.actions.get(ref)
    if entry is not None:
        action = entry.action
        entry_point = None
        if action.entry_point:
            entry_point = Path(os.path.realpath(entry.file.parent / action.entry_point))
        return ActionPlan(
            ref=ref,
            runner_type=action.runner_type,
            pack=entry.pack.ref,
            pack_dir=entry.pack.directory,
            entry_point=entry_point,
            input_schema=parameters_schema(action.parameters),
            output_schema=action.output,
            secret_inputs=secret_names(action.parameters),
            metadata_file=entry.file,
            operator=action.operator,
            display=entry.display,
        )
    sub = catalog.workflows.get(ref)
    if sub is not None:
        return ActionPlan(
            ref=ref,
            runner_type="workflow",
            pack=sub.pack.ref,
            pack_dir=sub.pack.directory,
            entry_point=None,
            input_schema=parameters_schema(sub.workflow.parameters),
            output_schema=sub.workflow.output,
            secret_inputs=secret_names(sub.workflow.parameters),
        )
    return None


def attempt_group(number: int) -> str:
    """The TaskGroup of attempt `number` (1: the first try) of a retried subworkflow call."""
    return f"attempt_{number}"


def build_plan(
    entry: WorkflowEntry,
    catalog: Catalog,
    prefix: str = "",
    parent: tuple[WorkflowPlan, str] | None = None,
) -> WorkflowPlan:
    """Resolve the actions of every task of a (validated) workflow, subworkflows included.

    Validation has already rejected recursion, so planning children terminates.
    """
    plan = WorkflowPlan(entry, prefix, parent)
    for name, task in plan.tasks.items():
        if task.action:
            action = _action_plan(task.action, catalog)
            if action is not None:
                plan.actions[name] = action
    for name, task in plan.tasks.items():
        if not plan.calls_workflow(name):
            continue
        child = catalog.workflows[plan.actions[name].ref]
        # with_items: the child's tasks in the mapped TaskGroup `run`, once per item
        base = plan.airflow_id(name) + (f".{MAPPED_CALL_ID}" if task.with_items is not None else "")
        if task.retry is not None and task.retry.count > 0:  # one TaskGroup per attempt
            tries = [
                build_plan(child, catalog, f"{base}.{attempt_group(n)}.", (plan, name))
                for n in range(1, task.retry.count + 2)
            ]
            for number, attempt in enumerate(tries, 1):
                attempt.attempt = number
            plan.attempts[name] = tries
            plan.children[name] = tries[0]
        else:
            plan.children[name] = build_plan(child, catalog, f"{base}.", (plan, name))
    return plan
