"""The scheduler's side of the mapping: which shard a run's task instances go to, cached.

A run's task instances are created together, and a scheduler creates many runs: the
version and the live shards are read at most every few seconds (one query), and each run's
shard is looked up (and pinned) once, inside the scheduler's own transaction (a savepoint:
a failure here never rolls back the scheduler's work).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from attune_provider.shards import mapping, tables

_MAX_RUNS = 10_000


class Router:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot: tuple[float, mapping.Snapshot] | None = None
        self._runs: dict[tuple[str, str], int] = {}

    def _current(self, connection: Any, count: int, timeout: int) -> mapping.Snapshot:
        ttl = min(5.0, timeout / 4)
        now = time.monotonic()
        if self._snapshot is None or now - self._snapshot[0] > ttl:
            self._snapshot = (now, mapping.snapshot(connection, count, timeout))
        return self._snapshot[1]

    def shard_for(self, session: Any, dag_id: str, run_id: str, count: int, timeout: int) -> int:
        with self._lock:
            try:
                return self._shard_for(session, dag_id, run_id, count, timeout)
            except Exception:
                tables.forget_ready()  # a rolled-back creation: check the tables again next time
                raise

    def _shard_for(self, session: Any, dag_id: str, run_id: str, count: int, timeout: int) -> int:
        with session.begin_nested():
            connection = session.connection()
            tables.ensure_tables(connection)
            current = self._current(connection, count, timeout)
            cached = self._runs.get((dag_id, run_id))
            if cached is not None and cached in current.live:
                return cached
            shard = mapping.shard_of_run(connection, dag_id, run_id, current.version, current.live)
        if len(self._runs) >= _MAX_RUNS:
            self._runs.clear()
        self._runs[(dag_id, run_id)] = shard
        return shard

    def forget(self) -> None:
        """Drop what is cached (tests; a process that knows the mapping changed)."""
        with self._lock:
            self._snapshot = None
            self._runs.clear()


ROUTER = Router()
