"""The template scope of a task (scope.py): `parameters` from the run, `pack.config` and
`kv` from Airflow Variables (set here as `AIRFLOW_VAR_<KEY>` environment variables,
which Airflow's real Variable lookup reads first), `system`, and `vars`.

The context is what the Task SDK gives a task: its `dag_run` is the SDK's own model.
Reading outcomes from XCom needs a running task instance; it is tested against a real run
in test_outcome_reader.py. Here `ti` is a stand-in for a run where no task pushed anything
yet, which records what it is asked, so a test can tell which outcomes the scope reads.
"""

from __future__ import annotations

import getpass
import json
import re
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from airflow.sdk.api.datamodels._generated import DagRun, DagRunState, DagRunType

from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.exceptions import ParameterError
from attune_provider.language.plan import WorkflowPlan, build_plan
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render
from attune_provider.operators.state.scope import (
    DAG_TEST_USER,
    LazyVars,
    SubworkflowNotStarted,
    TaskScopeBuilder,
    load_pack_config,
    run_parameters,
    system_scope,
)
from attune_provider.operators.state.secrets import redact_secrets

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

CONFIG = """
    type: object
    properties:
      registry: {type: string, default: registry.internal}
      replicas: {type: integer, minimum: 1, default: 2}
      api_token: {type: string, secret: true}
    required: [api_token]
"""
WORKFLOW = """
    ref: p.wf
    parameters:
      who: {type: string, required: true}
      mood: {type: string, enum: [happy, sad]}
      times: {type: integer, default: 2}
      password: {type: string, secret: true}
    vars:
      greeting: "hello {{ parameters.who }}"
      registry: "{{ pack.config.registry }}"
      workflow: "{{ system.workflow }}"
    tasks:
      - name: first
        action: core.noop
        publish: [{a: 1}]
        on_success: [grp, quiet]
      - name: grp
        type: parallel
        tasks:
          - {name: m1, action: core.noop, publish: [{m: 1}]}
          - {name: m2, action: core.noop}
        on_success: last
      - name: quiet
        action: core.noop
        on_success: last
      - name: last
        action: core.noop
        join: all
"""
CONFIG_VARIABLE = "AIRFLOW_VAR_ATTUNE_PACK_CONFIG__P"


def plan_of(packs: PackWriter, workflow: str = WORKFLOW, files: dict[str, str] | None = None) -> WorkflowPlan:
    packs.pack("p", {"workflows/wf.yaml": workflow, "config.yaml": CONFIG, **(files or {})})
    catalog = packs.catalog()
    report = validate_catalog(catalog)
    assert "p.wf" not in report.invalid_workflows, [p.format() for p in report.invalid_workflows["p.wf"]]
    return build_plan(catalog.workflows["p.wf"], catalog)


class EmptyRunTI:
    """A task instance of a run where nothing was pushed and no task ended yet."""

    dag_id, run_id = "p.wf", "manual__1"

    def __init__(self, pushed: dict[str, Any] | None = None) -> None:
        self.pushed = pushed or {}
        self.pulled: list[tuple[Any, str]] = []

    def xcom_pull(self, task_ids: Any, key: str = "return_value", **kwargs: Any) -> Any:
        self.pulled.append((task_ids, key))
        if isinstance(task_ids, list):
            return []
        return self.pushed.get(task_ids)

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict[str, Any]:
        return {}


def dag_run(conf: dict[str, Any] | None = None, user: str | None = "alice") -> DagRun:
    now = datetime.now(timezone.utc)
    return DagRun(
        dag_id="p.wf",
        run_id="manual__1",
        logical_date=now,
        data_interval_start=now,
        data_interval_end=now,
        run_after=now,
        start_date=now,
        end_date=None,
        run_type=DagRunType.MANUAL,
        state=DagRunState.RUNNING,
        conf=conf,
        triggering_user_name=user,
        consumed_asset_events=[],
        partition_key=None,
    )


def context(
    params: dict[str, Any], conf: dict[str, Any] | None = None, ti: Any = None, user: str | None = "alice"
) -> dict[str, Any]:
    """What Airflow gives a task: `params` as the DAG's Params resolved, `conf` as triggered."""
    return {"ti": ti or EmptyRunTI(), "dag_run": dag_run(conf, user), "params": params}


@pytest.fixture
def config_variable(monkeypatch: pytest.MonkeyPatch) -> Any:
    def set_config(value: str) -> None:
        monkeypatch.setenv(CONFIG_VARIABLE, value)

    set_config(json.dumps({"api_token": "tok-" + "x" * 12}))
    return set_config


def test_run_parameters_are_the_runs_conf_over_the_dags_params(packs: PackWriter) -> None:
    plan = plan_of(packs)
    # the trigger form sends every field; an empty optional one is null
    form = {"who": "form", "mood": None, "times": 2, "password": None, "undeclared": 1}
    assert run_parameters(plan, context(form)) == {"who": "form", "times": 2}
    assert run_parameters(plan, context(form, {"who": "conf", "mood": None})) == {
        "who": "conf",
        "mood": None,  # given as null: kept
        "times": 2,
    }
    assert run_parameters(plan, context({}, {"who": "api"})) == {"who": "api", "times": 2}


@pytest.mark.parametrize(
    ("params", "conf", "message"),
    [
        ({}, {}, "missing required parameter 'who'"),
        ({"who": "a"}, {"nope": 1}, "unknown parameter 'nope'"),
        ({"who": "a"}, {"times": "x"}, "parameter 'times': 'x' is not of type 'integer'"),
        (
            {"who": "a", "mood": "angry"},
            None,
            "parameter 'mood': 'angry' is not one of ['happy', 'sad', None]",
        ),
    ],
)
def test_bad_run_parameters_are_refused_naming_them(
    packs: PackWriter, params: dict[str, Any], conf: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ParameterError, match=f"^{re.escape(message)}$"):
        run_parameters(plan_of(packs), context(params, conf))


def test_secret_parameters_are_masked_before_anything_shows_them(packs: PackWriter) -> None:
    password = "pw-" + "7" * 11
    values = run_parameters(plan_of(packs), context({"who": "ada-lovelace"}, {"password": password}))
    assert values["password"] == password  # the task itself sees it in clear
    assert redact_secrets(f"login with {password}") == "login with ***"
    assert redact_secrets("ada-lovelace") == "ada-lovelace"  # not secret


def test_system_names_the_run_the_workflow_and_who_triggered_it(packs: PackWriter) -> None:
    plan = plan_of(packs)
    system = system_scope(plan, context({}))
    assert (system["execution_id"], system["workflow"], system["identity"]) == (
        "manual__1",
        "p.wf",
        {"login": "alice"},
    )
    stamp = datetime.fromisoformat(system["timestamp"])
    assert stamp.utcoffset() == timedelta(0) and abs(datetime.now(timezone.utc) - stamp) < timedelta(
        seconds=5
    )
    # dag.test() records every run as triggered by `dag_test`: the process's user ran it
    assert system_scope(plan, context({}, user=DAG_TEST_USER))["identity"] == {"login": getpass.getuser()}


def test_pack_config_is_the_schema_defaults_overridden_by_the_variable(
    packs: PackWriter, config_variable: Any
) -> None:
    plan = plan_of(packs)
    token = "tok-" + "9" * 12
    config_variable(json.dumps({"replicas": 3, "api_token": token, "extra": True}))
    assert load_pack_config(plan) == {
        "registry": "registry.internal",
        "replicas": 3,
        "api_token": token,
        "extra": True,  # keys the schema does not declare are accepted
    }
    assert redact_secrets(f"Bearer {token}") == "Bearer ***"


@pytest.mark.parametrize(
    ("variable", "problem"),
    [
        ("{not json", "not valid JSON: "),
        ("[1, 2]", "not a JSON object"),
        ('{"replicas": 2}', "missing required pack config key 'api_token'"),
        (
            '{"api_token": "tok-xxxxxxxxxx", "replicas": 0}',
            "pack config key 'replicas': 0 is less than the minimum of 1",
        ),
    ],
)
def test_a_bad_pack_config_names_the_pack_the_variable_and_the_problem(
    packs: PackWriter, config_variable: Any, variable: str, problem: str
) -> None:
    config_variable(variable)
    with pytest.raises(ParameterError) as refused:
        load_pack_config(plan_of(packs))
    prefix = "invalid configuration of pack 'p' (Variable attune_pack_config__p): "
    assert str(refused.value).startswith(prefix + problem)


def test_pack_config_is_read_only_when_a_template_uses_it(packs: PackWriter, config_variable: Any) -> None:
    workflow = "ref: p.wf\ntasks:\n  - {name: a, action: core.noop}\n"
    plan = plan_of(packs, workflow)
    config_variable("{not json")
    builder = TaskScopeBuilder(plan, context({}))  # does not read the Variable
    scope = builder.scope(builder.vars_before("a"))
    assert render("{{ pack.ref }} {{ parameters }}", scope) == "p {}"
    with pytest.raises(TemplateRenderError, match="Variable attune_pack_config__p"):
        render("{{ pack.config.registry }}", scope)


def test_kv_reads_airflow_variables_and_masks_secret_ones(
    packs: PackWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_TEST_REGION", "eu-west")
    monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_TEST_KEY", "key-" + "5" * 12)
    plan = plan_of(packs, "ref: p.wf\ntasks:\n  - {name: a, action: core.noop}\n")
    builder = TaskScopeBuilder(plan, context({}))
    scope = builder.scope({})
    assert render("{{ kv.get('attune_test_region') }}", scope) == "eu-west"
    assert render("{{ kv.get('attune_test_absent', default='none') }}", scope) == "none"
    key = render("{{ kv.get_secret('attune_test_key') }}", scope)
    assert key == "key-" + "5" * 12 and redact_secrets(key) == "***"


def test_initial_vars_render_with_parameters_pack_config_and_system(
    packs: PackWriter, config_variable: Any
) -> None:
    builder = TaskScopeBuilder(plan_of(packs), context({"who": "Ada"}))
    assert builder.initial_vars() == {
        "greeting": "hello Ada",
        "registry": "registry.internal",
        "workflow": "p.wf",
    }


def test_vars_read_only_the_publishing_ancestors_and_only_when_used(
    packs: PackWriter, config_variable: Any
) -> None:
    ti = EmptyRunTI()
    builder = TaskScopeBuilder(plan_of(packs), context({"who": "Ada"}, ti=ti))
    initial = builder.initial_vars()
    at_first = builder.vars_before("first")  # no ancestor: nothing to read
    assert at_first == initial and not isinstance(at_first, LazyVars)
    at_member = builder.vars_before("m2")  # a member starts from its group's ancestors
    at_last = builder.vars_before("last")
    assert isinstance(at_member, LazyVars) and isinstance(at_last, LazyVars) and ti.pulled == []
    assert dict(at_last) == initial  # nothing was published in this run
    # `first` and the group's member `m1` publish; `quiet`, `grp` and `m2` cannot have
    assert sorted(task_id for task_id, key in ti.pulled if key == "attune") == ["first", "grp.m1"]
    read = len(ti.pulled)
    assert dict(at_last) == initial and len(ti.pulled) == read  # read once


def test_a_subworkflow_takes_its_parameters_from_its_calling_tasks_input_step(packs: PackWriter) -> None:
    workflow = "ref: p.wf\ntasks:\n  - {name: call, action: p.child, input: {n: 1}}\n"
    child = "ref: p.child\nparameters:\n  n: {type: integer}\n  m: {type: integer, default: 5}\n"
    child += "tasks:\n  - {name: only, action: core.noop}\n"
    plan = plan_of(packs, workflow, {"workflows/child.yaml": child}).children["call"]
    parent_params = {"unrelated": 1}  # nothing of the parent leaks in
    given = EmptyRunTI(pushed={"call.attune_input": {"n": 1}})
    assert run_parameters(plan, context(parent_params, ti=given)) == {"n": 1, "m": 5}
    with pytest.raises(SubworkflowNotStarted):  # the input step did not produce them
        run_parameters(plan, context(parent_params, ti=EmptyRunTI()))
    with pytest.raises(ParameterError, match="parameter 'n'"):
        run_parameters(plan, context({}, ti=EmptyRunTI(pushed={"call.attune_input": {"n": "x"}})))
