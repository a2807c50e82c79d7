"""The language's vocabulary: outcome statuses, task kinds, and the reserved task ids.

Enums of `str`: a member is its value everywhere a string is (XCom JSON, comparisons,
f-strings), so what tasks write and tools read stays exactly as before.
"""

from __future__ import annotations

import enum


class _Word(str, enum.Enum):
    """A member formats as its value (`f"{Status.FAILED}"` is `failed`), as StrEnum does."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Status(_Word):
    """The outcome of a task or of a workflow (the `status` of the `attune` and `workflow` XComs)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMEOUT = "timeout"
    SKIPPED = "skipped"


class TaskKind(_Word):
    """How a task compiles and runs (`WorkflowPlan.kind`)."""

    ACTION = "action"  # one operator calling one action
    WITH_ITEMS = "with_items"  # the action over a list: mapped, in a TaskGroup or directly
    PARALLEL = "parallel"  # a TaskGroup of member tasks
    WORKFLOW = "workflow"  # a subworkflow: the child's tasks in a TaskGroup


OUTCOME_TASK_ID = "attune_outcome"  # a DAG's final task, and a group's outcome task
SUBWORKFLOW_INPUT_ID = "attune_input"  # the step of a subworkflow task that renders its input
MAPPED_CALL_ID = "run"  # a with_items task's mapped executions (task, or TaskGroup of a subworkflow)
