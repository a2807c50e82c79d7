"""Checking run parameters (parameters.py): defaults applied, and one message naming every
offending entry, as `attune-airflow run` prints it and every task fails with.

Schemas are made the way a workflow's are (`spec.parameters_schema` of its `parameters`),
or written out as JSON Schema where the checked values are a pack's config.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import (
    cheap_to_check,
    check_values,
    parameters_schema,
    same_in_draft_07,
    with_defaults,
)

PARAMETERS: dict[str, dict[str, Any]] = {
    "who": {"type": "string", "required": True},
    "mood": {"type": "string", "enum": ["happy", "sad"]},
    "times": {"type": "integer", "default": 2, "minimum": 1},
    "tags": {"type": "array", "default": ["a", {"b": [1]}]},
}
SCHEMA = parameters_schema(PARAMETERS)


def refused(values: dict[str, Any], schema: dict[str, Any] = SCHEMA, what: str = "parameter") -> str:
    with pytest.raises(ParameterError) as caught:
        check_values(schema, values, what)
    return str(caught.value)


def test_defaults_fill_only_what_was_not_given() -> None:
    given = {"who": "Ada", "times": 5, "mood": None}
    assert with_defaults(SCHEMA, given) == {"who": "Ada", "times": 5, "mood": None, "tags": ["a", {"b": [1]}]}
    assert given == {"who": "Ada", "times": 5, "mood": None}  # the caller's mapping is left alone
    assert with_defaults({"type": "object"}, {"x": 1}) == {"x": 1}


def test_a_default_is_a_copy_each_run_can_change() -> None:
    schema = copy.deepcopy(SCHEMA)
    first = with_defaults(schema, {})
    first["tags"][1]["b"].append(2)
    assert with_defaults(schema, {})["tags"] == ["a", {"b": [1]}]
    assert schema == SCHEMA


@pytest.mark.parametrize(
    "given",
    [{"who": "Ada"}, {"who": "Ada", "mood": "sad"}, {"who": "", "mood": None, "times": 1, "tags": []}],
)
def test_valid_parameters_come_back_with_the_defaults(given: dict[str, Any]) -> None:
    assert check_values(SCHEMA, given) == {"times": 2, "tags": ["a", {"b": [1]}], **given}


def test_an_optional_parameter_without_default_accepts_null_one_with_a_default_does_not() -> None:
    assert check_values(SCHEMA, {"who": "Ada", "mood": None})["mood"] is None
    assert refused({"who": "Ada", "times": None}) == "parameter 'times': None is not of type 'integer'"
    assert refused({"who": None}) == "parameter 'who': None is not of type 'string'"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "missing required parameter 'who'"),
        ({"who": "Ada", "zz": 1, "aa": 2}, "unknown parameter 'aa', 'zz'"),
        ({"who": "Ada", "times": 0}, "parameter 'times': 0 is less than the minimum of 1"),
        ({"who": "Ada", "mood": "angry"}, "parameter 'mood': 'angry' is not one of ['happy', 'sad', None]"),
        ({"who": "Ada", "tags": "a"}, "parameter 'tags': 'a' is not of type 'array'"),
    ],
)
def test_each_kind_of_problem_names_the_parameter(values: dict[str, Any], message: str) -> None:
    assert refused(values) == message


def test_every_problem_is_reported_at_once_in_a_stable_order() -> None:
    message = refused({"times": "x", "mood": "angry", "extra": 1})
    assert message.split("; ") == [
        "missing required parameter 'who'",
        "unknown parameter 'extra'",
        "parameter 'mood': 'angry' is not one of ['happy', 'sad', None]",
        "parameter 'times': 'x' is not of type 'integer'",
    ]
    assert refused({"mood": "angry", "extra": 1, "times": "x"}) == message


def test_what_is_checked_is_named_in_the_message() -> None:
    schema = parameters_schema({"cmd": {"type": "string", "required": True}})
    assert refused({}, schema, "input") == "missing required input 'cmd'"
    assert refused({"cmd": 1}, schema, "input") == "input 'cmd': 1 is not of type 'string'"
    whole = {"type": "object", "minProperties": 2}  # a problem of no one entry
    assert (
        refused({"a": 1}, whole, "pack config key")
        == "pack config keys: {'a': 1} does not have enough properties"
    )


CONFIG = {
    "type": "object",
    "properties": {
        "server": {
            "type": "object",
            "properties": {"host": {"type": "string"}},
            "required": ["host"],
            "additionalProperties": False,
        },
    },
}


def test_a_missing_key_inside_an_entry_is_not_reported_as_the_entry_missing() -> None:
    message = refused({"server": {}}, CONFIG, "pack config key")
    assert message == "missing required pack config key 'server.host'"


def test_an_unknown_key_inside_an_entry_names_that_entry() -> None:
    message = refused({"server": {"host": "h", "port": 1}}, CONFIG, "pack config key")
    assert message == "unknown pack config key 'server.port'"


def test_the_required_keys_of_an_object_parameter_are_checked() -> None:
    schema = parameters_schema({"server": {"type": "object", "required": ["host"], "default": {"host": "h"}}})
    assert check_values(schema, {"server": {"host": "x"}}) == {"server": {"host": "x"}}
    refused({"server": {}}, schema)


def test_a_null_default_means_no_value() -> None:
    schema = parameters_schema({"who": {"type": "string", "default": None}})
    assert check_values(schema, {}) in ({}, {"who": None})


DRAFT_SCHEMAS = [
    {"type": "string", "enum": ["a", "b"], "title": "route"},
    {"type": ["integer", "null"], "minimum": 1, "exclusiveMaximum": 10},
    {"type": "array", "items": {"type": "string", "pattern": "^x"}, "minItems": 1, "uniqueItems": True},
    {"type": "object", "properties": {"a": {"const": 3}}, "required": ["a"], "additionalProperties": False},
    {"anyOf": [{"type": "string", "format": "date"}, {"type": "number", "multipleOf": 0.5}]},
    {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "number"}},
]
INSTANCES = [
    None,
    0,
    1,
    3,
    2.5,
    10,
    12,
    "a",
    "b",
    "x1",
    "2026-01-31",
    "no-date",
    [],
    ["x", "x"],
    ["xa"],
    {"a": 3},
    {"a": 4},
    {"a": 3, "b": 1},
]


@pytest.mark.parametrize("schema", DRAFT_SCHEMAS)
def test_a_schema_declared_draft_07_validates_as_under_2020_12(schema: dict[str, Any]) -> None:
    import jsonschema

    declared = cheap_to_check(schema)
    assert declared["$schema"] == "http://json-schema.org/draft-07/schema#"
    checker = jsonschema.FormatChecker()
    for instance in INSTANCES:
        modern = jsonschema.Draft202012Validator(schema, format_checker=checker).is_valid(instance)
        as_airflow = jsonschema.validators.validator_for(declared)(declared, format_checker=checker)
        assert as_airflow.is_valid(instance) == modern, (schema, instance)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "array", "prefixItems": [{"type": "string"}]},
        {"type": "array", "items": [{"type": "string"}]},
        {"$defs": {"x": {"type": "string"}}, "$ref": "#/$defs/x"},
        {"type": "object", "properties": {"a": {"dependentRequired": {"a": ["b"]}}}},
        {"type": "array", "contains": {"type": "string"}, "minContains": 2},
        {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"},
    ],
)
def test_a_schema_that_would_mean_something_else_keeps_2020_12(schema: dict[str, Any]) -> None:
    assert same_in_draft_07(schema) is False
    assert cheap_to_check(schema) is schema
