"""Running one workflow once through Airflow's `dag.test()`, and reading what happened.

Shared by `attune-airflow run` and the test-suite, so both exercise the same path: the
workflow is validated, its parameters checked, the DAG built and run in-process on the
metadata database of AIRFLOW_HOME (migrated when new), then the outcome is read back
from the task instances and the `attune_outcome` task's XComs.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from attune_provider import settings
from attune_provider.dag_factory.loader import load_catalog
from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.exceptions import ParameterError, ValidationError
from attune_provider.language.parameters import check_values
from attune_provider.language.plan import WorkflowPlan, build_plan
from attune_provider.language.source import Location, Problem
from attune_provider.language.statuses import MAPPED_CALL_ID, OUTCOME_TASK_ID, TaskKind
from attune_provider.operators.state.outcome_xcom import WORKFLOW_KEY
from attune_provider.operators.state.sealed import unseal
from attune_provider.sources.reconcile import resolve_quietly

PACKAGE_DAGS_FOLDER = Path(__file__).resolve().parent / "airflow_dags"


@dataclass
class TaskRun:
    """One task of a finished run as the `run` command reports it."""

    task_id: str
    status: str
    attempts: int = 0
    duration: float | None = None
    error: dict[str, Any] | None = None


@dataclass
class RunResult:
    workflow: str
    run_id: str
    status: str
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    output: Any = None
    reasons: list[str] = field(default_factory=list)
    xcoms: dict[tuple[str, str], Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The JSON object of `attune-airflow run --json` (docs/cli.md)."""
        return {
            "workflow": self.workflow,
            "run_id": self.run_id,
            "status": self.status,
            "tasks": {task_id: task.status for task_id, task in self.tasks.items()},
            "vars": self.vars,
            "output": self.output,
        }

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self.xcoms.get((task_id, key))

    @property
    def cancelled(self) -> bool:
        """Whether the workflow failed because it was ended from outside (docs/design.md,
        "Pause, resume and cancel"): its reasons say `cancelled`."""
        return self.status == "failed" and any(reason.startswith("cancelled") for reason in self.reasons)


def prepare_environment(packs_paths: Sequence[Path]) -> None:
    """Point this process's Airflow at the packs; call before Airflow is imported.

    The DAG file Airflow parses for the run is the provider's own (it reads the packs
    path from ATTUNE_PACKS_PATH) unless AIRFLOW__CORE__DAGS_FOLDER is already set.
    """
    os.environ["ATTUNE_PACKS_PATH"] = os.pathsep.join(str(Path(p).resolve()) for p in packs_paths)
    airflow_defaults()


def airflow_defaults() -> None:
    """The Airflow settings of `prepare_environment`, for callers that must read Airflow's
    configuration (e.g. `[attune] packs_path`) before they know the packs path: importing
    Airflow fixes its DAGs folder, so these must be in place first. Existing values win.
    """
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(PACKAGE_DAGS_FOLDER))
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")


def ensure_database() -> None:
    """Create or upgrade the metadata database of AIRFLOW_HOME (a no-op when current).

    Under a lock file in AIRFLOW_HOME: two `attune-airflow run`s started together on a
    new database would otherwise both create its tables, and one would fail."""
    from airflow.configuration import AIRFLOW_HOME
    from airflow.utils import db

    Path(AIRFLOW_HOME).mkdir(parents=True, exist_ok=True)
    with open(Path(AIRFLOW_HOME) / "attune-migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            db.upgradedb()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def resolve(
    ref: str, packs_paths: Sequence[Path], max_depth: int = settings.DEFAULT_MAX_DEPTH
) -> WorkflowPlan:
    """The validated plan of workflow `ref`, or ValidationError naming every problem."""
    sources = resolve_quietly(settings.max_file_bytes())
    catalog = load_catalog(packs_paths, sources=sources.sources)
    report = validate_catalog(catalog, max_depth=max_depth)
    entry = catalog.workflows.get(ref)
    if entry is None:
        where = Location(", ".join(str(p) for p in packs_paths) or ".")
        raise ValidationError([Problem(where, f"unknown workflow '{ref}'"), *_file_errors(ref, report)])
    if ref in report.invalid_workflows:
        raise ValidationError(report.invalid_workflows[ref])
    return build_plan(entry, catalog)


def _file_errors(ref: str, report: Any) -> list[Problem]:
    """Errors of the file a workflow `ref` would be read from (it failed to load)."""
    pack, _, name = ref.partition(".")
    wanted = {f"{pack}/workflows/{name}.yaml", f"{pack}/workflows/{name}.yml"}
    return [p for p in report.errors() if any(Path(p.location.file).as_posix().endswith(w) for w in wanted)]


def check_parameters(plan: WorkflowPlan, params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with defaults, or ParameterError naming the parameter and the file."""
    try:
        return check_values(plan.params_schema, params)
    except ParameterError as exc:
        raise ParameterError(f"{plan.workflow.loc('parameters')}: {exc}") from None


def run_workflow(ref: str, packs_paths: Sequence[Path], params: Mapping[str, Any]) -> RunResult:
    """Validate, check parameters, run through `dag.test()`, and collect the result."""
    plan = resolve(ref, packs_paths)
    check_parameters(plan, params)
    return run_plan(plan, params)


def planned_run_id(run_after: datetime) -> str:
    """The run id `run_plan(..., run_after=run_after)` gives its DAG run (known before it starts)."""
    from airflow.models.dagrun import DagRun
    from airflow.sdk import timezone
    from airflow.utils.types import DagRunType

    when = timezone.coerce_datetime(run_after)
    return DagRun.generate_run_id(run_type=DagRunType.MANUAL, logical_date=when, run_after=when)


def run_plan(
    plan: WorkflowPlan, params: Mapping[str, Any], run_after: datetime | None = None, *, migrate: bool = True
) -> RunResult:
    """Run a resolved workflow through `dag.test()` (parameters already checked) and collect it.

    With `run_after` (an aware datetime) the run's logical date and run-after are that
    instant, so its run id is `planned_run_id(run_after)`; else they are now.
    `migrate=False` skips `ensure_database()` for a caller that has just done it.
    """
    from attune_provider.dag_factory.compiler import build_dag

    dag = build_dag(plan)
    if migrate:
        ensure_database()
    from airflow.sdk import timezone

    instant = timezone.coerce_datetime(run_after or timezone.utcnow())
    deadlines: Any = contextlib.nullcontext()
    if _asks_humans(plan):  # no scheduler under dag.test(): time out unanswered inquiries here
        from attune_provider.operators.inquiry import answer_deadlines

        deadlines = answer_deadlines()
    with deadlines:
        _test_run(dag, params, instant)
    return collect(plan, planned_run_id(instant))


SYNC_ATTEMPTS = 5


def _test_run(dag: Any, params: Mapping[str, Any], instant: datetime) -> None:
    """`dag.test()` at `instant`, again when it failed writing the DAGs before its run began.

    `dag.test()` first writes the DAGs of the folder to the database: two runs started
    together on a database that does not know them yet both insert them, and one fails
    on a unique constraint (or on SQLite's lock) before its run exists. Once the other
    has written them, trying again succeeds; a failure after the run began is raised.
    """
    from airflow import settings as airflow_settings
    from airflow.models.dagrun import DagRun
    from sqlalchemy.exc import DBAPIError

    for attempt in range(1, SYNC_ATTEMPTS + 1):
        try:
            dag.test(run_conf=dict(params), logical_date=instant, run_after=instant)
            return
        except DBAPIError:
            if airflow_settings.Session is not None:
                airflow_settings.Session.remove()  # its transaction was rolled back: start a new one
            if attempt == SYNC_ATTEMPTS or DagRun.find(dag_id=dag.dag_id, run_id=planned_run_id(instant)):
                raise
            time.sleep(random.uniform(0.2, 1.0) * attempt)


def _asks_humans(plan: WorkflowPlan) -> bool:
    if any(action.runner_type == "inquiry" for action in plan.actions.values()):
        return True
    return any(_asks_humans(child) for child in plan.children.values())


def collect(plan: WorkflowPlan, run_id: str) -> RunResult:
    """Read task states and XComs of a finished run from the metadata database.

    The `workflow` XCom of the last step says how the workflow ended; without it (the run
    was marked failed or success from outside before that step ran: Airflow skipped it)
    the run's state as a user set it does (`_ended_from_outside`).
    """
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter_by(dag_id=plan.ref, run_id=run_id).one_or_none()
        run_state = None if run is None else _text(run.state)
        test_run = run is not None and _text(run.triggered_by) == "test"  # dag.test(): `attune-airflow run`
        tis = session.query(TaskInstance).filter_by(dag_id=plan.ref, run_id=run_id).all()
        rows = session.query(XComModel).filter_by(dag_id=plan.ref, run_id=run_id).all()
        xcoms = {(row.task_id, row.key): unseal(XComModel.deserialize_value(row)) for row in rows}
        tis_by_id = {ti.task_id: ti for ti in tis}
        spans = {
            name: _span(_inside(tis, plan.task_ids[name]))
            for name in plan.tasks
            if plan.kind(name) != TaskKind.ACTION
        }
        marked = _marked(session, plan.ref, run_id)
    report = xcoms.get((OUTCOME_TASK_ID, WORKFLOW_KEY)) or {}
    result = RunResult(plan.ref, run_id, report.get("status") or "failed", vars=report.get("vars") or {})
    result.output = xcoms.get((OUTCOME_TASK_ID, "return_value"))
    result.reasons = list(report.get("reasons") or [])
    last = tis_by_id.get(OUTCOME_TASK_ID)
    last_state = None if last is None else _text(last.state)
    ended_from_outside = not report and last_state != "failed"
    if ended_from_outside:
        result.status, reason = _ended_from_outside(run_state, marked, test_run)
        result.reasons.append(reason)
    elif not report:  # the last step itself died before it reported
        result.reasons.append(f"the last step ({OUTCOME_TASK_ID}) ended {last_state} without reporting")
    elif run_state != "success" and result.status == "succeeded":  # the last step itself died
        result.status = "failed"
        result.reasons.append(f"the DAG run ended {run_state}")
    elif run_state == "success" and result.status == "failed" and not test_run:  # marked success after
        result.status = "succeeded"
        result.reasons.append("the DAG run was marked success")
    result.xcoms = xcoms
    reported = report.get("tasks") or {}
    errors = report.get("errors") or {}
    for name in plan.tasks:
        task_id = plan.task_ids[name]
        # with_items, parallel and subworkflow tasks report from their group's outcome task
        outcome = xcoms.get((plan.outcome_ids[name], "attune"))
        instances = [ti for ti in [tis_by_id.get(plan.outcome_ids[name])] if ti is not None]
        if plan.kind(name) == TaskKind.WITH_ITEMS:  # attempts: the most tries one of its executions took
            instances = _executions(tis, task_id)
        result.tasks[task_id] = task_run(
            task_id,
            instances,
            outcome,
            status=reported.get(task_id),
            error=errors.get(task_id),
            duration=spans.get(name),
        )
        task = result.tasks[task_id]
        if ended_from_outside and task.status == "failed" and not task.error:
            task.error = {"type": "Cancelled", "message": STOPPED_BY_RUN}
    return result


def _text(value: Any) -> str:
    """An Airflow state or enum member as its text."""
    return str(getattr(value, "value", value))


STOPPED_BY_RUN = "stopped: the DAG run was ended from outside while this task ran"


def _ended_from_outside(run_state: str | None, marked: str | None, test_run: bool) -> tuple[str, str]:
    """(status, reason) of a run whose last step never ran: the run was marked failed or
    success from outside (the UI or the REST API), and Airflow skipped what had not started.

    What the user chose is the last `patch_dag_run` of Airflow's audit log (`marked`), else
    the run's state. Not under `dag.test()` (`attune-airflow run`): it finishes the task that
    was running and then sets the run's state again from its tasks, so there an unknown
    mark is a cancellation: Attune never concluded, the workflow did not succeed.
    """
    chosen = marked or (None if test_run else run_state)
    if chosen == "success":
        return "succeeded", "the DAG run was marked success before its last step ran"
    how = "marked failed" if chosen == "failed" else "ended from outside"
    return "failed", f"cancelled: the DAG run was {how} before its last step ran"


def _marked(session: Any, dag_id: str, run_id: str) -> str | None:
    """The state the run was last set to through the REST API (or the UI, which uses it),
    from Airflow's audit log: its `patch_dag_run` events record the request's body."""
    import json

    from airflow.models.log import Log

    try:
        events = (
            session.query(Log.extra)
            .filter(Log.dag_id == dag_id, Log.run_id == run_id, Log.event == "patch_dag_run")
            .order_by(Log.dttm.desc(), Log.id.desc())
            .all()
        )
    except Exception:  # noqa: BLE001 - no audit log to read: the run's state decides
        return None
    for (extra,) in events:
        try:
            state = json.loads(extra or "{}").get("state")
        except (ValueError, AttributeError):
            continue
        if state in ("failed", "success"):
            return str(state)
    return None


def task_run(
    task_id: str,
    instances: Sequence[Any],
    outcome: Any,
    *,
    status: str | None = None,
    error: dict[str, Any] | None = None,
    duration: float | None = None,
) -> TaskRun:
    """One task as `run` reports it, from its task instances (several when mapped) and its
    `attune` outcome XCom; the workflow's own report (`status`, `error`), when there is
    one, wins. Used after the run (`collect`) and while it runs (the `run` command's watcher)."""
    outcome = outcome if isinstance(outcome, dict) else {}
    states = {str(getattr(ti.state, "value", ti.state)) for ti in instances}
    fallback = "failed" if "failed" in states else "succeeded"
    if states <= {"skipped", "removed", "upstream_failed"}:  # never started (or no instance): not reached
        fallback = "skipped"
    status = status or outcome.get("status") or fallback
    tries = max((int(ti.try_number or 0) for ti in instances), default=0)
    tries = max(tries, int(outcome.get("attempts") or 0))  # a retried subworkflow: its attempts
    attempts = 0 if status == "skipped" else tries
    if duration is None:
        duration = instances[0].duration if len(instances) == 1 else _span(instances)
    return TaskRun(task_id, status, attempts, duration, error or outcome.get("error"))


def _executions(tis: Sequence[Any], task_id: str) -> list[Any]:
    """The mapped task instances of with_items task `task_id`, in either form."""
    forms = (task_id, f"{task_id}.{MAPPED_CALL_ID}", f"{task_id}.{MAPPED_CALL_ID}.{OUTCOME_TASK_ID}")
    return [ti for ti in tis if ti.task_id in forms and ti.map_index >= 0]


def _inside(tis: Sequence[Any], group_id: str) -> list[Any]:
    """The task instances of a TaskGroup (or of a task mapped directly)."""
    return [ti for ti in tis if ti.task_id == group_id or ti.task_id.startswith(group_id + ".")]


def _span(instances: Sequence[Any]) -> float | None:
    """Seconds from the first start to the last end of some task instances."""
    timed = [ti for ti in instances if ti.start_date and ti.end_date]
    if not timed:
        return None
    return (max(ti.end_date for ti in timed) - min(ti.start_date for ti in timed)).total_seconds()
