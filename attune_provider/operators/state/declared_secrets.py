"""`secrets.<key>`: the secrets a workflow declares in `attributes.secrets`, and nothing else.

A declared secret is read at run time (never at parse time) from Airflow's secrets
backend as the Variable `attune_secret__<namespace>__<key>`, when a template first reads
it, and masked at once. Reading a key the workflow did not declare, or any
`attune_secret__` Variable through `kv`, fails the task with a message that names the key
and never a value. A workflow that declares secrets, or runs in a confidential run (a
plain subworkflow of a confidential one too), cannot use `kv.get_secret` at all: its
secrets are the ones it declares (docs/confidential.md).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from typing import Any

from attune_provider.exceptions import AttuneError
from attune_provider.language.plan import WorkflowPlan
from attune_provider.operators.state.sealed import run_plan
from attune_provider.operators.state.secrets import mask

SECRET_VARIABLE = "attune_secret__{namespace}__{key}"
_SECRET_PREFIX = "attune_secret__"


class SecretRefused(AttuneError):
    """A template read a secret its workflow may not read (the message names the key only)."""


class SecretMissing(AttuneError):
    """A declared secret whose Variable is not set in any secrets backend."""


def _read_variable(name: str) -> Any:
    from airflow.sdk import Variable

    return Variable.get(name, default=None)


class DeclaredSecrets(Mapping[str, Any]):
    """`secrets`: each declared key read once, when a template first reads it."""

    def __init__(self, plan: WorkflowPlan) -> None:
        self._ref = plan.ref
        self._namespaces = {s.key: s.namespace for s in plan.workflow.attributes.secrets}
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._namespaces:
            raise SecretRefused(
                f"secret '{key}' is not declared by workflow {self._ref}: "
                "a workflow reads only the secrets its 'attributes.secrets' declares"
            )
        if key not in self._values:
            name = SECRET_VARIABLE.format(namespace=self._namespaces[key], key=key)
            value = _read_variable(name)
            if value is None:
                raise SecretMissing(
                    f"secret '{key}' of workflow {self._ref} is declared but the Variable {name} "
                    "is not set in Airflow's secrets backend"
                )
            mask(value)
            self._values[key] = value
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespaces)

    def __len__(self) -> int:
        return len(self._namespaces)


def _spellings(key: str) -> set[str]:
    """`key` as secrets backends may look it up: Airflow's environment backend upper-cases it
    (`ſ` becomes `S`), others may fold or normalise it."""
    text = str(key)
    folded = {text, text.upper(), text.lower(), unicodedata.normalize("NFKC", text)}
    return {form.casefold() for form in folded} | {form.upper().casefold() for form in folded}


def _refuse_declared(key: str) -> None:
    if any(form.startswith(_SECRET_PREFIX) for form in _spellings(key)):
        raise SecretRefused(
            f"Variable '{key}' holds a declared secret: read it as secrets.<key> in a workflow "
            "that declares it in 'attributes.secrets'"
        )


class KeyValue:
    """`kv.get(key, default=...)` and `kv.get_secret(key)` over Airflow Variables."""

    def __init__(self, plan: WorkflowPlan) -> None:
        self._ref = plan.ref
        self._declares = run_plan(plan).confidential or bool(plan.workflow.attributes.secrets)

    def get(self, key: str, default: Any = None) -> Any:
        from airflow.sdk import Variable

        _refuse_declared(key)
        return Variable.get(key, default=default)

    def get_secret(self, key: str) -> Any:
        _refuse_declared(key)
        if self._declares:
            raise SecretRefused(
                f"kv.get_secret('{key}') is refused in workflow {self._ref}: it is confidential or "
                "declares its secrets, so it reads them only as secrets.<key> ('attributes.secrets')"
            )
        from airflow.sdk import Variable

        value = Variable.get(key)
        mask(value)
        return value
