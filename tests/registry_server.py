"""A pack registry served on 127.0.0.1 for the workflow-source tests.

It serves the files of a directory (what `attune-airflow registry build` writes), and
can be told to answer a path with scripted responses first (503 then 200, 429 with
Retry-After, 401...), to require a bearer token, or to go down and come back. Every
request is recorded (path and Authorization header) so tests can count them.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import time
from collections import defaultdict, deque
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.sources.archive import pack_archive


class Scripted(NamedTuple):
    """One scripted answer: `body` None serves the file; `delay` seconds before answering;
    `trickle` seconds between bytes; `length` a Content-Length other than the body's (a
    connection that breaks mid-body)."""

    status: int = 200
    body: bytes | None = b""
    headers: dict[str, str] = {}
    delay: float = 0.0
    trickle: float = 0.0
    length: int | None = None


class Registry:
    """A registry directory served over HTTP; `url` is its base URL."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.scripts: dict[str, deque[Scripted]] = defaultdict(deque)
        self.requests: list[tuple[str, str | None]] = []
        self.token: str | None = None
        self.server: http.server.ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/reg"

    def start(self) -> None:
        """Serve (again, on the same port once it was stopped)."""
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                registry.requests.append((self.path, self.headers.get("Authorization")))
                answer = registry.answer(self.path, self.headers.get("Authorization"))
                time.sleep(answer.delay)
                body = answer.body or b""
                self.send_response(answer.status)
                length = answer.length if answer.length is not None else len(body)
                for name, value in {"Content-Length": str(length), **answer.headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    if answer.trickle:
                        for index in range(len(body)):
                            self.wfile.write(body[index : index + 1])
                            self.wfile.flush()
                            time.sleep(answer.trickle)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                if answer.length is not None:
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go down: connections are refused until `start()`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def answer(self, path: str, authorization: str | None) -> Scripted:
        relative = path.removeprefix("/reg/")
        scripted = self.scripts[relative].popleft() if self.scripts[relative] else Scripted(body=None)
        if scripted.body is not None:
            return scripted
        if self.token is not None and authorization != f"Bearer {self.token}":
            return Scripted(401, b"unauthorized")
        file = self.root / relative
        if ".." in relative or not file.is_file():
            return Scripted(404, b"not found")
        return scripted._replace(body=file.read_bytes())

    def script(self, relative: str, *responses: Scripted) -> None:
        self.scripts[relative].extend(responses)

    def requested(self, relative: str) -> int:
        return sum(1 for path, _ in self.requests if path == f"/reg/{relative}")

    # -- publishing ----------------------------------------------------------------

    def publish(self, packs: dict[Path, str], *, sha_override: dict[str, str] | None = None) -> None:
        """Archive each pack directory (with its status) and write index.json."""
        entries = []
        for directory, status in packs.items():
            data = pack_archive(directory)
            name = f"{directory.name}-{hashlib.sha256(data).hexdigest()[:8]}.tar.gz"
            (self.root / name).write_bytes(data)
            sha = (sha_override or {}).get(directory.name, hashlib.sha256(data).hexdigest())
            entries.append(
                {"ref": directory.name, "version": "1", "sha256": sha, "archive": name, "status": status}
            )
        self.write_index({"packs": entries})

    def publish_raw(self, ref: str, data: bytes) -> None:
        """One pack archive of arbitrary bytes (for hostile archives), with its true sha256."""
        (self.root / f"{ref}.tar.gz").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        entry = {"ref": ref, "version": "1", "sha256": sha, "archive": f"{ref}.tar.gz", "status": "active"}
        self.write_index({"packs": [entry]})

    def write_index(self, index: Any) -> None:
        (self.root / "index.json").write_text(json.dumps(index))
