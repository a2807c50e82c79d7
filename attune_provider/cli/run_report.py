"""What `attune-airflow run` shows while and after a workflow runs (docs/cli.md).

A watcher thread polls the metadata database and reports each task once it ended; the
console writes those lines and the summary to the terminal, while Airflow's own output
goes to the run's log file (file descriptors 1 and 2 redirected there).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

from attune_provider.language.plan import WorkflowPlan
from attune_provider.local_run import RunResult, TaskRun, task_run
from attune_provider.operators.state.outcome_xcom import OUTCOME_KEY
from attune_provider.operators.state.sealed import run_plan, unseal
from attune_provider.operators.steps.summary import summary_markdown

POLL_SECONDS = 0.5
MAX_ERROR_LINES = 12


def flush_std() -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            if stream is not None:
                stream.flush()


@contextlib.contextmanager
def redirected(target_fd: int, *fds: int) -> Iterator[None]:
    """Point file descriptors `fds` at `target_fd` (child processes included), then restore them."""
    flush_std()
    saved = [os.dup(fd) for fd in fds]
    try:
        for fd in fds:
            os.dup2(target_fd, fd)
        yield
    finally:
        flush_std()
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
                    outcomes[found.task_id] = unseal(xcom.deserialize_value(found))
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
        status = f"{result.status} (cancelled)" if result.cancelled else result.status
        lines = [f"workflow {result.workflow} {status} in {format_duration(elapsed)} ({tally})", ""]
        lines += [*run_summary(self.plan, result).splitlines(), ""]  # as the DAG run's note shows it
        lines += [f"logs: {log_path}", f"UI: `airflow api-server`, then {_ui_url(result)} (Grid)"]
        self.write(*lines)


def run_summary(plan: WorkflowPlan, result: RunResult) -> str:
    """The run's summary as its DAG run's note holds it (written when the run ended,
    attune_provider/plugin.py); built from the result when the note is not there."""
    with contextlib.suppress(Exception):  # noqa: BLE001 - no database: the summary of the result
        from airflow.models.dagrun import DagRun
        from airflow.utils.session import create_session
        from sqlalchemy import select

        with create_session() as session:
            where = (DagRun.dag_id == result.workflow, DagRun.run_id == result.run_id)
            run = session.scalars(select(DagRun).where(*where)).first()
            if run is not None and run.note:
                return str(run.note)
    errors = {tid: task.error for tid, task in result.tasks.items() if task.error}
    tasks = {tid: task.status for tid, task in result.tasks.items()}
    has_output = plan.workflow.output_map is not None
    confidential = run_plan(plan).confidential
    return summary_markdown(
        result.workflow, result.status, tasks, errors, result.reasons, result.output, has_output, confidential
    )


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
