"""The DAG processor publishes each confidential DAG's definition digest for the workers.

A worker builds the DAG it runs from its own copy of the packs, so the digest its own
parse computes always matches its files; what must match is the definition the DAG
processor parsed and the scheduler planned the run with. The processor writes that
digest to the Variable `attune_definition__<dag_id>` (only when it changed), and each
task of a confidential run compares its files with it before it runs
(operators/steps/integrity.py, docs/confidential.md).
"""

from __future__ import annotations

import logging

from airflow.sdk import DAG

from attune_provider.language.definition import DEFINITION_VARIABLE
from attune_provider.language.statuses import OUTCOME_TASK_ID

log = logging.getLogger(__name__)


def definition_of(dag: DAG) -> str | None:
    """The definition digest a compiled DAG carries (None: not a confidential DAG)."""
    outcome = dag.task_dict.get(OUTCOME_TASK_ID)
    plan = getattr(outcome, "plan", None)
    return getattr(plan, "definition_sha256", None)


def in_dag_processor() -> bool:
    """True in a parse by Airflow's DAG processor (not a task's parse, not in-process)."""
    try:
        from airflow.sdk import get_parsing_context
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:
        return False
    comms = getattr(task_runner, "SUPERVISOR_COMMS", None)
    if comms is None or isinstance(comms, InProcessSupervisorComms):
        return False
    return get_parsing_context().dag_id is None


def publish_definitions(dags: dict[str, DAG]) -> None:
    """Write each confidential DAG's digest to its Variable, where it differs (processor only)."""
    found = {dag_id: definition_of(dag) for dag_id, dag in dags.items()}
    digests = {dag_id: digest for dag_id, digest in found.items() if digest}
    if not digests or not in_dag_processor():
        return
    from airflow.sdk import Variable

    for dag_id, digest in digests.items():
        name = DEFINITION_VARIABLE.format(dag_id=dag_id)
        try:
            if Variable.get(name, default=None) != digest:
                Variable.set(name, digest, description=f"Attune: definition SHA-256 of {dag_id}")
                log.info("published the definition digest of %s: %s", dag_id, digest)
        except Exception:  # noqa: BLE001 - its tasks then refuse to run: they say why
            log.exception("could not publish the definition digest of %s", dag_id)
