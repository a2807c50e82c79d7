"""Settling: marking skipped at once the plain tasks an outcome leaves with no way to run.

They would be skipped anyway (no inbound transition can fire any more), but each would
first start, read its predecessors' outcomes and skip itself: a worker slot and a task
start each in a deployment. Airflow's skip-downstream message to the task's supervisor
(what its branch operators use) spares that; it never touches tasks already running or
done. It goes through the Task SDK's supervisor channel, which is not a public API: when
it fails the tasks simply skip themselves later.
"""

from __future__ import annotations

from typing import Any

from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.statuses import TaskKind


def instances_to_skip(
    plan: WorkflowPlan, task_name: str, fired: list[str], map_index: int = -1
) -> list[str | tuple[str, int]]:
    """The Airflow task instances (ids, or (id, map index)) that `fired` leaves unreachable;
    in a mapped TaskGroup (`plan.in_mapped_group`), those of the item at `map_index`."""
    task_ids: list[str | tuple[str, int]] = []
    for name in plan.graph.settled_by(task_name, fired):
        if plan.kind(name) == TaskKind.ACTION:
            own = plan.airflow_id(name)
            task_ids.append((own, map_index) if plan.in_mapped_group else own)
        elif name in plan.mapped_items:  # its instances exist from the start of the run
            count = len(plan.mapped_items[name])
            task_ids += [(plan.airflow_id(name), i) for i in range(count)]
    return task_ids


def skip_now(task_ids: list[str | tuple[str, int]], log: Any) -> None:
    """Ask the task's supervisor to mark `task_ids` skipped; a failure only costs time."""
    try:
        from airflow.sdk.execution_time.comms import SkipDownstreamTasks
        from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

        SUPERVISOR_COMMS.send(SkipDownstreamTasks(tasks=task_ids))
        log.info("skipped now, no transition can reach them: %s", task_ids)
    except Exception as exc:  # noqa: BLE001 - they will skip themselves when they start
        log.warning("could not skip %s early (%s): they will skip themselves", task_ids, exc)


def settles(plan: WorkflowPlan, task_name: str, task_id: str, ti: Any) -> bool:
    """Whether this Airflow task is where task `task_name` settles: its outcome's own task,
    not a mapped instance, nor an inner step of a group (`items`, a subworkflow's input),
    which ends before the task has its outcome (settling then could let the workflow's
    final step run, its leaves skipped, before the group's outcome step, and miss a failure)."""
    mapped_instance = ti.map_index not in (None, -1) and not plan.in_mapped_group
    if task_name not in plan.graph.tasks or mapped_instance:
        return False
    return task_id == plan.outcome_ids[task_name]
