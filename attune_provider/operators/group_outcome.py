"""The `attune_outcome` task of a with_items task or a parallel group.

It turns many Airflow task instances (mapped executions, or group members) into the one
outcome the Attune task has: failed when any execution failed or any member did not
succeed, else succeeded with the results in item order (or by member), and then
publishes, decides and routes exactly like a plain task.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowException

from attune_provider.language.statuses import MAPPED_CALL_ID, OUTCOME_TASK_ID, Status, TaskKind
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.operators.base import AttuneOperator
from attune_provider.operators.state.outcome_xcom import (
    OUTCOME_KEY,
    Outcome,
    combine,
    ended_from_outside,
    last_attempt,
    pull,
    pull_all,
)
from attune_provider.operators.state.scope import TaskScopeBuilder
from attune_provider.operators.steps.gate import false_when, routed_to


class GroupFailed(AirflowException):
    """Some executions or members of the task failed."""


class GroupOutcomeOperator(AttuneOperator):
    """Decides the outcome of a with_items task or a parallel group."""

    ui_color = "#f3e8fb"
    starts_run_step = False  # its task started in the steps before it

    def execute(self, context: Any) -> Any:
        builder = self.scope_builder(context)
        kind = self.plan.kind(self.task_name)
        extra: dict[str, Any] = {}
        if kind == TaskKind.WITH_ITEMS:
            status, result, error, total = self._executions(context)
        elif kind == TaskKind.WORKFLOW:
            status, result, error, attempts = self._attempts(context)
            total, extra["attempts"] = None, attempts
        else:
            status, result, error, total = self._members(builder)
        if status == Status.SKIPPED:
            self.skip(context, f"'{self.task_name}' did not run")
        if total is not None:
            extra["total_count"] = total
        if status != Status.SUCCEEDED:
            self.report_failure(context, status, error or {}, result, **extra)
            raise GroupFailed(
                f"{error.get('type') if error else ''}: {error.get('message') if error else ''}"
            )
        # a group's publish and decision see what its members published; a with_items
        # member of a parallel group starts from its group's upstream (`gate_name`)
        members = [member.name for member in self.spec.tasks]
        vars_ = builder.vars_after([*self.plan.graph.ancestors(self.gate_name), *members])
        self.finish(context, builder.scope(vars_), vars_, result, **extra)
        return self.stored(result)

    def _executions(self, context: Any) -> tuple[str, Any, dict[str, Any] | None, int | None]:
        ti = context["ti"]
        base = self.plan.airflow_id(self.task_name)
        early = Outcome.from_xcom(pull(ti, f"{base}.items", OUTCOME_KEY))
        if early is not None:  # the list was never made: skipped, or failed to render
            return early.status, None, early.error, None
        meta = pull(ti, f"{base}.items", "items")
        if not isinstance(meta, dict):
            return (
                Status.FAILED,
                None,
                {"type": "TaskDied", "message": "the items step ended without a list"},
                None,
            )
        # each execution's outcome: the mapped task's instances, or the child workflows'
        # outcome steps (with_items over a subworkflow: the mapped TaskGroup `run`)
        executions = f"{base}.{MAPPED_CALL_ID}"
        if self.plan.calls_workflow(self.task_name):
            executions += f".{OUTCOME_TASK_ID}"
        pulled = [Outcome.from_xcom(v) for v in pull_all(ti, executions, OUTCOME_KEY)]
        by_index = {o.index: o for o in pulled if o is not None}
        outcomes = [
            by_index.get(i) or Outcome(Status.FAILED, error=ended_from_outside(f"execution {i}"))
            for i in range(meta["executions"])
        ]
        total = int(meta.get("total_count", len(outcomes)))
        combined = combine(outcomes, total, self.spec)
        return combined.status, combined.result, combined.error, total

    def _attempts(self, context: Any) -> tuple[str, Any, dict[str, Any] | None, int]:
        """A retried subworkflow call: its last attempt's outcome, and how many ran."""
        last, ran = last_attempt(self.plan, self.task_name, context["ti"])
        if last is None:
            return Status.SKIPPED, None, None, 0
        return last.status, last.result, last.error, ran

    def _members(self, builder: TaskScopeBuilder) -> tuple[str, Any, dict[str, Any] | None, int | None]:
        """docs/language.md: "the group succeeds only if every member succeeds, else fails"; a
        member skipped by its own `when` did not succeed. Skipped when the group was not
        reached (then every member skipped without running)."""
        names = [m.name for m in self.spec.tasks]
        outcomes = dict(zip(names, builder.outcomes.read_many(names), strict=True))
        if all(o.status == Status.SKIPPED for o in outcomes.values()) and not self._reached(builder):
            return Status.SKIPPED, None, None, None
        results = {name: o.result for name, o in outcomes.items()}
        failed = [name for name, o in outcomes.items() if o.status != Status.SUCCEEDED]
        if failed:
            message = "member(s) did not succeed: " + ", ".join(f"{n} ({outcomes[n].status})" for n in failed)
            return (
                Status.FAILED,
                results,
                {"type": "ParallelFailed", "message": message, "members": failed},
                None,
            )
        return Status.SUCCEEDED, results, None, None

    def _reached(self, builder: TaskScopeBuilder) -> bool:
        """Whether the group's gate was open: routed to, and its own `when` true (what its
        members checked before their own `when`)."""
        if not routed_to(self.plan, self.gate_name, builder, self.log):
            return False
        try:
            vars_ = builder.vars_before(self.task_name)
            return false_when(self.plan, (self.gate_name, self.task_name), builder.scope(vars_)) is None
        except TemplateRenderError:
            return False
