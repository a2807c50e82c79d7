"""The first step of a subworkflow task: gate, then render the input as its parameters.

The child workflow's tasks are compiled into the calling task's TaskGroup (they cannot
wait on another DAG run under `airflow dags test`); they read their parameters from this
step's return value, and the child's `attune_outcome` reports back to the parent. With a
`timeout` on the calling task this step records when the call began: a child task that
would start after the deadline is skipped, and the call's outcome is then `timeout`.
That return value is an XCom, so secrets in it are stored as `***`; a child task that
finds one renders the calling task's input again in its own process
(`scope.run_parameters`).
"""

from __future__ import annotations

import time
from typing import Any

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import check_values
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.operators.base import RendersInput
from attune_provider.operators.state.outcome_xcom import STARTED_KEY


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
