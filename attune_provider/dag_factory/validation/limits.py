"""Limits on the size of a workflow (docs/validation.md, "Limits").

- `[attune] max_tasks`: the tasks of one workflow's DAG. Every task counts, parallel groups
  and their members alike, and a task that runs a subworkflow counts with every task of
  that subworkflow (at any depth): a subworkflow compiles into its caller's DAG as a
  TaskGroup, so the caller's DAG holds them all, and that is what Airflow schedules,
  serializes and draws. Reported once per workflow, at the task that passes the limit.
- `[attune] max_items`: a `with_items` list written out in the workflow (it renders the
  same in every run: `render.constant`) longer than the limit would fail every run, so
  it is an error at its `with_items`. Lists known only at run time are checked by the
  task (operators/items.py).

Nothing here imports Airflow.
"""

from __future__ import annotations

from attune_provider.dag_factory.validation.calls import Calls
from attune_provider.dag_factory.validation.workflow import error, walk_tasks
from attune_provider.language.catalog import Catalog
from attune_provider.language.models import Task, Workflow
from attune_provider.language.source import Problem
from attune_provider.language.templates.render import NotConstant, constant


class TaskCounter:
    """How many tasks each workflow's DAG holds, subworkflows' tasks included (memoised;
    a call that recurses counts as one task: recursion is reported on its own)."""

    def __init__(self, catalog: Catalog, calls: Calls) -> None:
        self.catalog = catalog
        self.calls = calls
        self._memo: dict[str, int] = {}
        self._stack: set[str] = set()

    def called(self, task: Task) -> str | None:
        """The workflow a task runs, when it runs one."""
        target = str(task.action) if task.action is not None else None
        return target if task.type != "parallel" and target in self.catalog.workflows else None

    def weight(self, task: Task) -> int:
        """The task itself, and the tasks of the subworkflow it runs."""
        target = self.called(task)
        return 1 + (self.total(target) if target is not None else 0)

    def total(self, ref: str) -> int:
        if ref in self._memo:
            return self._memo[ref]
        if ref in self._stack:
            return 0
        self._stack.add(ref)
        count = sum(
            self.weight(placed.task) for placed in walk_tasks(self.catalog.workflows[ref].workflow.tasks)
        )
        self._stack.discard(ref)
        self._memo[ref] = count
        return count


def check_task_counts(catalog: Catalog, calls: Calls, max_tasks: int) -> list[Problem]:
    """Each workflow whose DAG would hold more than `max_tasks` tasks: one error, at the
    task (in declaration order, members after their group) where the count passes it."""
    counter = TaskCounter(catalog, calls)
    problems: list[Problem] = []
    for ref, entry in catalog.workflows.items():
        total = counter.total(ref)
        if total <= max_tasks:
            continue
        running = 0
        for placed in walk_tasks(entry.workflow.tasks):
            task = placed.task
            running += counter.weight(task)
            if running > max_tasks:
                problems.append(error(task.loc("name"), _too_many_tasks(total, max_tasks, task, counter)))
                break
    return problems


def _too_many_tasks(total: int, limit: int, task: Task, counter: TaskCounter) -> str:
    target = counter.called(task)
    where = f"task '{task.name[:40]}'"
    if target is not None:
        where += f" (it runs '{target}', {counter.weight(task) - 1} tasks)"
    return (
        f"the workflow has {total} tasks (parallel members and subworkflows' tasks included),"
        f" more than the limit of {limit} ([attune] max_tasks): {where} passes it"
    )


def check_constant_items(workflow: Workflow, max_items: int) -> list[Problem]:
    """A `with_items` list written out in the workflow (YAML, or a template that names
    nothing) may hold at most `max_items` items: each run would fail on it."""
    problems: list[Problem] = []
    for placed in walk_tasks(workflow.tasks):
        task = placed.task
        if task.with_items is None or task.type == "parallel":
            continue
        try:
            items = constant(task.with_items)
        except NotConstant:
            continue
        if isinstance(items, list) and len(items) > max_items:
            message = (
                f"with_items of task '{task.name[:40]}' lists {len(items)} items, more than the limit"
                f" of {max_items} ([attune] max_items)"
            )
            problems.append(error(task.loc("with_items"), message))
    return problems
