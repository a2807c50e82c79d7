"""Attune's `retry` as an Airflow RetryPolicy: backoff per retry and `on_error`.

Airflow still counts the attempts (`retries`, shown as try 1, 2, 3 in the UI); the policy
only decides, in the worker, how long to wait before the next try (constant, linear or
exponential, capped by `max_delay`) and whether `on_error` allows another try at all.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk.definitions.retry_policy import RetryDecision, RetryPolicy

from attune_provider.language.models import Retry
from attune_provider.language.templates.render import render, truthy


def retry_refused(retry: Retry | None, error_scope: dict[str, Any] | None) -> bool:
    """`retry.on_error` is false for the error in `error_scope`: no other try, whatever the
    count left (the task's operator keeps that scope, with its own outcome, when it fails)."""
    if retry is None or retry.on_error is None or error_scope is None:
        return False
    return not truthy(render(retry.on_error, error_scope))


class AttuneRetryPolicy(RetryPolicy):
    def __init__(self, retry: Retry) -> None:
        self.retry = retry

    def __repr__(self) -> str:
        """Stable text: Airflow stores it with a mapped task's partial arguments."""
        return f"AttuneRetryPolicy({self.retry.model_dump_json()})"

    def evaluate(
        self,
        exception: BaseException,
        try_number: int,
        max_tries: int,
        context: Any = None,
    ) -> RetryDecision:
        if try_number > max_tries:
            return RetryDecision.default()  # no retry left: nothing to decide
        task = context.get("task") if context else None
        if retry_refused(self.retry, getattr(task, "error_scope", None)):
            return RetryDecision.fail(reason="retry.on_error is false for this error")
        delay = self.retry.delay_before(max(try_number, 1))
        return RetryDecision.retry(delay=timedelta(seconds=delay), reason=f"retry in {delay:g}s")

    def serialize(self) -> dict[str, Any]:
        return self.retry.model_dump(mode="json")

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> AttuneRetryPolicy:
        return cls(Retry.model_validate(data))
