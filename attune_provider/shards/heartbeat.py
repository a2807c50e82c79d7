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
from typing import Any

from attune_provider.shards import mapping, tables

log = logging.getLogger(__name__)


def _alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


def default_worker_name(shard: int) -> str:
    return f"{socket.gethostname()}:shard-{shard}:{os.getpid()}"


def run_heartbeat(engine: Any, worker: str, shard: int, interval: float, pid: int | None = None) -> int:
    """Beat until stopped or until process `pid` is gone; the exit code of the command."""
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _stop)
    with engine.begin() as connection:
        tables.ensure_tables(connection)
    log.info("heartbeat of worker %s for shard %s every %.1f s", worker, shard, interval)
    while not stop.is_set():
        if not _alive(pid):
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
