"""The contract every runner follows."""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from attune_provider.language.plan import ActionPlan


class ActionFailed(Exception):
    """The action ran and failed; `error` is `{type, message}`, `result` is kept if any."""

    def __init__(self, error: dict[str, Any], result: Any = None) -> None:
        super().__init__(error.get("message", ""))
        self.error = error
        self.result = result


class Invocation(NamedTuple):
    """One execution of an action inside a task."""

    action: ActionPlan
    params: dict[str, Any]
    task_name: str
    timeout: float | None = None
    quiet: bool = False  # a confidential run: log neither the rendered input nor the output
    context: Any = None  # the Airflow task's context (runner_type airflow hands it to its operator)


class Runner(Protocol):
    def run(self, invocation: Invocation) -> Any:
        """Run the action and return its (JSON-serialisable) result, or raise ActionFailed."""

    def kill(self) -> None:
        """Stop whatever the runner started (timeout or cancellation)."""


def error_of(exc: BaseException) -> dict[str, Any]:
    """An exception as the `{type, message}` error of docs/language.md."""
    return {"type": type(exc).__name__, "message": str(exc)}


def timeout_error(task_name: str, seconds: float) -> dict[str, Any]:
    """The error of a task (or a subworkflow call) that exceeded its `timeout`."""
    return {"type": "timeout", "message": f"task '{task_name}' exceeded its timeout of {seconds:g}s"}
