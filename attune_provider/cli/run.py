"""`attune-airflow run REF [--packs DIR]... [-p NAME=VALUE]... [--json]` (docs/cli.md).

Runs one workflow once through `dag.test()` on the metadata database of AIRFLOW_HOME.

Exit codes: 0 the workflow succeeded, 1 it failed, 2 it could not start (bad arguments,
unknown or invalid workflow, invalid parameters, or Airflow could not run it); the reason
goes to standard error, as `FILE:LINE:COL: error: MESSAGE` where it has a place in a file.

- `--json`: standard output holds exactly one JSON object (`RunResult.as_json()`). For the
  whole command file descriptor 1 points at standard error, so everything Airflow, the
  actions and their child processes print lands there; the object is written once fd 1
  is restored.
- Readable mode: a header, then one line per task as it ends (a watcher thread polls the
  metadata database), then the outcome, the rendered output, where the run's log is and
  how to see the run in Airflow's UI. Airflow's output during the run (fds 1 and 2) goes
  to `<[logging] base_log_folder>/attune/<ref>/<run_id>.log` (by default under
  `$AIRFLOW_HOME/logs`), not to the terminal.

Nothing here imports Airflow before `prepare_environment` / `airflow_defaults` ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from attune_provider import settings
from attune_provider.cli.run_report import Console, TaskWatcher, flush_std, log_path_for, redirected
from attune_provider.exceptions import ParameterError, ValidationError
from attune_provider.language.parameters import value_from_text
from attune_provider.language.plan import WorkflowPlan
from attune_provider.local_run import (
    RunResult,
    airflow_defaults,
    check_parameters,
    ensure_database,
    planned_run_id,
    prepare_environment,
    resolve,
    run_plan,
)

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_NOT_STARTED, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "attune-airflow"


class UsageError(Exception):
    """The command line itself is wrong (exit 2)."""


class NotStarted(Exception):
    """The workflow could not be started; the message lines say why (exit 2)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


# -- arguments -----------------------------------------------------------------------------


def parse_params(values: Sequence[str]) -> dict[str, str]:
    """`NAME=VALUE` strings as a mapping of texts; a later NAME wins. UsageError without `=`
    or NAME. Each text is read by its parameter's type once the workflow is known."""
    params: dict[str, str] = {}
    for raw in values:
        name, sep, text = raw.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"argument -p/--param: expected NAME=VALUE, got {raw!r}")
        params[name.strip()] = text
    return params


def typed_params(plan: WorkflowPlan, texts: Mapping[str, str]) -> dict[str, Any]:
    """Each `-p` text read by the declared type of its parameter (docs/cli.md)."""
    declared = plan.workflow.parameters
    return {name: value_from_text(text, declared.get(name)) for name, text in texts.items()}


def _parameter_problem(plan: WorkflowPlan, exc: ParameterError) -> str:
    """`FILE:LINE:COL: error: MESSAGE` from check_parameters' `FILE:LINE:COL: MESSAGE`."""
    where = str(plan.workflow.loc("parameters"))
    message = str(exc)
    if message.startswith(where + ": "):
        message = message[len(where) + 2 :]
    return f"{where}: error: invalid parameters for workflow '{plan.ref}': {message}"


def prepare(args: argparse.Namespace) -> tuple[WorkflowPlan, dict[str, Any]]:
    """Arguments -> (validated plan, checked parameters); NotStarted when it cannot run."""
    try:
        params = parse_params(getattr(args, "param", None) or [])
        airflow_defaults()  # before settings may import Airflow to read `[attune] packs_path`
        packs = settings.packs_paths(getattr(args, "packs", None) or [])
        depth = settings.max_depth()
        settings.template_limits()  # an invalid limit stops the run before anything starts
    except (UsageError, ValueError) as exc:
        raise NotStarted([f"{PROG} run: error: {exc}"])
    prepare_environment(packs)
    ref = args.ref
    try:
        plan = resolve(ref, packs, max_depth=depth)
    except ValidationError as exc:
        lines = [problem.format() for problem in exc.problems]
        if any(problem.message.startswith("unknown workflow") for problem in exc.problems):
            lines.append(f"{PROG} run: hint: `{PROG} validate` lists the problems of every pack")
        raise NotStarted(lines)
    params = typed_params(plan, params)
    try:
        check_parameters(plan, params)
    except ParameterError as exc:
        raise NotStarted([_parameter_problem(plan, exc)])
    return plan, params


# -- the two modes -------------------------------------------------------------------------


def _error(*lines: str) -> None:
    flush_std()
    for line in lines:
        print(line, file=sys.stderr)
    sys.stderr.flush()


def _run_json(args: argparse.Namespace) -> int:
    with redirected(2, 1):  # everything but the result object goes to standard error
        try:
            plan, params = prepare(args)
            result = run_plan(plan, params)
        except NotStarted as exc:
            _error(*exc.lines)
            return EXIT_NOT_STARTED
        except Exception as exc:  # noqa: BLE001 - Airflow could not run it: say why, exit 2
            _error(traceback.format_exc().rstrip(), f"{PROG} run: error: could not run {args.ref}: {exc}")
            return EXIT_NOT_STARTED
    sys.stdout.write(json.dumps(result.as_json(), default=str) + "\n")
    sys.stdout.flush()
    return EXIT_SUCCEEDED if result.status == "succeeded" else EXIT_FAILED


def _watched_run(
    plan: WorkflowPlan, params: Mapping[str, Any], run_after: datetime, console: Console
) -> RunResult:
    """Migrate, then run with a watcher reporting tasks as they end; report the rest after."""
    ensure_database()
    watcher = TaskWatcher(plan, planned_run_id(run_after), console.task)
    watcher.start()
    try:
        result = run_plan(plan, params, run_after, migrate=False)
    finally:
        watcher.stop()
    for name in plan.graph.topological():  # the rest, each after the tasks it follows
        for task_id in (plan.task_ids[name], *(plan.task_ids[m.name] for m in plan.tasks[name].tasks)):
            if task_id not in watcher.reported and task_id in result.tasks:
                console.task(result.tasks[task_id])
                watcher.reported.add(task_id)
    return result


def _run_readable(args: argparse.Namespace) -> int:
    try:
        plan, params = prepare(args)
    except NotStarted as exc:
        _error(*exc.lines)
        return EXIT_NOT_STARTED
    started = time.monotonic()
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    with os.fdopen(os.dup(1), "w", encoding=encoding, errors="backslashreplace") as stream:
        console = Console(stream, plan)
        console.header()  # before importing Airflow, which takes a few seconds
        run_after = datetime.now(timezone.utc)
        run_id = planned_run_id(run_after)
        console.write(f"run      {run_id}")
        log_path = log_path_for(plan.ref, run_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"{PROG} run {plan.ref} (run {run_id}), started {run_after.isoformat()}\n")
            log.flush()
            try:
                with redirected(log.fileno(), 1, 2):
                    result = _watched_run(plan, params, run_after, console)
            except KeyboardInterrupt:
                _error(f"{PROG} run: interrupted", f"logs: {log_path}")
                return EXIT_INTERRUPTED
            except Exception as exc:  # noqa: BLE001 - Airflow could not run it: say why, exit 2
                _error(traceback.format_exc().rstrip(), f"{PROG} run: error: could not run {plan.ref}: {exc}")
                _error(f"logs: {log_path}")
                return EXIT_NOT_STARTED
        console.summary(result, time.monotonic() - started, log_path)
    return EXIT_SUCCEEDED if result.status == "succeeded" else EXIT_FAILED


def run_main(args: argparse.Namespace) -> int:
    """`attune-airflow run`: the `run` subparser's namespace (ref, packs, param, json) -> exit code."""
    try:
        return _run_json(args) if getattr(args, "json", False) else _run_readable(args)
    except KeyboardInterrupt:
        _error(f"{PROG} run: interrupted")
        return EXIT_INTERRUPTED
