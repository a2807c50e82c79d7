"""Workflows run by a real Airflow: scheduler, DAG processor and API server (LocalExecutor).

One module-scoped Airflow on SQLite in its own temporary AIRFLOW_HOME parses a copy of
`dags/attune_dags.py` over the packs written here; runs are triggered and read back only
through the REST API (`/api/v2`), with a token from the simple auth manager's generated
admin password. Every run is triggered as soon as Airflow is up, so they proceed
together; each test then waits for its own run. The processes are stopped at the end:
SIGTERM to each process group, SIGKILL after a grace period, then any process they
started that is still alive, by its id.

Scale: on a 2-core machine each mapped task instance costs about 0.8 s of wall time
under this scheduler (a task process parsing the DAG file, several execution-API calls,
scheduling), so 1,000 unbatched instances take ~14 minutes (measured: 794 s). The default run covers
1,000 items in batches of 25 (40 instances); `ATTUNE_SCHEDULER_FULL_SCALE=1` adds the
1,000-instance run.

Known problem (Airflow 3.3.2, Python 3.11.7, SQLite): under that load the API server
died of SIGSEGV three times, in a thread serialising `GET /api/v2/dags/{dag}/dagRuns/{run}`
(a lazy load of `DagRun.dag_versions` -> sqlite3 `fetchall`; faulthandler's stack is in the
api-server log). Runs are therefore waited for through their final task's `status` XCom,
and the run itself is read only once that exists.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support import RECORD_ACTION, max_overlap, records

pytestmark = pytest.mark.scheduler

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0
FULL_SCALE = os.environ.get("ATTUNE_SCHEDULER_FULL_SCALE") == "1"
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"

PACK_FILES = {
    "pack.yaml": "ref: live\n",
    **RECORD_ACTION,
    "actions/size.yaml": """
        name: size
        runner_type: python-script
        entry_point: size.py
        parameters:
          batch: {type: array, required: true}
    """,
    "actions/size.py": "def run(batch):\n    return len(batch)\n",
    "workflows/ok.yaml": """
        ref: live.ok
        parameters:
          name: {type: string, required: true}
        vars: {greeting: null}
        tasks:
          - name: greet
            action: core.echo
            input: {message: "hello {{ parameters.name }}"}
            publish:
              - greeting: "{{ task.greet.result.message }}"
            decision:
              - when: "{{ 'world' in vars.greeting }}"
                next: world
              - default: other
          - name: world
            action: core.noop
          - name: other
            action: core.noop
        output_map:
          greeting: "{{ vars.greeting }}"
          run: "{{ system.execution_id }}"
    """,
    "workflows/handled.yaml": """
        ref: live.handled
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: risky
            action: live.record
            input: {log: "{{ parameters.log }}", value: bad, fail_on: [bad]}
            on_success: celebrate
            on_failure: recover
          - name: celebrate
            action: core.noop
          - name: recover
            action: core.echo
            input: {message: "{{ task.risky.error.message }}"}
        output_map:
          recovered: "{{ task.recover.result.message }}"
          risky: "{{ task.risky.status }}"
    """,
    "workflows/unhandled.yaml": """
        ref: live.unhandled
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: risky
            action: live.record
            input: {log: "{{ parameters.log }}", value: bad, fail_on: [bad]}
            on_success: celebrate
          - name: celebrate
            action: core.noop
          - name: bystander
            action: core.noop
        output_map: {risky: "{{ task.risky.status }}"}
    """,
    "workflows/fanout.yaml": """
        ref: live.fanout
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: each
            action: live.record
            with_items: "{{ range(6) | list }}"
            concurrency: 2
            input: {log: "{{ parameters.log }}", value: "{{ item }}", sleep: 4}
        output_map: "{{ task.each.result | map(attribute='value') | list }}"
    """,
    "workflows/big.yaml": """
        ref: live.big
        parameters:  # a list known only at run time: the `items` / `run` / `attune_outcome` form
          count: {type: integer, default: 1000}
        tasks:
          - name: each
            action: live.size
            with_items: "{{ range(parameters.count) | list }}"
            batch_size: 25
            input: {batch: "{{ item }}"}
        output_map:
          total: "{{ task.each.total_count }}"
          executions: "{{ task.each.result | length }}"
          delivered: "{{ task.each.result | sum }}"
    """,
    "workflows/big_unbatched.yaml": """
        ref: live.big_unbatched
        tasks:
          - name: each
            action: core.noop
            with_items: "{{ range(1000) | list }}"
        output_map:
          total: "{{ task.each.total_count }}"
          executions: "{{ task.each.result | length }}"
    """,
    "workflows/child.yaml": """
        ref: live.child
        parameters:
          who: {type: string, required: true}
        tasks:
          - name: greet
            action: core.echo
            input: {message: "hi {{ parameters.who }}"}
        output_map:
          greeting: "{{ task.greet.result.message }}"
    """,
    "workflows/parent.yaml": """
        ref: live.parent
        tasks:
          - name: sub
            action: live.child
            input: {who: parent}
            publish:
              - got: "{{ task.sub.result.greeting }}"
            on_success: after
          - name: after
            action: core.echo
            input: {message: "{{ vars.got }}!"}
        output_map:
          sub: "{{ task.sub.result }}"
          after: "{{ task.after.result.message }}"
    """,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 onwards), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def start_time(pid: int) -> str | None:
    """When a process started (clock ticks since boot): tells a process from a reused pid."""
    fields = _stat(pid)
    return fields[19] if fields else None


def descendants(pids: list[int]) -> dict[int, str]:
    """Every live process started (transitively) by one of `pids`, with its start time."""
    children: dict[int, list[int]] = {}
    for path in Path("/proc").glob("[0-9]*"):
        fields = _stat(path.name)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(path.name))
    found: dict[int, str] = {}
    stack = list(pids)
    while stack:
        for kid in children.get(stack.pop(), []):
            started = start_time(kid)
            if kid not in found and started is not None:
                found[kid] = started
                stack.append(kid)
    return found


class ApiError(AssertionError):
    pass


@dataclass
class LiveAirflow:
    """The running Airflow and a REST client for it."""

    root: Path
    port: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: list[Any] = field(default_factory=list)
    token: str | None = None
    runs: dict[str, tuple[str, str, float]] = field(default_factory=dict)  # label -> dag, run, when

    @property
    def home(self) -> Path:
        return self.root / "home"

    def request(self, method: str, path: str, body: Any = None, attempts: int = 3) -> Any:
        """One REST call; a GET is retried when a busy server drops the connection."""
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data, headers, method=method)
        for attempt in range(1, attempts + 1):
            try:
                with urllib.request.urlopen(req, timeout=30) as response:
                    return json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                raise ApiError(f"{method} {path}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if method != "GET" or attempt == attempts:
                    raise
                self.check_alive()
                time.sleep(2)
        raise AssertionError("unreachable")

    # -- processes ---------------------------------------------------------------------

    def airflow(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "airflow"), *args]

    def start(self) -> None:
        subprocess.run(self.airflow("db", "migrate"), env=self.env, check=True, capture_output=True)
        commands = {
            "scheduler": self.airflow("scheduler"),
            "dag-processor": self.airflow("dag-processor"),
            "api-server": self.airflow("api-server", "--host", "127.0.0.1", "--port", str(self.port)),
        }
        for name, command in commands.items():
            log = (self.root / f"{name}.log").open("w")
            self.logs.append(log)
            self.procs[name] = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with {code}"
                raise AssertionError(f"airflow {name} {how}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM each process group, wait, SIGKILL on timeout; then any leftover child."""
        family = descendants([p.pid for p in self.procs.values()])
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + grace
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for pid, started in family.items():  # e.g. task supervisors, in sessions of their own
            if start_time(pid) == started:  # still that process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for log in self.logs:
            log.close()

    # -- REST --------------------------------------------------------------------------

    def login(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                password = json.loads((self.home / PASSWORDS_FILE).read_text())["admin"]
                body = {"username": "admin", "password": password}
                self.token = self.request("POST", "/auth/token", body)["access_token"]
                return
            except (OSError, ValueError, KeyError, ApiError) as exc:
                last = exc
            time.sleep(1)
        raise AssertionError(f"no API token after {timeout:.0f}s ({last}):\n{self.log_tail('api-server')}")

    def wait_for_dags(self, dag_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            self.check_alive()
            seen = {d["dag_id"] for d in self.request("GET", "/api/v2/dags?limit=100")["dags"]}
            if dag_ids <= seen:
                return
            time.sleep(1)
        errors = self.request("GET", "/api/v2/importErrors")
        raise AssertionError(f"DAGs not parsed in {timeout:.0f}s: missing {dag_ids - seen}; {errors}")

    def trigger(self, dag_id: str, conf: dict[str, Any], label: str | None = None) -> str:
        """Unpause and trigger `dag_id`; the run is known as `label` (default: the dag id)."""
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        self.runs[label or dag_id] = (dag_id, run["dag_run_id"], time.monotonic())
        return str(run["dag_run_id"])

    def run_path(self, label: str) -> str:
        dag_id, run_id, _ = self.runs[label]
        quoted = urllib.parse.quote(run_id, safe="")
        return f"/api/v2/dags/{urllib.parse.quote(dag_id)}/dagRuns/{quoted}"

    def wait(self, label: str, timeout: float = RUN_TIMEOUT) -> tuple[str, float]:
        """(final DAG run state, seconds since it was triggered).

        Waits for the final task's `status` XCom first, then reads the run's state: polling
        the run itself every second crashed the API server (see the module docstring).
        """
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.concluded(label):
            time.sleep(2)
        state = None
        while time.monotonic() < deadline:
            state = self.request("GET", self.run_path(label))["state"]
            if state in ("success", "failed"):
                return state, time.monotonic() - self.runs[label][2]
            time.sleep(1)
        state = state or self.request("GET", self.run_path(label))["state"]
        raise AssertionError(f"{label} still {state} after {timeout:.0f}s:\n{self.log_tail('scheduler')}")

    def concluded(self, label: str) -> bool:
        """Whether the run's final `attune_outcome` task has reported its status."""
        self.check_alive()
        try:
            self.xcom(label, "workflow")
        except ApiError as exc:
            if "HTTP 404" in str(exc):
                return False
            raise
        return True

    def xcom(self, label: str, key: str, task_id: str = "attune_outcome") -> Any:
        path = f"{self.run_path(label)}/taskInstances/{task_id}/xcomEntries/{key}"
        return self.request("GET", path)["value"]

    def workflow(self, label: str) -> dict[str, Any]:
        """The workflow's outcome: status, tasks, vars, reasons (the `workflow` XCom)."""
        return self.xcom(label, "workflow")

    def task_states(self, label: str) -> dict[str, str | None]:
        found = self.request("GET", f"{self.run_path(label)}/taskInstances?limit=100")
        return {ti["task_id"]: ti["state"] for ti in found["task_instances"] if ti["map_index"] == -1}


def _write_packs(packs: Path) -> None:
    for rel, text in PACK_FILES.items():
        path = packs / "live" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _environment(root: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTUNE", "PYTEST"))}
    env.update(
        {
            "AIRFLOW_HOME": str(root / "home"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(root / "dags"),
            "ATTUNE_PACKS_PATH": str(root / "packs"),
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
            "PYTHONFAULTHANDLER": "1",  # a native crash prints its Python stacks into the log
        }
    )
    return env


CONF = {  # label -> (dag id, conf); fanout alone first: its executions must find free executor slots
    "live.fanout": ("live.fanout", {"log": "fanout.log"}),
    "live.ok": ("live.ok", {"name": "world"}),
    "live.ok#undeclared": ("live.ok", {"name": "world", "bogus": 1}),
    "live.handled": ("live.handled", {"log": "handled.log"}),
    "live.unhandled": ("live.unhandled", {"log": "unhandled.log"}),
    "live.parent": ("live.parent", {}),
    "live.big": ("live.big", {}),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """A running Airflow with every workflow of pack `live` triggered once."""
    root = tmp_path_factory.mktemp("live-airflow")
    (root / "dags").mkdir()
    shutil.copy(REPO / "dags" / "attune_dags.py", root / "dags" / "attune_dags.py")
    _write_packs(root / "packs")
    port = free_port()
    airflow = LiveAirflow(root, port, _environment(root, port))
    started = time.monotonic()
    try:
        airflow.start()
        airflow.login(STARTUP_TIMEOUT)
        dag_ids = {dag_id for dag_id, _ in CONF.values()} | {"live.child", "live.big_unbatched"}
        airflow.wait_for_dags(dag_ids, STARTUP_TIMEOUT - (time.monotonic() - started))
        print(f"\nAirflow up and DAGs parsed in {time.monotonic() - started:.1f}s")
        assert airflow.request("GET", "/api/v2/importErrors")["total_entries"] == 0
        for label, (dag_id, conf) in CONF.items():
            conf = {k: str(root / v) if k == "log" else v for k, v in conf.items()}
            airflow.trigger(dag_id, conf, label)
            if label == "live.fanout":  # on a busy machine the other runs' tasks took its slots
                airflow.wait(label)
        yield airflow
    finally:
        airflow.stop()
        print(f"Airflow stopped after {time.monotonic() - started:.1f}s")


def test_success_path(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.ok")
    print(f"live.ok: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.workflow("live.ok")["status"] == "succeeded"
    assert live.xcom("live.ok", "return_value") == {
        "greeting": "hello world",
        "run": live.runs["live.ok"][1],
    }
    assert live.workflow("live.ok")["vars"] == {"greeting": "hello world"}
    tasks = live.workflow("live.ok")["tasks"]
    assert tasks == {"greet": "succeeded", "world": "succeeded", "other": "skipped"}
    states = live.task_states("live.ok")
    assert states == {"greet": "success", "world": "success", "other": "skipped", "attune_outcome": "success"}


def test_wrong_parameter_type_is_refused_at_trigger(live: LiveAirflow) -> None:
    with pytest.raises(ApiError) as refused:
        live.trigger("live.ok", {"name": 5}, label="live.ok#wrong-type")
    assert "HTTP 400" in str(refused.value) and "name" in str(refused.value), refused.value


def test_undeclared_parameter_fails_the_run(live: LiveAirflow) -> None:
    """Airflow accepts any conf key; Attune checks the parameters in every task."""
    state, _ = live.wait("live.ok#undeclared")
    assert state == "failed"
    assert live.workflow("live.ok#undeclared")["status"] == "failed"
    states = live.task_states("live.ok#undeclared")
    assert states["greet"] == "failed" and states["attune_outcome"] == "failed", states


def test_handled_failure_path(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.handled")
    print(f"live.handled: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.workflow("live.handled")["status"] == "succeeded"
    assert live.xcom("live.handled", "return_value") == {
        "recovered": "value bad is refused",
        "risky": "failed",
    }
    assert live.xcom("live.handled", "attune", task_id="risky")["error"] == {
        "type": "ValueError",
        "message": "value bad is refused",
    }
    states = live.task_states("live.handled")
    assert (states["risky"], states["celebrate"], states["recover"]) == ("failed", "skipped", "success")


def test_unhandled_failure_fails_the_dag_run(live: LiveAirflow) -> None:
    state, _ = live.wait("live.unhandled")
    assert state == "failed"
    assert live.workflow("live.unhandled")["status"] == "failed"
    assert live.xcom("live.unhandled", "return_value") == {"risky": "failed"}
    assert live.workflow("live.unhandled")["tasks"] == {
        "risky": "failed",
        "celebrate": "skipped",
        "bystander": "succeeded",
    }


def test_with_items_concurrency_limits_real_overlap(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.fanout")
    print(f"live.fanout: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.xcom("live.fanout", "return_value") == [0, 1, 2, 3, 4, 5]
    log = live.root / "fanout.log"
    spans = records(log)
    assert sorted(s["value"] for s in spans) == [0, 1, 2, 3, 4, 5]
    overlap = max_overlap(spans)
    print(f"live.fanout: at most {overlap} executions at once (concurrency 2)")
    assert overlap <= 2, spans
    assert overlap >= 2, f"executions never overlapped: {spans}"


def test_subworkflow(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.parent")
    print(f"live.parent: {state} in {elapsed:.1f}s")
    assert state == "success"
    output = live.xcom("live.parent", "return_value")
    assert output == {"sub": {"greeting": "hi parent"}, "after": "hi parent!"}
    assert live.xcom("live.parent", "return_value", task_id="sub.greet") == {"message": "hi parent"}
    assert live.workflow("live.parent")["tasks"] == {"sub": "succeeded", "after": "succeeded"}


def test_with_items_over_1000_items(live: LiveAirflow, record_property: Callable[..., None]) -> None:
    state, elapsed = live.wait("live.big")
    print(f"live.big: 1,000 items in 40 batches: {state} in {elapsed:.1f}s")
    record_property("seconds", round(elapsed, 1))
    assert state == "success"
    assert live.xcom("live.big", "return_value") == {"total": 1000, "executions": 40, "delivered": 1000}


@pytest.mark.skipif(
    not FULL_SCALE,
    reason="1,000 unbatched task instances take ~14 min on 2 cores; set ATTUNE_SCHEDULER_FULL_SCALE=1",
)
def test_with_items_over_1000_unbatched_instances(
    live: LiveAirflow, record_property: Callable[..., None]
) -> None:
    live.trigger("live.big_unbatched", {})
    state, elapsed = live.wait("live.big_unbatched", timeout=1800)
    print(f"live.big_unbatched: 1,000 task instances: {state} in {elapsed:.1f}s")
    record_property("seconds", round(elapsed, 1))
    assert state == "success"
    assert live.xcom("live.big_unbatched", "return_value") == {"total": 1000, "executions": 1000}
