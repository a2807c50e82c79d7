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
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from attune_provider import settings
from attune_provider.exceptions import ParameterError, ValidationError
from attune_provider.language.plan import WorkflowPlan
from attune_provider.local_run import (
    RunResult,
    TaskRun,
    airflow_defaults,
    check_parameters,
    ensure_database,
    planned_run_id,
    prepare_environment,
    resolve,
    run_plan,
    task_run,
)
from attune_provider.operators.state.outcome_xcom import OUTCOME_KEY

EXIT_SUCCEEDED, EXIT_FAILED, EXIT_NOT_STARTED, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "attune-airflow"
POLL_SECONDS = 0.5
MAX_ERROR_LINES = 12


class UsageError(Exception):
    """The command line itself is wrong (exit 2)."""


class NotStarted(Exception):
    """The workflow could not be started; the message lines say why (exit 2)."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


# -- arguments -----------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_value(text: str) -> Any:
    """VALUE of `-p NAME=VALUE`: JSON when it parses as JSON (NaN/Infinity do not), else the string."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def parse_params(values: Sequence[str]) -> dict[str, Any]:
    """`NAME=VALUE` strings as a mapping; a later NAME wins. UsageError without `=` or NAME."""
    params: dict[str, Any] = {}
    for raw in values:
        name, sep, text = raw.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"argument -p/--param: expected NAME=VALUE, got {raw!r}")
        params[name.strip()] = parse_value(text)
    return params


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
    try:
        check_parameters(plan, params)
    except ParameterError as exc:
        raise NotStarted([_parameter_problem(plan, exc)])
    return plan, params


# -- file descriptors ----------------------------------------------------------------------


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def redirected(target_fd: int, *fds: int) -> Iterator[None]:
    """Point file descriptors `fds` at `target_fd` (child processes included), then restore them."""
    _flush_std()
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target_fd, fd)
        yield
    finally:
        _flush_std()
        for fd, copy in zip(fds, saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


# -- watching a run ------------------------------------------------------------------------


class TaskWatcher(threading.Thread):
    """Polls the metadata database for the run's task instances; reports each task once,
    when it reaches a terminal state, through `report` (from this thread)."""

    def __init__(self, plan: WorkflowPlan, run_id: str, report: Callable[[TaskRun], None]) -> None:
        super().__init__(name="attune-run-watcher", daemon=True)
        from airflow.models.taskinstance import TaskInstance
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session
        from airflow.utils.state import State

        self._ti, self._xcom, self._session = TaskInstance, XComModel, create_session
        self._finished = State.finished
        self.plan, self.run_id, self.report = plan, run_id, report
        self.reported: set[str] = set()
        self._names = {task_id: name for name, task_id in plan.task_ids.items()}
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(POLL_SECONDS):
            self.poll()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def poll(self) -> None:
        try:
            finished = self._read()
        except Exception:  # noqa: BLE001 - a busy or not yet migrated database: try again later
            return
        progress = True
        while progress:  # a task after the tasks it follows, whatever order they ended in
            progress = False
            for task in finished:
                if task.task_id in self.reported or self._stop_event.is_set():
                    continue
                if self._follows_unreported(task.task_id):
                    continue
                self.reported.add(task.task_id)
                self.report(task)
                progress = True

    def _follows_unreported(self, task_id: str) -> bool:
        """Whether a task this one follows is not reported yet: a task skipped early
        (`AttuneOperator.settle`) ends before the task whose outcome skipped it. Groups
        (with_items, parallel, subworkflow) are reported after the run, with their span,
        so the tasks after them wait for that too."""
        name = self._names.get(task_id)
        if name is None:
            return False
        predecessors = self.plan.graph.predecessors.get(self.plan.group_of.get(name, name), [])
        return any(self.plan.task_ids[p] not in self.reported for p in predecessors)

    def _all_finished(self, rows: Sequence[Any]) -> bool:
        return all(row.state in self._finished for row in rows)

    def _read(self) -> list[TaskRun]:
        from sqlalchemy import select

        ti, xcom = self._ti, self._xcom
        pending = [tid for tid in self.plan.task_ids.values() if tid not in self.reported]
        if not pending:
            return []
        where = (ti.dag_id == self.plan.ref, ti.run_id == self.run_id, ti.task_id.in_(pending))
        columns = (ti.task_id, ti.state, ti.try_number, ti.start_date, ti.end_date, ti.duration)
        with self._session() as session:
            rows: dict[str, list[Any]] = {}
            for row in session.execute(select(*columns).where(*where)).all():
                rows.setdefault(row.task_id, []).append(row)
            done = [tid for tid in pending if rows.get(tid) and self._all_finished(rows[tid])]
            if not done:
                return []
            query = select(xcom).where(
                xcom.dag_id == self.plan.ref, xcom.run_id == self.run_id, xcom.key == OUTCOME_KEY
            )
            outcomes: dict[str, Any] = {}
            for found in session.scalars(query.where(xcom.task_id.in_(done))).all():
                if found.map_index == -1 or found.task_id not in outcomes:
                    outcomes[found.task_id] = xcom.deserialize_value(found)
        ended = sorted(done, key=lambda tid: max(str(r.end_date or "") for r in rows[tid]))
        return [task_run(tid, rows[tid], outcomes.get(tid)) for tid in ended]


# -- readable output -----------------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


def format_error(error: Mapping[str, Any] | None) -> list[str]:
    if not error:
        return []
    kind, message = error.get("type"), str(error.get("message") or "")
    lines = (f"{kind}: {message}" if kind else message).splitlines() or [""]
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[:MAX_ERROR_LINES], f"... ({len(lines) - MAX_ERROR_LINES} more lines in the logs)"]
    return lines


class Console:
    """The readable report, written to a stream that stays on the terminal during the run."""

    def __init__(self, stream: IO[str], plan: WorkflowPlan) -> None:
        self.stream = stream
        self.plan = plan
        self.width = max(len(tid) for tid in plan.task_ids.values())
        self._lock = threading.Lock()

    def write(self, *lines: str) -> None:
        with self._lock, contextlib.suppress(OSError):  # a closed pipe must not stop the run
            for line in lines:
                self.stream.write(line + "\n")
            self.stream.flush()

    def header(self) -> None:
        label = self.plan.workflow.label
        self.write(f"workflow {self.plan.ref}" + (f" ({label})" if label and label != self.plan.ref else ""))

    def task(self, task: TaskRun) -> None:
        line = f"  {task.task_id:<{self.width}}  {task.status:<9}"
        if task.status != "skipped":
            attempts = f"{task.attempts} attempt{'s' * (task.attempts != 1)}"
            line += f"  {attempts:<10}  {format_duration(task.duration)}"
        indent = " " * (self.width + 4)
        self.write(line.rstrip(), *(f"{indent}{text}" for text in format_error(task.error)))

    def summary(self, result: RunResult, elapsed: float, log_path: Path) -> None:
        counts: dict[str, int] = {}
        for task in result.tasks.values():
            counts[task.status] = counts.get(task.status, 0) + 1
        tally = ", ".join(f"{n} {status}" for status, n in counts.items())
        lines = [f"workflow {result.workflow} {result.status} in {format_duration(elapsed)} ({tally})"]
        bad = [t.task_id for t in result.tasks.values() if t.status in ("failed", "timeout")]
        if result.status != "succeeded":
            lines.append(f"failed tasks: {', '.join(bad) or 'none'}")
            lines += [f"why: {reason}" for reason in result.reasons]
        if self.plan.workflow.output_map is None:
            lines.append("output: (the workflow has no output_map)")
        else:
            rendered = json.dumps(result.output, indent=2, ensure_ascii=False, default=str)
            lines += ["output:", *(f"  {text}" for text in rendered.splitlines())]
        lines += [f"logs: {log_path}", f"UI: `airflow api-server`, then {_ui_url(result)} (Grid)"]
        self.write(*lines)


def _ui_url(result: RunResult) -> str:
    from airflow.configuration import conf

    base = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    if not base:
        base = f"http://localhost:{conf.get('api', 'port', fallback='8080')}"
    return f"{base}/dags/{quote(result.workflow, safe='')}"


def log_path_for(ref: str, run_id: str) -> Path:
    """`<[logging] base_log_folder>/attune/<ref>/<run_id>.log` (default `$AIRFLOW_HOME/logs`)."""
    from airflow.configuration import AIRFLOW_HOME, conf

    base = conf.get("logging", "base_log_folder", fallback="") or os.path.join(AIRFLOW_HOME, "logs")
    safe_run_id = run_id.replace(os.sep, "_").replace("/", "_")
    return Path(os.path.expanduser(base)) / "attune" / ref / f"{safe_run_id}.log"


# -- the two modes -------------------------------------------------------------------------


def _error(*lines: str) -> None:
    _flush_std()
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
