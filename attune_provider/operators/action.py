"""The Airflow task of one plain Attune task: gate, render, run, publish, route.

Every non-entry task runs with trigger rule `all_done` and decides for itself, from its
predecessors' `attune` XComs, whether a transition routed to it (else it is skipped).
Its outcome and the targets it fired are pushed for the tasks after it; the Airflow
state mirrors the outcome: failed and timed-out tasks are red even when handled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import check_values
from attune_provider.language.plan import ActionPlan
from attune_provider.operators.base import AttuneOperator, RendersInput
from attune_provider.operators.state.sealed import run_plan
from attune_provider.operators.state.secrets import mask_inputs
from attune_provider.operators.steps.failure import FAILURES
from attune_provider.runners.base import ActionFailed, Invocation, Runner
from attune_provider.runners.mocks import mocked_runner
from attune_provider.runners.registry import get_runner


class ActionRunMixin(AttuneOperator):
    """Validating input and running an action, with the error kept for `retry.on_error`.

    An operator class itself, first among its subclasses' bases: Airflow wraps `__init__`
    again in a class whose first base has another `__init__` (a plain mixin has object's),
    and each wrapper deep-copies the DAG's params."""

    _runner: Runner | None = None

    def pre_execute(self, context: Any) -> None:
        super().pre_execute(context)
        self.stop_at_call_deadline(context)

    def call_action(
        self, action: ActionPlan | None, raw_input: Any, timeout: float | None, context: Any = None
    ) -> Any:
        if action is None:
            raise ActionFailed({"type": "ConfigurationError", "message": f"no action for {self.task_name}"})
        if not isinstance(raw_input, dict):
            raise ParameterError("task input must render to a mapping")
        params = check_values(action.input_schema, raw_input, what="input")
        mask_inputs(action, params)
        # `attune-airflow test` (runners/mocks.py): a mocked task or action gets the mock's
        # reply in place of its runner; the rendered input was checked just the same
        own_name = self.task_name if self.plan.parent is None else None
        mocked = mocked_runner(action.ref, own_name, context, self.executions_count)
        self._runner = mocked or get_runner(action.runner_type)
        quiet = run_plan(self.plan).confidential
        return self._runner.run(Invocation(action, params, self.task_name, timeout, quiet, context))

    executions_count: Callable[[], int] | None = None  # with_items executions: how many there are

    def on_kill(self) -> None:
        if self._runner is not None:
            self._runner.kill()


class AttuneTaskOperator(ActionRunMixin, RendersInput):
    """Runs one Attune task that calls an action."""

    def execute(self, context: Any) -> Any:
        ready = self.prepared(context)
        scope, vars_ = ready.scope, ready.vars
        try:
            if ready.error is not None:
                raise ready.error
            action = self.plan.actions.get(self.task_name)
            result = self.call_action(action, ready.input, self.spec.timeout, context)
            self.succeed(context, scope, vars_, result)
        except FAILURES as exc:
            self.fail(context, exc, timeout=self.spec.timeout, scope=scope)
        return self.stored(result)
