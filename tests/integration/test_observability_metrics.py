"""Attune's metrics through Airflow's `Stats` (docs/observability.md): `attune-airflow run` as a
subprocess on the session's AIRFLOW_HOME, its `[metrics]` set in its environment only, once
with StatsD to a UDP socket on 127.0.0.1 and once with OpenTelemetry (OTLP/HTTP protobuf,
what the installed exporter sends) to a collector written here with http.server.
"""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support import write_pack

WORKFLOW = """
ref: t.{name}
tasks:
  - name: pick
    action: core.echo
    input: {{message: hi}}
    on_success: boom
  - name: boom
    action: t.boom
    retry: {{count: 1, delay: 0}}
    {handler}
  - name: cleanup
    action: core.noop
"""
FILES = {
    "actions/boom.yaml": "name: boom\nrunner_type: python-script\nentry_point: boom.py\n",
    "actions/boom.py": "def run():\n    raise ValueError('always')\n",
    "workflows/fails.yaml": WORKFLOW.format(name="fails", handler=""),
    "workflows/handled.yaml": WORKFLOW.format(name="handled", handler="on_failure: cleanup"),
}


@pytest.fixture(scope="module")
def packs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("observability") / "packs"
    write_pack(root, "t", FILES)
    return root


def attune_run(ref: str, packs: Path, metrics_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`attune-airflow run REF` on the session's AIRFLOW_HOME, `metrics_env` set for it only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__METRICS__", "OTEL_"))}
    env.pop("ATTUNE_PACKS_PATH", None)
    env.pop("AIRFLOW__ATTUNE__PACKS_PATH", None)
    env.update(metrics_env)
    command = [sys.executable, "-m", "attune_provider", "run", ref, "--packs", str(packs)]
    return subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)


def statsd_run(ref: str, packs: Path, exit_code: int, **settings: str) -> list[str]:
    """The StatsD lines a run of `ref` sends to a UDP socket on 127.0.0.1 (random port)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    env = {
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
        **{f"AIRFLOW__METRICS__{key.upper()}": value for key, value in settings.items()},
    }
    try:
        proc = attune_run(ref, packs, env)
        assert proc.returncode == exit_code, proc.stdout + proc.stderr
        listener.settimeout(0.5)
        packets: list[str] = []
        while True:
            try:
                packets.extend(listener.recv(65536).decode().splitlines())
            except TimeoutError:
                return packets
    finally:
        listener.close()


def test_statsd_metrics_arrive(airflow_db: None, packs: Path) -> None:
    packets = statsd_run("t.fails", packs, 1)  # the workflow failed
    ours = sorted({p.split(":", 1)[0] + "|" + p.rsplit("|", 1)[-1] for p in packets if ".attune." in p})
    assert ours == [
        "airflow.attune.task.duration|ms",
        "airflow.attune.task.failed|c",
        "airflow.attune.task.retries|c",
        "airflow.attune.workflow.duration|ms",
        "airflow.attune.workflow.failed|c",
    ], packets
    assert "airflow.attune.task.retries:1|c" in packets  # once: boom was retried once
    assert packets.count("airflow.attune.task.failed:1|c") == 1  # its last try only
    durations = [p for p in packets if p.startswith("airflow.attune.task.duration:")]
    assert len(durations) == 3, packets  # pick, boom, cleanup (an entry task here)


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector: keeps each metrics request body it is sent."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path == "/v1/metrics":
            self.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[int, list[bytes]]]:
    bodies: list[bytes] = []
    handler = type("Collector", (_Collector,), {"bodies": bodies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], bodies
    finally:
        server.shutdown()
        server.server_close()


def test_opentelemetry_metrics_arrive(
    airflow_db: None, packs: Path, collector: tuple[int, list[bytes]]
) -> None:
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    port, bodies = collector
    env = {
        "AIRFLOW__METRICS__OTEL_ON": "True",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}/v1/metrics",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    }
    proc = attune_run("t.handled", packs, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert bodies, "no OTLP metrics request reached the collector"
    points: dict[str, list[dict[str, str]]] = {}
    kinds: dict[str, str] = {}
    for body in bodies:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if ".attune." not in metric.name:
                        continue
                    kind = metric.WhichOneof("data")
                    kinds[metric.name] = kind or ""
                    for point in getattr(metric, kind).data_points:
                        attrs = {a.key: a.value.string_value for a in point.attributes}
                        points.setdefault(metric.name, []).append(attrs)
    assert kinds == {
        "airflow.attune.task.duration": "exponential_histogram",
        "airflow.attune.task.failed": "sum",
        "airflow.attune.task.retries": "sum",
        "airflow.attune.workflow.duration": "exponential_histogram",
        "airflow.attune.workflow.succeeded": "sum",
    }, kinds
    assert {"workflow": "t.handled"} in points["airflow.attune.workflow.succeeded"]
    assert {"workflow": "t.handled", "task": "boom"} in points["airflow.attune.task.retries"]
    assert {"workflow": "t.handled", "task": "boom"} in points["airflow.attune.task.failed"]
    tasks = {p.get("task") for p in points["airflow.attune.task.duration"]}
    assert tasks == {"pick", "boom", "cleanup"}, points


def test_statsd_with_influxdb_tags(airflow_db: None, packs: Path) -> None:
    """`statsd_influxdb_enabled`: the workflow and task as InfluxDB tags (statsd-exporter labels)."""
    packets = statsd_run("t.handled", packs, 0, statsd_influxdb_enabled="True")
    assert "airflow.attune.workflow.succeeded,workflow=t.handled:1|c" in packets, packets
    assert "airflow.attune.task.retries,workflow=t.handled,task=boom:1|c" in packets, packets
    assert "airflow.attune.task.failed,workflow=t.handled,task=boom:1|c" in packets, packets
    assert any(p.startswith("airflow.attune.workflow.duration,workflow=t.handled:") for p in packets)
    assert any(p.startswith("airflow.attune.task.duration,workflow=t.handled,task=cleanup:") for p in packets)
