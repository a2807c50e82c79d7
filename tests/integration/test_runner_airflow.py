"""`runner_type: airflow` (docs/runners.md) through Airflow: real operators of the
standard, HTTP and common-SQL providers run inside Attune tasks, against a shell, an HTTP
server on 127.0.0.1 (started here) and a SQLite database file."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import TaskDeferred

from attune_provider.local_run import RunResult

BASH_ACTION = """
name: bash
runner_type: airflow
operator: airflow.providers.standard.operators.bash.BashOperator
parameters:
  bash_command: {type: string, required: true}
  env: {type: object}
  append_env: {type: boolean, default: true}
"""


def outcome(result: RunResult, task: str) -> dict[str, Any]:
    """A task's outcome: its `attune` XCom, or (a plain success pushes only its result) that."""
    return result.xcom(task, "attune") or {"status": "succeeded", "result": result.xcom(task)}


def test_bash_operator_echoes_its_input_and_returns_the_last_line(run: Callable[..., RunResult]) -> None:
    workflow = """
    ref: t.wf
    parameters:
      who: {type: string, required: true}
    tasks:
      - name: greet
        action: t.bash
        input:
          bash_command: 'echo "first line"; echo "hello $WHO {{ parameters.who }}"'
          env: {WHO: "{{ parameters.who | upper }}"}
        publish:
          - said: "{{ task.greet.result }}"
    output_map:
      said: "{{ vars.said }}"
    """
    result = run(workflow, files={"actions/bash.yaml": BASH_ACTION}, params={"who": "ada"})
    assert result.status == "succeeded", result.reasons
    assert result.output == {"said": "hello ADA ada"}  # BashOperator's return: the last line of stdout
    assert result.tasks["greet"].status == "succeeded"


def test_bash_operator_input_is_not_rendered_again_by_airflow(run: Callable[..., RunResult]) -> None:
    """Attune renders the input once; braces in the rendered value reach the shell as they are."""
    workflow = """
    ref: t.wf
    tasks:
      - name: literal
        action: t.bash
        input:
          bash_command: "echo '{{ '{{' }} ds {{ '}}' }}'"
    output_map: "{{ task.literal.result }}"
    """
    result = run(workflow, files={"actions/bash.yaml": BASH_ACTION})
    assert result.status == "succeeded", result.reasons
    assert result.output == "{{ ds }}"


def test_bash_operator_failure_is_a_failed_task_with_the_exception(run: Callable[..., RunResult]) -> None:
    workflow = """
    ref: t.wf
    tasks:
      - name: broken
        action: t.bash
        input: {bash_command: "echo going; exit 3"}
        on_failure: report
      - name: report
        action: core.echo
        input:
          message: "{{ task.broken.error.type }}: {{ task.broken.error.message }}"
    output_map: "{{ task.report.result.message }}"
    """
    result = run(workflow, files={"actions/bash.yaml": BASH_ACTION})
    assert result.tasks["broken"].status == "failed"
    assert result.tasks["report"].status == "succeeded"
    error = outcome(result, "broken")["error"]
    assert error["type"] == "AirflowException"
    assert "non-zero exit code 3" in error["message"]
    assert result.output == f"AirflowException: {error['message']}"


class Service(BaseHTTPRequestHandler):
    """/items returns JSON; anything else echoes the method, path and body; /missing is a 404."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.path == "/items":
            self._send(200, {"items": [1, 2, 3]})
        elif self.path == "/missing":
            self._send(404, {"error": "no such thing"})
        else:
            self._send(200, {"method": self.command, "path": self.path, "body": body,
                             "token": self.headers.get("X-Token")})

    do_GET = do_POST = _route


@pytest.fixture
def service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Service)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


HTTP_ACTION = """
name: http_call
runner_type: airflow
operator: airflow.providers.http.operators.http.HttpOperator
parameters:
  http_conn_id: {type: string, default: attune_service}
  endpoint: {type: string, required: true}
  method: {type: string, default: GET}
  data: {}
  headers: {type: object}
"""


def test_http_operator_calls_a_local_server_through_a_connection(
    run: Callable[..., RunResult], service: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ATTUNE_SERVICE", f"http://127.0.0.1:{service}")
    workflow = """
    ref: t.wf
    tasks:
      - name: list_items
        action: t.http_call
        input: {endpoint: items}
        on_success: post
      - name: post
        action: t.http_call
        input:
          endpoint: echo
          method: POST
          data: "{{ task.list_items.result | from_json | to_json }}"
          headers: {X-Token: abc}
        on_success: missing
      - name: missing
        action: t.http_call
        input: {endpoint: missing}
    output_map:
      items: "{{ (task.list_items.result | from_json)['items'] }}"
      echo: "{{ task.post.result | from_json }}"
    """
    result = run(workflow, files={"actions/http_call.yaml": HTTP_ACTION})
    assert result.tasks["list_items"].status == "succeeded"
    assert result.tasks["post"].status == "succeeded"
    assert result.output["items"] == [1, 2, 3]  # HttpOperator's return: the response text
    echo = result.output["echo"]
    assert (echo["method"], echo["path"], echo["token"]) == ("POST", "/echo", "abc")
    assert json.loads(echo["body"]) == {"items": [1, 2, 3]}
    # a 404 fails the operator's response check: the task fails with its exception
    assert result.status == "failed"
    error = outcome(result, "missing")["error"]
    assert error["type"] == "AirflowException" and "404" in error["message"]


SQL_ACTION = """
name: sql
runner_type: airflow
operator: airflow.providers.common.sql.operators.sql.SQLExecuteQueryOperator
parameters:
  conn_id: {type: string, default: attune_db}
  sql: {required: true}
  parameters: {}
  split_statements: {type: boolean}
  return_last: {type: boolean, default: true}
"""


def test_sql_operator_creates_inserts_and_selects_rows_in_sqlite(
    run: Callable[..., RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "db.sqlite"
    # the SQLite provider reads the file's path from the connection's host (a URI
    # `sqlite:////path` puts it in the schema, which SqliteHook turns into a bad file: URI)
    monkeypatch.setenv("AIRFLOW_CONN_ATTUNE_DB", json.dumps({"conn_type": "sqlite", "host": str(database)}))
    workflow = """
    ref: t.wf
    parameters:
      names: {type: array, default: [ada, grace, linus]}
    tasks:
      - name: create
        action: t.sql
        input:
          sql: "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"
        on_success: insert
      - name: insert
        action: t.sql
        with_items: "{{ parameters.names }}"
        input:
          sql: "INSERT INTO people (name) VALUES (?)"
          parameters: ["{{ item }}"]
        on_success: select
      - name: select
        action: t.sql
        input:
          sql: "SELECT name, length(name) FROM people ORDER BY name"  # mapped inserts: any order
        on_success: broken
      - name: broken
        action: t.sql
        input: {sql: "SELECT * FROM nowhere"}
    output_map:
      rows: "{{ task.select.result }}"
    """
    result = run(workflow, files={"actions/sql.yaml": SQL_ACTION})
    assert result.tasks["create"].status == "succeeded"
    assert result.tasks["insert"].status == "succeeded"
    assert result.tasks["select"].status == "succeeded"
    assert result.output == {"rows": [["ada", 3], ["grace", 5], ["linus", 5]]}  # rows as JSON lists
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM people").fetchall() == [(3,)]
    assert result.status == "failed"
    error = outcome(result, "broken")["error"]
    assert error["type"] == "OperationalError" and "no such table: nowhere" in error["message"]


TIMEOUT_WORKFLOW = """
ref: t.wf
tasks:
  - name: slow
    action: t.bash
    timeout: 2
    input: {bash_command: "echo $$ > {pid_file}; exec sleep 60"}
"""


def test_a_timeout_stops_the_operator_through_its_on_kill(
    run: Callable[..., RunResult], tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    workflow = TIMEOUT_WORKFLOW.replace("{pid_file}", str(pid_file))
    result = run(workflow, files={"actions/bash.yaml": BASH_ACTION})
    assert result.tasks["slow"].status == "timeout"
    pid = int(pid_file.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


class MaybeDeferring(BaseOperator):
    """Defers when built deferrable (its default, as many providers' operators take it from
    the configuration); else returns what it was built with and pushes an XCom of its own."""

    def __init__(self, *, deferrable: bool = True, note: str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deferrable, self.note = deferrable, note

    def execute(self, context: Any) -> Any:
        if self.deferrable:
            raise TaskDeferred(trigger=TimeDeltaTrigger(timedelta(seconds=1)), method_name="execute_complete")
        context["ti"].xcom_push(key="pushed_by_operator", value=self.note)
        return {"deferrable": self.deferrable, "task_id": self.task_id, "run_id": context["run_id"]}


class AlwaysDeferring(BaseOperator):
    def execute(self, context: Any) -> Any:
        raise TaskDeferred(trigger=TimeDeltaTrigger(timedelta(seconds=1)), method_name="execute_complete")


def test_deferrable_operators_run_synchronously_or_fail_clearly(run: Callable[..., RunResult]) -> None:
    files = {
        "actions/maybe.yaml": f"""
        name: maybe
        runner_type: airflow
        operator: {__name__}.MaybeDeferring
        parameters:
          note: {{type: string}}
          deferrable: {{type: boolean}}
        """,
        "actions/always.yaml": f"""
        name: always
        runner_type: airflow
        operator: {__name__}.AlwaysDeferring
        """,
    }
    workflow = """
    ref: t.wf
    tasks:
      - name: sync
        action: t.maybe
        input: {note: "{{ system.workflow }}"}
        on_complete: asked_to_defer
      - name: asked_to_defer
        action: t.maybe
        input: {deferrable: true}
        on_complete: defers
      - name: defers
        action: t.always
    """
    result = run(workflow, files=files)
    assert result.tasks["sync"].status == "succeeded"
    got = result.xcom("sync")
    assert got["deferrable"] is False and got["task_id"] == "sync" and got["run_id"] == result.run_id
    assert result.xcom("sync", "pushed_by_operator") == "t.wf"  # the operator's own XComs are the task's
    for task, name in (("asked_to_defer", "MaybeDeferring"), ("defers", "AlwaysDeferring")):
        assert result.tasks[task].status == "failed"
        error = outcome(result, task)["error"]
        assert error["type"] == "TaskDeferred"
        assert f"operator {__name__}.{name} deferred itself (trigger TimeDeltaTrigger)" in error["message"]
        assert "does not support deferral" in error["message"]
