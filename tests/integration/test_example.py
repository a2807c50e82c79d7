"""The design's headline example, packs/my_pack deploy_application, run through Airflow."""

from __future__ import annotations

from pathlib import Path

from attune_provider.local_run import prepare_environment, run_workflow

PACKS = Path(__file__).resolve().parents[2] / "packs"
REF = "my_pack.deploy_application"


def test_success_path(airflow_db: None) -> None:
    prepare_environment([PACKS])
    result = run_workflow(
        REF, [PACKS], {"app_name": "shop", "version": "2.0.0", "environment": "staging", "auto_approve": True}
    )
    assert result.status == "succeeded"
    statuses = {name: task.status for name, task in result.tasks.items()}
    assert statuses["notify_success"] == "succeeded"
    assert result.xcom("approve_deployment") == {"approved": True, "comment": "auto_approve"}
    assert {statuses[n] for n in ("rollback_deployment", "cleanup_deployment", "notify_failure")} == {
        "skipped"
    }
    deployment_id = result.vars["deployment_id"]
    assert deployment_id.startswith("dep-")
    assert result.output == {"deployment_id": deployment_id, "status": "success", "deployed_version": "2.0.0"}
    image = result.xcom("build_image")["image_uri"]
    assert image == "registry.local:5000/shop:2.0.0"  # pack.config default reached the action
    assert result.xcom("notify_success")["stdout"] == "[#deployments] Deployed shop v2.0.0 to staging"
    assert result.vars["health_check_url"].startswith("http://127.0.0.1:")
    assert result.xcom("health_check") == {"status_code": 200, "url": result.vars["health_check_url"]}


def test_failure_path_rolls_back_and_fails(airflow_db: None) -> None:
    prepare_environment([PACKS])
    result = run_workflow(REF, [PACKS], {"app_name": "shop-sick", "version": "2.0.1", "auto_approve": True})
    statuses = {name: task.status for name, task in result.tasks.items()}
    assert statuses["health_check"] == "failed"
    assert statuses["rollback_deployment"] == "succeeded"
    assert statuses["cleanup_deployment"] == "succeeded"
    assert statuses["notify_failure"] == "succeeded"
    assert statuses["update_deployment_status"] == "skipped"
    assert result.vars["rollback_required"] is True
    assert result.xcom("cleanup_deployment")["rolled_back"] is True
    assert "returned 503" in result.tasks["health_check"].error["message"]
    assert "rolled back" in result.xcom("rollback_deployment")["stdout"]
    # the failure is handled, but the output's `status` is null, which the output schema refuses
    assert result.status == "failed"
    assert result.output["status"] is None
