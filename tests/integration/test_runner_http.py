"""`core.http` through Airflow against a real HTTP server on 127.0.0.1 (started here)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class Handler(BaseHTTPRequestHandler):
    """Routes: /json, /text, /missing (404), /boom (500), /echo (anything), /slow (2 s)."""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        return

    def _send(self, status: int, body: Any, content_type: str = "application/json") -> None:
        data = json.dumps(body).encode() if content_type == "application/json" else str(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Route", self.path)
        self.end_headers()
        try:
            self.wfile.write(data)
        except BrokenPipeError:  # the client gave up (the timeout case)
            pass

    def _route(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        path = self.path.split("?", 1)[0]
        if path == "/json":
            self._send(200, {"ok": True, "items": [1, 2]})
        elif path == "/text":
            self._send(200, "plain words", "text/plain; charset=utf-8")
        elif path == "/missing":
            self._send(404, {"error": "no such thing"})
        elif path == "/boom":
            self._send(500, "server exploded", "text/plain")
        elif path == "/slow":
            time.sleep(2)
            self._send(200, {"late": True})
        else:
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(200, {"method": self.command, "path": self.path, "headers": headers, "body": raw})

    do_GET = do_POST = do_PUT = do_DELETE = _route


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CALLS = [
    ("get_json", {"url": "{base}/json"}),
    ("get_text", {"url": "{base}/text"}),
    (
        "post_json",
        {"url": "{base}/echo?q=1", "method": "POST", "headers": {"X-Token": "abc"}, "body": {"n": [1]}},
    ),
    ("put_text", {"url": "{base}/echo", "method": "PUT", "body": "raw text"}),
    ("not_found", {"url": "{base}/missing"}),
    ("server_error", {"url": "{base}/boom", "method": "DELETE"}),
    ("too_slow", {"url": "{base}/slow", "timeout": 0.5}),
    ("refused", {"url": "http://127.0.0.1:{closed}/json", "timeout": 5}),
    ("by_connection", {"http_conn_id": "attune_test", "endpoint": "echo/sub", "method": "POST", "body": []}),
    ("no_connection", {"http_conn_id": "attune_missing", "endpoint": "json"}),
]


def workflow(base: str) -> str:
    """Every call in a chain (`on_complete`), so each one runs whatever the one before did."""
    tasks = []
    for i, (name, params) in enumerate(CALLS):
        text = json.dumps(params).replace("{base}", base).replace("{closed}", str(closed_port()))
        rendered = json.loads(text)
        task: dict[str, Any] = {"name": name, "action": "core.http", "input": rendered}
        if i + 1 < len(CALLS):
            task["on_complete"] = CALLS[i + 1][0]
        tasks.append(task)
    return json.dumps({"ref": "t.wf", "tasks": tasks})


def test_http_requests(run: Callable[..., Any], server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "http", "host": "127.0.0.1", "port": int(server.rsplit(":", 1)[1]),
                  "extra": {"X-From-Connection": "yes"}}
    monkeypatch.setenv("AIRFLOW_CONN_ATTUNE_TEST", json.dumps(connection))
    result = run(workflow(server))
    # a success pushes only its result (return_value); anything else its `attune` outcome
    outcomes = {
        name: result.xcom(name, "attune") or {"status": "succeeded", "result": result.xcom(name)}
        for name, _ in CALLS
    }
    statuses = {name: outcome["status"] for name, outcome in outcomes.items()}
    assert statuses == {
        "get_json": "succeeded", "get_text": "succeeded", "post_json": "succeeded", "put_text": "succeeded",
        "not_found": "failed", "server_error": "failed", "too_slow": "failed", "refused": "failed",
        "by_connection": "succeeded", "no_connection": "failed",
    }
    assert result.status == "failed"  # only the last failure has no transition to handle it
    got = outcomes["get_json"]["result"]
    assert got["status_code"] == 200 and got["body"] == {"ok": True, "items": [1, 2]}
    assert got["headers"]["Content-Type"] == "application/json" and got["headers"]["X-Route"] == "/json"
    assert outcomes["get_text"]["result"]["body"] == "plain words"

    echo = outcomes["post_json"]["result"]["body"]
    assert (echo["method"], echo["path"], json.loads(echo["body"])) == ("POST", "/echo?q=1", {"n": [1]})
    assert echo["headers"]["x-token"] == "abc" and echo["headers"]["content-type"] == "application/json"
    echo = outcomes["put_text"]["result"]["body"]
    assert (echo["method"], echo["body"]) == ("PUT", "raw text")

    missing = outcomes["not_found"]
    assert missing["result"]["status_code"] == 404 and missing["result"]["body"] == {"error": "no such thing"}
    assert missing["error"]["type"] == "HTTPError" and "404" in missing["error"]["message"]
    boom = outcomes["server_error"]
    assert (boom["result"]["status_code"], boom["result"]["body"]) == (500, "server exploded")
    assert boom["error"]["type"] == "HTTPError"
    assert outcomes["too_slow"]["error"]["type"] == "ReadTimeout"
    assert outcomes["too_slow"]["result"] is None
    assert outcomes["refused"]["error"]["type"] == "ConnectionError"

    echo = outcomes["by_connection"]["result"]["body"]
    assert (echo["path"], echo["body"]) == ("/echo/sub", "[]")
    assert echo["headers"]["x-from-connection"] == "yes"
    assert outcomes["no_connection"]["error"] == {
        "type": "AirflowNotFoundException",
        "message": "The conn_id `attune_missing` isn't defined",
    }
