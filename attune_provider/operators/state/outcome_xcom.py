"""How tasks tell each other what happened: one `attune` XCom per task.

A task pushes an `Outcome` (status, result, error, the targets it fired, what it
published, when it ended). Downstream tasks read those to decide whether they were
routed to, to build `vars` and the `task.<name>` template scope. Two kinds of task say
less: a quiet success (`plan.quiet_successes`) is read from Airflow's `success` state and
its return value, and a with_items task mapped directly (`plan.mapped_items`) from its
instances. A task that died without pushing is read from Airflow's own recorded state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import fired_targets
from attune_provider.language.statuses import OUTCOME_TASK_ID, SUBWORKFLOW_INPUT_ID, Status
from attune_provider.operators.state.sealed import unseal

OUTCOME_KEY = "attune"
WORKFLOW_KEY = "workflow"  # the workflow's outcome, pushed by its `attune_outcome` task


def shared_map_index(ti: Any, task_id: str) -> int | None:
    """The map index `ti` shares with task `task_id`: a task of a subworkflow called with
    `with_items` reads its sibling tasks (those of its mapped TaskGroup) at its own map
    index, the item it runs for; None for every other pair of tasks."""
    map_index = getattr(ti, "map_index", None)
    if map_index is None or map_index < 0:
        return None
    group = ti.task.get_closest_mapped_task_group()
    return map_index if group is not None and task_id.startswith(f"{group.group_id}.") else None


def pull(ti: Any, task_id: str, key: str = "return_value") -> Any:
    """The XCom `key` of (unmapped) task `task_id` in this run, None when there is none
    (a sibling in the same mapped TaskGroup: its instance at this task's map index).

    Without `map_indexes`, the Task SDK reads it through the sequence endpoint, which
    answers "nothing" quietly: a single-value read logs an error for every missing XCom,
    and Attune often asks for outcomes that were never pushed (a step that succeeded, a
    task skipped early).
    """
    index = shared_map_index(ti, task_id)
    if index is not None:
        found = ti.xcom_pull(task_ids=[task_id], key=key, map_indexes=[index])
        return unseal(found[0]) if found else None
    return unseal(ti.xcom_pull(task_ids=task_id, key=key))


CANCELLED = "Cancelled"  # the error type of a task, execution or subworkflow ended from outside


def ended_from_outside(what: str) -> dict[str, Any]:
    """The error of `what` (an execution) when Airflow shows it failed though it pushed no
    outcome: marked failed in the UI or the REST API, or its process was killed."""
    return {
        "type": CANCELLED,
        "message": f"{what} was ended from outside before it reported an outcome "
        "(marked failed in the UI or the REST API, or its process was killed)",
    }


STARTED_KEY = "started"  # XCom of a subworkflow's input step: when the call began (epoch s)


def subworkflow_deadline(plan: WorkflowPlan, ti: Any, nested: bool = False) -> tuple[float, float] | None:
    """(deadline, timeout) of the call that runs `plan` as a subworkflow, when the calling
    task has a `timeout`: the child's whole run counts, from its input step's start.
    `nested`: the earliest deadline of every call it runs inside (a subworkflow of a
    subworkflow stops starting tasks at its caller's caller's deadline too)."""
    earliest: tuple[float, float] | None = None
    while plan.parent is not None:
        caller, name = plan.parent
        timeout = caller.tasks[name].timeout
        started = pull(ti, plan.prefix + SUBWORKFLOW_INPUT_ID, STARTED_KEY) if timeout is not None else None
        if timeout is not None and isinstance(started, (int, float)):
            if earliest is None or started + timeout < earliest[0]:
                earliest = (started + timeout, timeout)
        if not nested:
            break
        plan = caller
    return earliest


def last_attempt(plan: WorkflowPlan, name: str, ti: Any) -> tuple[Outcome | None, int]:
    """A retried subworkflow call (`plan.attempts`): the outcome of its last attempt that
    ran, and how many ran (each attempt's child reports to its own outcome step; a with_items
    call's, at this task's map index)."""
    ran: list[Outcome] = []
    for attempt in plan.attempts[name]:
        outcome = Outcome.from_xcom(pull(ti, attempt.prefix + OUTCOME_TASK_ID, OUTCOME_KEY))
        if outcome is None or outcome.status == Status.SKIPPED:
            break
        ran.append(outcome)
    return (ran[-1] if ran else None), len(ran)


def pull_all(ti: Any, task_id: str, key: str = "return_value") -> list[Any]:
    """The XComs `key` of every instance of mapped task `task_id`, in map-index order (one
    call; instances that pushed none are missing, as are results that were null)."""
    return [unseal(value) for value in ti.xcom_pull(task_ids=[task_id], key=key) if value is not None]


class Outcome:
    """What one task (or one execution of a with_items task) ended with."""

    FIELDS = (
        "status",
        "result",
        "error",
        "next",
        "published",
        "ended_at",
        "attempts",
        "total_count",
        "index",
        "decided",
        "deadline",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        status: str,
        result: Any = None,
        error: dict[str, Any] | None = None,
        next: list[str] | None = None,  # noqa: A002 - the XCom's key
        published: dict[str, Any] | None = None,
        ended_at: float = 0.0,
        attempts: int = 0,
        total_count: int | None = None,
        index: int | None = None,
        decided: str | None = None,
        deadline: bool = False,
    ) -> None:
        self.status = status
        self.result = result
        self.error = error
        self.next = [] if next is None else next
        self.published = {} if published is None else published
        self.ended_at = ended_at
        self.attempts = attempts
        self.total_count = total_count
        self.index = index
        self.decided = decided  # the target the task's decision picked, if any
        # stopped or skipped because the subworkflow call it runs in reached its deadline
        self.deadline = deadline

    def __repr__(self) -> str:
        return f"Outcome({self.to_xcom()!r})"

    def to_xcom(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @classmethod
    def from_xcom(cls, value: Any) -> Outcome | None:
        if not isinstance(value, dict) or "status" not in value:
            return None
        return cls(**{k: value[k] for k in cls.FIELDS if k in value})

    def scope(self) -> dict[str, Any]:
        """What `task.<name>` shows in templates."""
        view: dict[str, Any] = {"status": self.status, "result": self.result, "error": self.error}
        if self.total_count is not None:
            view["total_count"] = self.total_count
        return view


def combine(outcomes: list[Outcome], total: int, task: Any) -> Outcome:
    """The one outcome of a with_items task from its executions' (in item order): failed
    when any failed (timeout when all the failures timed out), with the results in order."""
    results = [o.result for o in outcomes]
    failed = [(i, o) for i, o in enumerate(outcomes) if o.status != Status.SUCCEEDED]
    if not failed:
        return Outcome(
            Status.SUCCEEDED, results, next=fired_targets(task, Status.SUCCEEDED), total_count=total
        )
    first_index, first = failed[0]
    message = (
        f"{len(failed)} of {len(outcomes)} executions failed; "
        f"first, index {first_index}: {(first.error or {}).get('message', '')}"
    )
    status = Status.TIMEOUT if all(o.status == Status.TIMEOUT for _, o in failed) else Status.FAILED
    # an execution ended from outside cancels the task, as a task marked failed does
    cancelled = any((o.error or {}).get("type") == CANCELLED for _, o in failed)
    error = {"type": CANCELLED if cancelled else "ItemsFailed", "message": message, "index": first_index}
    deadline = any(o.deadline for _, o in failed)
    return Outcome(status, results, error, fired_targets(task, status), total_count=total, deadline=deadline)


_FINISHED = frozenset({"success", "failed", "skipped", "upstream_failed", "removed"})
_NOT_STARTED = frozenset({"skipped", "upstream_failed"})
# `upstream_failed`: never started (a `plan.trigger_gated` task after a predecessor that
# died, or a subworkflow's entry task after its refused input): not reached, so skipped.
_AIRFLOW_TO_STATUS = {"success": Status.SUCCEEDED, "failed": Status.FAILED}


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
        self._skipped_by_state(names)
        return [self[name] for name in names]

    def _skipped_by_state(self, names: list[str]) -> None:
        if len(names) > 2:
            for name in names:
                if name not in self._cache and self.airflow_state(name) == "skipped":
                    self._cache[name] = Outcome(Status.SKIPPED)

    def airflow_state(self, name: str) -> str | None:
        """Airflow's state of the task that reports `name`'s outcome (one call per reader);
        for a task mapped directly, the state all its instances share (else None)."""
        if name in self._plan.mapped_items:
            found = set(self._instance_states(name))
            state = found.pop() if len(found) == 1 else None
        else:
            state = self._run_states().get(self._task_ids[name])
        return None if state is None else str(state)

    def _instance_states(self, name: str) -> list[Any]:
        """Airflow's states of the instances of a directly mapped task, in map-index order
        (its task-states call names them `<task_id>_<map_index>`)."""
        states, task_id = self._run_states(), self._task_ids[name]
        return [states.get(f"{task_id}_{i}") for i in range(len(self._plan.mapped_items[name]))]

    def routing(self, names: list[str]) -> list[Outcome]:
        """What the gate needs of `names`: their status and the targets they fired. A
        quiet success (`plan.quiet_successes`) is known from Airflow's state alone, its
        result is not read."""
        self._skipped_by_state(names)
        return [
            self._cache.get(name) or self._quiet_success(name, with_result=False) or self[name]
            for name in names
        ]

    def _quiet_success(self, name: str, with_result: bool) -> Outcome | None:
        if name not in self._plan.quiet_successes or self.airflow_state(name) != "success":
            return None
        result = pull(self._ti, self._task_ids[name]) if with_result else None
        return Outcome(Status.SUCCEEDED, result, next=fired_targets(self._plan.tasks[name], Status.SUCCEEDED))

    def _pull(self, name: str) -> Outcome:
        if name in self._plan.mapped_items:
            return self._pull_mapped(name)
        quiet = self._quiet_success(name, with_result=True)
        if quiet is not None:
            return quiet
        task_id = self._task_ids[name]
        value = pull(self._ti, task_id, OUTCOME_KEY)
        outcome = Outcome.from_xcom(value)
        if outcome is not None:
            return outcome
        return self._from_airflow_state(name, task_id)

    def _pull_mapped(self, name: str) -> Outcome:
        """The outcome of a with_items task mapped directly (`plan.mapped_items`): its
        instances push an `attune` XCom only when they did not succeed, so a run where all
        succeeded costs the states call and one read of their results."""
        task_id, task = self._task_ids[name], self._plan.tasks[name]
        executions = self._plan.mapped_items[name]
        total = sum(len(e) for e in executions) if task.batch_size else len(executions)
        instance_states = self._instance_states(name)
        if _NOT_STARTED.issuperset(instance_states) or not _FINISHED.issuperset(instance_states):
            return Outcome(Status.SKIPPED)  # as a task that has not ended reads (one that is not upstream)
        if all(state == "success" for state in instance_states):
            results = pull_all(self._ti, task_id)
            if len(results) != len(executions):  # some results were null: read them one by one
                results = self._ti.xcom_pull(task_ids=task_id, map_indexes=list(range(len(executions))))
                results = [unseal(result) for result in results]
            return Outcome(
                Status.SUCCEEDED, results, next=fired_targets(task, Status.SUCCEEDED), total_count=total
            )
        reported = [o for o in map(Outcome.from_xcom, pull_all(self._ti, task_id, OUTCOME_KEY)) if o]
        for early in reported:  # the gate or the input failed: the task's failure, not an item's
            if early.index is None and early.status != Status.SKIPPED:
                return Outcome(early.status, None, early.error, fired_targets(task, early.status))
        by_index = {o.index: o for o in reported}
        outcomes = []
        for index, state in enumerate(instance_states):
            if state == "success":
                result = unseal(self._ti.xcom_pull(task_ids=task_id, map_indexes=index))
                outcomes.append(Outcome(Status.SUCCEEDED, result))
            else:
                died = ended_from_outside(f"execution {index}")
                outcomes.append(by_index.get(index) or Outcome(Status.FAILED, error=died))
        return combine(outcomes, total, task)

    def _from_airflow_state(self, name: str, task_id: str) -> Outcome:
        """A task that pushed nothing: skipped or never ran, or died (then it failed)."""
        status = _AIRFLOW_TO_STATUS.get(str(self._run_states().get(task_id) or ""), Status.SKIPPED)
        if status == Status.FAILED:
            task = self._plan.tasks[name]
            error = {"type": "TaskDied", "message": "the task ended without reporting an outcome"}
            return Outcome(Status.FAILED, error=error, next=fired_targets(task, Status.FAILED))
        return Outcome(Status.SKIPPED)

    def _run_states(self) -> dict[str, Any]:
        """Airflow's state of every task of the run, in one call (tasks skipped early by
        their predecessor, `AttuneOperator.settle`, have no outcome: often several)."""
        if self._states is None:
            try:
                found = self._ti.get_task_states(dag_id=self._ti.dag_id, run_ids=[self._ti.run_id])
                self._states = _at_shared_index(self._ti, dict(found.get(self._ti.run_id, {})))
            except Exception:  # noqa: BLE001 - a missing state just means "did not run"
                self._states = {}
        return self._states

    def scope(self) -> Mapping[str, Any]:
        """The `task` template scope: `task.<name>.result/status/error`."""
        return _TaskScope(self)


def _at_shared_index(ti: Any, states: dict[str, Any]) -> dict[str, Any]:
    """The run's task states with each sibling in this task's mapped TaskGroup under its
    plain task id, its instance at this task's map index (Airflow names it
    `<task_id>_<map_index>`; an instance not yet expanded has only the plain id)."""
    index = getattr(ti, "map_index", None)
    if index is None or index < 0 or ti.task.get_closest_mapped_task_group() is None:
        return states
    suffix = f"_{index}"
    for key, state in list(states.items()):
        if key.endswith(suffix) and shared_map_index(ti, key[: -len(suffix)]) == index:
            states[key[: -len(suffix)]] = state
    return states


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
    published = [o for o in found if o.status == Status.SUCCEEDED and o.published]
    for outcome in sorted(published, key=lambda o: o.ended_at):
        values.update(outcome.published)
    return values
