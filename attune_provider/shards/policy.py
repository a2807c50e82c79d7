"""The cluster policy that puts each Attune task instance on its workflow's shard queue.

Registered through the `airflow.policy` entry point (pyproject.toml), so every Airflow
process of a deployment that has the provider installed applies the same routing. Airflow
calls `task_instance_mutation_hook` when the scheduler creates a run's task instances
(and expands mapped ones) and when a task is cleared; the queue chosen there is the one
the executor sends it to. Never at DAG parse time: the DAGs stay the same whatever the
shards. Only Attune tasks on the default queue move: a confidential workflow's queue, or
a queue set on purpose, is kept.

With `[attune] shards` unset when the process starts, the module defines no hook at all:
Airflow then creates task instances in bulk, as without the provider (a registered hook
makes it build them one by one). Turning shards on or off takes a restart of the
scheduler, like most Airflow settings. Whatever goes wrong reading the mapping, the task
instance keeps the queue it had (the default one): a broken mapping never stops runs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from airflow.policies import hookimpl

from attune_provider import settings
from attune_provider.shards.rendezvous import queue_name

log = logging.getLogger(__name__)

_SETTINGS_TTL = 30.0
_settings_cache: tuple[float, int | None, int] | None = None


def _shard_settings() -> tuple[int | None, int]:
    """(`[attune] shards`, `shard_timeout`), read at most every 30 s in a process."""
    global _settings_cache
    now = time.monotonic()
    if _settings_cache is None or now - _settings_cache[0] > _SETTINGS_TTL:
        try:
            _settings_cache = (now, settings.shards(), settings.shard_timeout())
        except ValueError:
            log.exception("invalid [attune] shard settings: shards are off")
            _settings_cache = (now, None, settings.DEFAULT_SHARD_TIMEOUT)
    return _settings_cache[1], _settings_cache[2]


def is_attune_task(task: Any) -> bool:
    module = getattr(task, "_task_module", None) or type(task).__module__
    return isinstance(module, str) and module.startswith("attune_provider.")


def _default_queue() -> str:
    from airflow.configuration import conf

    return conf.get("operators", "default_queue", fallback="default")


def route(task_instance: Any, dag_run: Any = None) -> None:
    """Route an Attune task instance of run `dag_run` to its shard's queue."""
    count, timeout = _shard_settings()
    if count is None or dag_run is None:  # off; or a task instance being built, routed when created
        return
    task = getattr(task_instance, "task", None)
    if task is None or not is_attune_task(task) or task_instance.queue != _default_queue():
        return
    from sqlalchemy.orm import object_session

    from attune_provider.shards.router import ROUTER

    session = object_session(dag_run)
    if session is None:
        return
    try:
        shard = ROUTER.shard_for(session, task_instance.dag_id, task_instance.run_id, count, timeout)
    except Exception:  # noqa: BLE001 - never let the mapping stop the scheduler
        log.exception("could not read the shard mapping: %s stays on %s", task_instance, task_instance.queue)
        return
    task_instance.queue = queue_name(shard)


def forget_settings() -> None:
    """Read `[attune] shards` again on the next task instance (tests)."""
    global _settings_cache
    _settings_cache = None


def _mark_hook_in_use() -> None:
    """Airflow 3.3 calls the mutation hook for new runs only when its `is_noop` flag is off,
    and turns it off only for a hook of `airflow_local_settings` (settings.py,
    `import_local_settings`): a hook registered through the `airflow.policy` entry point
    would never see a new run's task instances. So this module turns it off itself."""
    import airflow.settings

    airflow.settings.task_instance_mutation_hook.is_noop = False  # type: ignore[attr-defined]


if _shard_settings()[0] is not None:

    @hookimpl
    def task_instance_mutation_hook(task_instance: Any, dag_run: Any = None) -> None:
        route(task_instance, dag_run)

    _mark_hook_in_use()
