"""`attune-airflow schema [KIND] [--output-dir DIR]` (docs/cli.md, docs/editors.md).

Prints the JSON Schema (draft 2020-12) of one kind of pack file, generated from the
models that check them (language/models.py): `pack` (pack.yaml), `action`
(actions/*.yaml), `workflow` (workflows/*.yaml), `rule` (rules/*.yaml), `tests`
(tests/*.yaml, the workflow tests of `attune-airflow test`). Editors use it through
yaml-language-server to complete and check keys; `validate` stays the judge of
everything a schema cannot say (refs, templates, transitions). Imports no Airflow.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from attune_provider import __version__

EXIT_OK, EXIT_USAGE = 0, 2
DRAFT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("pack", "action", "workflow", "rule", "tests")
WHERE = {
    "pack": "<pack>/pack.yaml",
    "action": "<pack>/actions/<name>.yaml",
    "workflow": "<pack>/workflows/<name>.yaml",
    "rule": "<pack>/rules/<name>.yaml",
    "tests": "<pack>/tests/<name>.yaml",
}

EPILOG = """\
examples:
  attune-airflow schema workflow > .schemas/attune-workflow.schema.json
  attune-airflow schema --output-dir .schemas      # one file per kind
  then, on the first line of packs/my_pack/workflows/deploy.yaml:
  # yaml-language-server: $schema=../../../.schemas/attune-workflow.schema.json

kinds: pack (pack.yaml), action (actions/*.yaml), workflow (workflows/*.yaml),
rule (rules/*.yaml), tests (tests/*.yaml). See docs/editors.md.

exit codes:
  0  the schema was printed (or the files written)
  2  a usage error (no KIND and no --output-dir), or a file could not be written

environment: none read.
"""


def add_schema_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of a kind of pack file (for editors)",
        description="Print the JSON Schema of one kind of pack file, generated from the models.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    schema.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND", help=f"one of: {', '.join(KINDS)}")
    schema.add_argument(
        "--output-dir",
        metavar="DIR",
        help="write attune-<kind>.schema.json for every kind into DIR instead of printing",
    )
    schema.set_defaults(handler=schema_main, schema_parser=schema)


_TARGETS = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}, {"type": "null"}]}
_VERSION = {"anyOf": [{"type": "string"}, {"type": "number"}, {"type": "null"}]}
# What the models read before checking a field (their `mode="before"` validators), which
# pydantic's schema, made from the field's type, does not say: `on_success: a` is read as
# `[a]`, `version: 1.0` as "1.0".
LOOSER: dict[str, dict[str, dict[str, Any]]] = {
    "Task": {key: _TARGETS for key in ("on_success", "on_failure", "on_complete", "on_timeout")},
    "Workflow": {"version": _VERSION},
    "Pack": {"version": _VERSION},
}


def _loosen(schema: dict[str, Any]) -> dict[str, Any]:
    """The model's schema with the `LOOSER` fields of its models (itself or in `$defs`)."""
    models = [schema, *schema.get("$defs", {}).values()]
    for model in models:
        for name, wider in LOOSER.get(model.get("title", ""), {}).items():
            field = model.get("properties", {}).get(name)
            if field is not None:
                kept = {key: field[key] for key in ("title", "default", "description") if key in field}
                model["properties"][name] = {**wider, **kept}
    return schema


def _model_schema(model_name: str) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        from attune_provider.language import models

        return _loosen(getattr(models, model_name).model_json_schema())

    return build


def _tests_schema() -> dict[str, Any]:
    """The test file format of `attune-airflow test` (attune_provider/testing/spec.py,
    whose checker is hand-written rather than a model): `TESTS_SCHEMA`, a copy. A test
    keeps its keys and those of the checker the same."""
    copy: dict[str, Any] = json.loads(json.dumps(TESTS_SCHEMA))
    return copy


_TEXT = {"type": "string", "minLength": 1}
_MOCK: dict[str, Any] = {
    "description": "A mocked call: {result: VALUE} (the action succeeds with it) or "
    "{fail: {type, message}} (it fails with that error).",
    "oneOf": [
        {
            "type": "object",
            "properties": {"result": {"description": "the action's result"}},
            "required": ["result"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "fail": {
                    "type": "object",
                    "properties": {"type": _TEXT, "message": _TEXT},
                    "required": ["type", "message"],
                    "additionalProperties": False,
                }
            },
            "required": ["fail"],
            "additionalProperties": False,
        },
    ],
}
_OUTCOMES = ["succeeded", "failed", "timeout", "skipped"]  # language/statuses.py Status
_EXPECT: dict[str, Any] = {
    "type": ["object", "null"],
    "properties": {
        "status": {"enum": ["succeeded", "failed"]},
        "tasks": {
            "type": "object",
            "description": "task (a parallel member as <group>.<member>) -> its outcome",
            "additionalProperties": {"enum": _OUTCOMES},
        },
        "output": {"description": "the whole rendered output_map"},
        "output_subset": {"type": "object", "description": "keys the output must hold, with these values"},
        "vars": {"type": "object", "description": "the whole variables after the last publish"},
        "vars_subset": {"type": "object", "description": "variables that must hold these values"},
    },
    "additionalProperties": False,
}
_CASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": _TEXT,
        "description": {"type": "string"},
        "parameters": {"type": ["object", "null"], "description": "the workflow's parameters"},
        "mocks": {
            "type": ["object", "null"],
            "description": "by action ref, or by task as task:<name>; a list: one mock per call, in order",
            "additionalProperties": {
                "anyOf": [{"$ref": "#/$defs/Mock"}, {"type": "array", "items": {"$ref": "#/$defs/Mock"}}]
            },
        },
        "expect": _EXPECT,
    },
    "required": ["name"],
    "additionalProperties": False,
}
TESTS_SCHEMA: dict[str, Any] = {
    "title": "TestFile",
    "type": "object",
    "properties": {
        "workflow": {**_TEXT, "description": "the ref of the workflow under test, <pack>.<name>"},
        "description": {"type": "string"},
        "cases": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/Case"}},
    },
    "required": ["workflow", "cases"],
    "additionalProperties": False,
    "$defs": {"Case": _CASE, "Mock": _MOCK},
}

BUILDERS: dict[str, Callable[[], dict[str, Any]]] = {
    "pack": _model_schema("Pack"),
    "action": _model_schema("Action"),
    "workflow": _model_schema("Workflow"),
    "rule": _model_schema("Rule"),
    "tests": _tests_schema,
}


def schema_of(kind: str) -> dict[str, Any]:
    """The JSON Schema of `kind` (one of KINDS), with its `$schema` (the draft), a title
    and a description naming the files it is for."""
    schema = BUILDERS[kind]()
    described = {
        "$schema": DRAFT,
        "title": f"Attune {kind} file",
        "description": f"{WHERE[kind]} of an Attune pack (attune-airflow {__version__}); "
        "`attune-airflow validate` checks the rest",
    }
    return {**described, **{key: value for key, value in schema.items() if key not in described}}


def _dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def schema_main(args: argparse.Namespace) -> int:
    """The `schema` subparser's namespace (kind, output_dir) -> exit code."""
    if args.output_dir is not None:
        directory = Path(args.output_dir)
        kinds = [args.kind] if args.kind else list(KINDS)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for kind in kinds:
                path = directory / f"attune-{kind}.schema.json"
                path.write_text(_dumps(schema_of(kind)), encoding="utf-8")
                print(path)
        except OSError as exc:
            print(f"attune-airflow: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        return EXIT_OK
    if args.kind is None:
        args.schema_parser.print_usage(sys.stderr)
        print("attune-airflow schema: error: give a KIND or --output-dir", file=sys.stderr)
        return EXIT_USAGE
    sys.stdout.write(_dumps(schema_of(args.kind)))
    return EXIT_OK
