"""Trace attributes (docs/observability.md, Traces): with Airflow's OpenTelemetry traces on,
the span a task runs in carries `attune.workflow` (the run's workflow, its DAG), `attune.task`
(the Attune task, `<group>.<member>` inside a group) and `attune.run_id`, so a trace viewer
groups a workflow's tasks. Set in `pre_execute`, on the span current there: the task's
`worker.<task_id>` span at Airflow's default detail level."""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from attune_provider.language.plan import WorkflowPlan


def span_attributes(context: Any, plan: WorkflowPlan, task_name: str, task_id: str) -> dict[str, str]:
    ti = context["ti"]
    return {
        "attune.workflow": str(ti.dag_id),
        "attune.task": str(plan.task_ids.get(task_name, task_id)),
        "attune.run_id": str(context["run_id"]),
    }


def tag_current_span(context: Any, plan: WorkflowPlan, task_name: str, task_id: str) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(span_attributes(context, plan, task_name, task_id))
