"""Fixed results in place of actions, for `attune-airflow test` (docs/testing-packs.md).

A test case installs a `MockTable` for the DAG run it is about to start (`installed`);
`mocked_runner` is the one hook the operators call (`ActionRunMixin.call_action`, after
the input was rendered and checked against the action's parameters, as for a real call):
when the table of the task's run mocks the task (`task:<name>`, tasks of the tested
workflow itself) or its action (by ref), the task gets a `MockRunner` instead of the
action's own runner. Everything else (publish, decision, retries, with_items executions,
outcomes) runs the same code as a real run.

A mock replies `{result: VALUE}` (the call succeeds with a copy of VALUE) or `{fail:
{type, message}}` (the call fails with that error, as an action that failed: retries
apply). A list of replies is consumed one per call (every retry and every with_items
execution is a call); a call past its end fails with `MockExhausted`. Calls are numbered
in the order they happen, except the first tries of a with_items task's executions, which
Airflow runs in no fixed order: when the first of them calls, the mock sets aside one
reply per execution, and execution i takes the i-th of them; retries take the replies
after. Tables are looked up by run id, so runs of different cases in one
process never see each other's mocks.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from attune_provider.runners.base import ActionFailed, Invocation, Runner

log = logging.getLogger(__name__)

TASK_PREFIX = "task:"


class Execution(NamedTuple):
    """The first try of execution `position` of the `total` executions of with_items task
    `task_id`."""

    task_id: str
    position: int
    total: int


class Reply(NamedTuple):
    """One reply of a mock: a result, or the `{type, message}` error the call fails with."""

    result: Any = None
    error: dict[str, Any] | None = None


@dataclass
class Mock:
    """The replies of one mock key (`<action ref>` or `task:<name>`); `sequence` when the
    test gave a list (consumed one per call), else the one reply answers every call."""

    key: str
    replies: Sequence[Reply]
    sequence: bool = False
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    # with_items task id -> the number of calls before the replies set aside for its executions
    _blocks: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def next_reply(self, execution: Execution | None = None) -> Reply:
        """The reply to the next call (`execution`: the first try of a with_items execution)."""
        with self._lock:
            if execution is None:
                self.calls += 1
                number = self.calls
            else:
                if execution.task_id not in self._blocks:
                    self._blocks[execution.task_id] = self.calls
                    self.calls += execution.total
                number = self._blocks[execution.task_id] + execution.position + 1
        if not self.sequence:
            return self.replies[0]
        if number > len(self.replies):
            count = len(self.replies)
            message = (
                f"mock '{self.key}' has {count} repl{'ies' if count != 1 else 'y'}; this is call {number}"
            )
            return Reply(error={"type": "MockExhausted", "message": message})
        return self.replies[number - 1]


@dataclass
class MockTable:
    """The mocks of one test case, by key (`<action ref>` or `task:<name>`)."""

    mocks: dict[str, Mock] = field(default_factory=dict)

    def lookup(self, action_ref: str, task_name: str | None) -> Mock | None:
        """A task's own mock wins over its action's (`task_name` None: no task mock applies)."""
        if task_name is not None and TASK_PREFIX + task_name in self.mocks:
            return self.mocks[TASK_PREFIX + task_name]
        return self.mocks.get(action_ref)

    def calls(self) -> dict[str, int]:
        return {key: mock.calls for key, mock in self.mocks.items()}


_TABLES: dict[str, MockTable] = {}
_TABLES_LOCK = threading.Lock()


@contextlib.contextmanager
def installed(run_id: str, table: MockTable) -> Iterator[MockTable]:
    """The mocks of the DAG run `run_id` while the block runs (that run's tasks run in it)."""
    with _TABLES_LOCK:
        _TABLES[run_id] = table
    try:
        yield table
    finally:
        with _TABLES_LOCK:
            _TABLES.pop(run_id, None)


class MockRunner:
    """Answers one call with a mock's next reply."""

    def __init__(self, mock: Mock, execution: Execution | None = None) -> None:
        self.mock = mock
        self.execution = execution

    def run(self, invocation: Invocation) -> Any:
        reply = self.mock.next_reply(self.execution)
        log.info(
            "attune test: task '%s' (%s): mock '%s', call %d: %s",
            invocation.task_name,
            invocation.action.ref,
            self.mock.key,
            self.mock.calls,
            "fails" if reply.error is not None else "succeeds",
        )
        if reply.error is not None:
            raise ActionFailed(dict(reply.error))
        return copy.deepcopy(reply.result)

    def kill(self) -> None:
        """Nothing runs."""


def _run_id(context: Any) -> str | None:
    try:
        run_id = context["run_id"]
    except (KeyError, TypeError):
        return None
    return run_id if isinstance(run_id, str) else None


def mocked_runner(
    action_ref: str, task_name: str | None, context: Any, executions: Callable[[], int] | None = None
) -> Runner | None:
    """The runner answering this call from the mocks of its run, or None (no table is
    installed for the run, or none of its mocks names the task or the action).
    `task_name` is the task's name in the tested workflow (None inside a subworkflow);
    `executions`, for a with_items execution, how many executions its task has."""
    if not _TABLES:
        return None
    run_id = _run_id(context)
    table = None if run_id is None else _TABLES.get(run_id)
    mock = None if table is None else table.lookup(action_ref, task_name)
    if mock is None:
        return None
    ti = context.get("ti")
    if executions is not None and ti is not None and ti.try_number <= 1 and mock.sequence:
        return MockRunner(mock, Execution(ti.task_id, ti.map_index, executions()))
    return MockRunner(mock)
