"""Running test cases through Airflow and comparing what happened with what they expect.

Each case is one `dag.test()` run (`local_run.run_plan`, as `attune-airflow run` does) with
the case's mocks installed for its run id (runners/mocks.py). Cases run one after the
other in this process: the packs are parsed once, Airflow is imported and the metadata
database checked once, and every run after the first costs only its own `dag.test()`.
Not in parallel: `dag.test()` runs tasks in the calling thread with process-wide state
(Airflow's scoped session, SIGALRM-based task timeouts, fds redirected for the log), and
the default SQLite database takes one writer at a time.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from attune_provider.local_run import RunResult, ensure_database, planned_run_id, run_plan
from attune_provider.runners.mocks import installed
from attune_provider.testing.spec import TestCase, TestFile


@dataclass
class CaseResult:
    case: TestCase
    workflow: str
    differences: list[str] = field(default_factory=list)
    error: str | None = None  # the case could not run (Airflow failed): the traceback's last line
    details: str | None = None  # the whole traceback
    duration: float = 0.0
    run_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.differences

    def line(self) -> str:
        """`PASS file:line name` or `FAIL file:line name: what differed`."""
        head = f"{self.case.where} {self.case.name}"
        if self.passed:
            return f"PASS {head}"
        what = f"could not run: {self.error}" if self.error is not None else "; ".join(self.differences)
        return f"FAIL {head}: {what}"


def shown(value: Any) -> str:
    """A value as the report shows it: JSON."""
    try:
        return json.dumps(value, default=str, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


def same(expected: Any, actual: Any) -> bool:
    """Equal as JSON values are: `true` is not `1`, `1` is `1.0`."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return expected == actual
    if isinstance(expected, dict) and isinstance(actual, dict):
        return expected.keys() == actual.keys() and all(same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(same(e, a) for e, a in zip(expected, actual, strict=True))
    return type(expected) is type(actual) and bool(expected == actual)


def differences(expected: Any, actual: Any, path: str, subset: bool) -> list[str]:
    """Where `actual` differs from `expected` (`subset`: only the keys `expected` names, at
    every depth; list items compared one by one when both lists are as long)."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found: list[str] = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{path}.{key}: expected {shown(value)}, got no such key")
            else:
                found.extend(differences(value, actual[key], f"{path}.{key}", subset))
        if not subset:
            found.extend(
                f"{path}.{key}: not expected, got {shown(actual[key])}"
                for key in actual
                if key not in expected
            )
        return found
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]", subset)
        ]
    return [] if same(expected, actual) else [f"{path}: expected {shown(expected)}, got {shown(actual)}"]


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type', 'Error')}: {error.get('message', '')}"
    return str(error)


def compare(case: TestCase, result: RunResult) -> list[str]:
    """What differed between the case's expectations and the run, one text per difference."""
    expect = case.expect
    found: list[str] = []
    if expect.status is not None and expect.status != result.status:
        why = [
            f"{task_id} {task.status} ({_error_text(task.error)})"
            for task_id, task in result.tasks.items()
            if task.error
        ]
        because = f" [{'; '.join(why)}]" if why and result.status == "failed" else ""
        found.append(f"status: expected {expect.status}, got {result.status}{because}")
    for task_id, status in expect.tasks.items():
        task = result.tasks.get(task_id)
        actual = "not run" if task is None else task.status
        if actual != status:
            error = f" ({_error_text(task.error)})" if task is not None and task.error else ""
            found.append(f"tasks.{task_id}: expected {status}, got {actual}{error}")
    for key, value in expect.output.items():
        found.extend(differences(value, result.output, "output", key.endswith("_subset")))
    for key, value in expect.vars.items():
        found.extend(differences(value, result.vars, "vars", key.endswith("_subset")))
    return found


class Clock:
    """Run instants, each strictly after the previous one: two cases of one workflow must
    not get the same logical date (and run id)."""

    def __init__(self) -> None:
        self.last: datetime | None = None

    def next(self) -> datetime:
        now = datetime.now(timezone.utc)
        if self.last is not None and now <= self.last:
            now = self.last + timedelta(milliseconds=1)
        self.last = now
        return now


def run_case(test: TestFile, case: TestCase, clock: Clock) -> CaseResult:
    """Run one case with its mocks and compare; an exception from Airflow is the case's error."""
    assert test.plan is not None
    outcome = CaseResult(case, test.workflow)
    started = time.monotonic()
    instant = clock.next()
    outcome.run_id = planned_run_id(instant)
    try:
        with installed(outcome.run_id, case.mock_table()):
            result = run_plan(test.plan, case.parameters, instant, migrate=False)
        outcome.differences = compare(case, result)
    except Exception as exc:  # noqa: BLE001 - the case failed to run; the others still run
        outcome.error = f"{type(exc).__name__}: {exc}"
        outcome.details = traceback.format_exc()
    outcome.duration = time.monotonic() - started
    return outcome


def run_all(
    tests: Sequence[TestFile], report: Callable[[CaseResult], None] | None = None
) -> list[CaseResult]:
    """Every case of every file, in order; `report` sees each result as soon as it is known."""
    ensure_database()
    clock = Clock()
    results = []
    for test, case in _cases(tests):
        result = run_case(test, case, clock)
        if report is not None:
            report(result)
        results.append(result)
    return results


def _cases(tests: Iterable[TestFile]) -> Iterable[tuple[TestFile, TestCase]]:
    for test in tests:
        for case in test.cases:
            yield test, case
