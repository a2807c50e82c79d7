"""The first step of a subworkflow task: gate, then render the input as its parameters.

The child workflow's tasks are compiled into the calling task's TaskGroup (they cannot
wait on another DAG run under `airflow dags test`); they read their parameters from this
step's return value, and the child's `attune_outcome` reports back to the parent. With a
`timeout` on the calling task this step records when the call began: a child task that
would start after the deadline is skipped, and the call's outcome is then `timeout`.
That return value is an XCom, so secrets in it are stored as `***`; a child task that
finds one renders the calling task's input again in its own process
(`scope.run_parameters`).

`with_items` over a subworkflow runs the child once per item (or batch): the calling
task's TaskGroup holds `items` (gate, list, one input per execution, as for any
with_items task), the mapped TaskGroup `run` with this step and the child's tasks, one
instance of each per item at the item's map index, and `attune_outcome`, which turns the
children's outcomes into the task's (group_outcome.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import AirflowFailException

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import check_values
from attune_provider.language.statuses import OUTCOME_TASK_ID, Status
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.operators.base import AttuneOperator, RendersInput
from attune_provider.operators.items import execution_input
from attune_provider.operators.retry import retry_refused
from attune_provider.operators.state.outcome_xcom import OUTCOME_KEY, STARTED_KEY, Outcome, last_attempt, pull
from attune_provider.operators.steps.failure import FAILURES
from attune_provider.operators.steps.finish import own_scope


class SubworkflowInputOperator(RendersInput):
    """Returns the child workflow's parameters (defaults applied, checked)."""

    def execute(self, context: Any) -> dict[str, Any]:
        if self.spec.timeout is not None:  # the child's tasks and outcome step measure from here
            context["ti"].xcom_push(key=STARTED_KEY, value=time.time())
        ready = self.prepared(context)
        child = self.plan.children[self.task_name]
        try:
            if ready.error is not None:
                raise ready.error
            if not isinstance(ready.input, dict):
                raise ParameterError("task input must render to a mapping")
            return self.stored(check_values(child.params_schema, ready.input))
        except TemplateRenderError as exc:
            self.fail(context, exc)
        except ParameterError as exc:
            self.fail(context, ParameterError(f"invalid input for workflow {child.ref}: {exc}"))


class SubworkflowItemInputOperator(AttuneOperator):
    """The child's parameters for one item of a with_items call: the input the `items`
    step rendered for this map index (rendered again here when XCom holds it redacted)."""

    ui_color = "#e8f1fb"

    def execute(self, context: Any) -> dict[str, Any]:
        ti = context["ti"]
        index = ti.map_index
        if self.spec.timeout is not None:
            ti.xcom_push(key=STARTED_KEY, value=time.time())
        child = self.plan.children[self.task_name]
        calls = pull(ti, self.plan.airflow_id(self.task_name) + ".items")
        try:
            call = calls[index]
            raw = execution_input(self, context, index) if call.get("render") else call["input"]
            if not isinstance(raw, dict):
                raise ParameterError("task input must render to a mapping")
            return self.stored(check_values(child.params_schema, raw))
        except FAILURES as exc:
            if isinstance(exc, ParameterError):
                exc = ParameterError(f"invalid input for workflow {child.ref}: {exc}")
            self.fail(context, exc, final=True)  # the child's outcome step reports it (with the index)


class RetriesChild(AttuneOperator):
    """The input step of attempt 2, 3, ... of a subworkflow task with `retry`: it runs the
    child again only when the attempt before failed or timed out and `retry.on_error`
    allows it, after the retry's delay (deferred: no worker slot is held while it waits);
    otherwise the attempt is skipped whole. Mixed into the step that starts the child
    (once, or per item of a with_items call)."""

    attempt = 2
    _previous: Outcome | None = None

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        self._previous = self._attempt_before(context)
        if self._previous is not None:  # nothing is rendered for an attempt that will not run
            super().render_template_fields(context, jinja_env)

    def _attempt_before(self, context: Any) -> Outcome | None:
        """The outcome of the attempt before, when it is one to retry (else None)."""
        before = self.plan.attempts[self.task_name][self.attempt - 2]
        previous = Outcome.from_xcom(pull(context["ti"], before.prefix + OUTCOME_TASK_ID, OUTCOME_KEY))
        if previous is None or previous.status not in (Status.FAILED, Status.TIMEOUT):
            return None
        if (previous.error or {}).get("type") == "Cancelled":  # ended from outside: no retry
            return None
        own = {"status": previous.status, "result": previous.result, "error": previous.error}
        scope = own_scope(self.scope_builder(context).scope({}), self.task_name, own)
        try:
            return None if retry_refused(self.spec.retry, scope) else previous
        except TemplateRenderError:
            return previous  # an on_error that cannot be rendered does not stop retries

    def execute(self, context: Any) -> Any:
        previous = self._previous or self._attempt_before(context)
        if previous is None:
            self.skip(context, f"attempt {self.attempt - 1} did not fail, or retry.on_error refused")
        assert self.spec.retry is not None
        resume = previous.ended_at + self.spec.retry.delay_before(self.attempt - 1)
        if time.time() < resume:
            self.log.info(
                "attempt %d of '%s' starts in %.1fs", self.attempt, self.task_name, resume - time.time()
            )
            moment = datetime.fromtimestamp(resume, tz=timezone.utc)
            self.defer(trigger=DateTimeTrigger(moment=moment), method_name="after_delay")
        return super().execute(context)

    def after_delay(self, context: Any, event: Any = None) -> Any:
        """Resumed once the retry's delay has passed: start the attempt."""
        return super().execute(context)


class SubworkflowRetryOperator(RetriesChild, SubworkflowInputOperator):
    """Attempt 2, 3, ... of a retried subworkflow call."""


class SubworkflowItemRetryOperator(RetriesChild, SubworkflowItemInputOperator):
    """Attempt 2, 3, ... of one item of a retried with_items call over a subworkflow."""


class ItemAttemptsOperator(AttuneOperator):
    """One item of a retried with_items call over a subworkflow: its last attempt's outcome
    is this execution's (with its index), which the call's outcome step combines."""

    ui_color = "#f3e8fb"

    def execute(self, context: Any) -> Any:
        ti = context["ti"]
        last, ran = last_attempt(self.plan, self.task_name, ti)
        if last is None:
            self.skip(context, f"item {ti.map_index} of '{self.task_name}' did not run")
        outcome = Outcome(
            last.status,
            last.result,
            last.error,
            ended_at=time.time(),
            attempts=ran,
            index=ti.map_index,
            deadline=last.deadline,
        )
        self.push(context, outcome)
        if last.status != Status.SUCCEEDED:
            raise AirflowFailException(f"item {ti.map_index}: {(last.error or {}).get('message', '')}")
        return self.stored(last.result)
