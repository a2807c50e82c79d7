"""The last known good packs of every http source, on disk.

Layout below the store directory (`ATTUNE_SOURCES_DIR`, else `[attune] sources_dir`, else
`$AIRFLOW_HOME/attune_sources`):

- `objects/<sha256>/`: one extracted pack archive, named by the SHA-256 of its bytes
  (content-addressed: written once by whoever extracts it first, never changed);
- `state/<source>.json`: what the source serves (its packs, each with its object, status
  and version), when it was last fetched successfully and when last tried, the last error;
- `state/<source>.lock`: held while one process fetches, so that DAG processors parsing
  at once fetch once; the others serve the state as it is.

Only JSON and extracted pack files live here (nothing is unpickled), written to a
temporary file then renamed, so a reader never sees half of anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.settings import airflow_home, airflow_option

STORE_DIR_ENV = "ATTUNE_SOURCES_DIR"
DEFAULT_DIR_NAME = "attune_sources"


def configured_store_dir() -> Path:
    raw = os.environ.get(STORE_DIR_ENV) or airflow_option("sources_dir")
    if raw and raw.strip():
        return Path(raw.strip()).expanduser()
    return airflow_home() / DEFAULT_DIR_NAME


class StoredPack(NamedTuple):
    ref: str
    version: str
    sha256: str
    status: str  # "active" or "paused"
    directory: str  # the pack directory, relative to the store


class SourceState(NamedTuple):
    """What one source serves and how fresh it is (times are epoch seconds)."""

    packs: tuple[StoredPack, ...] = ()
    fetched_at: float | None = None  # the last successful fetch, None when there never was one
    checked_at: float | None = None  # the last attempt, successful or not
    error: str | None = None  # why the last attempt failed (None when it succeeded)

    def to_json(self) -> dict[str, Any]:
        return {
            "packs": [p._asdict() for p in self.packs],
            "fetched_at": self.fetched_at,
            "checked_at": self.checked_at,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Any) -> SourceState:
        packs = tuple(StoredPack(**p) for p in data.get("packs", []))
        return cls(packs, data.get("fetched_at"), data.get("checked_at"), data.get("error"))


class Store:
    """One store directory (created with mode 0700: only Airflow's user writes there)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.state_dir = root / "state"

    def ensure(self) -> None:
        for directory in (self.root, self.objects, self.state_dir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def object_dir(self, sha256: str) -> Path:
        return self.objects / sha256

    def state(self, source: str) -> SourceState:
        """The source's state, empty when never fetched or unreadable."""
        try:
            data = json.loads((self.state_dir / f"{source}.json").read_text(encoding="utf-8"))
            return SourceState.from_json(data)
        except (OSError, ValueError, TypeError, AttributeError):
            return SourceState()

    def save(self, source: str, state: SourceState) -> None:
        self.write_json(self.state_dir / f"{source}.json", state.to_json())

    def write_json(self, path: Path, data: Any) -> None:
        """Atomically: a temporary file beside `path`, renamed over it."""
        self.ensure()
        fd, temp = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=".json", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1)
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def pack_path(self, pack: StoredPack) -> Path:
        return self.root / pack.directory

    @contextlib.contextmanager
    def fetch_lock(self, source: str, wait_until: float | None = None) -> Iterator[bool]:
        """True when this process may fetch `source` now; False when another one is (after
        waiting for it until `wait_until`, a `time.monotonic()` value, when given)."""
        self.ensure()
        with open(self.state_dir / f"{source}.lock", "a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if wait_until is None or time.monotonic() >= wait_until:
                        yield False
                        return
                    time.sleep(0.1)
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
