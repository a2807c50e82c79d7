"""`core.inquiry` through Airflow's human-in-the-loop requests, answered over the REST API.

One Airflow API server (module-scoped, 127.0.0.1, a free port) shares the session's
SQLite metadata database. The workflow runs with `dag.test()` in the test's main thread
(the task runner installs signal handlers, so it cannot run in another thread); the
inquiry task parks in `awaiting_input`, and a helper thread plays the person answering:
it logs in (`POST /auth/token`), finds the request (`GET .../hitlDetails`) and answers it
(`PATCH .../hitlDetails`), which resumes the task. `dag.test()` has no scheduler to time
an unanswered inquiry out, so the timeout case runs the scheduler's sweep alongside
(`answer_deadlines`).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

USER, PASSWORD = "inquirer", "inquiry-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.session = requests.Session()

    def login(self) -> None:
        reply = self.session.post(f"{self.base}/auth/token", json={"username": USER, "password": PASSWORD})
        reply.raise_for_status()
        self.session.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"

    def open_requests(self, dag_id: str) -> list[dict[str, Any]]:
        reply = self.session.get(
            f"{self.base}/api/v2/dags/{dag_id}/dagRuns/~/hitlDetails", params={"response_received": False}
        )
        reply.raise_for_status()
        return list(reply.json()["hitl_details"])

    def answer(self, detail: dict[str, Any], params_input: dict[str, Any]) -> requests.Response:
        ti = detail["task_instance"]
        url = (
            f"{self.base}/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}"
            f"/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
        )
        return self.session.patch(url, json={"chosen_options": ["Submit"], "params_input": params_input})


@pytest.fixture(scope="module")
def api(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """An `airflow api-server` on the session's metadata database."""
    work = tmp_path_factory.mktemp("api-server")
    passwords = work / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = free_port()
    env = dict(os.environ)
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:admin",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(passwords),
        AIRFLOW__API__BASE_URL=f"http://127.0.0.1:{port}",
    )
    airflow = Path(sys.executable).parent / "airflow"
    command = [str(airflow), "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with (work / "api-server.log").open("w") as log:
        server = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = Api(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (work / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(f"{client.base}/api/v2/monitor/health", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the API server did not start"
            time.sleep(1)
        client.login()
        yield client
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


class Answerer(threading.Thread):
    """Waits for the open request of `dag_id`, checks it, answers `params_input`."""

    def __init__(self, api: Api, dag_id: str, params_input: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.api, self.dag_id, self.params_input = api, dag_id, params_input
        self.detail: dict[str, Any] | None = None
        self.status: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while self.detail is None and time.monotonic() < deadline:
                found = self.api.open_requests(self.dag_id)
                self.detail = found[0] if found else None
                time.sleep(0.5)
            assert self.detail is not None, "no Human-in-the-loop request appeared"
            self.status = self.api.answer(self.detail, self.params_input).status_code
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


ASK = """
    ref: t.{name}
    parameters:
      service: {{type: string, default: billing}}
    tasks:
      - name: ask
        action: core.inquiry
        input:
          prompt: "Deploy {{{{ parameters.service }}}}?"
          schema:
            type: object
            properties:
              approved: {{type: boolean, required: true, description: Go ahead?}}
              reason: {{type: string}}
              replicas: {{type: integer, minimum: 1, default: 2}}
        {extra}
        publish:
          - approved: "{{{{ task.ask.result.approved }}}}"
        decision:
          - when: "{{{{ task.ask.result.approved }}}}"
            next: deploy
          - default: stop
        on_failure: explain
      - name: deploy
        action: core.echo
        input: {{message: "deploying {{{{ task.ask.result.replicas }}}} ({{{{ task.ask.result.reason }}}})"}}
      - name: stop
        action: core.noop
      - name: explain
        action: core.echo
        input: {{message: "{{{{ task.ask.status }}}}: {{{{ task.ask.error.type }}}}"}}
    output_map:
      answer: "{{{{ task.ask.result }}}}"
      deploy: "{{{{ task.deploy.result.message }}}}"
      explained: "{{{{ task.explain.result.message }}}}"
"""


def ask(run: Callable[..., Any], name: str, extra: str = "") -> Any:
    return run(ASK.format(name=name, extra=extra), name=name)


def test_an_answer_becomes_the_result(api: Api, run: Callable[..., Any]) -> None:
    answerer = Answerer(api, "t.ask_ok", {"approved": True, "reason": "tested", "replicas": None})
    answerer.start()
    result = ask(run, "ask_ok")
    answerer.join(10)
    assert answerer.error is None and answerer.status == 200
    assert answerer.detail is not None
    assert answerer.detail["subject"] == "Deploy billing?"
    assert answerer.detail["options"] == ["Submit"]
    assert set(answerer.detail["params"]) == {"approved", "reason", "replicas"}
    assert result.tasks["ask"].status == "succeeded", result.tasks["ask"]
    assert result.output == {
        "answer": {"approved": True, "reason": "tested", "replicas": 2},
        "deploy": "deploying 2 (tested)",
        "explained": None,
    }
    assert result.vars == {"approved": True}
    assert result.tasks["stop"].status == "skipped"


def test_an_answer_that_does_not_match_the_schema_fails_the_task(api: Api, run: Callable[..., Any]) -> None:
    answerer = Answerer(api, "t.ask_bad", {"approved": "yes please", "reason": None, "replicas": 0})
    answerer.start()
    result = ask(run, "ask_bad")
    answerer.join(10)
    assert answerer.error is None and answerer.status == 200
    outcome = result.xcom("ask", "attune")
    assert outcome["status"] == "failed"
    assert outcome["error"]["type"] == "InvalidAnswer"
    assert "answer field 'approved'" in outcome["error"]["message"]
    assert "answer field 'replicas'" in outcome["error"]["message"]
    assert result.output["explained"] == "failed: InvalidAnswer"


def test_no_answer_within_the_timeout_is_the_outcome_timeout(api: Api, run: Callable[..., Any]) -> None:
    from attune_provider.operators.inquiry import answer_deadlines  # imports Airflow: not at collection

    started = time.monotonic()
    with answer_deadlines(every=0.5):
        result = ask(run, "ask_late", extra="timeout: 2")
    assert time.monotonic() - started < 60
    outcome = result.xcom("ask", "attune")
    assert outcome["status"] == "timeout"
    assert outcome["error"] == {"type": "timeout", "message": "task 'ask' got no answer in 2s"}
    assert result.output["explained"] == "timeout: timeout"
    # Airflow leaves the request unanswered; its task instance is no longer awaiting input
    assert [d["task_instance"]["state"] for d in api.open_requests("t.ask_late")] == ["failed"]


ASSIGNED = """
    ref: t.ask_assigned
    tasks:
      - name: ask
        action: core.inquiry
        timeout: 90
        input:
          prompt: Release?
          schema: {{type: object, properties: {{ok: {{type: boolean, required: true}}}}}}
          assigned_users: [{{id: inquirer, name: The inquirer}}]
          notifiers:
            - notifier: tests.notifiers.FileNotifier
              args: {{path: "{path}", note: asked}}
"""


def test_an_inquiry_names_who_may_answer_and_calls_its_notifiers(
    api: Api, run: Callable[..., Any], tmp_path: Path
) -> None:
    from attune_provider.operators.inquiry import answer_deadlines  # imports Airflow: not at collection

    notes = tmp_path / "notes.jsonl"
    answerer = Answerer(api, "t.ask_assigned", {"ok": True})
    answerer.start()
    with answer_deadlines(every=0.5):  # never waits past the task's timeout, answered or not
        result = run(ASSIGNED.format(path=notes), name="ask_assigned")
    answerer.join(10)
    assert answerer.error is None and answerer.status == 200, answerer.error
    assert answerer.detail is not None
    assert answerer.detail["assigned_users"] == [{"id": "inquirer", "name": "The inquirer"}]
    assert result.tasks["ask"].status == "succeeded" and result.output is None
    assert result.xcom("ask") == {"ok": True}  # its result (a success pushes no outcome of its own)
    assert [json.loads(line) for line in notes.read_text().splitlines()] == [
        {"note": "asked", "task_id": "ask", "dag_id": "t.ask_assigned"}
    ]


def test_a_notifier_that_is_not_one_fails_the_inquiry(run: Callable[..., Any], airflow_db: None) -> None:
    workflow = ASSIGNED.format(path="/dev/null").replace("tests.notifiers.FileNotifier", "json.dumps")
    result = run(workflow.replace("t.ask_assigned", "t.ask_notifier"), name="ask_notifier")
    outcome = result.xcom("ask", "attune")
    assert outcome["status"] == "failed"
    assert "notifier 'json.dumps' is not an Airflow BaseNotifier class" in outcome["error"]["message"]


def test_a_notifier_that_raises_fails_the_inquiry_naming_its_error(
    run: Callable[..., Any], airflow_db: None, tmp_path: Path
) -> None:
    unwritable = tmp_path / "no-such-dir" / "notes.jsonl"
    workflow = ASSIGNED.format(path=unwritable).replace("t.ask_assigned", "t.ask_raises")
    result = run(workflow, name="ask_raises")  # the notifier cannot open its file
    outcome = result.xcom("ask", "attune")
    assert outcome["status"] == "failed"
    assert "a notifier failed: FileNotFoundError" in outcome["error"]["message"]
