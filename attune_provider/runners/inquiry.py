"""`inquiry` as a runner: only reached where a task cannot be an `InquiryTaskOperator`.

A plain task (a parallel member and a subworkflow's task included) whose action is an
inquiry compiles to `attune_provider.operators.inquiry.InquiryTaskOperator`, which asks
through Airflow's human-in-the-loop requests. The executions of a `with_items` task are
mapped task instances of the generic item operator, which cannot park for an answer:
there an inquiry fails with a clear error rather than an import error.
"""

from __future__ import annotations

from typing import Any

from attune_provider.runners.base import ActionFailed, Invocation


class InquiryRunner:
    def run(self, invocation: Invocation) -> Any:
        raise ActionFailed(
            {
                "type": "NotSupported",
                "message": f"task '{invocation.task_name}': an inquiry cannot run inside with_items; "
                "ask once in a task of its own (its answer can hold a list)",
            }
        )

    def kill(self) -> None:
        return None
