"""Static checks of one workflow's tasks: names, shapes, transitions and the routing graph.

Part of the validator (see validator.py); every check appends `Problem`s located at the
offending value. Nothing here imports Airflow.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from attune_provider.language import problem_codes as codes
from attune_provider.language.model_errors import did_you_mean
from attune_provider.language.models import NAME_PATTERN, RESERVED_TARGETS, Task, Workflow
from attune_provider.language.routing import Edge, Graph, transition_fires
from attune_provider.language.source import Location, Problem, Severity, coded
from attune_provider.language.statuses import OUTCOME_TASK_ID, SUBWORKFLOW_INPUT_ID, Status

RESERVED_TASK_NAMES = RESERVED_TARGETS | {OUTCOME_TASK_ID, SUBWORKFLOW_INPUT_ID}
MAX_AIRFLOW_ID = 250  # Airflow's limit for a dag_id or task_id
MAX_TASK_NAME = 200  # leaves room for the TaskGroup prefix of a group or subworkflow task
TRANSITION_KEYS = ("on_success", "on_failure", "on_complete", "on_timeout", "decision")


def error(location: Location, message: str, code: str = codes.UNCLASSIFIED) -> Problem:
    """An error; its code is usually given where its check is called (`coded`)."""
    return Problem(location, message, Severity.ERROR, code)


def warning(location: Location, message: str, code: str = codes.UNCLASSIFIED) -> Problem:
    return Problem(location, message, Severity.WARNING, code)


class Placed(NamedTuple):
    """A task and the parallel group holding it (None for a top-level task)."""

    task: Task
    group: Task | None


def walk_tasks(tasks: Iterable[Task], group: Task | None = None) -> Iterator[Placed]:
    """Every task in declaration order, each parallel group followed by its members."""
    for task in tasks:
        yield Placed(task, group)
        yield from walk_tasks(task.tasks, task)


def task_names(workflow: Workflow) -> set[str]:
    """Every task name of the workflow, parallel members included (one namespace)."""
    return {placed.task.name for placed in walk_tasks(workflow.tasks)}


def check_task_names(workflow: Workflow) -> list[Problem]:
    """Names must be valid, not reserved, and unique across the workflow (members included)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for placed in walk_tasks(workflow.tasks):
        task = placed.task
        found: list[str] = []
        if task.name in seen:
            found.append(f"duplicate task name '{task.name}'")
        seen.add(task.name)
        if task.name in RESERVED_TASK_NAMES:
            found.append(f"task name '{task.name}' is reserved")
        elif not NAME_PATTERN.match(task.name):
            found.append(f"task name '{task.name}' must match {NAME_PATTERN.pattern}")
        elif len(task.name) > MAX_TASK_NAME:
            found.append(
                f"task name '{task.name[:40]}...' is {len(task.name)} characters long, more than"
                f" {MAX_TASK_NAME} (Airflow limits a task id, group prefixes included, to {MAX_AIRFLOW_ID})"
            )
        problems += [error(task.loc("name"), message) for message in found]  # located only when needed
    return problems


def _check_parallel(task: Task, group: Task | None) -> list[Problem]:
    problems: list[Problem] = []
    if group is not None:
        problems.append(
            error(
                task.loc("type"), f"parallel group '{task.name}' cannot be a member of group '{group.name}'"
            )
        )
    if not task.tasks:
        problems.append(error(task.loc("type"), f"parallel task '{task.name}' needs 'tasks'"))
    for key in ("action", "with_items"):
        if key in task.model_fields_set:
            problems.append(error(task.key_loc(key), f"parallel task '{task.name}' takes no '{key}'"))
    for key in ("input", "retry", "timeout"):
        if key in task.model_fields_set:
            message = f"'{key}' of parallel task '{task.name}' has no effect (set it on its members)"
            problems.append(warning(task.key_loc(key), message))
    return problems


def _check_action_shape(task: Task) -> list[Problem]:
    problems: list[Problem] = []
    if task.action is None:
        problems.append(error(task.loc(), f"task '{task.name}' needs an 'action'"))
    if "tasks" in task.model_fields_set:
        problems.append(
            error(task.key_loc("tasks"), f"'tasks' is only for 'type: parallel' (task '{task.name}')")
        )
    for key in ("batch_size", "concurrency"):
        if key in task.model_fields_set and task.with_items is None:
            problems.append(error(task.key_loc(key), f"'{key}' needs 'with_items' (task '{task.name}')"))
    return problems


def _check_member_transitions(task: Task, group: Task) -> list[Problem]:
    return [
        error(
            task.key_loc(key),
            f"task '{task.name}' is a member of parallel group '{group.name}' and takes no '{key}'"
            " (the group's transitions handle its members)",
        )
        for key in TRANSITION_KEYS
        if key in task.model_fields_set
    ]


def check_task_shapes(workflow: Workflow) -> list[Problem]:
    """`type`-specific keys, with_items options, and members without transitions."""
    problems: list[Problem] = []
    for placed in walk_tasks(workflow.tasks):
        task = placed.task
        if task.type == "parallel":
            problems += _check_parallel(task, placed.group)
        else:
            problems += _check_action_shape(task)
        if placed.group is not None:
            problems += _check_member_transitions(task, placed.group)
        if task.decision and task.on_success:
            message = f"task '{task.name}' has both 'decision' and 'on_success': 'decision' governs success"
            problems.append(warning(task.key_loc("on_success"), message))
        if "decision" in task.model_fields_set:
            problems += _check_decision(task)
    return problems


def _check_decision(task: Task) -> list[Problem]:
    """docs/language.md: `{when, next}` entries and one `{default}`. Several defaults, or an empty
    list, are errors; entries after the default are never evaluated; a decision with no
    default ends the success path when no `when` holds (a warning: it may be meant)."""
    if not task.decision:
        return [error(task.key_loc("decision"), f"the decision of task '{task.name}' is empty")]
    problems: list[Problem] = []
    defaults = [i for i, branch in enumerate(task.decision) if branch.default is not None]
    for index in defaults[1:]:
        message = f"the decision of task '{task.name}' has more than one 'default'"
        problems.append(error(task.loc("decision", index), message))
    if not defaults:
        message = (
            f"the decision of task '{task.name}' has no 'default': when no 'when' holds,"
            " the task fires nothing on success"
        )
        problems.append(warning(task.key_loc("decision"), message))
    elif defaults[0] < len(task.decision) - 1 and len(defaults) == 1:
        message = f"entries after the 'default' of task '{task.name}' are never evaluated"
        problems.append(warning(task.loc("decision", defaults[0] + 1), message))
    return problems


def check_transitions(workflow: Workflow) -> list[Problem]:
    """Every transition names a top-level task of the workflow or a reserved target."""
    problems: list[Problem] = []
    names = [task.name for task in workflow.tasks]
    members = task_names(workflow) - set(names)
    for task in workflow.tasks:
        for key, index, target in task.transitions():
            if target in names or target in RESERVED_TARGETS:
                continue
            where = task.target_loc(key, index)
            if target in members:
                message = f"task '{task.name}' transitions to '{target}', a member of a parallel group"
            else:
                hint = did_you_mean(target, [*names, *RESERVED_TARGETS])
                message = f"task '{task.name}' transitions to unknown task '{target}'{hint}"
            problems.append(error(where, message))
    return problems


def check_graph(workflow: Workflow) -> list[Problem]:
    """Cycles (at the closing transition), no entry task, unreachable tasks."""
    problems: list[Problem] = []
    graph = Graph.build(workflow.tasks)
    for cycle in graph.cycles():
        names = " -> ".join([edge.source for edge in cycle] + [cycle[-1].target])
        closing = cycle[-1]
        problems.append(
            error(graph.tasks[closing.source].target_loc(closing.key, closing.position), f"cycle: {names}")
        )
    if not graph.entries:
        message = "workflow has no entry task: every task is the target of a transition"
        problems.append(error(workflow.loc("tasks"), message))
        return problems
    reachable = graph.reachable(graph.entries)
    for name, task in graph.tasks.items():
        if name not in reachable:
            problems.append(warning(task.loc("name"), f"task '{name}' is unreachable from the entry tasks"))
    return problems + _check_joins(graph)


def _check_joins(graph: Graph) -> list[Problem]:
    """A `join: all` task that one predecessor names under transitions no single outcome
    fires together (`on_success` and `on_failure`, say) can never run: a warning."""
    problems: list[Problem] = []
    for name, task in graph.tasks.items():
        if task.join != "all":
            continue
        by_source: dict[str, list[Edge]] = {}
        for edge in graph.inbound[name]:
            by_source.setdefault(edge.source, []).append(edge)
        for source, edges in by_source.items():
            if not any(
                all(transition_fires(graph.tasks[source], edge, outcome, name) for edge in edges)
                for outcome in (Status.SUCCEEDED, Status.FAILED, Status.TIMEOUT)
            ):
                keys = " and ".join(dict.fromkeys(edge.key for edge in edges))
                message = (
                    f"task '{name}' joins all its inbound transitions but can never run:"
                    f" no outcome of '{source}' fires its {keys} together"
                )
                problems.append(warning(task.loc("join"), message))
    return problems


def check_output(workflow: Workflow) -> list[Problem]:
    """An `output` schema without `output_map` checks a null output (docs/language.md: the
    workflow fails when its output does not match `output`)."""
    if workflow.output is not None and workflow.output_map is None:
        message = "'output' without 'output_map': the output is null, which fails unless the schema allows it"
        return [warning(workflow.key_loc("output"), message)]
    return []


def check_workflow_structure(workflow: Workflow) -> list[Problem]:
    """All the checks of this module for one workflow."""
    return [
        *coded(codes.WORKFLOW_OUTPUT, check_output(workflow)),
        *coded(codes.TASK_NAMES, check_task_names(workflow)),
        *coded(codes.TASK_SHAPE, check_task_shapes(workflow)),
        *coded(codes.TRANSITIONS, check_transitions(workflow)),
        *coded(codes.TASK_GRAPH, check_graph(workflow)),
    ]
