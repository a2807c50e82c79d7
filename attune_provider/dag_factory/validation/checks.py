"""All static checks of a catalog of packs: `validate_catalog(catalog) -> Report`.

The loader reports what cannot be read or parsed; this module adds everything that needs
more than one value or more than one file: pack metadata and config schemas, actions'
entry points and schemas, workflows' refs, tasks, transitions, calls and templates
(docs/language.md). Every problem points at the offending value. Nothing here
imports Airflow.

The checks are split by subject: `validator_workflow` (tasks and routing),
`validator_templates` (templates and the names they read), `validator_calls` (actions,
subworkflows, and which workflows are unusable because of what they call).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match

from attune_provider import settings
from attune_provider.dag_factory.validation.airflow_actions import check_operator
from attune_provider.dag_factory.validation.calls import (
    Broken,
    broken_targets,
    cascade,
    check_calls,
    check_id_lengths,
    check_nesting,
    invalid_workflows,
    subworkflow_calls,
)
from attune_provider.dag_factory.validation.limits import check_constant_items, check_task_counts
from attune_provider.dag_factory.validation.schedules import (
    check_rule,
    check_schedule,
    rules_of_broken_workflows,
)
from attune_provider.dag_factory.validation.templates import TemplateContext, check_templates
from attune_provider.dag_factory.validation.workflow import (
    MAX_AIRFLOW_ID,
    check_workflow_structure,
    error,
    warning,
)
from attune_provider.language import problem_codes as codes
from attune_provider.language.catalog import ActionEntry, Catalog, PackEntry, WorkflowEntry
from attune_provider.language.models import NAME_PATTERN
from attune_provider.language.parameters import INLINE_KEYWORDS, property_schema
from attune_provider.language.source import Location, Problem, Severity, coded, locate

ENTRY_POINT_RUNNERS = ("python-script", "local-shell-script")


class Report(NamedTuple):
    """Every problem found, and the workflows that cannot be used because of errors."""

    problems: list[Problem]
    invalid_workflows: dict[str, list[Problem]]

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.is_error]

    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if not p.is_error]


def _frozen(value: Any) -> Hashable:
    """A hashable copy of YAML data that keeps what matters to a schema check: types, order."""
    if isinstance(value, dict):
        return ("dict", tuple((_frozen(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list):
        return ("list", tuple(_frozen(v) for v in value))
    hash(value)  # TypeError for what cannot be a key (a YAML !!set): then it is not memoised
    return (type(value).__name__, value)


_CHECKED: dict[Hashable, tuple[tuple[Any, ...], str] | None] = {}


def _default_error(schema: Any) -> tuple[tuple[Any, ...], str] | None:
    """(path, message) of the first `default` (the schema's, then its properties') that its
    own schema refuses: the trigger form, and every run that relies on it, would fail.
    A null default is left alone (it means "no value" to Airflow's form)."""
    if not isinstance(schema, dict):
        return None
    candidates: list[tuple[tuple[Any, ...], Any]] = [((), schema)]
    properties = schema.get("properties")
    if isinstance(properties, dict):
        candidates += [(("properties", name), sub) for name, sub in properties.items()]
    for path, sub in candidates:
        if not isinstance(sub, dict) or sub.get("default") is None:
            continue
        found = best_match(Draft202012Validator(sub).iter_errors(sub["default"]))
        if found is not None:
            owner = f"'{path[-1]}' in {{what}}" if path else "{what}"
            return (*path, "default"), f"the default of {owner} does not match its schema: {found.message}"
    return None


def _schema_error(schema: Any) -> tuple[tuple[Any, ...], str] | None:
    """(path, message) of the first error of `schema` as a JSON Schema, or of a default it
    refuses, memoised: workflows and actions repeat the same parameter schemas, and checking
    one costs about a millisecond. `{what}` in the message names the schema."""
    try:
        key: Hashable | None = _frozen(schema)
    except TypeError:
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    try:
        Draft202012Validator.check_schema(schema)
        found = _default_error(schema)
    except SchemaError as exc:
        found = (tuple(exc.path), f"invalid JSON Schema for {{what}}: {exc.message}")
    if key is not None:
        if len(_CHECKED) >= 4096:
            _CHECKED.clear()
        _CHECKED[key] = found
    return found


def schema_problems(schema: Any, where: Callable[[Sequence[Any]], Location], what: str) -> list[Problem]:
    """An error when `schema` is not a valid JSON Schema (draft 2020-12), or when a
    `default` in it does not match its schema."""
    found = _schema_error(schema)
    if found is None:
        return []
    path, message = found
    return [error(where(list(path)), message.replace("{what}", what))]


def _misused(keyword: str, value: Any) -> bool:
    """An inline keyword that is neither Attune's boolean nor (`required`) JSON Schema's list."""
    return not isinstance(value, bool) and not (keyword == "required" and isinstance(value, list))


def _below(owner: Any, *prefix: Any) -> Callable[[Sequence[Any]], Location]:
    """Locates a path inside the value at `prefix` below a model."""

    def where(path: Sequence[Any]) -> Location:
        return owner.loc(*prefix, *path)

    return where


def _parameter_schemas(owner: Any, kind: str) -> list[Problem]:
    """Each parameter property, then the `output` schema, of a workflow or an action."""
    problems: list[Problem] = []
    for name, prop in owner.parameters.items():
        what = f"parameter '{name}' of {kind}"
        wrong = [
            key for key in INLINE_KEYWORDS if isinstance(prop, dict) and _misused(key, prop.get(key, False))
        ]
        for key in wrong:
            message = f"'{key}' of {what} must be true or false"
            if key == "required":
                message += " (or, for an object, JSON Schema's list of its required keys)"
            problems.append(error(owner.loc("parameters", name, key), message))
        if not wrong:
            problems += schema_problems(property_schema(prop), _below(owner, "parameters", name), what)
    if owner.output is not None:
        problems += schema_problems(owner.output, _below(owner, "output"), f"output of {kind}")
    return problems


# --- packs ---------------------------------------------------------------------------


def check_config(entry: PackEntry) -> list[Problem]:
    """config.yaml: a JSON Schema of `type: object`."""
    schema = entry.config_schema
    if schema is None:
        return []
    start = entry.config_location or Location(f"{entry.display}/config.yaml")
    problems: list[Problem] = []
    if schema.get("type") != "object":
        where = locate(schema, ["type"], start)
        problems.append(error(where, "config.yaml must be a JSON Schema with 'type: object'"))
    problems += schema_problems(
        schema, lambda path: locate(schema, path, start), f"the config of pack '{entry.ref}'"
    )
    return problems


def check_pack(entry: PackEntry, catalog: Catalog) -> list[Problem]:
    problems = coded(codes.PACK_CONFIG, check_config(entry))
    if entry.meta is None:
        return problems
    for index, dependency in enumerate(entry.meta.dependencies):
        if dependency not in catalog.packs:
            where = entry.meta.loc("dependencies", index)
            problems.append(
                warning(
                    where,
                    f"pack '{entry.ref}' depends on pack '{dependency}', which is not loaded",
                    codes.PACK_DEPENDENCY,
                )
            )
    return problems


# --- actions -------------------------------------------------------------------------


def check_entry_point(entry: ActionEntry) -> list[Problem]:
    """Required for script runners; must resolve (symlinks followed) to a file inside the pack."""
    action = entry.action
    if not action.entry_point:
        if action.runner_type in ENTRY_POINT_RUNNERS:
            message = f"runner_type '{action.runner_type}' needs an 'entry_point'"
            return [error(action.loc("runner_type"), message)]
        return []
    where = action.loc("entry_point")
    if "\0" in action.entry_point or action.entry_point.endswith(("/", os.sep)):
        return [error(where, f"entry_point {action.entry_point!r} is not a file name")]
    target = os.path.realpath(entry.file.parent / action.entry_point)
    pack_dir = os.path.realpath(entry.pack.directory)
    if os.path.commonpath([target, pack_dir]) != pack_dir:
        return [error(where, f"entry_point '{action.entry_point}' resolves outside the pack directory")]
    if os.path.isdir(target):
        return [error(where, f"entry_point '{action.entry_point}' is a directory, not a file")]
    if not os.path.isfile(target):
        return [error(where, f"entry_point '{action.entry_point}' does not exist")]
    return []


def check_action(entry: ActionEntry) -> list[Problem]:
    action = entry.action
    problems: list[Problem] = []
    if not NAME_PATTERN.match(action.name):
        problems.append(
            error(
                action.loc("name"),
                f"action name '{action.name}' must match {NAME_PATTERN.pattern}",
                codes.ACTION_NAME,
            )
        )
    problems += coded(codes.ENTRY_POINT, check_entry_point(entry))
    problems += coded(codes.AIRFLOW_OPERATOR, check_operator(entry))
    problems += coded(codes.PARAMETER_SCHEMA, _parameter_schemas(action, f"action '{entry.ref}'"))
    return problems


# --- workflows -----------------------------------------------------------------------


def check_workflow_ref(entry: WorkflowEntry) -> list[Problem]:
    """A workflow's ref is `<ref of the pack holding the file>.<name>`."""
    workflow = entry.workflow
    pack, _, name = workflow.ref.partition(".")
    if len(workflow.ref) > MAX_AIRFLOW_ID:
        length = len(workflow.ref)
        message = f"workflow ref is {length} characters long, more than Airflow's {MAX_AIRFLOW_ID} (dag_id)"
        return [error(workflow.loc("ref"), message)]
    if pack == entry.pack.ref and NAME_PATTERN.match(name):
        return []
    message = (
        f"workflow ref '{workflow.ref}' must be '{entry.pack.ref}.<name>' (the ref of its pack,"
        f" a dot, and a name matching {NAME_PATTERN.pattern})"
    )
    return [error(workflow.loc("ref"), message)]


MAX_TAG = 100  # Airflow refuses a DAG tag longer than this


def check_tags(entry: WorkflowEntry) -> list[Problem]:
    """Airflow's limit on tags: the workflow's own, and the `pack:<pack>` tag it gets."""
    workflow = entry.workflow
    problems = [
        error(
            workflow.loc("tags", index), f"tag is {len(tag)} characters long, more than Airflow's {MAX_TAG}"
        )
        for index, tag in enumerate(workflow.tags)
        if len(tag) > MAX_TAG
    ]
    if len(f"pack:{entry.pack.ref}") > MAX_TAG:
        message = f"the DAG tag 'pack:<pack ref>' would be longer than Airflow's {MAX_TAG} characters"
        problems.append(error(workflow.loc("ref"), message))
    return problems


def _file_lines(entry: WorkflowEntry) -> list[str]:
    try:
        return entry.file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []


def check_workflow(
    entry: WorkflowEntry,
    catalog: Catalog,
    broken: dict[str, Broken],
    max_items: int = settings.DEFAULT_MAX_ITEMS,
) -> list[Problem]:
    """Everything about one workflow that does not depend on the validity of its subworkflows."""
    workflow = entry.workflow
    context = TemplateContext.of(workflow, entry.pack.ref, entry.pack.config_schema, _file_lines(entry))
    return [
        *coded(codes.WORKFLOW_REF, check_workflow_ref(entry)),
        *coded(codes.WORKFLOW_TAGS, check_tags(entry)),
        *coded(codes.SCHEDULE, check_schedule(entry)),
        *coded(codes.PARAMETER_SCHEMA, _parameter_schemas(workflow, f"workflow '{entry.ref}'")),
        *check_workflow_structure(workflow),
        *coded(codes.CALLS, check_calls(entry, catalog, broken)),
        *coded(codes.TEMPLATES, check_templates(workflow, context)),
        *coded(codes.ITEM_COUNT, check_constant_items(workflow, max_items)),
    ]


# --- the catalog ---------------------------------------------------------------------


def _sorted_unique(problems: list[Problem]) -> list[Problem]:
    unique = dict.fromkeys(problems)
    return sorted(unique, key=lambda p: (p.location, p.severity is not Severity.ERROR, p.message))


def _guarded(check: Callable[[], list[Problem]], display: str) -> list[Problem]:
    """`check()`; if a checker itself fails on some unforeseen input, one error on that file
    instead: a bug in a check must cost the file it was reading, never every DAG."""
    try:
        return check()
    except Exception as exc:  # noqa: BLE001 - reported as the file's error, logged in full
        logging.getLogger(__name__).exception("validating %s failed", display)
        message = f"internal error while validating this file ({type(exc).__name__}: {exc}); please report it"
        return [error(Location(display), message, codes.INTERNAL_ERROR)]


def validate_catalog(
    catalog: Catalog,
    max_depth: int = settings.DEFAULT_MAX_DEPTH,
    max_tasks: int | None = None,
    max_items: int | None = None,
) -> Report:
    """Every problem of every pack, action and workflow of the catalog. `max_tasks` and
    `max_items` (None: `[attune] max_tasks` and `max_items`, which may raise ValueError
    for an invalid setting) are the limits of docs/validation.md."""
    max_tasks = settings.max_tasks() if max_tasks is None else max_tasks
    max_items = settings.max_items() if max_items is None else max_items
    problems = coded(codes.PACK_LAYOUT, catalog.problems)  # the loader's, about files and packs
    for pack in catalog.packs.values():
        problems += check_pack(pack, catalog)
    for action in catalog.actions.values():
        problems += _guarded(functools.partial(check_action, action), action.display)
    broken = broken_targets(catalog, problems)
    for workflow in catalog.workflows.values():
        problems += _guarded(
            functools.partial(check_workflow, workflow, catalog, broken, max_items), workflow.display
        )
    calls = subworkflow_calls(catalog)
    problems += coded(codes.NESTING, check_nesting(calls, max_depth))
    problems += coded(codes.TASK_COUNT, check_task_counts(catalog, calls, max_tasks))
    problems += coded(codes.ID_LENGTH, check_id_lengths(catalog))
    problems += coded(codes.INVALID_SUBWORKFLOW, cascade(catalog, calls, problems))
    for rule in catalog.rules.values():
        problems += coded(codes.RULE, _guarded(functools.partial(check_rule, rule, catalog), rule.display))
    invalid = invalid_workflows(catalog, broken, problems)
    rules = coded(codes.RULE_OF_INVALID_WORKFLOW, rules_of_broken_workflows(catalog, invalid))
    problems = _sorted_unique([*problems, *rules])
    return Report(problems, invalid)
