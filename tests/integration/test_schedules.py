"""Schedules, assets and rules (docs/scheduling.md) through Airflow.

A rule's DAG run starts its workflow's run with the rendered parameters (Airflow's
TriggerDagRunOperator under `dag.test()`), and a workflow that `produces` an asset queues
a run of the workflow scheduled on it, as Airflow's scheduler then creates.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.support import write_pack

DEPLOY = """
ref: sched.deploy
parameters:
  version: {type: string, required: true}
  env: {type: string, enum: [staging, prod], default: prod}
tasks:
  - name: go
    action: core.echo
    input: {message: "{{ parameters.version }} to {{ parameters.env }}"}
"""
NIGHTLY = """
ref: sched.nightly
description: the nightly build to staging
trigger:
  type: core.cron
  parameters: {expression: "0 2 * * *"}
action:
  ref: sched.deploy
  parameters:
    version: "nightly-{{ trigger.logical_date[:10] }}"
    env: staging
"""
OFF = NIGHTLY.replace("sched.nightly", "sched.off").replace("description:", "enabled: false\ndescription:")
EXPORT = """
ref: sched.export
schedule: "@daily"
produces: ["file:///data/sched/orders.csv"]
tasks:
  - name: dump
    action: core.echo
    input: {message: dumped}
"""
SUMMARY = """
ref: sched.summary
schedule: {assets: ["file:///data/sched/orders.csv"]}
tasks:
  - name: total
    action: core.noop
"""
FILES = {
    "workflows/deploy.yaml": DEPLOY,
    "rules/nightly.yaml": NIGHTLY,
    "rules/off.yaml": OFF,
    "workflows/export.yaml": EXPORT,
    "workflows/summary.yaml": SUMMARY,
}


@pytest.fixture(scope="module")
def sched_packs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sched-packs")
    write_pack(root, "sched", FILES)
    return root


def test_schedules_assets_and_rules_become_airflow_s(sched_packs: Path) -> None:
    from airflow.sdk import Asset

    from attune_provider.dag_factory.factory import load_packs

    loaded = load_packs([sched_packs], cache=None)
    assert loaded.problems is None
    assert set(loaded.dags) == {"sched.deploy", "sched.nightly", "sched.export", "sched.summary"}  # not `off`
    assert loaded.dags["sched.deploy"].timetable.__class__.__name__ == "NullTimetable"
    assert loaded.dags["sched.export"].timetable.expression == "0 0 * * *"  # @daily
    assert type(loaded.dags["sched.summary"].timetable).__name__ == "AssetTriggeredTimetable"
    outcome = loaded.dags["sched.export"].get_task("attune_outcome")
    assert outcome.outlets == [Asset("file:///data/sched/orders.csv")]
    rule = loaded.dags["sched.nightly"]
    assert set(rule.tags) == {"pack:sched", "source:local", "attune-rule"}
    assert rule.timetable.expression == "0 2 * * *" and [t.task_id for t in rule.tasks] == ["start_workflow"]


def test_a_rule_s_run_starts_its_workflow_with_the_rendered_parameters(
    airflow_db: None, sched_packs: Path
) -> None:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from attune_provider.dag_factory.factory import load_packs
    from attune_provider.local_run import _test_run, prepare_environment

    prepare_environment([sched_packs])
    rule = load_packs([sched_packs], cache=None).dags["sched.nightly"]
    instant = datetime(2026, 12, 6, 2, 0, tzinfo=timezone.utc)
    _test_run(rule, {}, instant)
    with create_session() as session:
        rule_run = session.query(DagRun).filter_by(dag_id="sched.nightly").one()
        started = session.query(DagRun).filter_by(dag_id="sched.deploy").all()
        assert rule_run.state == "success"
        assert [run.conf for run in started] == [{"version": "nightly-2026-12-06", "env": "staging"}]
        assert started[0].state == "queued"  # started, not waited for: the scheduler runs it


def test_an_asset_a_workflow_produces_queues_the_workflow_scheduled_on_it(
    airflow_db: None, sched_packs: Path
) -> None:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.utils.session import create_session

    from attune_provider.local_run import prepare_environment, run_workflow

    prepare_environment([sched_packs])
    assert run_workflow("sched.export", [sched_packs], {}).status == "succeeded"  # its DAGs now in the DB
    with create_session() as session:
        asset = session.query(AssetModel).filter_by(uri="file:///data/sched/orders.csv").one()
        queued_while_paused = session.query(AssetDagRunQueue).filter_by(asset_id=asset.id).all()
        assert queued_while_paused == []  # Airflow queues runs of unpaused consumers only
        session.query(DagModel).filter_by(dag_id="sched.summary").update({"is_paused": False})
    assert run_workflow("sched.export", [sched_packs], {}).status == "succeeded"
    with create_session() as session:
        events = session.query(AssetEvent).filter_by(asset_id=asset.id).all()
        queued = session.query(AssetDagRunQueue).filter_by(asset_id=asset.id).all()
        assert [event.source_dag_id for event in events] == ["sched.export", "sched.export"]
        assert [row.target_dag_id for row in queued] == ["sched.summary"]


def test_continuous_runs_one_at_a_time_and_a_rule_of_a_workflow_that_does_not_compile_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune_provider.dag_factory.factory import load_packs

    monkeypatch.delenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", raising=False)
    secret = "ref: c.secret\nattributes: {confidential: true}\ntasks:\n  - name: a\n    action: core.noop\n"
    starts = NIGHTLY.replace("sched.nightly", "c.starts").replace("sched.deploy", "c.secret")
    starts = starts.replace('    version: "nightly-{{ trigger.logical_date[:10] }}"\n    env: staging\n', "")
    files = {
        "workflows/loop.yaml": "ref: c.loop\nschedule: '@continuous'\n" + secret.split("\n", 2)[2],
        "workflows/secret.yaml": secret,
        "rules/starts.yaml": starts.replace("  parameters:\n", "  parameters: {}\n"),
    }
    write_pack(tmp_path, "c", files)
    loaded = load_packs([tmp_path], cache=None)
    assert set(loaded.dags) == {"c.loop"}
    assert loaded.dags["c.loop"].max_active_runs == 1
    assert loaded.problems is not None
    assert "workflows left out: c.secret, c.starts" in loaded.problems
    assert "c/rules/starts.yaml:1:1: error: could not compile: workflow 'c.secret' could not be compiled" in (
        loaded.problems
    )
