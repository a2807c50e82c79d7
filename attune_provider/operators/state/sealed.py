"""A confidential run's XComs, encrypted with Airflow's Fernet key.

Every value an Attune task of a confidential run writes to XCom (outcomes, results,
vars, the workflow's output) is stored as `{"attune_sealed": "<Fernet token>"}`: readers
of the metadata database (and of the XCom view) see a token, the run's own tasks read the
value back with `unseal`. Other DAGs' XComs are left as they are, and so is the XCom
backend Airflow is configured with (this is not one: a team's own backend keeps working).

The key is Airflow's `[core] fernet_key`, as for Connections and Variables; without one a
confidential task fails rather than store its data in clear (docs/confidential.md).
"""

from __future__ import annotations

import json
from typing import Any

from attune_provider.exceptions import AttuneError
from attune_provider.language.plan import WorkflowPlan

SEALED_KEY = "attune_sealed"


class NoFernetKey(AttuneError):
    """A confidential run with no `[core] fernet_key` to encrypt its XComs with."""


def run_plan(plan: WorkflowPlan) -> WorkflowPlan:
    """The plan of the DAG a (sub)workflow's tasks run in: its outermost caller."""
    while plan.parent is not None:
        plan = plan.parent[0]
    return plan


def _fernet() -> Any:
    """Airflow's Fernet (None when `[core] fernet_key` is empty or not a valid key)."""
    from airflow.sdk.crypto import get_fernet

    try:
        fernet = get_fernet()
    except Exception:  # noqa: BLE001 - Airflow's "Could not create Fernet object": not a key
        return None
    return fernet if fernet.is_encrypted else None


def seal(plan: WorkflowPlan, value: Any) -> Any:
    """`value` as a confidential run stores it in XCom (unchanged for any other run)."""
    if not run_plan(plan).confidential:
        return value
    fernet = _fernet()
    if fernet is None:
        raise NoFernetKey(
            f"workflow {run_plan(plan).ref} is confidential but Airflow's [core] fernet_key is not set "
            "(or not a valid Fernet key): its XComs would be stored in clear, so the task does not run "
            "(docs/confidential.md)"
        )
    text = json.dumps(value, default=str, separators=(",", ":"))
    return {SEALED_KEY: fernet.encrypt(text.encode()).decode()}


def is_sealed(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and SEALED_KEY in value


def unseal(value: Any) -> Any:
    """An XCom value as it was before `seal` (any other value as it is)."""
    if not is_sealed(value):
        return value
    fernet = _fernet()
    if fernet is None:
        raise NoFernetKey("a sealed XCom cannot be read: Airflow's [core] fernet_key is not set")
    return json.loads(fernet.decrypt(value[SEALED_KEY].encode()))
