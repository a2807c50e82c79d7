"""How a task's exception becomes its outcome: which exceptions are the task's own
failures, and the status, error and result each one gives (docs/language.md, outcomes)."""

from __future__ import annotations

from typing import Any, NamedTuple

from airflow.sdk.exceptions import AirflowException, AirflowTaskTimeout

from attune_provider.exceptions import ParameterError
from attune_provider.language.statuses import Status
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.runners.base import ActionFailed, error_of

# What fails a task with an error of its own (anything else is a bug or Airflow's doing)
FAILURES = (AirflowTaskTimeout, ActionFailed, TemplateRenderError, ParameterError)


class AttuneTaskFailed(AirflowException):
    """The task failed with its error (`type: message`); Airflow may retry it."""


class Failure(NamedTuple):
    """The outcome a failure gives: `timeout` or `failed`, the `{type, message}` error, and
    the result an action kept when it failed (e.g. a shell command's output)."""

    status: Status
    error: dict[str, Any]
    result: Any = None

    @property
    def message(self) -> str:
        return f"{self.error.get('type')}: {self.error.get('message')}"


def classify(exc: BaseException, on_timeout: dict[str, Any]) -> Failure:
    """The failure an exception of a task is; `on_timeout` is its error when it timed out."""
    if isinstance(exc, AirflowTaskTimeout):
        return Failure(Status.TIMEOUT, on_timeout)
    if isinstance(exc, ActionFailed):
        return Failure(Status.FAILED, exc.error, exc.result)
    return Failure(Status.FAILED, error_of(exc))
