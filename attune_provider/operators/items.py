"""`with_items` as Airflow dynamic task mapping.

A with_items task whose list is written out in the workflow and that has no `publish` or
`decision` (`plan.mapped_items`) compiles to one task mapped over that list
(`MappedItemOperator`): each instance opens the gate, renders its input and runs, and the
task's outcome is read from its instances (outcomes.py). Any other with_items task
compiles to a TaskGroup named after it: `items` (gate, `when`, render the list, split
batches, render each execution's input) -> `run`, mapped with one task instance per item
or batch (`ItemOperator`) -> `attune_outcome` (see collect.py), which turns the
executions into the task's one outcome. Both carry the task's retries and timeout per
execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSkipException,
    AirflowTaskTimeout,
)

from attune_provider import settings
from attune_provider.exceptions import ParameterError
from attune_provider.language.plan import WorkflowPlan, batches
from attune_provider.language.statuses import Status
from attune_provider.language.templates.render import render
from attune_provider.operators.action import ActionRunMixin
from attune_provider.operators.base import AttuneOperator, RendersInput
from attune_provider.operators.state.outcome_xcom import Outcome, pull
from attune_provider.operators.state.scope import execution_scope
from attune_provider.operators.state.sealed import run_plan
from attune_provider.operators.state.secrets import mask_inputs, redact_secrets
from attune_provider.operators.steps import audit
from attune_provider.operators.steps.failure import FAILURES, AttuneTaskFailed, classify
from attune_provider.operators.steps.finish import own_scope


def max_map_length() -> int:
    """Airflow's `[core] max_map_length`: more mapped instances than this are refused."""
    try:
        from airflow.sdk.configuration import conf

        return conf.getint("core", "max_map_length", fallback=1024)
    except Exception:  # noqa: BLE001 - the documented default
        return 1024


def check_item_count(op: AttuneOperator, context: Any, count: int) -> None:
    """`[attune] max_items`: a with_items list longer than that fails the task (error
    `TooManyItems`, naming the count and the setting), before any execution's input is
    rendered and before Airflow's own `[core] max_map_length` is checked."""
    try:
        limit = settings.max_items()
    except ValueError as exc:  # an invalid setting: the task cannot tell how many items are allowed
        message = str(exc)
    else:
        if count <= limit:
            return
        message = (
            f"with_items of '{op.task_name}' has {count} items, more than the limit of {limit}"
            " ([attune] max_items)"
        )
    op.report_failure(context, Status.FAILED, {"type": "TooManyItems", "message": message})
    raise AttuneTaskFailed(message)


def stored_calls(plan: WorkflowPlan, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls as XCom may hold them: an input with a secret in it is stored redacted and
    marked `render`, and its execution renders it again (secrets.py: never in XCom in clear).
    A confidential run stores no input at all: every execution renders its own (the list
    keeps one entry per execution, which Airflow's mapping counts)."""
    if run_plan(plan).confidential:
        return [{"index": call["index"], "input": None, "render": True} for call in calls]
    stored = []
    for call in calls:
        redacted = redact_secrets(call["input"])
        stored.append(call if redacted == call["input"] else {**call, "input": redacted, "render": True})
    return stored


class ItemsOperator(AttuneOperator):
    """Renders the list and one input per execution; returns them for `expand`."""

    ui_color = "#e8f1fb"

    def execute(self, context: Any) -> list[dict[str, Any]]:
        builder = self.scope_builder(context)
        scope, vars_ = self.open_gate(context, builder)
        try:
            items = render(self.spec.with_items, scope)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise ParameterError(f"with_items must render to a list, got {type(items).__name__}")
            check_item_count(self, context, len(items))  # before rendering an input for each
            calls = []
            for index, item in enumerate(batches(items, self.spec.batch_size)):
                item_scope = {**scope, "item": item, "index": index}
                call_input = render(dict(self.spec.input), item_scope)
                mask_inputs(self.plan.actions.get(self.task_name), call_input)
                calls.append({"index": index, "input": call_input})
        except FAILURES as exc:
            self.fail(context, exc)
        limit = max_map_length()
        if len(calls) > limit:
            message = (
                f"with_items of '{self.task_name}' has {len(calls)} executions, more than Airflow's "
                f"[core] max_map_length of {limit}: use batch_size or raise max_map_length"
            )
            self.report_failure(context, Status.FAILED, {"type": "TooManyItems", "message": message})
            raise AttuneTaskFailed(message)
        counts = {"total_count": len(items), "executions": len(calls)}
        context["ti"].xcom_push(key="items", value=self.stored(counts))
        return stored_calls(self.plan, calls)


class ExecutionMixin(ActionRunMixin):
    """One execution of a with_items task: a mapped task instance running the action."""

    ui_color = "#d5e6f7"

    def run_execution(self, context: Any, index: int, raw_input: Any, push_success: bool) -> Any:
        """Run the action; a failure pushes this execution's outcome (with its index) and
        fails the instance, so that it keeps its own retries."""
        try:
            action = self.plan.actions.get(self.task_name)
            result = self.call_action(action, raw_input, self.spec.timeout, context)
        except FAILURES as exc:
            self.execution_failed(context, index, exc)
        if push_success:
            self.push(
                context, Outcome(Status.SUCCEEDED, result, attempts=context["ti"].try_number, index=index)
            )
        return self.stored(result)

    def execution_failed(self, context: Any, index: int, exc: BaseException) -> NoReturn:
        """This execution failed (its action, or re-rendering its input): push its outcome
        with its index, keep its error for `retry.on_error`, and fail the instance."""
        failure = classify(exc, self.timeout_error(self.spec.timeout or 0))
        own = {"status": failure.status, "result": failure.result, "error": failure.error}
        if self.spec.retry is not None and self.spec.retry.on_error is not None:
            self.error_scope = own_scope(self.scope_builder(context).scope({}), self.task_name, own)
        attempts = context["ti"].try_number
        deadline = self.stopped_at_call_deadline(failure.status)
        outcome = Outcome(
            failure.status, failure.result, failure.error, attempts=attempts, index=index, deadline=deadline
        )
        self.push(context, outcome)
        if attempts <= (self.retries or 0) and not self._retry_refused():
            audit.task_retried(self.plan.ref, self.audit_name)  # the task's outcome step logs its end
        if isinstance(exc, AirflowTaskTimeout):
            raise exc
        raise AttuneTaskFailed(f"item {index}: {failure.message}") from exc


class ItemOperator(ExecutionMixin):
    """One execution of a with_items task whose `items` step made the list."""

    template_fields = ("call",)  # the execution's input as `items` rendered it (secrets as ***)
    starts_run_step = False  # its `items` step started the task

    def __init__(self, *, plan: WorkflowPlan, task_name: str, call: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.call = call
        self.attach(plan, task_name)

    def executions_count(self) -> int:
        """How many executions the `items` step made (one call: only `attune-airflow test`'s
        list mocks ask)."""
        meta = pull(self._ti, f"{self.plan.airflow_id(self.task_name)}.items", "items")
        return int(meta["executions"]) if isinstance(meta, dict) else 0

    def execute(self, context: Any) -> Any:
        self._ti = context["ti"]
        index = self.call["index"]
        try:
            raw_input = self._input_again(context, index) if self.call.get("render") else self.call["input"]
        except FAILURES as exc:
            self.execution_failed(context, index, exc)
        return self.run_execution(context, index, raw_input, push_success=True)

    def _input_again(self, context: Any, index: int) -> Any:
        return execution_input(self, context, index)


def execution_input(op: AttuneOperator, context: Any, index: int) -> Any:
    """The input of execution `index` of with_items task `op.task_name`, rendered again
    where it runs, because XCom holds it redacted (or, in a confidential run, not at all)."""
    builder = op.scope_builder(context)
    scope = builder.scope(builder.vars_before(op.task_name))
    return render(dict(op.spec.input), execution_scope(op.spec, scope, index))


class MappedItemOperator(ExecutionMixin, RendersInput):
    """One execution of a with_items task mapped directly over its list (`plan.mapped_items`).

    Each instance opens the gate and renders its input where Airflow renders templates;
    only a failure (or a skip) pushes an `attune` XCom, a success just returns its result.
    A failure of the action carries the execution's index; a `when`, initial var or input
    that cannot be rendered is the task's failure (no index), as in the `items` step.
    """

    def __init__(self, *, plan: WorkflowPlan, task_name: str, item: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item = item
        self.attach(plan, task_name)

    def input_scope(self, context: Any, scope: dict[str, Any]) -> dict[str, Any]:
        return {**scope, "item": self.item, "index": context["ti"].map_index}

    def executions_count(self) -> int:
        return len(self.plan.mapped_items[self.task_name])

    def open_gate(self, context: Any, builder: Any) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """As for any task; a `when` or initial var that cannot be rendered is the task's
        failure, as it would be in the `items` step (its outcome has no index), and another
        try would not render it either."""
        try:
            return super().open_gate(context, builder)
        except AirflowSkipException:
            raise
        except AirflowException as exc:
            raise AirflowFailException(str(exc)) from exc

    def execute(self, context: Any) -> Any:
        ready = self.prepared(context)
        if ready.error is not None:  # the task's failure, as in the `items` step (no index)
            self.fail(context, ready.error, final=True)
        return self.run_execution(context, context["ti"].map_index, ready.input, push_success=False)
