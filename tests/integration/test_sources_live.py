"""Workflow sources in a real Airflow (scheduler, `airflow dag-processor`, API server).

The packs path holds pack `team`; source `central` is a registry served on 127.0.0.1
(tests/registry_server.py) holding `alpha` (active) and `beta` (paused). Checked through
the REST API as users see it: DAGs tagged by source, `beta` paused on creation, a change
of status applied to the DAGs that exist (paused and unpaused), a registry that goes down
keeping its DAGs listed and runnable with a warning import error naming the source, and
the per-source metrics received by a StatsD listener on 127.0.0.1 (UDP) from the DAG
processor.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live_airflow import PASSWORDS_FILE, STARTUP_TIMEOUT, LiveAirflow, free_port, prepare
from tests.registry_server import Registry
from tests.support import write_pack

pytestmark = pytest.mark.scheduler

INTERVAL = 10  # [dag_processor] min_file_process_interval
API_PASSWORD = "attune-sources-test"
PICKUP_LIMIT = INTERVAL + 60.0  # a change shows within one interval plus two parses (loaded machine)
HELLO = """
ref: {pack}.hello
tasks:
  - name: greet
    action: core.echo
    input: {{message: "hello from {pack}"}}
output_map:
  greeting: "{{{{ task.greet.result.message }}}}"
"""


class StatsdListener:
    """Every StatsD datagram sent to 127.0.0.1:`port`, as text lines."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.lines: list[str] = []
        threading.Thread(target=self._listen, daemon=True).start()

    def _listen(self) -> None:
        while True:
            data, _ = self.socket.recvfrom(65535)
            self.lines.extend(data.decode(errors="replace").splitlines())

    def names(self) -> set[str]:
        return {line.split(":", 1)[0] for line in list(self.lines)}


class Sources:
    def __init__(self, airflow: LiveAirflow, registry: Registry, statsd: StatsdListener, src: Path) -> None:
        self.airflow, self.registry, self.statsd, self.src = airflow, registry, statsd, src

    def dag(self, dag_id: str) -> dict:
        found = self.airflow.request("GET", f"/api/v2/dags?dag_id_pattern={dag_id}")
        return next(d for d in found["dags"] if d["dag_id"] == dag_id)

    def import_errors(self) -> dict[str, str]:
        return self.airflow.import_errors()

    def until(self, what: str, check: Callable[[], bool], limit: float = PICKUP_LIMIT) -> float:
        return self.airflow.until(what, check, limit)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sources]:
    root = tmp_path_factory.mktemp("sources-airflow")
    src = root / "src"
    registry = Registry(root / "registry")
    registry.publish({_pack(src, "alpha"): "active", _pack(src, "beta"): "paused"})
    statsd = StatsdListener()
    airflow = prepare(root, min_file_process_interval=INTERVAL)
    write_pack(root / "packs", "team", {"workflows/hello.yaml": HELLO.format(pack="team")})
    # the pause states reach existing DAGs through the REST API, as user `admin` (docs/sources.md)
    airflow.home.mkdir(parents=True, exist_ok=True)
    (airflow.home / PASSWORDS_FILE).write_text(json.dumps({"admin": API_PASSWORD}))
    api = {"conn_type": "http", "host": "http://127.0.0.1", "port": airflow.port, "login": "admin"}
    airflow.env.update(
        {
            "ATTUNE_SOURCES": json.dumps(
                [{"name": "central", "kind": "http", "url": registry.url, "refresh_seconds": 5}]
            ),
            "AIRFLOW_CONN_ATTUNE_AIRFLOW_API": json.dumps({**api, "password": API_PASSWORD}),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        }
    )
    started = time.monotonic()
    try:
        airflow.start()
        airflow.login(STARTUP_TIMEOUT)
        wanted = {"alpha.hello", "beta.hello", "team.hello"}
        airflow.wait_for_dags(wanted, STARTUP_TIMEOUT - (time.monotonic() - started))
        yield Sources(airflow, registry, statsd, src)
    finally:
        airflow.stop()
        registry.stop()


def _pack(root: Path, name: str) -> Path:
    return write_pack(root, name, {"workflows/hello.yaml": HELLO.format(pack=name)})


def test_dags_carry_their_source_and_a_paused_one_is_created_paused(live: Sources) -> None:
    alpha, beta, team = (live.dag(f"{name}.hello") for name in ("alpha", "beta", "team"))
    assert {t["name"] for t in alpha["tags"]} >= {"source:central", "pack:alpha", "attune"}
    assert {t["name"] for t in team["tags"]} >= {"source:local", "pack:team"}
    assert alpha["is_paused"] is False and team["is_paused"] is False
    assert beta["is_paused"] is True
    live.until("no import error", lambda: "attune_errors.py" not in live.import_errors())


def test_a_workflow_from_a_registry_runs_and_says_where_it_came_from(live: Sources) -> None:
    live.airflow.trigger("alpha.hello", {})
    state, _ = live.airflow.wait("alpha.hello")
    assert state == "success"
    assert live.airflow.xcom("alpha.hello", "return_value") == {"greeting": "hello from alpha"}
    assert live.airflow.workflow("alpha.hello")["source"] == "central"


def test_a_status_change_pauses_and_unpauses_existing_dags(live: Sources) -> None:
    live.registry.publish({_pack(live.src, "alpha"): "paused", _pack(live.src, "beta"): "active"})
    live.until(
        "alpha paused and beta unpaused",
        lambda: live.dag("alpha.hello")["is_paused"] is True and live.dag("beta.hello")["is_paused"] is False,
    )


def test_the_metrics_of_each_source_reach_statsd(live: Sources) -> None:
    wanted = {
        "airflow.attune.source.fetch.ok",
        "airflow.attune.source.fetch.ok.central",
        "airflow.attune.source.workflows.central",
        "airflow.attune.source.age_seconds.central",
    }
    live.until("source metrics received", lambda: wanted <= live.statsd.names())
    prefix = "airflow.attune.source.workflows.central:"
    gauges = [line for line in live.statsd.lines if line.startswith(prefix)]
    assert gauges[-1] == "airflow.attune.source.workflows.central:2|g"


def test_a_registry_down_keeps_its_dags_listed_and_runnable(live: Sources) -> None:
    live.registry.stop()
    live.until(
        "the failed fetch shown as an import error",
        lambda: "source 'central' could not be fetched" in live.import_errors().get("attune_errors.py", ""),
    )
    message = live.import_errors()["attune_errors.py"]
    assert "cannot connect" in message and "serving its packs of" in message
    assert "every valid workflow is loaded" in message
    for dag_id in ("alpha.hello", "beta.hello", "team.hello"):
        dag = live.dag(dag_id)
        assert dag["is_stale"] is False and dag["has_import_errors"] is False, dag
    live.airflow.trigger("beta.hello", {})  # its task's parse reads the copy on disk
    state, _ = live.airflow.wait("beta.hello")
    assert state == "success"
    assert "airflow.attune.source.fetch.failed.central" in live.statsd.names()
