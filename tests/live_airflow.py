"""A real Airflow (scheduler, DAG processor, API server) in a temporary home, and a REST client.

Used by the tests that must prove a behaviour where users meet it: in Airflow's own
processes, not in an in-process DagBag or `dag.test()`. The metadata database is a new
PostgreSQL database of its own (127.0.0.1:5432, trust auth), dropped at the end: SQLite
under a scheduler, a DAG processor and an API server at once once answered a REST call
with `HTTP 500 Database error` on a loaded machine. `LiveAirflow.start()` migrates it
and starts the processes, each in its own session with its log under the root; `stop()`
ends them and every process they started.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from tests.support import install_dag_files

VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT = 180.0
RUN_TIMEOUT = 240.0
PASSWORDS_FILE = "simple_auth_manager_passwords.json.generated"
POSTGRES = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "postgres"}
POSTGRES_WAIT = 60.0


def _admin_sql(statement: str) -> None:
    """Run one statement on the server's `postgres` database, waiting for the server to
    accept connections (it may be starting): a test never fails from a slow start alone."""
    deadline = time.monotonic() + POSTGRES_WAIT
    while True:
        try:
            connection = psycopg2.connect(**POSTGRES, connect_timeout=5)
            break
        except psycopg2.OperationalError as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL at 127.0.0.1:5432 is not reachable: {exc}") from None
            time.sleep(1)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def create_database(prefix: str) -> str:
    """A new, empty PostgreSQL database; its name."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    _admin_sql(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop a test database (the machine keeps none), closing what still uses it."""
    _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
        """End the processes, then drop the session's database."""
        self._end_processes(grace)
        if "ATTUNE_TEST_DATABASE" in self.env:
            drop_database(self.env["ATTUNE_TEST_DATABASE"])

    def _end_processes(self, grace: float) -> None:
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

    def dag_ids(self) -> set[str]:
        """Every DAG the API lists, page by page (a page holds at most 100)."""
        found: set[str] = set()
        offset = 0
        while True:
            page = self.request("GET", f"/api/v2/dags?limit=100&offset={offset}")["dags"]
            found.update(d["dag_id"] for d in page)
            if len(page) < 100:
                return found
            offset += len(page)

    def wait_for_dags(self, dag_ids: set[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        seen: set[str] = set()
        while time.monotonic() < deadline:
            self.check_alive()
            seen = self.dag_ids()
            if dag_ids <= seen:
                return
            time.sleep(1)
        errors = self.request("GET", "/api/v2/importErrors")
        raise AssertionError(f"DAGs not parsed in {timeout:.0f}s: missing {dag_ids - seen}; {errors}")

    def import_errors(self) -> dict[str, str]:
        """DAG file name -> stack trace, as the UI's Dag Import Errors shows them."""
        found = self.request("GET", "/api/v2/importErrors?limit=100")["import_errors"]
        return {Path(e["filename"]).name: e["stack_trace"] for e in found}

    def until(self, what: str, check: Callable[[], bool], limit: float) -> float:
        """Seconds until `check()` holds; fails when it still does not after `limit` + a long
        grace (a loaded machine), and when it took longer than `limit` (too late, not flaky)."""
        started = time.monotonic()
        while not check():
            self.check_alive()
            if time.monotonic() - started > limit + 120:
                raise AssertionError(f"{what}: not seen after {limit + 120:.0f}s: {self.import_errors()}")
            time.sleep(1)
        took = time.monotonic() - started
        print(f"{what}: {took:.1f}s")
        assert took <= limit, f"{what} took {took:.1f}s, more than {limit:.0f}s"
        return took

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


def environment(root: Path, port: int, min_file_process_interval: int = 600) -> dict[str, str]:
    """The processes' environment: LocalExecutor on a new PostgreSQL database, home under
    `root`, bound to 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "ATTUNE", "PYTEST"))}
    database = create_database("attune_live")
    env.update(
        {
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
            "ATTUNE_TEST_DATABASE": database,
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
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(min_file_process_interval),
            "PYTHONFAULTHANDLER": "1",  # a native crash prints its Python stacks into the log
        }
    )
    return env


def prepare(root: Path, min_file_process_interval: int = 600) -> LiveAirflow:
    """A LiveAirflow (not started) whose DAGs folder holds the provider's two DAG files and
    whose packs path is `root/packs`."""
    install_dag_files(root / "dags")
    (root / "packs").mkdir(exist_ok=True)
    port = free_port()
    return LiveAirflow(root, port, environment(root, port, min_file_process_interval))
