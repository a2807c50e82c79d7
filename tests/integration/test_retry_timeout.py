"""`retry` and `timeout` (docs/language.md, "Retry and timeout") through Airflow.

Attempts are counted twice: by Airflow (the task instance's tries in the metadata DB)
and by the action itself, which appends to a counter file given as a parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from attune_provider.language.models import Retry
from attune_provider.local_run import RunResult

FLAKY_YAML = """
name: flaky
runner_type: python-script
entry_point: flaky.py
parameters:
  path: {type: string, required: true}
  fail_times: {type: integer, default: 0}
  sleeps: {type: array, default: []}
  error_type: {type: string, default: ValueError}
"""

FLAKY_PY = """
import os
import time


def run(path, fail_times, sleeps, error_type):
    attempt = 1
    if os.path.exists(path):
        with open(path) as f:
            attempt = int(f.read()) + 1
    with open(path, "w") as f:
        f.write(str(attempt))
    if sleeps:
        time.sleep(sleeps[min(attempt, len(sleeps)) - 1])
    if attempt <= fail_times:
        raise {"ValueError": ValueError, "LookupError": LookupError}[error_type](f"attempt {attempt} failed")
    return {"attempt": attempt}
"""

FILES = {"actions/flaky.yaml": FLAKY_YAML, "actions/flaky.py": FLAKY_PY}
Run = Callable[..., RunResult]


def counter(path: Path) -> int:
    """How many times the flaky action ran."""
    return int(path.read_text()) if path.exists() else 0


# -- the backoff arithmetic -------------------------------------------------------------


@pytest.mark.parametrize(
    ("retry", "delays"),
    [
        ({"count": 4, "delay": 2}, [2, 2, 2, 2]),
        ({"count": 4, "delay": 2, "backoff": "constant"}, [2, 2, 2, 2]),
        ({"count": 4, "delay": 2, "backoff": "linear"}, [2, 4, 6, 8]),
        ({"count": 4, "delay": 2, "backoff": "exponential"}, [2, 4, 8, 16]),
        ({"count": 4, "delay": 2, "backoff": "exponential", "max_delay": 5}, [2, 4, 5, 5]),
        ({"count": 4, "delay": 2, "backoff": "linear", "max_delay": 3}, [2, 3, 3, 3]),
        ({"count": 3, "delay": 10, "max_delay": 1}, [1, 1, 1]),
        ({"count": 3}, [0, 0, 0]),
    ],
    ids=[
        "default",
        "constant",
        "linear",
        "exponential",
        "exponential-max",
        "linear-max",
        "max-below",
        "none",
    ],
)
def test_delay_before(retry: dict[str, Any], delays: list[float]) -> None:
    model = Retry.model_validate(retry)
    assert [model.delay_before(n) for n in range(1, model.count + 1)] == delays


class _Task:
    """What the policy reads from the failing task: the error scope of `on_error`."""

    def __init__(self, error_type: str) -> None:
        error = {"type": error_type, "message": "m"}
        self.error_scope = {"task": {"a": {"status": "failed", "result": None, "error": error}}}


def test_retry_policy_decisions(airflow_db: None) -> None:
    # Airflow is imported only after the session's environment is set (conftest).
    from airflow.sdk.definitions.retry_policy import RetryAction

    from attune_provider.operators.retry import AttuneRetryPolicy

    retry = Retry.model_validate(
        {"count": 3, "delay": 1, "backoff": "exponential", "on_error": "{{ task.a.error.type != 'Fatal' }}"}
    )
    policy = AttuneRetryPolicy(retry)
    error = RuntimeError("x")
    second = policy.evaluate(error, 2, 4, {"task": _Task("Transient")})
    assert second.action == RetryAction.RETRY and second.retry_delay == timedelta(seconds=2)
    assert policy.evaluate(error, 3, 4, {"task": _Task("Transient")}).retry_delay == timedelta(seconds=4)
    assert policy.evaluate(error, 1, 4, {"task": _Task("Fatal")}).action == RetryAction.FAIL
    assert policy.evaluate(error, 5, 4, {"task": _Task("Transient")}).action == RetryAction.DEFAULT
    again = AttuneRetryPolicy.deserialize(policy.serialize())
    assert again.retry == retry


# -- attempts taken ----------------------------------------------------------------------


def test_always_failing_takes_count_plus_one_attempts(run: Run, tmp_path: Path, tries: Callable) -> None:
    path = tmp_path / "count"
    result = run(
        """
        ref: t.wf
        parameters:
          path: {type: string}
        tasks:
          - name: a
            action: t.flaky
            input: {path: "{{ parameters.path }}", fail_times: 99}
            retry: {count: 2}
            on_success: after
          - name: after
            action: core.noop
        """,
        files=FILES,
        params={"path": str(path)},
    )
    assert result.status == "failed"
    assert result.tasks["a"].status == "failed"
    assert result.tasks["a"].attempts == 3
    assert counter(path) == 3
    assert result.tasks["a"].error == {"type": "ValueError", "message": "attempt 3 failed"}
    assert result.tasks["after"].status == "skipped"
    assert [t.state for t in tries(result, "a")] == ["failed", "failed", "failed"]


def test_success_on_second_attempt_stops_retrying(run: Run, tmp_path: Path, tries: Callable) -> None:
    path = tmp_path / "count"
    result = run(
        """
        ref: t.wf
        parameters:
          path: {type: string}
        tasks:
          - name: a
            action: t.flaky
            input: {path: "{{ parameters.path }}", fail_times: 1}
            retry: {count: 4}
            publish:
              - attempt: "{{ task.a.result.attempt }}"
            on_success: after
            on_failure: fail
          - name: after
            action: core.noop
        """,
        files=FILES,
        params={"path": str(path)},
    )
    assert result.status == "succeeded"
    assert result.tasks["a"].status == "succeeded"
    assert result.tasks["a"].attempts == 2
    assert counter(path) == 2
    assert result.vars == {"attempt": 2}
    assert result.xcom("a", "attune")["attempts"] == 2
    assert [t.state for t in tries(result, "a")] == ["failed", "success"]
    assert result.tasks["after"].status == "succeeded"


# -- backoff, measured -------------------------------------------------------------------


def waits(records: list[Any]) -> list[float]:
    """Seconds between the end of each try and the start of the next."""
    return [(b.start - a.end).total_seconds() for a, b in zip(records, records[1:], strict=False)]


def starts(records: list[Any]) -> list[float]:
    """Seconds between the starts of consecutive tries."""
    return [(b.start - a.start).total_seconds() for a, b in zip(records, records[1:], strict=False)]


# dag.test() looks for runnable tasks about once a second: a retry starts up to ~1 s late.
POLL_SLACK = 1.6


def test_exponential_backoff_gaps_grow(run: Run, tmp_path: Path, tries: Callable) -> None:
    result = run(
        """
        ref: t.wf
        parameters:
          path: {type: string}
        tasks:
          - name: a
            action: t.flaky
            input: {path: "{{ parameters.path }}", fail_times: 99}
            retry: {count: 3, delay: 1, backoff: exponential}
            on_failure: noop
        """,
        files=FILES,
        params={"path": str(tmp_path / "count")},
    )
    records = tries(result, "a")
    assert len(records) == 4 and result.tasks["a"].attempts == 4
    measured, gaps = waits(records), starts(records)
    print(f"exponential backoff: waits {measured}, start-to-start {gaps}")
    for wait, gap, expected in zip(measured, gaps, [1, 2, 4], strict=True):
        assert expected - 0.1 <= wait <= expected + POLL_SLACK, (measured, expected)
        assert gap >= expected - 0.1, (gaps, expected)
    assert measured[0] < measured[1] < measured[2], measured
    assert gaps[1] < gaps[2], gaps


def test_max_delay_caps_backoff(run: Run, tmp_path: Path, tries: Callable) -> None:
    result = run(
        """
        ref: t.wf
        parameters:
          path: {type: string}
        tasks:
          - name: a
            action: t.flaky
            input: {path: "{{ parameters.path }}", fail_times: 99}
            retry: {count: 3, delay: 1, backoff: exponential, max_delay: 1}
            on_failure: noop
        """,
        files=FILES,
        params={"path": str(tmp_path / "count")},
    )
    measured = waits(tries(result, "a"))
    print(f"capped backoff: waits {measured}")
    assert len(measured) == 3
    for wait in measured:  # uncapped, the third wait would be 4 s
        assert 0.9 <= wait <= 1 + POLL_SLACK, measured


# -- on_error ----------------------------------------------------------------------------


def test_on_error_false_stops_retrying(run: Run, tmp_path: Path) -> None:
    fatal, transient = tmp_path / "fatal", tmp_path / "transient"
    result = run(
        """
        ref: t.wf
        parameters:
          fatal: {type: string}
          transient: {type: string}
        tasks:
          - name: fatal
            action: t.flaky
            input: {path: "{{ parameters.fatal }}", fail_times: 99, error_type: ValueError}
            retry: {count: 3, on_error: "{{ task.fatal.error.type != 'ValueError' }}"}
            on_failure: noop
          - name: transient
            action: t.flaky
            input: {path: "{{ parameters.transient }}", fail_times: 99, error_type: LookupError}
            retry: {count: 2, on_error: "{{ task.transient.error.type != 'ValueError' }}"}
            on_failure: noop
        """,
        files=FILES,
        params={"fatal": str(fatal), "transient": str(transient)},
    )
    assert result.status == "succeeded"
    assert (result.tasks["fatal"].status, result.tasks["fatal"].attempts, counter(fatal)) == ("failed", 1, 1)
    assert (result.tasks["transient"].status, result.tasks["transient"].attempts) == ("failed", 3)
    assert counter(transient) == 3
    assert result.tasks["transient"].error == {"type": "LookupError", "message": "attempt 3 failed"}


# -- timeout -----------------------------------------------------------------------------


def test_timeout_is_an_outcome_routed_by_on_timeout(run: Run, tries: Callable) -> None:
    result = run(
        """
        ref: t.wf
        tasks:
          - name: slow
            action: core.sleep
            input: {seconds: 60}
            timeout: 1
            on_timeout: handle
            on_failure: wrong
          - name: handle
            action: core.echo
            input: {message: "{{ task.slow.status }} {{ task.slow.error.message }}"}
          - name: wrong
            action: core.noop
        output_map: "{{ task.handle.result.message }}"
        """
    )
    assert result.status == "succeeded"
    assert result.tasks["slow"].status == "timeout"
    assert (result.tasks["handle"].status, result.tasks["wrong"].status) == ("succeeded", "skipped")
    assert result.output == "timeout task 'slow' exceeded its timeout of 1s"
    [record] = tries(result, "slow")
    assert record.duration < 10, record


def test_timeout_per_attempt_with_retries(run: Run, tmp_path: Path, tries: Callable) -> None:
    """Each attempt gets the full timeout: attempt 1 times out, attempt 2 (0.5 s) succeeds."""
    path = tmp_path / "count"
    result = run(
        """
        ref: t.wf
        parameters:
          path: {type: string}
        tasks:
          - name: a
            action: t.flaky
            input: {path: "{{ parameters.path }}", sleeps: [30, 0.5]}
            timeout: 1.5
            retry: {count: 2}
          - name: always_slow
            action: core.sleep
            input: {seconds: 60}
            timeout: 1
            retry: {count: 1}
            on_timeout: noop
        """,
        files=FILES,
        params={"path": str(tmp_path / "count")},
    )
    assert result.status == "succeeded"
    assert (result.tasks["a"].status, result.tasks["a"].attempts, counter(path)) == ("succeeded", 2, 2)
    assert result.xcom("a", "return_value") == {"attempt": 2}
    first, second = tries(result, "a")
    # the first try was cut at its timeout; the second (a 0.5 s action) succeeded within its
    # own 1.5 s, which its success proves: its wall time (task start-up included) is not
    # compared, as it grows with the machine's load
    assert 1.4 <= first.duration < 10 and second.state == "success", (first, second)
    assert result.tasks["always_slow"].status == "timeout"
    assert result.tasks["always_slow"].attempts == 2
    assert result.tasks["always_slow"].error["type"] == "timeout"
    assert all(0.9 <= record.duration < 10 for record in tries(result, "always_slow"))
