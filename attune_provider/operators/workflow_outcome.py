"""The last task of every compiled workflow: decides the outcome, renders `output_map`.

Airflow marks a DAG run successful when its leaf tasks succeed, whatever happened
upstream; this single `all_done` leaf makes the DAG run's state the workflow's outcome
(docs/language.md, "Workflow outcome"). For a subworkflow it also reports back to
the calling task: the child's output is that task's result, its outcome the task's.

Cancellation (docs/design.md, "Pause, resume and cancel"): a task Airflow shows `failed`
that pushed no outcome of its own was ended from outside it (marked failed in the UI or
the REST API, or its process killed): the workflow fails with a reason starting with
`cancelled`, whatever transitions handled that failure. A run marked failed skips this
task: readers derive the outcome from the DAG run then (local_run.collect).
"""

from __future__ import annotations

import json
import time
from typing import Any

import jsonschema
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from attune_provider.language.models import Task
from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import handles
from attune_provider.language.statuses import SUBWORKFLOW_INPUT_ID, Status, TaskKind
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render
from attune_provider.operators.base import AttuneOperator
from attune_provider.operators.state.outcome_xcom import (
    CANCELLED,
    OUTCOME_KEY,
    WORKFLOW_KEY,
    Outcome,
    OutcomeReader,
    pull,
    subworkflow_deadline,
)
from attune_provider.operators.state.scope import TaskScopeBuilder
from attune_provider.operators.steps import audit
from attune_provider.operators.steps.summary import push_summary
from attune_provider.runners.base import timeout_error

ENDED_FROM_OUTSIDE = (
    "was ended from outside before it reported an outcome "
    "(marked failed in the UI or the REST API, or its process was killed)"
)
MARKED_SUCCESS = "was marked success from outside before it reported a result"


def _render_data(template: Any, scope: dict[str, Any]) -> Any:
    """`template` rendered to JSON data (the output is an XCom and the `run --json` result),
    or TemplateRenderError."""
    value = render(template, scope)
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TemplateRenderError(f"not JSON data: {exc}") from None
    return value


def render_output(output_map: Any, scope: dict[str, Any]) -> tuple[Any, str | None]:
    """Render `output_map` as far as it can be: a key that fails to render is null."""
    if not isinstance(output_map, dict):
        try:
            return _render_data(output_map, scope), None
        except TemplateRenderError as exc:
            return None, f"output could not be rendered: {exc}"
    output: dict[str, Any] = {}
    problems = []
    for key, template in output_map.items():
        try:
            output[key] = _render_data(template, scope)
        except TemplateRenderError as exc:
            output[key] = None
            problems.append(f"output '{key}' could not be rendered: {exc}")
    return output, "; ".join(problems) or None


class WorkflowOutcomeOperator(AttuneOperator):
    """Pushes the `workflow` XCom (status, tasks, errors, vars, reasons), returns `output_map`.

    `workflow` is the plan being concluded; for a subworkflow, `plan`/`task_name` are the
    calling task's (`reporting()`), and that task's outcome is pushed here too.
    """

    shallow_copy_attrs = ("plan", "workflow")
    ui_color = "#f3e8fb"
    starts_run_step = False

    def set_up(self) -> None:
        self.workflow = self.plan.children[self.task_name] if self.task_name else self.plan

    @staticmethod
    def reporting(workflow: WorkflowPlan) -> dict[str, Any]:
        """`plan` and `task_name` of the step concluding `workflow`: the calling task's for a
        subworkflow, else the workflow itself and no task."""
        plan, name = workflow.parent if workflow.parent is not None else (workflow, "")
        return {"plan": plan, "task_name": name}

    def execute(self, context: Any) -> Any:
        if self.workflow.parent is not None:
            self._check_started(context)
        try:
            builder = TaskScopeBuilder(self.workflow, context)
        except Exception as exc:  # noqa: BLE001 - bad parameters: the workflow fails
            return self._conclude(context, {}, {}, [f"invalid parameters: {exc}"], None, {})
        tasks, errors, reasons = self._tasks(builder.outcomes, context["ti"])
        vars_ = dict(builder.vars_after(list(self.workflow.tasks)))
        output, output_problem = self._output(builder, vars_)
        if output_problem:
            reasons.append(output_problem)
        return self._conclude(context, tasks, vars_, reasons, output, errors)

    def _check_started(self, context: Any) -> None:
        """A subworkflow whose input step was skipped or failed ends the same way."""
        value = pull(context["ti"], self.workflow.prefix + SUBWORKFLOW_INPUT_ID, OUTCOME_KEY)
        early = Outcome.from_xcom(value)
        if early is not None and early.status == Status.SKIPPED:
            self.push(context, Outcome(Status.SKIPPED))
            raise AirflowSkipException(f"'{self.task_name}' did not run")
        if early is not None:
            self._report_call(context, early.status, early.error or {}, None)
            raise AirflowFailException(f"subworkflow {self.workflow.ref} did not start: {early.error}")

    def _conclude(
        self,
        context: Any,
        tasks: dict[str, str],
        vars_: dict[str, Any],
        reasons: list[str],
        output: Any,
        errors: dict[str, Any],
    ) -> Any:
        """Push the workflow's outcome (one `workflow` XCom), report to the calling task,
        and end as the workflow did: failed, or returning the output (its return_value)."""
        status = Status.FAILED if reasons else Status.SUCCEEDED
        if self.workflow.parent is None:  # a subworkflow's end is its calling task's line
            audit.workflow_completed(
                self.log, context["run_id"], self.workflow.ref, status, context["dag_run"].start_date
            )
        report = {
            "status": status,
            "tasks": tasks,
            "errors": errors,
            "vars": vars_,
            "reasons": reasons,
            "source": self.workflow.source,
        }
        context["ti"].xcom_push(key=WORKFLOW_KEY, value=self.stored(report))
        push_summary(context["ti"], self.workflow, report, output)  # the run's note (summary.py)
        if self.workflow.parent is not None:
            self._report_to_parent(context, reasons, output, self._deadline_hit(context))
        if reasons:
            context["ti"].xcom_push(key="return_value", value=self.stored(output))
            raise AirflowFailException(f"workflow {self.workflow.ref} failed: " + "; ".join(reasons))
        self.log.info("workflow %s succeeded", self.workflow.ref)
        return self.stored(output)

    def _deadline_hit(self, context: Any) -> bool:
        """Whether a task of this child (or of a subworkflow it calls) was stopped or skipped
        because a call's deadline passed: only then did the child not finish in time (its
        tasks may all have ended in time while this step waited for a worker). Read only
        once a deadline of a call it runs inside has passed."""
        deadline = subworkflow_deadline(self.workflow, context["ti"], nested=True)
        if deadline is None or time.time() < deadline[0]:
            return False
        outcomes = OutcomeReader(context["ti"], self.workflow)  # each read: skips carry the mark too
        return any(outcomes[name].deadline for name in self.workflow.tasks)

    def _report_to_parent(self, context: Any, reasons: list[str], output: Any, hit: bool) -> None:
        """The call's outcome: `timeout` when its own deadline stopped or skipped a task of
        the child, whatever the child ended with; else as the child ended (`hit` passed on:
        a deadline of a call further out cut this child short)."""
        deadline = subworkflow_deadline(self.workflow, context["ti"])
        if deadline is not None and hit:
            error = timeout_error(self.task_name, deadline[1])
            self._report_call(context, Status.TIMEOUT, error, output, hit)
            raise AirflowFailException(error["message"])
        if reasons:  # a child cancelled (a task of it ended from outside) cancels its caller
            cancelled = any(reason.startswith("cancelled:") for reason in reasons)
            error = {"type": CANCELLED if cancelled else "WorkflowFailed", "message": "; ".join(reasons)}
            self._report_call(context, Status.FAILED, error, output, hit)
            return
        if self.workflow.reports_execution:
            self._report_call(context, Status.SUCCEEDED, None, output, hit)
            return
        builder = self.scope_builder(context)
        vars_ = builder.vars_before(self.task_name)
        self.finish(context, builder.scope(vars_), vars_, output, **({"deadline": True} if hit else {}))

    def _report_call(
        self, context: Any, status: str, error: dict[str, Any] | None, output: Any, hit: bool = False
    ) -> None:
        """Report the child's end to the calling task: its outcome (a failure settles what
        it leaves unreachable); or for one item of a with_items call (with its index) or
        one attempt of a retried call, that execution's outcome, which the call's own
        outcome step turns into the task's (group_outcome.py)."""
        if not self.workflow.reports_execution:
            self.report_failure(context, status, error or {}, output, deadline=hit)
            return
        index = context["ti"].map_index if self.workflow.mapped_call else None
        self.push(context, Outcome(status, output, error, ended_at=time.time(), index=index, deadline=hit))

    def _tasks(self, outcomes: OutcomeReader, ti: Any) -> tuple[dict[str, str], dict[str, Any], list[str]]:
        """Every task's status and the error of each that has one (by task id), and why
        the workflow failed, if it did.

        Airflow's state says enough for a task that succeeded and cannot have fired `fail`,
        or was skipped: only the others' outcomes are read (one call each). A task ended
        from outside (`_cancelled`) fails the workflow as cancelled, handled or not; a
        parallel member too, though its failure is otherwise its group's. So does a task
        with a `decision` marked success before it decided (one read per such success):
        none of its branches ran.
        """
        tasks: dict[str, str] = {}
        errors: dict[str, Any] = {}
        reasons = []
        top_level = {task.name for task in self.workflow.workflow.tasks}
        for task in self.workflow.tasks.values():  # parallel members too, as `<group>.<member>`
            task_id = self.workflow.task_ids[task.name]
            state = outcomes.airflow_state(task.name)
            if state == "success" and task.decision and self._unreported(task.name, ti):
                tasks[task_id] = Status.SUCCEEDED
                errors[task_id] = {"type": CANCELLED, "message": MARKED_SUCCESS}
                reasons.append(
                    f"cancelled: task '{task.name}' {MARKED_SUCCESS}: its decision chose no branch"
                )
                continue
            if state == "skipped" or (state == "success" and not _may_fire_fail(task)):
                tasks[task_id] = Status.SKIPPED if state == "skipped" else Status.SUCCEEDED
                continue
            outcome = outcomes[task.name]
            tasks[task_id] = outcome.status
            if outcome.error:
                errors[task_id] = outcome.error
            if self._cancelled(task.name, state, outcome, ti):
                if (outcome.error or {}).get("type") != CANCELLED:  # the reader's `TaskDied`
                    errors[task_id] = {"type": CANCELLED, "message": ENDED_FROM_OUTSIDE}
                reasons.append(f"cancelled: task '{task.name}' {ENDED_FROM_OUTSIDE}")
                continue
            if task.name not in top_level:
                continue  # a member's failure is its group's: the group's transitions handle it
            if "fail" in outcome.next:
                reasons.append(f"task '{task.name}' reached 'fail'")
            elif outcome.status in (Status.FAILED, Status.TIMEOUT) and not handles(task, outcome.status):
                reasons.append(f"task '{task.name}' {outcome.status} and no transition handles it")
        return tasks, errors, reasons

    def _cancelled(self, name: str, state: str | None, outcome: Outcome, ti: Any) -> bool:
        """Whether task `name` was ended from outside: Airflow shows it `failed` though an
        Attune task that ends pushes its outcome first (a quiet success pushes none, but it
        succeeded), or it is a subworkflow whose child was cancelled. Only a task holding
        its own outcome is asked (groups push theirs from an outcome task that ran)."""
        if (outcome.error or {}).get("type") == CANCELLED:
            return True
        return state == "failed" and outcome.status == Status.FAILED and self._unreported(name, ti)

    def _unreported(self, name: str, ti: Any) -> bool:
        """Whether action task `name` ended without pushing its outcome (one XCom read)."""
        if self.workflow.kind(name) != TaskKind.ACTION or name in self.workflow.mapped_items:
            return False
        return pull(ti, self.workflow.outcome_ids[name], OUTCOME_KEY) is None

    def _output(self, builder: TaskScopeBuilder, vars_: dict[str, Any]) -> tuple[Any, str | None]:
        """The rendered `output_map` (null without one), checked against `output`."""
        output_map = self.workflow.workflow.output_map
        output: Any = None
        if output_map is not None:
            output, problem = render_output(output_map, builder.scope(vars_))
            if problem:
                return output, problem
        schema = self.workflow.workflow.output
        if schema:
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(output)
            )
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "output"
                return output, f"output does not match its schema at {where}: {error.message}"
        return output, None


def _may_fire_fail(task: Task) -> bool:
    """Whether a success of `task` can fire the reserved target `fail`."""
    return "fail" in (*task.on_success, *task.on_complete, *(branch.target for branch in task.decision))
