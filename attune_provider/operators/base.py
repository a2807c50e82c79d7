"""What every Attune operator shares: the plan, the gate, and finishing a task.

The gate is LANGUAGE.md's "a task with inbound transitions runs once ... if at least one
inbound transition fired (`join: all`: if all fired); otherwise it is skipped", then its
`when`. Finishing is "publish in order after success, then `decision`, then push the
outcome and the targets it fired" for the tasks after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from attune_provider.exceptions import ParameterError
from attune_provider.language.models import Task
from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import fired_targets, transition_fires
from attune_provider.language.statuses import Status, TaskKind
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render, truthy
from attune_provider.operators.retry import retry_refused
from attune_provider.operators.state.outcome_xcom import OUTCOME_KEY, Outcome, subworkflow_deadline
from attune_provider.operators.state.scope import SubworkflowNotStarted, TaskScopeBuilder
from attune_provider.operators.state.secrets import mask_inputs, redact_secrets
from attune_provider.runners.base import error_of


class SelfOverlay(Mapping[str, Any]):
    """The `task` scope with one task's own current outcome (for `publish`, `on_error`)."""

    def __init__(self, base: Mapping[str, Any], name: str, own: dict[str, Any]) -> None:
        self._base, self._name, self._own = base, name, own

    def __getitem__(self, key: str) -> Any:
        return self._own if key == self._name else self._base[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def own_scope(scope: dict[str, Any], name: str, own: dict[str, Any]) -> dict[str, Any]:
    return {**scope, "task": SelfOverlay(scope["task"], name, own)}


_Op = TypeVar("_Op", bound="AttuneOperator")


class AttuneOperator(BaseOperator):
    """Base of the operators a workflow compiles to; `task_name` is the Attune task."""

    shallow_copy_attrs: tuple[str, ...] = ("plan",)
    plan: WorkflowPlan
    task_name: str

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

    def attach(self, plan: WorkflowPlan, task_name: str) -> None:
        self.plan = plan
        self.task_name = task_name
        self.set_up()

    def set_up(self) -> None:
        """What a subclass sets up once `plan` and `task_name` are known."""

    @property
    def spec(self) -> Task:
        return self.plan.tasks[self.task_name]

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Never let Airflow's Jinja touch user strings: Attune renders in `execute`."""

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

    def routed_to(self, builder: TaskScopeBuilder) -> bool:
        gate = self.gate_name
        predecessors = self.plan.graph.predecessors.get(gate, [])
        if not predecessors or gate in self.plan.trigger_gated:  # Airflow checked: all_success
            return True
        outcomes = dict(zip(predecessors, builder.outcomes.routing(predecessors), strict=True))
        fired = [p for p, outcome in outcomes.items() if gate in outcome.next]
        self.log.info("inbound transitions fired by %s (of %s)", fired, predecessors)
        if self.plan.tasks[gate].join == "all":
            return all(
                transition_fires(
                    self.plan.tasks[edge.source],
                    edge,
                    outcomes[edge.source].status,
                    outcomes[edge.source].decided,
                )
                for edge in self.plan.graph.inbound[gate]
            )
        return bool(fired)

    def open_gate(self, context: Any, builder: TaskScopeBuilder) -> tuple[dict[str, Any], Mapping[str, Any]]:
        """Skip unless routed to and `when` holds; return (scope, vars) for the task.

        A template that cannot be rendered here (initial vars, `when`) fails the task with
        its error, like any other failure of the task.
        """
        if not self.routed_to(builder):
            self.skip(context, "no inbound transition fired")
        deadline = subworkflow_deadline(self.plan, context["ti"], nested=True)
        if deadline is not None and time.time() >= deadline[0]:
            self.skip(context, f"the subworkflow's timeout of {deadline[1]:g}s has passed")
        try:
            vars_ = builder.vars_before(self.task_name)
            scope = builder.scope(vars_)
            false_when = self._false_when(scope)
        except TemplateRenderError as exc:
            self.report_failure(context, Status.FAILED, error_of(exc))
            raise AirflowException(f"{type(exc).__name__}: {exc}") from exc
        if false_when is not None:
            self.skip(context, f"the `when` of '{false_when}' is false")
        return scope, vars_

    def _false_when(self, scope: dict[str, Any]) -> str | None:
        """The first of (the group, the task) whose `when` is false, if any."""
        for name in dict.fromkeys((self.gate_name, self.task_name)):
            condition = self.plan.tasks[name].when
            if condition is not None and not truthy(render(condition, scope)):
                return name
        return None

    def skip(self, context: Any, reason: str) -> None:
        self.push(context, Outcome(Status.SKIPPED, ended_at=time.time()))
        self.settle(context, [])
        raise AirflowSkipException(reason)

    def settle(self, context: Any, fired: list[str]) -> None:
        """Mark skipped at once the plain tasks this outcome leaves with no way to run.

        They would be skipped anyway (no inbound transition can fire any more), but each
        would first start, read its predecessors' outcomes and skip itself: a worker slot
        and a task start each in a deployment. Airflow's skip-downstream call (what its
        branch operators use) spares that; it never touches tasks already running or done.
        """
        if self.task_name not in self.plan.graph.tasks or context["ti"].map_index not in (None, -1):
            return
        if self.task_id != self.plan.outcome_ids[self.task_name]:
            # An inner step of a group (`items`, a subworkflow's input) ends before the task
            # has its outcome: settling now could let the workflow's final step run (its
            # leaves skipped) before the group's own outcome step, and miss a failure.
            return
        names = self.plan.graph.settled_by(self.task_name, fired)
        task_ids: list[str | tuple[str, int]] = []
        for name in names:
            if self.plan.kind(name) == TaskKind.ACTION:
                task_ids.append(self.plan.airflow_id(name))
            elif name in self.plan.mapped_items:  # its instances exist from the start of the run
                count = len(self.plan.mapped_items[name])
                task_ids += [(self.plan.airflow_id(name), i) for i in range(count)]
        if not task_ids:
            return
        try:
            from airflow.sdk.execution_time.comms import SkipDownstreamTasks
            from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

            SUPERVISOR_COMMS.send(SkipDownstreamTasks(tasks=task_ids))
            self.log.info("skipped now, no transition can reach them: %s", task_ids)
        except Exception as exc:  # noqa: BLE001 - they will skip themselves when they start
            self.log.warning("could not skip %s early (%s): they will skip themselves", task_ids, exc)

    # -- finishing -----------------------------------------------------------------

    def push(self, context: Any, outcome: Outcome) -> None:
        context["ti"].xcom_push(key=OUTCOME_KEY, value=redact_secrets(outcome.to_xcom()))

    def succeed(
        self, context: Any, scope: dict[str, Any], vars_: Mapping[str, Any], result: Any, **extra: Any
    ) -> Outcome:
        """Publish, decide, push: the success path of LANGUAGE.md section 3."""
        own = {"status": Status.SUCCEEDED, "result": result, "error": None, **extra}
        published: dict[str, Any] = {}
        current: Mapping[str, Any] = vars_  # read from XCom only if a template looks at it
        for name, template in self.spec.publishes:
            published[name] = render(template, {**own_scope(scope, self.task_name, own), "vars": current})
            current = {**current, name: published[name]}
        chosen = None
        decide_scope = {**own_scope(scope, self.task_name, own), "vars": current}
        for branch in self.spec.decision:
            if branch.default is not None or truthy(render(branch.when, decide_scope)):
                chosen = branch.target
                break
        targets = fired_targets(self.spec, Status.SUCCEEDED, chosen)
        attempts = context["ti"].try_number
        outcome = Outcome(
            Status.SUCCEEDED, result, None, targets, published, time.time(), attempts, decided=chosen, **extra
        )
        if self.task_name not in self.plan.quiet_successes:
            self.push(context, outcome)
        if published:
            context["ti"].xcom_push(key="vars", value=redact_secrets(current))
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
            self.report_failure(context, Status.FAILED, error_of(exc), result)
            raise AirflowException(f"{type(exc).__name__}: {exc}") from exc

    def report_failure(
        self, context: Any, status: str, error: dict[str, Any], result: Any = None, **extra: Any
    ) -> None:
        targets = fired_targets(self.spec, status)
        ended = time.time()
        attempt = context["ti"].try_number
        self.push(context, Outcome(status, result, error, targets, {}, ended, attempt, **extra))
        if attempt > (self.retries or 0) or self._retry_refused():
            self.settle(context, targets)  # not before: a retry may still succeed and route elsewhere

    def _retry_refused(self) -> bool:
        """`retry.on_error` ends the task now (a template it cannot render: the policy decides)."""
        try:
            return retry_refused(self.spec.retry, getattr(self, "error_scope", None))
        except TemplateRenderError:
            return False


class Prepared(NamedTuple):
    """What `RendersInput.render_template_fields` worked out for `execute`."""

    scope: dict[str, Any]
    vars: Mapping[str, Any]
    error: TemplateRenderError | None  # the input could not be rendered


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
        builder = self.scope_builder(context)
        scope, vars_ = self.open_gate(context, builder)
        error = None
        try:
            self.input = render(dict(self.spec.input), self.input_scope(context, scope))
            mask_inputs(self.plan.actions.get(self.task_name), self.input)
        except TemplateRenderError as exc:
            error = exc
        self._prepared = Prepared(scope, vars_, error)

    def input_scope(self, context: Any, scope: dict[str, Any]) -> dict[str, Any]:
        """The scope `input` renders in (a with_items execution adds `item` and `index`)."""
        return scope

    def prepared(self, context: Any) -> Prepared:
        if self._prepared is None:  # `execute` called without Airflow rendering first
            self.render_template_fields(context)
        assert self._prepared is not None
        return self._prepared
