"""How tasks tell each other what happened: one `attune` XCom per task.

Every task pushes an `Outcome` (status, result, error, the targets it fired, what it
published, when it ended). Downstream tasks read those to decide whether they were
routed to, to build `vars` and the `task.<name>` template scope. A task that died
without pushing is read from Airflow's own recorded state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from attune_provider.dag_factory.graph import FAILED, SKIPPED, SUCCEEDED, fired_targets
from attune_provider.dag_factory.plan import WorkflowPlan

OUTCOME_KEY = "attune"
WORKFLOW_KEY = "workflow"  # the workflow's outcome, pushed by its `attune_outcome` task


def pull(ti: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom `key` of (unmapped) task `task_id` in this run, None when there is none.

    Without `map_indexes`, the Task SDK reads it through the sequence endpoint, which
    answers "nothing" quietly: a single-value read logs an error for every missing XCom,
    and Attune often asks for outcomes that were never pushed (a step that succeeded, a
    task skipped early).
    """
    return ti.xcom_pull(task_ids=task_id, key=key)


@dataclass
class Outcome:
    status: str
    result: Any = None
    error: dict[str, Any] | None = None
    next: list[str] = field(default_factory=list)
    published: dict[str, Any] = field(default_factory=dict)
    ended_at: float = 0.0
    attempts: int = 0
    total_count: int | None = None
    index: int | None = None

    def to_xcom(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_xcom(cls, value: Any) -> Outcome | None:
        if not isinstance(value, dict) or "status" not in value:
            return None
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        return cls(**known)

    def scope(self) -> dict[str, Any]:
        """What `task.<name>` shows in templates."""
        view: dict[str, Any] = {"status": self.status, "result": self.result, "error": self.error}
        if self.total_count is not None:
            view["total_count"] = self.total_count
        return view


_AIRFLOW_TO_STATUS = {"success": SUCCEEDED, "failed": FAILED, "upstream_failed": FAILED}


class OutcomeReader(Mapping[str, Outcome]):
    """The outcomes of a run's tasks, pulled lazily from XCom and cached.

    `ti` is the running task instance (the Task SDK's RuntimeTaskInstance).
    """

    def __init__(self, ti: Any, plan: WorkflowPlan) -> None:
        self._ti = ti
        self._plan = plan
        self._task_ids = plan.outcome_ids
        self._cache: dict[str, Outcome] = {}
        self._states: dict[str, Any] | None = None

    def __getitem__(self, name: str) -> Outcome:
        if name not in self._plan.tasks:
            raise KeyError(name)
        if name not in self._cache:
            self._cache[name] = self._pull(name)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._plan.tasks)

    def __len__(self) -> int:
        return len(self._plan.tasks)

    def read_many(self, names: list[str]) -> list[Outcome]:
        """The outcomes of `names`; for more than two, one call for the run's task states
        first spares pulling the outcome of every task Airflow shows as skipped (a
        skipped task published nothing and fired nothing)."""
        if len(names) > 2:
            states = self._run_states()
            for name in names:
                if name not in self._cache and states.get(self._task_ids[name]) == "skipped":
                    self._cache[name] = Outcome(SKIPPED)
        return [self[name] for name in names]

    def airflow_state(self, name: str) -> str | None:
        """Airflow's state of the task that reports `name`'s outcome (one call per reader)."""
        state = self._run_states().get(self._task_ids[name])
        return None if state is None else str(state)

    def _pull(self, name: str) -> Outcome:
        task_id = self._task_ids[name]
        value = pull(self._ti, task_id, OUTCOME_KEY)
        outcome = Outcome.from_xcom(value)
        if outcome is not None:
            return outcome
        return self._from_airflow_state(name, task_id)

    def _from_airflow_state(self, name: str, task_id: str) -> Outcome:
        """A task that pushed nothing: skipped or never ran, or died (then it failed)."""
        status = _AIRFLOW_TO_STATUS.get(str(self._run_states().get(task_id) or ""), SKIPPED)
        if status == FAILED:
            task = self._plan.tasks[name]
            error = {"type": "TaskDied", "message": "the task ended without reporting an outcome"}
            return Outcome(FAILED, error=error, next=fired_targets(task, FAILED))
        return Outcome(SKIPPED)

    def _run_states(self) -> dict[str, Any]:
        """Airflow's state of every task of the run, in one call (tasks skipped early by
        their predecessor, `AttuneOperator.settle`, have no outcome: often several)."""
        if self._states is None:
            try:
                found = self._ti.get_task_states(dag_id=self._ti.dag_id, run_ids=[self._ti.run_id])
                self._states = dict(found.get(self._ti.run_id, {}))
            except Exception:  # noqa: BLE001 - a missing state just means "did not run"
                self._states = {}
        return self._states

    def scope(self) -> Mapping[str, Any]:
        """The `task` template scope: `task.<name>.result/status/error`."""
        return _TaskScope(self)


class _TaskScope(Mapping[str, Any]):
    def __init__(self, reader: OutcomeReader) -> None:
        self._reader = reader

    def __getitem__(self, name: str) -> Any:
        return self._reader[name].scope()

    def __iter__(self) -> Iterator[str]:
        return iter(self._reader)

    def __len__(self) -> int:
        return len(self._reader)


def merged_vars(initial: Mapping[str, Any], outcomes: OutcomeReader, names: list[str]) -> dict[str, Any]:
    """Initial vars, then the publishes of the succeeded tasks among `names`, in end order."""
    values = dict(initial)
    found = outcomes.read_many(names)
    published = [o for o in found if o.status == SUCCEEDED and o.published]
    for outcome in sorted(published, key=lambda o: o.ended_at):
        values.update(outcome.published)
    return values
