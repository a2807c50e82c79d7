"""What every Attune operator shares: its plan and task, and the steps of operators/steps/
wired to Airflow: the gate (or skip), success (publish, decide, push, settle) and failure.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NamedTuple, NoReturn, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException, AirflowTaskTimeout

from attune_provider.exceptions import ParameterError
from attune_provider.language.models import Task
from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import fired_targets
from attune_provider.language.statuses import Status
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render
from attune_provider.operators.retry import retry_refused
from attune_provider.operators.state.outcome_xcom import OUTCOME_KEY, Outcome, subworkflow_deadline
from attune_provider.operators.state.scope import SubworkflowNotStarted, TaskScopeBuilder
from attune_provider.operators.state.sealed import run_plan, seal
from attune_provider.operators.state.secrets import mask_inputs, redact_secrets
from attune_provider.operators.steps import audit
from attune_provider.operators.steps.failure import AttuneTaskFailed, classify
from attune_provider.operators.steps.finish import own_scope, publish_and_decide
from attune_provider.operators.steps.gate import false_when, routed_to
from attune_provider.operators.steps.integrity import DefinitionChanged, verify_definition
from attune_provider.operators.steps.settle import instances_to_skip, settles, skip_now
from attune_provider.operators.steps.tracing import tag_current_span
from attune_provider.runners.base import timeout_error

_Op = TypeVar("_Op", bound="AttuneOperator")


class AttuneOperator(BaseOperator):
    """Base of the operators a workflow compiles to; `task_name` is the Attune task."""

    shallow_copy_attrs: tuple[str, ...] = ("plan",)
    plan: WorkflowPlan
    task_name: str
    error_scope: dict[str, Any] | None = None  # the scope of the last failure, for `retry.on_error`

    @classmethod
    def create(cls: type[_Op], *, plan: WorkflowPlan, task_name: str, **kwargs: Any) -> _Op:
        """The operator of Attune task `task_name` of `plan` (Airflow's arguments in `kwargs`).

        Not an `__init__`: Airflow wraps every `__init__` of an operator's class chain, and
        each wrapper deep-copies the DAG's params (most of the cost of building a DAG with
        many operators); without one of its own, an Attune operator pays that once. Only
        a mapped operator, which Airflow builds from its arguments when it runs, takes
        `plan` and `task_name` in its `__init__`.
        """
        operator = cls(**kwargs)
        operator.attach(plan, task_name)
        return operator

    def set_up(self) -> None:
        """What a subclass sets up once `plan` and `task_name` are known."""

    def attach(self, plan: WorkflowPlan, task_name: str) -> None:
        self.plan = plan
        self.task_name = task_name
        if run_plan(plan).confidential:
            self.template_fields = ()  # a confidential run's rendered fields are never recorded
        self.set_up()

    def pre_execute(self, context: Any) -> None:
        """The first line Attune writes in every task log: which workflow, from which source."""
        self.log.info(
            "Attune workflow %s (source %s, pack %s), task %s",
            self.plan.ref, self.plan.source, self.plan.pack, self.task_id,
        )
        tag_current_span(context, self.plan, self.task_name, self.task_id)  # steps/tracing.py
        if self.starts_run(context):
            audit.workflow_started(self.log, context["run_id"], self.plan.ref, self.plan.source)
        self.verify_definition()

    starts_run_step = True  # False for the steps that come after a task has started

    def starts_run(self, context: Any) -> bool:
        """Whether this task instance starts the run (docs/observability.md): the first try
        of an entry task of the top-level workflow (each member of an entry group, the first
        instance of a mapped one); no database read."""
        ti = context["ti"]
        return (
            self.starts_run_step
            and self.plan.parent is None
            and self.gate_name in self.plan.graph.entries
            and ti.try_number <= 1
            and (ti.map_index is None or ti.map_index <= 0)
        )

    _own_timeout: timedelta | None = None
    _call_deadline: tuple[float, float] | None = None  # (deadline, timeout) that stops this try

    def stop_at_call_deadline(self, context: Any) -> None:
        """Inside a subworkflow whose calling task has a `timeout`, this try of an action is
        stopped by Airflow's own execution timeout when the call's deadline passes, if that
        comes before the task's own timeout (the call's outcome is then `timeout`). Not for
        the steps that conclude: they must run after the deadline to report it."""
        if self._own_timeout is None:
            self._own_timeout = self.execution_timeout or timedelta.max
        self.execution_timeout = None if self._own_timeout == timedelta.max else self._own_timeout
        self._call_deadline = None
        deadline = subworkflow_deadline(self.plan, context["ti"], nested=True)
        if deadline is None:
            return
        left = timedelta(seconds=max(deadline[0] - time.time(), 0.001))
        if left < self._own_timeout:
            self.execution_timeout = left
            self._call_deadline = deadline

    _definition_verified = False

    def verify_definition(self) -> None:
        """A confidential run's task first checks its files (steps/integrity.py): before
        anything is rendered, so before any secret is read."""
        run = run_plan(self.plan)
        if self._definition_verified or not run.confidential:
            return
        try:
            digest = verify_definition(run)
        except DefinitionChanged as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("definition of %s verified: SHA-256 %s", run.ref, digest)
        self._definition_verified = True

    @property
    def audit_name(self) -> str:
        """The task as audit lines and metric tags name it: a parallel member as
        `<group>.<member>`, as `attune-airflow run` and the summary do."""
        return self.plan.task_ids.get(self.task_name, self.task_name)

    @property
    def spec(self) -> Task:
        return self.plan.tasks[self.task_name]

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Never let Airflow's Jinja touch user strings: Attune renders in `execute`."""
        self.verify_definition()

    def _do_render_template_fields(
        self, parent: Any, template_fields: Any, context: Any, jinja_env: Any, seen_oids: Any
    ) -> None:
        """What Airflow calls on a mapped task's instance (after unmapping it) instead of
        `render_template_fields`: the same rendering, Attune's."""
        self.render_template_fields(context, jinja_env)

    def scope_builder(self, context: Any, plan: WorkflowPlan | None = None) -> TaskScopeBuilder:
        try:
            return TaskScopeBuilder(plan or self.plan, context)
        except SubworkflowNotStarted:
            self.skip(context, "the subworkflow did not start")
            raise
        except ParameterError as exc:
            raise AirflowFailException(f"invalid parameters for {(plan or self.plan).ref}: {exc}")

    # -- the gate ------------------------------------------------------------------

    @property
    def gate_name(self) -> str:
        """Whose inbound transitions decide: a parallel member's group, else the task."""
        return self.plan.group_of.get(self.task_name, self.task_name)

    def open_gate(self, context: Any, builder: TaskScopeBuilder) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """Skip unless routed to and `when` holds (steps/gate.py); return (scope, vars).

        A template that cannot be rendered here (initial vars, `when`) fails the task with
        its error, like any other failure of the task.
        """
        if not routed_to(self.plan, self.gate_name, builder, self.log):
            self.skip(context, "no inbound transition fired")
        deadline = subworkflow_deadline(self.plan, context["ti"], nested=True)
        if deadline is not None and time.time() >= deadline[0]:
            self.skip(context, f"the subworkflow's timeout of {deadline[1]:g}s has passed", deadline=True)
        try:
            vars_ = builder.vars_before(self.task_name)
            scope = builder.scope(vars_)
            false_name = false_when(self.plan, (self.gate_name, self.task_name), scope)
        except TemplateRenderError as exc:
            self.fail(context, exc)
        if false_name is not None:
            self.skip(context, f"the `when` of '{false_name}' is false")
        return scope, vars_

    def skip(self, context: Any, reason: str, deadline: bool = False) -> NoReturn:
        """Skip this task (`deadline`: because its subworkflow call's time is up)."""
        self.push(context, Outcome(Status.SKIPPED, ended_at=time.time(), deadline=deadline))
        self.settle(context, [])
        raise AirflowSkipException(reason)

    def settle(self, context: Any, fired: list[str]) -> None:
        """Skip at once the plain tasks this outcome leaves with no way to run (steps/settle.py)."""
        if settles(self.plan, self.task_name, self.task_id, context["ti"]):
            task_ids = instances_to_skip(self.plan, self.task_name, fired, context["ti"].map_index)
            if task_ids:
                skip_now(task_ids, self.log)

    # -- finishing -----------------------------------------------------------------

    def stored(self, value: Any) -> Any:
        """`value` as this task writes it to XCom: registered secrets redacted (secrets.py),
        and sealed with the Fernet key in a confidential run (sealed.py)."""
        return seal(self.plan, redact_secrets(value))

    def push(self, context: Any, outcome: Outcome) -> None:
        context["ti"].xcom_push(key=OUTCOME_KEY, value=self.stored(outcome.to_xcom()))

    def succeed(
        self, context: Any, scope: dict[str, Any], vars_: Mapping[str, Any], result: Any, **extra: Any
    ) -> Outcome:
        """Publish, decide (steps/finish.py), push the outcome and settle."""
        own = {"status": Status.SUCCEEDED, "result": result, "error": None, **extra}
        done = publish_and_decide(self.spec, scope, vars_, own)
        targets = fired_targets(self.spec, Status.SUCCEEDED, done.decided)
        attempts = extra.pop("attempts", context["ti"].try_number)  # a retried subworkflow's own count
        outcome = Outcome(
            Status.SUCCEEDED,
            result,
            None,
            targets,
            done.published,
            time.time(),
            attempts,
            decided=done.decided,
            **extra,
        )
        audit.task_completed(self.log, self.plan.ref, self.audit_name, outcome, context["ti"].start_date)
        if self.task_name not in self.plan.quiet_successes:
            self.push(context, outcome)
        if done.published:
            context["ti"].xcom_push(key="vars", value=self.stored(done.vars))
        self.settle(context, targets)
        return outcome

    def finish(
        self, context: Any, scope: dict[str, Any], vars_: Mapping[str, Any], result: Any, **extra: Any
    ) -> Outcome:
        """`succeed`, where a publish or decision that cannot be rendered fails the task
        with its error (for the operators that do not catch it around their action)."""
        try:
            return self.succeed(context, scope, vars_, result, **extra)
        except TemplateRenderError as exc:
            self.fail(context, exc, result=result)

    def fail(
        self,
        context: Any,
        exc: BaseException,
        *,
        timeout: float | None = None,
        scope: dict[str, Any] | None = None,
        result: Any = None,
        final: bool = False,
    ) -> NoReturn:
        """The one way a task fails with an error of its own (steps/failure.py): its outcome
        is pushed (and kept for `retry.on_error` when `scope` is given), then Airflow's state
        follows: a timeout is raised as it is, `final` ends the task without retries."""
        failure = classify(exc, self.timeout_error(timeout or 0))
        if scope is not None:
            own = {"status": failure.status, "result": failure.result, "error": failure.error}
            self.error_scope = own_scope(scope, self.task_name, own)
        self.report_failure(
            context, failure.status, failure.error, failure.result if result is None else result, final=final
        )
        if isinstance(exc, AirflowTaskTimeout):
            raise exc
        if final:
            raise AirflowFailException(failure.message) from exc
        raise AttuneTaskFailed(failure.message) from exc

    def stopped_at_call_deadline(self, status: str) -> bool:
        """Whether this try timed out because its subworkflow call's deadline passed."""
        return (
            status == Status.TIMEOUT
            and self._call_deadline is not None
            and time.time() >= self._call_deadline[0]
        )

    def timeout_error(self, seconds: float) -> dict[str, Any]:
        """The error of this task when it exceeded its timeout of `seconds`, or was stopped
        at the deadline of the subworkflow call it runs in."""
        if self._call_deadline is not None and time.time() >= self._call_deadline[0]:
            return {
                "type": "timeout",
                "message": f"task '{self.task_name}' was stopped: the subworkflow's timeout of "
                f"{self._call_deadline[1]:g}s passed",
            }
        return timeout_error(self.task_name, seconds)

    def report_failure(
        self,
        context: Any,
        status: str,
        error: dict[str, Any],
        result: Any = None,
        *,
        final: bool = False,
        **extra: Any,
    ) -> None:
        """Push a failed or timed-out outcome; settle once no retry can follow (`final`:
        none will), and write the audit line or count the retry."""
        targets = fired_targets(self.spec, status)
        ended = time.time()
        attempt = context["ti"].try_number
        tries = extra.pop("attempts", attempt)  # a retried subworkflow's own count
        extra.setdefault("deadline", self.stopped_at_call_deadline(status))
        outcome = Outcome(status, result, error, targets, {}, ended, tries, **extra)
        self.push(context, outcome)
        no_retry = attempt > (self.retries or 0) or self._retry_refused()
        if final or no_retry:
            audit.task_completed(self.log, self.plan.ref, self.audit_name, outcome, context["ti"].start_date)
        else:
            audit.task_retried(self.plan.ref, self.audit_name)
        if no_retry:
            self.settle(context, targets)  # not before: a retry may still succeed and route elsewhere

    def _retry_refused(self) -> bool:
        """`retry.on_error` ends the task now (a template it cannot render: the policy decides)."""
        try:
            return retry_refused(self.spec.retry, self.error_scope)
        except TemplateRenderError:
            return False


class Prepared(NamedTuple):
    """What `RendersInput.render_template_fields` worked out for `execute`."""

    scope: dict[str, Any]
    vars: Mapping[str, Any]
    error: TemplateRenderError | None  # the input could not be rendered
    input: Any = None  # the rendered input, secrets in clear (`self.input` is what the UI shows)


class RendersInput(AttuneOperator):
    """An operator whose `input` the UI shows rendered.

    Airflow records a task's rendered fields once, right after `render_template_fields`:
    the gate is opened and the input rendered there, so that this one write shows the input
    the task ran with. `execute` takes them from `prepared()`; an input that could not be
    rendered is raised there, where the task reports its failures.
    """

    template_fields = ("input",)
    ui_color = "#e8f1fb"

    def set_up(self) -> None:
        self.input: Any = dict(self.spec.input)
        self._prepared: Prepared | None = None

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        self.verify_definition()
        builder = self.scope_builder(context)
        scope, vars_ = self.open_gate(context, builder)
        error, rendered = None, None
        try:
            rendered = render(dict(self.spec.input), self.input_scope(context, scope))
            mask_inputs(self.plan.actions.get(self.task_name), rendered)
            self.input = redact_secrets(rendered)  # recorded as the rendered field: numbers too
        except TemplateRenderError as exc:
            error = exc
        self._prepared = Prepared(scope, vars_, error, rendered)

    def input_scope(self, context: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope `input` renders in (a with_items execution adds `item` and `index`)."""
        return scope

    def prepared(self, context: Any) -> Prepared:
        if self._prepared is None:  # `execute` called without Airflow rendering first
            self.render_template_fields(context)
        assert self._prepared is not None
        return self._prepared
