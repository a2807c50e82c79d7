"""One measurement in a fresh interpreter: `python -m benchmarks.child MODE ... --json OUT`.

Runs under the project's venv or the dag-factory venv, so it needs nothing but the
standard library and Airflow. Modes:

- `load FOLDER`: time from before `import airflow` to a loaded `DagBag(FOLDER)`, peak
  RSS, the DAGs and import errors (with `--structure`, every DAG's task ids and edges);
- `parse FILE DAG_ID`: the task-time parse: Airflow's task runner already imported,
  `DagBag(FILE)` timed inside Airflow's parsing context for DAG_ID (as a worker does);
- `test FOLDER DAG_ID`: `dag.test()` of one DAG, once to warm up, then `--runs` timed
  runs (the metadata database of AIRFLOW_HOME must be migrated); task states of the last;
- `migrate`: create or upgrade the metadata database of AIRFLOW_HOME.

With `--offline` (the smoke test uses it), a DAG file that opens a network connection,
queries the metadata database or reads an Airflow Variable fails to import.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before any import
import json  # noqa: E402
import resource  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def structure(dag: Any) -> dict[str, Any]:
    """Task ids and (upstream, downstream) edges of a DAG, sorted."""
    edges = sorted((up, task.task_id) for task in dag.tasks for up in task.upstream_task_ids)
    return {"tasks": sorted(dag.task_ids), "edges": [list(edge) for edge in edges]}


def forbid_io() -> None:
    """`--offline`: a network connection, a metadata database connection or reading an
    Airflow Variable raises (parsing a DAG file must do none of them)."""
    import socket

    import sqlalchemy.engine
    from airflow.sdk import Variable

    def refuse(what: str) -> Any:
        def refused(*args: Any, **kwargs: Any) -> Any:
            raise OSError(f"{what} while parsing DAG files")

        return refused

    socket.socket.connect = refuse("network access")  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse("network access")  # type: ignore[method-assign]
    socket.create_connection = refuse("network access")
    sqlalchemy.engine.Engine.connect = refuse("a metadata database query")  # type: ignore[method-assign]
    Variable.get = refuse("reading an Airflow Variable")  # type: ignore[method-assign]


def load(args: argparse.Namespace) -> dict[str, Any]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=args.target, safe_mode=True, load_op_links=False)
    seconds = time.perf_counter() - STARTED
    result: dict[str, Any] = {
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "dags": len(bag.dags),
        "tasks": sum(len(dag.tasks) for dag in bag.dags.values()),
        "import_errors": {str(k): str(v)[:2000] for k, v in bag.import_errors.items()},
        "file_seconds": {str(stat.file): stat.duration.total_seconds() for stat in bag.dagbag_stats},
    }
    if args.structure:
        result["structure"] = {dag_id: structure(dag) for dag_id, dag in sorted(bag.dags.items())}
    return result


def parse(args: argparse.Namespace) -> dict[str, Any]:
    import airflow.sdk.execution_time.task_runner  # noqa: F401 - loaded before a worker parses
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions._internal.dag_parsing_context import _airflow_parsing_context_manager

    ready = time.perf_counter()
    with _airflow_parsing_context_manager(dag_id=args.dag_id, task_id=args.task_id):
        bag = DagBag(dag_folder=args.target, safe_mode=False, load_op_links=False)
    seconds = time.perf_counter() - ready
    return {
        "seconds": seconds,
        "startup_seconds": ready - STARTED,
        "peak_rss_mb": _peak_rss_mb(),
        "dags": sorted(bag.dags),
        "found": args.dag_id in bag.dags,
        "import_errors": {str(k): str(v)[:2000] for k, v in bag.import_errors.items()},
    }


def _states(dag_id: str, run_id: str) -> dict[str, list[str]]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    states: dict[str, list[str]] = {}
    with create_session() as session:
        for ti in session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id):
            states.setdefault(ti.task_id, []).append(str(ti.state))
    return {task_id: sorted(values) for task_id, values in sorted(states.items())}


def test(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    from airflow.dag_processing.dagbag import DagBag

    logging.disable(logging.WARNING)
    bag = DagBag(dag_folder=args.target, safe_mode=True, load_op_links=False)
    dag = bag.dags[args.dag_id]
    conf = json.loads(args.conf)
    timings = []
    run = None
    for attempt in range(args.runs + 1):
        start = time.perf_counter()
        run = dag.test(run_conf=conf)
        if attempt:  # the first run in a process pays one-off set-up: not counted
            timings.append(time.perf_counter() - start)
    assert run is not None
    return {
        "runs": timings,
        "state": str(run.state),
        "states": _states(dag.dag_id, run.run_id),
        "peak_rss_mb": _peak_rss_mb(),
    }


def migrate(args: argparse.Namespace) -> dict[str, Any]:
    from airflow.utils import db

    db.upgradedb()
    return {"seconds": time.perf_counter() - STARTED}


MODES = {"load": load, "parse": parse, "test": test, "migrate": migrate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=sorted(MODES))
    parser.add_argument("args", nargs="*", help="FOLDER or FILE, then DAG_ID")
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    parser.add_argument("--structure", action="store_true")
    parser.add_argument("--task-id", default="start")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--conf", default="{}")
    parser.add_argument("--offline", action="store_true", help="no network, database or Variables")
    args = parser.parse_args(argv)
    rest = args.args
    args.target = rest[0] if rest else None
    args.dag_id = rest[1] if len(rest) > 1 else None
    if args.offline:
        forbid_io()
    result = MODES[args.mode](args)
    args.json.write_text(json.dumps(result, indent=1, sort_keys=True), encoding="utf-8")


if __name__ == "__main__":
    main()
