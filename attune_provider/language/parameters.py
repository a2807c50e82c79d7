"""Checking run parameters against a workflow's `parameters`, with defaults applied.

Used before a run starts (`attune-airflow run`) and again inside every task, so a run
triggered from Airflow with bad parameters stops the same way.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonschema

from attune_provider.exceptions import ParameterError


def with_defaults(schema: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` plus the schema's defaults for the properties not given."""
    result = dict(values)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in result and isinstance(prop, dict) and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
    return result


def _error_name(error: jsonschema.ValidationError) -> str | None:
    if error.path:
        return str(error.path[0])
    if error.validator == "required":
        return str(error.message.split("'")[1]) if "'" in error.message else None
    if error.validator == "additionalProperties":
        return str(error.message.split("'")[1]) if "'" in error.message else None
    return None


def _describe(error: jsonschema.ValidationError, what: str) -> str:
    name = _error_name(error)
    if error.validator == "required":
        return f"missing required {what} '{name}'"
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        extras = sorted(set(error.instance or ()) - set(schema.get("properties", {})))  # type: ignore[arg-type]
        return f"unknown {what} {', '.join(repr(e) for e in extras)}"
    return f"{what} '{name}': {error.message}" if name else f"{what}s: {error.message}"


def check_values(
    schema: Mapping[str, Any], values: Mapping[str, Any], what: str = "parameter"
) -> dict[str, Any]:
    """Apply defaults and validate; raise ParameterError naming every offending entry."""
    full = with_defaults(schema, values)
    validator = jsonschema.Draft202012Validator(dict(schema))
    errors = sorted(validator.iter_errors(full), key=lambda e: (list(e.path), e.message))
    if errors:
        raise ParameterError("; ".join(_describe(e, what) for e in errors))
    return full
