"""The audit trail and metrics of a run (docs/observability.md).

Every line is written to the task's own log (`log`, the operator's logger), in exactly the
form tools parse; published variables appear by name, never by value. Metrics go through
Airflow's `Stats` (StatsD, Datadog or OpenTelemetry, as `[metrics]` configures it), under
one name each, tagged `workflow` (and `task`): no per-workflow names.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Any

log = logging.getLogger(__name__)


def _stats() -> Any:
    """Airflow's `Stats`, set up from `[metrics]` if nothing in this process did (the task
    runner does it in a worker; `dag.test()` running tasks in-process does not)."""
    from airflow.sdk._shared.observability.metrics import stats as shared
    from airflow.sdk.observability.stats import Stats

    if getattr(shared, "_factory", True) is None:  # private, but the only way to know
        from airflow.sdk.configuration import conf
        from airflow.sdk.observability.metrics import stats_utils

        Stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True),
        )
    return Stats


def _emit(kind: str, name: str, value: Any, tags: dict[str, str]) -> None:
    """One metric; a metrics backend that fails never fails the task."""
    try:
        stats = _stats()
        if kind == "timing":
            stats.timing(name, value, tags=tags)
        else:
            stats.incr(name, tags=tags)
    except Exception:  # noqa: BLE001 - observability must not change the outcome
        log.warning("could not emit metric %s", name, exc_info=True)


def seconds_since(start: Any) -> float:
    """Seconds from `start` (an aware datetime; none: now) to now."""
    if not isinstance(start, datetime):
        return 0.0
    if start.tzinfo is None:
        start = start.replace(tzinfo=timezone.utc)
    return max((datetime.now(timezone.utc) - start).total_seconds(), 0.0)


def _fmt(seconds: float) -> str:
    return f"{seconds:.3f}"


def workflow_started(task_log: Any, run_id: str, ref: str, source: str) -> None:
    task_log.info("Workflow execution started: run=%s, workflow=%s, source=%s", run_id, ref, source)


def task_completed(task_log: Any, ref: str, task: str, outcome: Any, started: Any) -> None:
    """The end of task `task` (not a try Airflow retries) with `outcome` (its status,
    attempts, `published` and `next`: the targets it fired, decisions included): its lines,
    published names only, and the task's metrics."""
    duration = seconds_since(started)
    line = "Task completed: workflow=%s, task=%s, status=%s, attempts=%s, duration=%ss"
    task_log.info(line, ref, task, outcome.status, outcome.attempts, _fmt(duration))
    if outcome.published:
        task_log.info("Publishing variables: %s", ", ".join(outcome.published))
    task_log.info("Scheduling next tasks: [%s]", ", ".join(outcome.next))
    tags = {"workflow": ref, "task": task}
    _emit("timing", "attune.task.duration", timedelta(seconds=duration), tags)
    if outcome.status != "succeeded":
        _emit("incr", "attune.task.failed", 1, tags)


def task_retried(ref: str, task: str) -> None:
    """A failed try that Airflow will retry: `attune.task.retries` once."""
    _emit("incr", "attune.task.retries", 1, {"workflow": ref, "task": task})


def workflow_completed(task_log: Any, run_id: str, ref: str, status: str, started: Any) -> None:
    duration = seconds_since(started)
    line = "Workflow execution completed: run=%s, workflow=%s, status=%s, duration=%ss"
    task_log.info(line, run_id, ref, status, _fmt(duration))
    tags = {"workflow": ref}
    _emit("timing", "attune.workflow.duration", timedelta(seconds=duration), tags)
    _emit("incr", "attune.workflow.succeeded" if status == "succeeded" else "attune.workflow.failed", 1, tags)
