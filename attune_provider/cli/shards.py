"""`attune-airflow shards status|show|rebalance|heartbeat` (docs/shards.md, docs/cli.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from attune_provider import settings
from attune_provider.shards import mapping, tables
from attune_provider.shards.rendezvous import assign, queue_name

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


ENVIRONMENT = """\
environment:
  AIRFLOW_HOME, AIRFLOW_CONFIG, AIRFLOW__ATTUNE__SHARDS, AIRFLOW__ATTUNE__SHARD_TIMEOUT
                     the [attune] shards and shard_timeout options (docs/shards.md)
  AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
                     the metadata database holding the shard mapping
"""


def _epilog(example: str, codes: str) -> str:
    return f"example:\n  {example}\n\nexit codes:\n{codes}\n\n{ENVIRONMENT}"


_READ_CODES = """\
  0  printed
  1  the metadata database could not be read
  2  shards are off ([attune] shards unset) or a settings error"""

EPILOGS = {
    "shards": _epilog("attune-airflow shards status --json", _READ_CODES)
    + "\nactions: status, show REF..., rebalance, heartbeat --shard I (see each one's --help)\n",
    "status": _epilog("attune-airflow shards status --json", _READ_CODES),
    "show": _epilog("attune-airflow shards show shop.deploy shop.backup", _READ_CODES),
    "rebalance": _epilog(
        "attune-airflow shards rebalance",
        "  0  published (or no change needed)\n  1  no shard is live, or the database could not be"
        " written\n  2  shards are off or a settings error",
    ),
    "heartbeat": _epilog(
        "airflow celery worker --queues attune-shard-0 & attune-airflow shards heartbeat --shard 0 --pid $!",
        "  0  stopped (SIGTERM, or the --pid process is gone)\n  1  the --pid process does not exist"
        "\n  2  shards are off, --shard out of range, or a settings error",
    ),
}


def _parser(commands: Any, name: str, help_text: str) -> Any:
    return commands.add_parser(
        name, help=help_text, epilog=EPILOGS[name], formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_shards_parser(commands: Any) -> None:
    shards = _parser(commands, "shards", "which shard (worker queue) runs each workflow")
    actions = shards.add_subparsers(dest="shards_command", metavar="ACTION", required=True)
    status = _parser(actions, "status", "version, state, live shards and their workflows")
    status.add_argument("--json", action="store_true", help="print one JSON object")
    status.set_defaults(handler=status_main)
    show = _parser(actions, "show", "the shard of each given workflow")
    show.add_argument("refs", nargs="+", metavar="REF")
    show.add_argument("--json", action="store_true", help="print one JSON object")
    show.set_defaults(handler=show_main)
    rebalance = _parser(actions, "rebalance", "publish a version over the live shards")
    rebalance.add_argument("--json", action="store_true", help="print one JSON object")
    rebalance.set_defaults(handler=rebalance_main)
    beat = _parser(actions, "heartbeat", "say, until stopped, that this worker serves a shard")
    beat.add_argument("--shard", type=int, required=True, metavar="I")
    beat.add_argument("--worker", metavar="NAME", help="the worker's name (default: host, shard, pid)")
    beat.add_argument("--pid", type=int, metavar="PID", help="stop beating when this process is gone")
    beat.add_argument("--interval", type=float, metavar="SECONDS", help="default: shard_timeout / 4")
    beat.set_defaults(handler=heartbeat_main)


def _configured() -> tuple[int, int] | None:
    """(shards, shard_timeout), or None after saying that shards are off."""
    try:
        count, timeout = settings.shards(), settings.shard_timeout()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None
    if count is None:
        print("error: shards are off: set [attune] shards = N (AIRFLOW__ATTUNE__SHARDS)", file=sys.stderr)
        return None
    return count, timeout


@contextlib.contextmanager
def _database() -> Iterator[Any]:
    """A transaction on Airflow's metadata database with the shard tables in place."""
    with _engine().begin() as connection:
        tables.ensure_tables(connection)
        yield connection


def _engine() -> Any:
    from airflow import settings as airflow_settings

    if airflow_settings.engine is None:
        airflow_settings.configure_orm()
    return airflow_settings.engine


def _database_error(exc: Exception) -> int:
    """Say that the database could not be read (its error's first line, without SQLAlchemy's
    statement and link); the exit code."""
    original = str(getattr(exc, "orig", None) or exc).strip()
    reason = original.splitlines()[0] if original else type(exc).__name__
    print(f"error: cannot read the shard mapping from the metadata database: {reason}", file=sys.stderr)
    return EXIT_FAILED


def _when(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def _attune_workflows(connection: Any) -> list[str]:
    """The dag_ids of the Attune DAGs Airflow knows (tag `attune`, not stale)."""
    from sqlalchemy import Boolean, Column, MetaData, String, Table, select

    meta = MetaData()
    dag = Table("dag", meta, Column("dag_id", String), Column("is_stale", Boolean))
    tag = Table("dag_tag", meta, Column("dag_id", String), Column("name", String))
    query = (
        select(dag.c.dag_id)
        .join(tag, tag.c.dag_id == dag.c.dag_id)
        .where(tag.c.name == "attune", dag.c.is_stale.is_(False))
        .order_by(dag.c.dag_id)
    )
    return [row.dag_id for row in connection.execute(query)]


def status_report(connection: Any, count: int, timeout: int) -> dict[str, Any]:
    version = mapping.current_version(connection, count)
    beats = mapping.beats(connection)
    live = mapping.live_shards(beats, count, timeout)
    moving = mapping.moving_runs(connection, version, live)
    workflows = _attune_workflows(connection)
    held = {shard: 0 for shard in range(count)}
    for ref in workflows:
        held[assign(ref, version.shards, live)] += 1
    rows = []
    current = {b.worker for b in beats if b.last_seen >= mapping.utcnow() - timedelta(seconds=timeout)}
    for shard in range(count):
        seen = [b.last_seen for b in beats if b.shard == shard]
        rows.append(
            {
                "shard": shard,
                "queue": queue_name(shard),
                "in_version": shard in version.shards,
                "live": shard in live,
                "last_heartbeat": _when(max(seen)) if seen else None,
                "workers": [
                    b.worker for b in beats if b.shard == shard and b.worker in current
                ],  # beating now
                "workflows": held[shard],
            }
        )
    return {
        "version": version.number,
        "published_at": _when(version.published_at),
        "state": "transition" if moving else "steady",
        "shard_timeout": timeout,
        "live": sorted(live),
        "shards": rows,
        "moving_runs": [
            {
                "dag_id": m.dag_id,
                "run_id": m.run_id,
                "old_shard": m.old_shard,
                "new_shard": m.new_shard,
                "version": m.version,
            }
            for m in moving
        ],
    }


def status_main(args: argparse.Namespace) -> int:
    configured = _configured()
    if configured is None:
        return EXIT_USAGE
    try:
        with _database() as connection:
            report = status_report(connection, *configured)
    except SQLAlchemyError as exc:
        return _database_error(exc)
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    published = " (nothing published yet)"
    if report["published_at"]:
        published = f", published {report['published_at']}"
    print(f"version {report['version']}{published}: {report['state']}")
    for moving in report["moving_runs"]:
        print(
            f"in transition: {moving['dag_id']} run {moving['run_id']} finishes on shard "
            f"{moving['old_shard']} (new runs: shard {moving['new_shard']})"
        )
    print(f"{'shard':<6} {'queue':<18} {'live':<5} {'workflows':>9}  last heartbeat")
    for row in report["shards"]:
        live = "yes" if row["live"] else "no"
        version_note = "" if row["in_version"] else "  (not in this version)"
        print(
            f"{row['shard']:<6} {row['queue']:<18} {live:<5} {row['workflows']:>9}  "
            f"{row['last_heartbeat'] or 'never'}{version_note}"
        )
    return EXIT_OK


def show_main(args: argparse.Namespace) -> int:
    configured = _configured()
    if configured is None:
        return EXIT_USAGE
    count, timeout = configured
    try:
        with _database() as connection:
            found = mapping.snapshot(connection, count, timeout, list(args.refs))  # one query for the batch
    except SQLAlchemyError as exc:
        return _database_error(exc)
    answers = []
    for ref in args.refs:
        shard = assign(ref, found.version.shards, found.live)
        answers.append(
            {
                "ref": ref,
                "shard": shard,
                "queue": queue_name(shard),
                "live": shard in found.live,
                "runs_in_flight": [{"run_id": run_id, "shard": pinned} for run_id, pinned in found.pins[ref]],
            }
        )
    if args.json:
        print(json.dumps({"version": found.version.number, "workflows": answers}, indent=2))
        return EXIT_OK
    print(f"version {found.version.number}")
    for answer in answers:
        live = "" if answer["live"] else " (not live: its tasks wait)"
        elsewhere = [r for r in answer["runs_in_flight"] if r["shard"] != answer["shard"]]
        moving = f"; {len(elsewhere)} run(s) finishing on their old shard" if elsewhere else ""
        print(f"{answer['ref']}: shard {answer['shard']} ({answer['queue']}){live}{moving}")
    return EXIT_OK


def rebalance_main(args: argparse.Namespace) -> int:
    configured = _configured()
    if configured is None:
        return EXIT_USAGE
    count, timeout = configured
    try:
        with _database() as connection:
            live = mapping.live_shards(mapping.beats(connection), count, timeout)
            if not live:
                print(
                    f"error: no shard is live (no heartbeat in the last {timeout} s): nothing published",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            published = mapping.publish(connection, sorted(live), "rebalance: the live shards", count)
            current = published or mapping.current_version(connection, count)
    except Exception as exc:  # noqa: BLE001 - the current version stays in force
        message = f"error: could not publish a new version ({exc}); the current one stays in force"
        print(message, file=sys.stderr)
        return EXIT_FAILED
    result = {"published": published is not None, "version": current.number, "shards": list(current.shards)}
    if args.json:
        print(json.dumps(result))
    elif published is None:
        shards = list(current.shards)
        print(f"no change: version {current.number} already spreads over the live shards {shards}")
    else:
        print(f"published version {current.number} over shards {list(current.shards)}")
    return EXIT_OK


MIN_INTERVAL = 0.5  # seconds: a heartbeat never writes more often than this


def heartbeat_main(args: argparse.Namespace) -> int:
    configured = _configured()
    if configured is None:
        return EXIT_USAGE
    count, timeout = configured
    problem = None
    if not 0 <= args.shard < count:
        problem = f"--shard must be between 0 and {count - 1} ([attune] shards = {count})"
    elif args.pid is not None and args.pid <= 0:
        problem = f"--pid must be a process id (> 0), got {args.pid}"
    elif args.interval is not None and not MIN_INTERVAL <= args.interval <= timeout / 2:
        problem = (
            f"--interval must be between {MIN_INTERVAL} and shard_timeout / 2 ({timeout / 2:g} s: "
            f"a longer one lets the shard look lost between beats), got {args.interval:g}"
        )
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    from attune_provider.shards.heartbeat import Watched, default_worker_name, run_heartbeat

    if args.pid is not None and not Watched(args.pid).alive():
        print(f"error: process {args.pid} does not exist: no heartbeat for it", file=sys.stderr)
        return EXIT_FAILED
    interval = args.interval or max(1.0, timeout / 4)
    worker = args.worker or default_worker_name(args.shard)
    return run_heartbeat(_engine(), worker, args.shard, interval, args.pid)
