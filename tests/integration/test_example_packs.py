"""The example packs data_pipeline and ops, run through Airflow against real files and a
real HTTP service on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from attune_provider.local_run import RunResult, prepare_environment, run_workflow

PACKS = Path(__file__).resolve().parents[2] / "packs"


def run(ref: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RunResult:
    config = {"report_dir": str(tmp_path / "reports")}
    monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_PACK_CONFIG__DATA_PIPELINE", json.dumps(config))
    prepare_environment([PACKS])
    return run_workflow(ref, [PACKS], params)


def test_process_files_counts_rows_in_batches(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "in"
    data.mkdir()
    for name, rows in {"a.csv": 3, "b.csv": 0, "c.csv": 5}.items():
        (data / name).write_text("h1,h2\n" + "".join(f"{i},x\n" for i in range(rows)))
    (data / "notes.txt").write_text("ignored\n")
    result = run("data_pipeline.process_files", {"input_dir": str(data)}, monkeypatch, tmp_path)
    assert result.status == "succeeded", result.reasons
    assert result.tasks["count_rows"].status == "succeeded"
    assert result.tasks["report_empty"].status == "skipped"
    assert result.output["files"] == 3 and result.output["total_rows"] == 8
    report = Path(result.output["report"])
    assert report.parent == tmp_path / "reports"
    assert report.read_text().splitlines() == ["a.csv 3", "b.csv 0", "c.csv 5", "total 8"]
    batches = result.xcom("count_rows.items")
    assert [len(call["input"]["paths"]) for call in batches] == [2, 1]


def test_process_files_without_rows_takes_the_other_branch(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run("data_pipeline.process_files", {"input_dir": str(tmp_path)}, monkeypatch, tmp_path)
    assert result.status == "succeeded"
    assert result.tasks["count_rows"].status == "succeeded"  # an empty list succeeds
    assert result.tasks["report_empty"].status == "succeeded"
    assert result.tasks["write_report"].status == "skipped"
    assert result.output == {"files": 0, "total_rows": 0, "report": None}


class Service(BaseHTTPRequestHandler):
    """A tiny service: /health, /status (degraded or not), /restart."""

    degraded = False
    seen_auth: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/health":
            self._json(200, {"ok": True})
        elif self.path == "/status":
            Service.seen_auth.append(self.headers.get("Authorization", ""))
            self._json(200, {"version": "3.1.4", "degraded": Service.degraded})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self._json(200, {"restarted": True, "reason": body.get("reason")})


@pytest.fixture
def service() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Service.degraded, Service.seen_auth = False, []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_check_service_healthy(
    airflow_db: None, service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = run("ops.check_service", {"base_url": service}, monkeypatch, tmp_path)
    assert result.status == "succeeded", result.reasons
    assert result.output == {"healthy": True, "version": "3.1.4", "action": "none"}
    assert result.tasks["restart"].status == "skipped"
    assert Service.seen_auth == ["Bearer local-demo-token"]


def test_check_service_degraded_restarts(
    airflow_db: None, service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    Service.degraded = True
    result = run("ops.check_service", {"base_url": service}, monkeypatch, tmp_path)
    assert result.status == "succeeded", result.reasons
    assert result.output["action"] == "restarted"
    assert result.xcom("restart")["body"] == {"restarted": True, "reason": "degraded"}


def test_check_service_down_retries_then_fails(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    port = server.server_address[1]
    server.server_close()  # nothing listens there any more
    result = run("ops.check_service", {"base_url": f"http://127.0.0.1:{port}"}, monkeypatch, tmp_path)
    assert result.status == "failed"
    assert result.tasks["ping"].status == "failed"
    assert result.tasks["ping"].attempts == 4  # 1 + retry.count
    assert result.tasks["open_incident"].status == "succeeded"
    assert result.output["healthy"] is False
    assert any("reached 'fail'" in reason for reason in result.reasons)


def test_the_scheduled_examples_chain_through_their_asset_and_the_rule_starts_a_scan(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.asset import AssetDagRunQueue, AssetEvent, AssetModel
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    from attune_provider.dag_factory.factory import load_packs
    from attune_provider.local_run import _test_run

    report_uri = "file:///var/lib/attune/data_pipeline/daily_report.json"
    published = run("data_pipeline.publish_report", {}, monkeypatch, tmp_path)  # its DAGs now in the DB
    assert published.status == "succeeded"
    assert published.output["published"].startswith("Daily report for run")
    with create_session() as session:
        session.query(DagModel).filter_by(dag_id="data_pipeline.archive_report").update({"is_paused": False})
    assert run("data_pipeline.publish_report", {}, monkeypatch, tmp_path).status == "succeeded"
    with create_session() as session:
        asset = session.query(AssetModel).filter_by(uri=report_uri).one()
        assert session.query(AssetEvent).filter_by(asset_id=asset.id).count() == 2
        queued = session.query(AssetDagRunQueue).filter_by(asset_id=asset.id).all()
        assert [row.target_dag_id for row in queued] == ["data_pipeline.archive_report"]

    scan = load_packs([PACKS], cache=None).dags["data_pipeline.hourly_scan"]
    assert scan.timetable.__class__.__name__ == "DeltaTriggerTimetable"
    _test_run(scan, {}, datetime(2026, 12, 7, 10, tzinfo=timezone.utc))
    with create_session() as session:
        started = session.query(DagRun).filter_by(dag_id="data_pipeline.process_files").all()
        expected = {"input_dir": "/var/lib/attune/incoming", "pattern": "*.csv"}
        assert [dag_run.conf for dag_run in started if dag_run.conf == expected]


def test_disk_report_runs_airflows_bash_operator(
    airflow_db: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """ops.bash_report is `runner_type: airflow` (BashOperator): its result is the last line."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "blob").write_bytes(b"x" * 64 * 1024)
    result = run("ops.disk_report", {"path": str(data), "max_kb": 1}, monkeypatch, tmp_path)
    assert result.status == "succeeded", result.reasons
    assert result.output["status"] == "over" and result.output["used_kb"] >= 64
    assert result.tasks["warn"].status == "succeeded"
    result = run("ops.disk_report", {"path": str(data)}, monkeypatch, tmp_path)
    assert result.output == {"path": str(data), "used_kb": result.output["used_kb"], "status": "ok"}
    missing = run("ops.disk_report", {"path": str(tmp_path / "missing")}, monkeypatch, tmp_path)
    assert missing.status == "failed" and missing.output["status"] == "unreadable"
    assert missing.tasks["unreadable"].status == "succeeded"
