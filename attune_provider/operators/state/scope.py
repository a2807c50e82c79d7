"""The template scopes of docs/language.md, built inside a running task.

`parameters`, `vars`, `task`, `pack.config`, `system`, `kv` and `secrets` as Airflow provides them:
parameters from the DAG run, outcomes from XCom, pack config and key-value data from
Airflow Variables (read only when a template asks for them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone
from functools import cached_property
from typing import Any

from attune_provider import settings
from attune_provider.exceptions import ParameterError
from attune_provider.language.models import Task
from attune_provider.language.parameters import check_values, with_defaults
from attune_provider.language.plan import WorkflowPlan, batches
from attune_provider.language.statuses import SUBWORKFLOW_INPUT_ID
from attune_provider.language.templates.limits import set_limits_source
from attune_provider.language.templates.render import render
from attune_provider.operators.state.declared_secrets import DeclaredSecrets, KeyValue
from attune_provider.operators.state.outcome_xcom import OutcomeReader, merged_vars, pull
from attune_provider.operators.state.secrets import mask, was_redacted

PACK_CONFIG_VARIABLE = "attune_pack_config__{pack}"


# Every template rendered in a process that runs Attune's operators (a task, the DAG
# processor, whose compiler imports them) runs under the configured limits.
set_limits_source(settings.template_limits)


def _config_overrides(name: str) -> dict[str, Any]:
    """The JSON object of Variable `name` ({} when it is not set)."""
    from airflow.sdk import Variable

    raw = Variable.get(name, default=None)
    if raw is None or raw == "":
        return {}
    try:
        overrides = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise ParameterError(f"not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ParameterError("not a JSON object")
    return overrides


def load_pack_config(plan: WorkflowPlan) -> dict[str, Any]:
    """Schema defaults overridden by the `attune_pack_config__<pack>` Variable, validated.

    Values of `secret: true` properties are masked before anything can show them.
    """
    name = PACK_CONFIG_VARIABLE.format(pack=plan.pack)
    schema = plan.config_schema or {"type": "object"}
    try:
        overrides = _config_overrides(name)
        for key in plan.secret_config_keys:
            mask(overrides.get(key))
        config = with_defaults(schema, overrides)
        for key in plan.secret_config_keys:
            mask(config.get(key))
        return check_values(schema, config, what="pack config key")
    except ParameterError as exc:
        message = f"invalid configuration of pack '{plan.pack}' (Variable {name}): {exc}"
        raise ParameterError(message) from None


class _LazyPack(Mapping[str, Any]):
    """`pack.config` read from Variables only when a template touches it."""

    def __init__(self, plan: WorkflowPlan) -> None:
        self._plan = plan

    @cached_property
    def _config(self) -> dict[str, Any]:
        return load_pack_config(self._plan)

    def __getitem__(self, key: str) -> Any:
        if key == "config":
            return self._config
        if key == "ref":
            return self._plan.pack
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(("ref", "config"))

    def __len__(self) -> int:
        return 2


class SubworkflowNotStarted(Exception):
    """The calling task's input step did not produce parameters: the child does not run."""


def run_parameters(plan: WorkflowPlan, context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters (see `_given_parameters`), those marked `secret: true` masked."""
    values = _given_parameters(plan, context)
    for name in plan.secret_parameters:
        mask(values.get(name))
    return values


def _given_parameters(plan: WorkflowPlan, context: Mapping[str, Any]) -> dict[str, Any]:
    """The run's parameters with defaults, checked against the workflow (raises ParameterError).

    A subworkflow's parameters are what its calling task's `input` step rendered; when
    that XCom holds a redacted secret, the input is rendered again here.
    """
    if plan.parent is not None:
        given = pull(context["ti"], plan.prefix + SUBWORKFLOW_INPUT_ID)
        if given is None:
            raise SubworkflowNotStarted(plan.ref)
        if was_redacted(given):
            given = calling_input(plan.parent, context)
        return check_values(plan.params_schema, given)
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    params = dict(context.get("params") or {})
    declared = plan.workflow.parameters
    values = {k: v for k, v in params.items() if k in declared}
    values.update(conf)
    unset = {k for k, v in values.items() if v is None and k in declared}
    unset -= set(conf) - plan.withheld_defaults  # a null given stays (an empty secret field does not)
    given = {k: v for k, v in values.items() if k not in unset}
    return check_values(plan.params_schema, given)


def calling_input(parent: tuple[WorkflowPlan, str], context: Mapping[str, Any]) -> Any:
    """The calling task's `input` rendered in the parent workflow's scope, secrets in clear
    (for a with_items call, that of the item at this task's map index)."""
    plan, name = parent
    task = plan.tasks[name]
    builder = TaskScopeBuilder(plan, context)
    scope = builder.scope(builder.vars_before(name))
    if task.with_items is not None:
        scope = execution_scope(task, scope, context["ti"].map_index)
    return render(dict(task.input), scope)


def execution_scope(task: Task, scope: dict[str, Any], index: int) -> dict[str, Any]:
    """The scope execution `index` of with_items task `task` renders its input in: `item`
    (the item, or the batch) and `index`, from its list rendered again in `scope`."""
    executions = batches(render(task.with_items, scope) or [], task.batch_size)
    if not isinstance(executions, list) or not 0 <= index < len(executions):
        raise ParameterError(f"with_items of '{task.name}' no longer has an execution {index}")
    return {**scope, "item": executions[index], "index": index}


DAG_TEST_USER = "dag_test"  # the triggering user `dag.test()` records for every run


def _process_user() -> str | None:
    import getpass  # only under dag.test(): a task-time parse does not pay for its import

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return None


def system_scope(plan: WorkflowPlan, context: Mapping[str, Any]) -> dict[str, Any]:
    dag_run = context.get("dag_run")
    login = getattr(dag_run, "triggering_user_name", None)
    if login == DAG_TEST_USER:  # `dag.test()` runs the tasks in the process of who started it
        login = _process_user()
    return {
        "execution_id": getattr(dag_run, "run_id", None),
        "timestamp": datetime.now(timezone.utc).isoformat(),
        "workflow": plan.ref,
        "identity": {"login": login},
    }


class LazyVars(Mapping[str, Any]):
    """`vars` whose publishes are read from XCom on first use: most tasks' templates never
    look at vars, and each publishing ancestor read is a call to Airflow's API."""

    def __init__(self, load: Callable[[], dict[str, Any]]) -> None:
        self._load = load

    @cached_property
    def _values(self) -> dict[str, Any]:
        return self._load()

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


class TaskScopeBuilder:
    """Everything a task's templates can see, built once per task execution."""

    def __init__(self, plan: WorkflowPlan, context: Mapping[str, Any]) -> None:
        self.plan = plan
        self.context = context
        self.parameters = run_parameters(plan, context)
        self.outcomes = OutcomeReader(context["ti"], plan)
        self.pack = _LazyPack(plan)
        self.system = system_scope(plan, context)
        self.kv = KeyValue(plan)
        self.secrets = DeclaredSecrets(plan)

    def initial_vars(self) -> dict[str, Any]:
        """`vars:` initial values, rendered (they may use parameters, pack config, system)."""
        base = {
            "parameters": self.parameters,
            "pack": self.pack,
            "system": self.system,
            "kv": self.kv,
            "secrets": self.secrets,
        }
        rendered = render(dict(self.plan.workflow.vars), base)
        return dict(rendered)

    def vars_after(self, names: list[str]) -> Mapping[str, Any]:
        """Initial vars, then what the succeeded tasks among `names` (and the members of the
        parallel groups among them) published, in end order (only tasks with a `publish`
        can have published: the others are not read).

        The initial vars are rendered at once (a template there that fails fails the task
        as it always did); the publishes are read when something first looks at the vars.
        """
        initial = self.initial_vars()
        members = [member.name for name in names for member in self.plan.tasks[name].tasks]
        every = dict.fromkeys([*names, *members])
        publishers = [name for name in every if self.plan.tasks[name].publishes]
        if not publishers:
            return initial
        return LazyVars(lambda: merged_vars(initial, self.outcomes, publishers))

    def vars_before(self, name: str) -> Mapping[str, Any]:
        """The vars task `name` starts with: what the tasks that can lead to it (to its
        group, for a parallel member) published."""
        return self.vars_after(self.plan.graph.ancestors(self.plan.group_of.get(name, name)))

    def scope(self, vars_: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        return {
            "parameters": self.parameters,
            "vars": vars_,
            "task": self.outcomes.scope(),
            "pack": self.pack,
            "system": self.system,
            "kv": self.kv,
            "secrets": self.secrets,
            **extra,
        }
