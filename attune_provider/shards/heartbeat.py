"""What runs beside a Celery worker to say which shard it serves (docs/shards.md).

`attune-airflow shards heartbeat --shard I [--pid PID]` writes the worker's row every
`shard_timeout / 4` seconds. Given the worker's pid, it stops beating when that process is
gone, so a lost worker's shard stops being live one timeout later; stopped itself
(SIGTERM, Ctrl-C), it removes the row at once: the shard is no longer served.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from attune_provider.shards import mapping, tables

log = logging.getLogger(__name__)


def _process_state(pid: int) -> tuple[str, str] | None:
    """(state letter, start time) of a process from /proc, None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after "pid (command) "
    return fields[0], fields[19]


class Watched:
    """The worker process a heartbeat follows: gone when it exits, is a zombie nobody
    reaped, or its pid now belongs to another process (a different start time)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        found = _process_state(pid) if pid is not None else None
        self.started = found[1] if found else None

    def alive(self) -> bool:
        if self.pid is None:
            return True
        found = _process_state(self.pid)
        if found is None:
            return False
        state, started = found
        return state not in ("Z", "X") and (self.started is None or started == self.started)


def _tables_ready(engine: Any, stop: threading.Event, attempts: int = 10) -> None:
    """The shard tables exist (created if needed), retried while the database starts."""
    for attempt in range(1, attempts + 1):
        try:
            with engine.begin() as connection:
                tables.ensure_tables(connection)
            return
        except Exception:  # noqa: BLE001 - a database still starting, another process creating them
            tables.forget_ready()
            if attempt == attempts or stop.is_set():
                raise
            log.warning("shard tables not ready (attempt %s of %s); trying again", attempt, attempts)
            time.sleep(min(2.0 * attempt, 10.0))


def default_worker_name(shard: int) -> str:
    return f"{socket.gethostname()}:shard-{shard}:{os.getpid()}"


def run_heartbeat(engine: Any, worker: str, shard: int, interval: float, pid: int | None = None) -> int:
    """Beat until stopped or until process `pid` is gone; the exit code of the command."""
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    watched = Watched(pid)
    _tables_ready(engine, stop)
    log.info("heartbeat of worker %s for shard %s every %.1f s", worker, shard, interval)
    while not stop.is_set():
        if not watched.alive():
            log.warning("worker process %s is gone: no more heartbeats for shard %s", pid, shard)
            return 0
        try:
            with engine.begin() as connection:
                mapping.beat(connection, worker, shard)
        except Exception:  # noqa: BLE001 - the database may be back on the next beat
            log.exception("could not write the heartbeat of shard %s", shard)
        stop.wait(interval)
    with engine.begin() as connection:
        mapping.forget(connection, worker)
    log.info("worker %s stopped serving shard %s", worker, shard)
    return 0
