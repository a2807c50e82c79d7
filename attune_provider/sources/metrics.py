"""Per-source metrics through Airflow's `Stats` (StatsD, Datadog or OpenTelemetry, as
Airflow is configured): each is sent tagged `source=<name>` and, for backends without
tags, also with the name as a suffix (`attune.source.fetch.ok.<name>`), as Airflow names
its own per-DAG metrics.

The DAG processor configures Airflow core's Stats before it parses; in another process
that has Airflow loaded it is configured here from `[metrics]` on first use; the
`validate` command, which never imports Airflow, sends none. Metrics never fail a parse.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger(__name__)


def _stats() -> Any:
    from airflow._shared.observability.metrics import stats
    from airflow.configuration import conf

    if getattr(stats, "_factory", None) is None:  # not a process Airflow set up for metrics
        from airflow.observability.metrics import stats_utils

        stats.initialize(
            factory=stats_utils.get_stats_factory(),
            export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=False),
        )
    return stats


def _send(kind: str, name: str, source: str, value: float = 1) -> None:
    if "airflow.configuration" not in sys.modules:  # the command line: no metrics, no Airflow import
        return
    try:
        stats = _stats()
        for stat, tags in ((name, {"source": source}), (f"{name}.{source}", None)):
            if kind == "incr":
                stats.incr(stat, tags=tags)
            else:
                stats.gauge(stat, value, tags=tags)
    except Exception:  # noqa: BLE001 - a metric is never worth a failed parse
        log.debug("Attune could not send metric %s", name, exc_info=True)


def fetch_ok(source: str) -> None:
    _send("incr", "attune.source.fetch.ok", source)


def fetch_failed(source: str) -> None:
    _send("incr", "attune.source.fetch.failed", source)


def served(source: str, workflows: int, age_seconds: float | None) -> None:
    """What a source serves after a parse: its workflow count and the age of its packs."""
    _send("gauge", "attune.source.workflows", source, workflows)
    if age_seconds is not None:
        _send("gauge", "attune.source.age_seconds", source, round(age_seconds, 1))
