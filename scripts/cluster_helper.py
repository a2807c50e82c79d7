"""The parts of scripts/cluster.sh that are easier in Python (run with the repository's .venv).

    cluster_helper.py port-open HOST PORT          exit 0 if a TCP connection succeeds
    cluster_helper.py ports-free PORT...           exit 1 (naming them) if one is already bound
    cluster_helper.py createdb NAME                create the PostgreSQL database when missing
    cluster_helper.py reap [--grace S] PIDFILE...  end those processes' sessions (TERM, wait, KILL)
    cluster_helper.py health                       print "healthy" or what is not; exit 0/1
    cluster_helper.py wait SECONDS                 wait for health and parsed, unpaused DAGs

Everything is read from the environment that cluster.sh sources from $ATTUNE_CLUSTER_HOME/env.
A pid file holds "PID STARTTIME EPOCH": STARTTIME (clock ticks since boot, /proc/PID/stat
field 22) tells the recorded process from a later one that reuses its pid. Each process was
started with setsid, so its pid is also its session id: every process it started that is
still in that session (Celery pool processes, task supervisors, the task runners they put in
process groups of their own) is one of ours, and nothing else is. All messages go to stderr.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

TAIL_LINES = 40


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# -- processes -------------------------------------------------------------------------------


def stat(pid: int | str) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None if there is no such process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def read_pidfile(path: Path) -> tuple[int, str, float] | None:
    try:
        pid, started, epoch = path.read_text().split()[:3]
        return int(pid), started, float(epoch)
    except (OSError, ValueError):
        return None


def is_alive(pid: int, started: str) -> bool:
    fields = stat(pid)
    return fields is not None and fields[19] == started and fields[0] not in ("Z", "X")


def session_members(sids: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = stat(entry.name)
        if fields and int(fields[3]) in sids and fields[0] not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def our_sessions(pidfiles: list[Path]) -> dict[int, Path]:
    """Session ids that are ours: the recorded leader still runs, or its pid is not in use
    (a pid stays reserved while a session or group of that id has a member, so the members
    of session PID are then the leader's leftovers)."""
    sessions = {}
    for path in pidfiles:
        record = read_pidfile(path)
        if record is None:
            continue
        pid, started, _ = record
        fields = stat(pid)
        if fields is None or fields[19] == started:
            sessions[pid] = path
    return sessions


def wait_until_gone(sids: set[int], seconds: float) -> list[int]:
    """Wait up to `seconds` for every process of sessions `sids` to end; those left."""
    deadline = time.monotonic() + seconds
    while True:
        left = session_members(sids)
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.3)


def reap(pidfiles: list[Path], grace: float) -> int:
    """SIGTERM each recorded process group, wait up to `grace` s for their sessions to
    empty, then SIGKILL every process still in them (task runners in groups of their own too)."""
    sessions = our_sessions(pidfiles)
    for sid in sessions:
        try:
            os.killpg(sid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
    left = wait_until_gone(set(sessions), grace)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if left:
        say(f"cluster: SIGKILL to {len(left)} process(es) still running after {grace:.0f}s: {left}")
    still = wait_until_gone(set(sessions), 10)
    if still:
        say(f"cluster: processes that would not die: {still}")
        return 1
    for path in sessions.values():
        path.unlink(missing_ok=True)
    return 0


# -- network -----------------------------------------------------------------------------------


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ports_free(ports: list[int]) -> int:
    busy = []
    for port in ports:
        # The worker and triggerer log servers bind every interface (Airflow hard-codes it).
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                busy.append(port)
    if busy:
        say(f"cluster: port(s) already in use: {' '.join(map(str, busy))}")
        return 1
    return 0


def createdb(name: str) -> int:
    import psycopg2

    if not name.replace("_", "").isalnum() or not name[0].isalpha():
        say(f"cluster: refusing database name {name!r} (letters, digits, _)")
        return 2
    conn = psycopg2.connect(
        host=os.environ.get("ATTUNE_CLUSTER_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("ATTUNE_CLUSTER_PG_PORT", "5432")),
        user=os.environ.get("ATTUNE_CLUSTER_PG_USER", "postgres"),
        dbname="postgres",
        connect_timeout=10,
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{name}"')
            say(f"cluster: created PostgreSQL database {name}")
    conn.close()
    return 0


# -- the API -----------------------------------------------------------------------------------


class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None, timeout: float = 15) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data, headers, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return json.loads(response.read() or b"null")

    def health(self) -> tuple[bool, str, str | None]:
        """(healthy, description, the process to blame when not)."""
        try:
            found = self.call("GET", "/api/v2/monitor/health", timeout=10)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return False, f"API not answering ({exc})", "api-server"
        blame = {
            "metadatabase": "api-server",
            "scheduler": "scheduler",
            "triggerer": "triggerer",
            "dag_processor": "dag-processor",
        }
        bad = [
            (part, (found.get(part) or {}).get("status"))
            for part in blame
            if (found.get(part) or {}).get("status") != "healthy"
        ]
        if bad:
            return False, "unhealthy: " + ", ".join(f"{p}={s}" for p, s in bad), blame[bad[0][0]]
        return True, "healthy", None

    def login(self, passwords_file: Path) -> None:
        password = json.loads(passwords_file.read_text())["admin"]
        self.token = None
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password})[
            "access_token"
        ]

    def dags(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while True:
            page = self.call("GET", f"/api/v2/dags?limit=100&offset={len(found)}")
            found += page["dags"]
            if not page["dags"] or len(found) >= page["total_entries"]:
                return found

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/api/v2/importErrors?limit=100")["import_errors"])


def parsed_at(dag: dict[str, Any]) -> float:
    value = dag.get("last_parsed_time")
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Cluster:
    def __init__(self) -> None:
        self.home = Path(os.environ["ATTUNE_CLUSTER_HOME"])
        self.run = self.home / "run"
        self.logs = self.home / "log"
        self.api = Api(int(os.environ["ATTUNE_CLUSTER_PORT"]))
        self.passwords = Path(os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
        self.blame = "api-server"  # whose log to show when waiting fails

    def processes(self) -> dict[str, tuple[int, str, float] | None]:
        return {
            path.stem: read_pidfile(path) for path in sorted(self.run.glob("*.pid")) if path.stem != "redis"
        }

    def dead(self) -> list[str]:
        return [name for name, rec in self.processes().items() if rec is None or not is_alive(rec[0], rec[1])]

    def tail(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
        except OSError:
            return f"(no log {path})"
        return f"--- last {len(lines)} lines of {path} ---\n" + "\n".join(lines)

    def fail(self, why: str, name: str) -> int:
        say(f"cluster: {why}")
        say(self.tail(name))
        say(f"cluster: logs in {self.logs}; `bash scripts/cluster.sh status` / `stop`")
        return 1

    def wait(self, timeout: float, settle: float) -> int:
        """Wait for the API's health, a token, and the packs' DAGs; unpause them."""
        self.started = time.monotonic()
        deadline = self.started + timeout
        processor = self.processes().get("dag-processor")
        self.fresh_after = processor[2] if processor else 0.0  # when the dag-processor started
        self.settle = settle
        self.count, self.stable_since = -1, time.monotonic()
        self.phase, why = "health", "API not answering yet"
        while time.monotonic() < deadline:
            dead = self.dead()
            if dead:
                return self.fail(f"{dead[0]} is not running (while waiting for {self.phase})", dead[0])
            try:
                why = self.step()
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                why = f"{exc}"
                if isinstance(exc, urllib.error.HTTPError) and exc.code == 401:
                    self.phase = "token"  # the token expired: log in again
            if self.phase == "ready":
                return 0
            time.sleep(1 if self.phase != "dags" else 2)
        return self.fail(f"not ready after {timeout:.0f}s ({self.phase}: {why})", self.blame)

    def step(self) -> str:
        """One look at the cluster, moving self.phase on: what it is still waiting for."""
        if self.phase == "health":
            ok, why, blame = self.api.health()
            self.blame = blame or "api-server"
            if not ok:
                return why
            say(f"cluster: API healthy after {time.monotonic() - self.started:.0f}s")
            self.phase = "token"
        if self.phase == "token":
            self.blame = "api-server"
            self.api.login(self.passwords)
            self.phase = "dags"
        self.blame = "dag-processor"
        # Only the DAGs this dag-processor has parsed count: with a database kept from an
        # earlier start, DAGs of removed workflows stay listed until they are found stale
        # ([dag_processor] stale_dag_threshold, about a minute).
        listed = self.api.dags()
        dags = [d for d in listed if parsed_at(d) >= self.fresh_after - 1]
        if len(dags) != self.count:
            self.count, self.stable_since = len(dags), time.monotonic()
        if not dags:
            return f"{len(listed)} DAGs listed, none parsed by this dag-processor yet"
        errors = self.import_errors_summary()
        if time.monotonic() - self.stable_since < self.settle:
            return f"{len(dags)} DAGs, still settling"
        say(f"cluster: {len(dags)} DAGs parsed after {time.monotonic() - self.started:.0f}s; {errors}")
        self.unpause(dags)
        self.phase = "ready"
        return ""

    def import_errors_summary(self) -> str:
        errors = self.api.import_errors()
        if not errors:
            return "no import errors"
        lines = [f"{len(errors)} import error(s):"]
        for error in errors:
            text = (error.get("stack_trace") or "").strip().splitlines()
            more = f" (+{len(text) - 1} lines)" if len(text) > 1 else ""
            lines.append(f"  {error.get('filename')}: {text[0] if text else ''}{more}")
        lines.append("  (all of them: GET /api/v2/importErrors or the UI's Dag Import Errors)")
        return "\n".join(lines)

    def unpause(self, dags: list[dict[str, Any]]) -> None:
        """Unpause the packs path's DAGs (and any other DAG a test paused), never those of a
        workflow source: their pause state is the source's status (docs/sources.md)."""
        paused = [d["dag_id"] for d in dags if d.get("is_paused") and not _from_a_source(d)]
        for dag_id in paused:
            self.api.call(
                "PATCH", f"/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}", {"is_paused": False}
            )
        if paused:
            say(f"cluster: unpaused {len(paused)} DAG(s)")


def _from_a_source(dag: dict[str, Any]) -> bool:
    tags = {tag.get("name") for tag in dag.get("tags") or []}
    return any(str(tag).startswith("source:") and tag != "source:local" for tag in tags)


def main(argv: list[str]) -> int:
    if not argv:
        say(__doc__)
        return 2
    command, args = argv[0], argv[1:]
    if command == "port-open":
        return 0 if port_open(args[0], int(args[1])) else 1
    if command == "ports-free":
        return ports_free([int(p) for p in args])
    if command == "createdb":
        return createdb(args[0])
    if command == "reap":
        grace = 30.0
        if args and args[0] == "--grace":
            grace, args = float(args[1]), args[2:]
        return reap([Path(a) for a in args], grace)
    if command == "health":
        ok, why, _ = Api(int(os.environ["ATTUNE_CLUSTER_PORT"])).health()
        print(why)
        return 0 if ok else 1
    if command == "wait":
        timeout = float(args[0]) if args else float(os.environ.get("ATTUNE_CLUSTER_TIMEOUT", "300"))
        return Cluster().wait(timeout, settle=float(os.environ.get("ATTUNE_CLUSTER_SETTLE", "5")))
    say(f"unknown command {command}\n{__doc__}")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
