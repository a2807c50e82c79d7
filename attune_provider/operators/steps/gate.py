"""The routing gate: whether a task runs (docs/language.md, transitions and joins).

A task with inbound transitions runs once if at least one of them fired (`join: all`: if
all fired), then only if its `when` (and its parallel group's) holds; otherwise it is
skipped. Tasks that Airflow's `all_success` already gates (`plan.trigger_gated`) and
entry tasks read nothing.
"""

from __future__ import annotations

from typing import Any

from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import transition_fires
from attune_provider.language.templates.render import render, truthy
from attune_provider.operators.state.scope import TaskScopeBuilder


def routed_to(plan: WorkflowPlan, gate: str, builder: TaskScopeBuilder, log: Any) -> bool:
    """Whether the inbound transitions of task `gate` let it run."""
    predecessors = plan.graph.predecessors.get(gate, [])
    if not predecessors or gate in plan.trigger_gated:  # Airflow checked: all_success
        return True
    outcomes = dict(zip(predecessors, builder.outcomes.routing(predecessors), strict=True))
    fired = [p for p, outcome in outcomes.items() if gate in outcome.next]
    log.info("inbound transitions fired by %s (of %s)", fired, predecessors)
    if plan.tasks[gate].join == "all":
        return all(
            transition_fires(
                plan.tasks[edge.source], edge, outcomes[edge.source].status, outcomes[edge.source].decided
            )
            for edge in plan.graph.inbound[gate]
        )
    return bool(fired)


def false_when(plan: WorkflowPlan, names: tuple[str, ...], scope: dict[str, Any]) -> str | None:
    """The first of `names` (the group, then the task) whose `when` is false, if any."""
    for name in dict.fromkeys(names):
        condition = plan.tasks[name].when
        if condition is not None and not truthy(render(condition, scope)):
            return name
    return None
