"""A rule's one task: start its workflow's DAG with the rule's parameters, without waiting.

Airflow's `TriggerDagRunOperator` does the triggering; the parameters are rendered here
by Attune's sandbox (never by Airflow's Jinja), with `trigger.logical_date` (ISO 8601) and
`trigger.assets` (the `extra` of each asset event that started the rule's run) in scope,
and checked against the workflow's parameters first: a value the workflow would refuse
fails the rule's task, naming it, instead of starting a run that fails.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk.exceptions import AirflowFailException

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import check_values
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render


def trigger_scope(context: Any) -> dict[str, Any]:
    """`trigger`: when the rule's run is for, and the asset events that started it."""
    moment = context.get("logical_date")
    if moment is None:
        moment = getattr(context.get("dag_run"), "run_after", None)
    events = context.get("triggering_asset_events") or {}
    extras = [dict(getattr(event, "extra", None) or {}) for found in events.values() for event in found]
    return {"logical_date": moment.isoformat() if moment is not None else None, "assets": extras}


class RuleTriggerOperator(TriggerDagRunOperator):
    """Triggers `trigger_dag_id` with `rule_parameters` rendered; `params_schema` is the
    workflow's parameters as JSON Schema."""

    template_fields = ()  # Attune renders the parameters in `execute`
    ui_color = "#fdf1dc"

    def __init__(
        self, *, rule_parameters: dict[str, Any], params_schema: dict[str, Any], **kwargs: Any
    ) -> None:
        super().__init__(wait_for_completion=False, **kwargs)
        self.rule_parameters = rule_parameters
        self.params_schema = params_schema

    def execute(self, context: Any) -> Any:
        try:
            rendered = render(dict(self.rule_parameters), {"trigger": trigger_scope(context)})
            self.conf = check_values(self.params_schema, rendered)
        except (TemplateRenderError, ParameterError) as exc:
            raise AirflowFailException(f"rule parameters for {self.trigger_dag_id}: {exc}") from exc
        self.log.info("starting %s with parameters %s", self.trigger_dag_id, sorted(self.conf))
        return super().execute(context)
