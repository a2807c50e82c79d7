"""Parameters: Attune's properties as JSON Schema, and values checked against them.

A parameter (of a workflow or an action, a pack config key, an inquiry's answer field) is
a JSON-Schema property plus Attune's inline booleans `required` and `secret`. Values are
checked before a run starts (`attune-airflow run`) and again inside every task, so a run
triggered from Airflow with bad parameters stops the same way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonschema

from attune_provider.exceptions import ParameterError

INLINE_KEYWORDS = ("required", "secret")  # Attune's additions to a property's JSON Schema
# `format` checked as Airflow's Param checks it (the trigger form), so the command line and
# the task refuse what the form refuses
FORMAT_CHECKER = jsonschema.FormatChecker()


def is_required(prop: Any) -> bool:
    """`required: true` written on the property itself."""
    return isinstance(prop, dict) and prop.get("required") is True


def has_default(prop: Any) -> bool:
    """Whether the property gives a value when none is passed (`default: null` gives none)."""
    return isinstance(prop, dict) and prop.get("default") is not None


def property_schema(prop: Mapping[str, Any]) -> dict[str, Any]:
    """The property's JSON Schema: without Attune's inline booleans; JSON Schema's own
    `required` list (an object's required keys) stays."""
    return {
        key: value for key, value in prop.items() if not (key in INLINE_KEYWORDS and isinstance(value, bool))
    }


def secret_names(properties: Any) -> frozenset[str]:
    """The properties marked `secret: true` (pack config keys, workflow or action parameters)."""
    if not isinstance(properties, dict):
        return frozenset()
    return frozenset(k for k, v in properties.items() if isinstance(v, dict) and v.get("secret") is True)


def nullable(prop: dict[str, Any]) -> dict[str, Any]:
    """The schema of an optional parameter without default: it also accepts null (what the
    trigger form sends for an empty field, and `-p name=null`)."""
    prop = dict(prop)
    kind = prop.get("type")
    if isinstance(kind, str) and kind != "null":
        prop["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        prop["type"] = [*kind, "null"]
    if isinstance(prop.get("enum"), list) and None not in prop["enum"]:
        prop["enum"] = [*prop["enum"], None]
    return prop


DRAFT_07 = "http://json-schema.org/draft-07/schema#"
# Keywords whose meaning differs between JSON Schema draft 2020-12 (the language's) and
# draft-07, or that only one of them has; every other keyword means the same in both.
_NOT_DRAFT_07 = frozenset(
    {
        "$schema",
        "$id",
        "$ref",
        "$defs",
        "definitions",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
        "$vocabulary",
        "prefixItems",
        "additionalItems",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minContains",
        "maxContains",
    }
)


def same_in_draft_07(schema: Any) -> bool:
    """Whether `schema` validates exactly as under draft 2020-12 when read as draft-07.

    Airflow validates a `Param` with `jsonschema.validate`, which checks the schema against
    its meta-schema first, every time: 1.3 ms under 2020-12's meta-schema, 0.2 ms under
    draft-07's, and serializing one DAG validates each param of each operator twice
    (docs/performance.md, "Ten thousand workflows"). So the compiler declares draft-07 on
    the schemas for which that changes nothing.
    """
    if isinstance(schema, list):
        return all(same_in_draft_07(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if _NOT_DRAFT_07.intersection(schema) or isinstance(schema.get("items"), list):
        return False
    data = ("enum", "const", "default", "examples")
    return all(same_in_draft_07(value) for key, value in schema.items() if key not in data)


def cheap_to_check(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, declared draft-07 when that changes nothing (`same_in_draft_07`)."""
    return {**schema, "$schema": DRAFT_07} if same_in_draft_07(schema) else schema


def parameters_schema(parameters: dict[str, dict[str, Any]], closed: bool = True) -> dict[str, Any]:
    """Turn Attune's properties-with-inline-`required` into one JSON-Schema object."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, prop in parameters.items():
        field = property_schema(prop)
        if is_required(prop):
            required.append(name)
        elif not has_default(prop):
            field.pop("default", None)
            field = nullable(field)
        properties[name] = field
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


def with_defaults(schema: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` plus the schema's defaults for the properties not given."""
    result = dict(values)
    for name, prop in (schema.get("properties") or {}).items():
        if name not in result and isinstance(prop, dict) and "default" in prop:
            result[name] = copy.deepcopy(prop["default"])
    return result


def _missing(error: jsonschema.ValidationError) -> list[str]:
    """The required keys a `required` error found missing (from its fields, not its text)."""
    instance = error.instance if isinstance(error.instance, Mapping) else {}
    wanted = error.validator_value if isinstance(error.validator_value, list) else []
    return [str(key) for key in wanted if key not in instance] or ["?"]


def _describe(error: jsonschema.ValidationError, what: str) -> str:
    """One error, naming the entry (and, inside one, the dotted path of the key)."""
    path = [str(step) for step in error.path]
    if error.validator == "required":
        missing = ", ".join(f"'{'.'.join([*path, key])}'" for key in _missing(error))
        return f"missing required {what} {missing}"
    if error.validator == "additionalProperties":
        schema = error.schema if isinstance(error.schema, Mapping) else {}
        extras = sorted(set(error.instance or ()) - set(schema.get("properties", {})))  # type: ignore[arg-type]
        return f"unknown {what} {', '.join(repr('.'.join([*path, str(e)])) for e in extras)}"
    name = ".".join(path)
    return f"{what} '{name}': {error.message}" if name else f"{what}s: {error.message}"


def check_values(
    schema: Mapping[str, Any], values: Mapping[str, Any], what: str = "parameter"
) -> dict[str, Any]:
    """Apply defaults and validate; raise ParameterError naming every offending entry."""
    full = with_defaults(schema, values)
    validator = jsonschema.Draft202012Validator(dict(schema), format_checker=FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(full), key=lambda e: (list(e.path), e.message))
    if errors:
        raise ParameterError("; ".join(_describe(e, what) for e in errors))
    return full


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _only_strings(prop: Any) -> bool:
    kind = prop.get("type") if isinstance(prop, Mapping) else None
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else []
    named = [k for k in kinds if k != "null"]
    return bool(named) and all(k == "string" for k in named)


def value_from_text(text: str, prop: Any) -> Any:
    """A value given as text (`-p NAME=VALUE`) read by its parameter's declared type: for a
    `string` parameter the text as given (a JSON string literal such as `"42"` decoded), for
    any other type (or an undeclared name) JSON, else the text as given."""
    if _only_strings(prop):
        if text.startswith('"'):
            decoded = _json_or_text(text)
            if isinstance(decoded, str):
                return decoded
        return text
    return _json_or_text(text)
