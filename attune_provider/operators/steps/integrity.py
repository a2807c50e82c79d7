"""Before a task of a confidential run does anything: are this worker's files the definition
the DAG was compiled from?

The digest (language/definition.py) is recomputed from the files on this machine and
compared with the one the DAG processor published for the DAG (dag_factory/integrity.py)
and with the one this process compiled the DAG with; any difference fails the task,
without retries, with `definition changed`. In-process runs (`dag.test()`,
`attune-airflow run`) have no DAG processor: the DAG they compiled is the reference.
"""

from __future__ import annotations

from attune_provider.exceptions import AttuneError
from attune_provider.language.definition import DEFINITION_VARIABLE, DefinitionUnreadable, definition_digest
from attune_provider.language.plan import WorkflowPlan
from attune_provider.runners.masking import running_in_process


class DefinitionChanged(AttuneError):
    """The files on this worker are not the definition the DAG was compiled from."""


def _published(dag_id: str) -> str | None:
    from airflow.sdk import Variable

    return Variable.get(DEFINITION_VARIABLE.format(dag_id=dag_id), default=None)


def verify_definition(run: WorkflowPlan) -> str:
    """Raise DefinitionChanged unless this machine's files match the DAG's definition of
    confidential run `run` (the DAG's plan); return the digest checked."""
    try:
        current = definition_digest(run)
    except DefinitionUnreadable as exc:
        raise DefinitionChanged(f"definition changed: workflow {run.ref}: cannot read {exc}") from None
    compiled = run.definition_sha256
    if compiled is not None and current != compiled:
        raise DefinitionChanged(
            f"definition changed: the files of workflow {run.ref} changed since its DAG was parsed "
            f"(SHA-256 {compiled[:12]}... then, {current[:12]}... now)"
        )
    if running_in_process():
        return current
    published = _published(run.ref)
    if published is None:
        raise DefinitionChanged(
            f"definition changed: no definition digest is published for {run.ref} (Variable "
            f"{DEFINITION_VARIABLE.format(dag_id=run.ref)}): the DAG processor has not parsed it"
        )
    if published != current:
        raise DefinitionChanged(
            f"definition changed: the files of workflow {run.ref} on this worker (SHA-256 "
            f"{current[:12]}...) are not the definition the DAG processor parsed ({published[:12]}...)"
        )
    return current
