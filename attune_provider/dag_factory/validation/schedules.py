"""Static checks of when workflows run: a workflow's `schedule` and `produces`, and pack
rules (`rules/<name>.yaml`, docs/scheduling.md). No Airflow: cron expressions are
parsed with croniter, as Airflow's cron timetables parse them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema

from attune_provider.dag_factory.validation.workflow import MAX_AIRFLOW_ID, error
from attune_provider.language.catalog import Catalog, RuleEntry, WorkflowEntry
from attune_provider.language.model_errors import did_you_mean
from attune_provider.language.models import NAME_PATTERN, AssetSchedule, Node
from attune_provider.language.parameters import FORMAT_CHECKER, has_default, is_required, property_schema
from attune_provider.language.source import Problem
from attune_provider.language.templates.analysis import analyse, template_strings

PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")
TRIGGER_NAMES = ("logical_date", "assets")  # what a rule's templates may read of `trigger`
TRIGGER_PARAMETERS = {"core.cron": ("expression",), "core.interval": ("seconds",), "core.asset": ("uris",)}


def cron_problem(expression: Any) -> str | None:
    """Why `expression` is not a cron expression or preset Airflow accepts (None: it is)."""
    if not isinstance(expression, str) or not expression.strip():
        return f"a schedule is a cron expression or a preset ({', '.join(PRESETS)}), got {expression!r}"
    if expression.startswith("@"):
        if expression in PRESETS:
            return None
        return f"unknown schedule preset '{expression}'{did_you_mean(expression, PRESETS)}"
    from croniter import croniter  # only for a workflow or rule that has a cron schedule

    try:
        croniter(expression)
    except (ValueError, KeyError, TypeError) as exc:  # croniter's errors are ValueErrors
        return f"cron expression '{expression}' does not parse: {exc}"
    return None


def _asset_problems(owner: Node, path: tuple[Any, ...], uris: Sequence[Any]) -> list[Problem]:
    problems = []
    seen: set[str] = set()
    for index, uri in enumerate(uris):
        where = owner.loc(*path, index)
        if not isinstance(uri, str) or not uri.strip() or any(c.isspace() for c in uri):
            problems.append(error(where, f"an asset is a URI without spaces, got {uri!r}"))
        elif uri.split("://", 1)[0].lower() == "airflow" and "://" in uri:
            problems.append(error(where, f"asset '{uri}': the scheme 'airflow' is reserved by Airflow"))
        elif uri in seen:
            problems.append(error(where, f"asset '{uri}' is listed twice"))
        if isinstance(uri, str):
            seen.add(uri)
    return problems


def check_schedule(entry: WorkflowEntry) -> list[Problem]:
    """A workflow's `schedule` and `produces`; scheduled runs use the parameters' defaults."""
    workflow = entry.workflow
    problems: list[Problem] = []
    schedule = workflow.schedule
    if isinstance(schedule, str):
        message = cron_problem(schedule)
        if message is not None:
            problems.append(error(workflow.loc("schedule"), message))
    elif isinstance(schedule, AssetSchedule):
        problems += _asset_problems(schedule, ("assets",), schedule.assets)
    problems += _asset_problems(workflow, ("produces",), workflow.produces)
    if schedule is not None:
        for name, prop in workflow.parameters.items():
            if is_required(prop) and not has_default(prop):
                message = (
                    f"parameter '{name}' is required and has no default, so workflow '{workflow.ref}' "
                    "cannot have a schedule (its scheduled runs use the parameters' defaults)"
                )
                problems.append(error(workflow.loc("parameters", name), message))
    return problems


# --- rules ----------------------------------------------------------------------------------


def _check_rule_ref(entry: RuleEntry) -> list[Problem]:
    rule = entry.rule
    pack, _, name = rule.ref.partition(".")
    if len(rule.ref) > MAX_AIRFLOW_ID:
        return [error(rule.loc("ref"), f"rule ref is longer than Airflow's {MAX_AIRFLOW_ID} characters")]
    if pack == entry.pack.ref and NAME_PATTERN.match(name):
        return []
    message = (
        f"rule ref '{rule.ref}' must be '{entry.pack.ref}.<name>' (the ref of its pack, a dot, and a"
        f" name matching {NAME_PATTERN.pattern})"
    )
    return [error(rule.loc("ref"), message)]


def _check_trigger(entry: RuleEntry) -> list[Problem]:
    trigger = entry.rule.trigger
    allowed = TRIGGER_PARAMETERS[trigger.type]
    params = trigger.parameters
    problems = [
        error(
            trigger.loc("parameters", key),
            f"unknown parameter '{key}' of trigger {trigger.type}: use {', '.join(allowed)}",
        )
        for key in params
        if key not in allowed
    ]
    missing = [key for key in allowed if key not in params]
    if missing:
        return [*problems, error(trigger.loc("parameters"), f"trigger {trigger.type} needs '{missing[0]}'")]
    if trigger.type == "core.cron":
        message = cron_problem(params["expression"])
        if message is not None:
            problems.append(error(trigger.loc("parameters", "expression"), message))
    elif trigger.type == "core.interval":
        seconds = params["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 1:
            message = f"'seconds' must be a whole number of seconds >= 1, got {seconds!r}"
            problems.append(error(trigger.loc("parameters", "seconds"), message))
    else:
        uris = params["uris"]
        if not isinstance(uris, list) or not uris:
            problems.append(error(trigger.loc("parameters", "uris"), "'uris' must be a list of asset URIs"))
        else:
            problems += _asset_problems(trigger, ("parameters", "uris"), uris)
    return problems


def _template_problems(owner: Node, path: tuple[Any, ...], value: Any) -> tuple[list[Problem], bool]:
    """Problems of the templates in one rule parameter (only `trigger` may be read), and
    whether the value has any template (then its type is known only when it renders)."""
    problems: list[Problem] = []
    templated = False
    for inner, text in template_strings(value):
        templated = True
        references, issues = analyse(text)
        where = owner.loc(*path, *inner)
        problems += [error(where, issue.message) for issue in issues]
        for ref in references:
            if ref.scope != "trigger":
                allowed = ", ".join(TRIGGER_NAMES)
                message = f"a rule's templates may read only 'trigger' ({allowed}), not '{ref.scope}'"
                problems.append(error(where, message))
            elif ref.name is not None and ref.name not in TRIGGER_NAMES:
                hint = did_you_mean(ref.name, TRIGGER_NAMES)
                problems.append(error(where, f"unknown attribute '{ref.name}' of 'trigger'{hint}"))
    return problems, templated


def _value_problem(prop: Mapping[str, Any], value: Any) -> str | None:
    validator = jsonschema.Draft202012Validator(property_schema(prop), format_checker=FORMAT_CHECKER)
    found = next(iter(sorted(validator.iter_errors(value), key=lambda e: e.message)), None)
    return None if found is None else found.message


def _check_parameters(entry: RuleEntry, workflow: WorkflowEntry) -> list[Problem]:
    action = entry.rule.action
    declared = workflow.workflow.parameters
    problems: list[Problem] = []
    for name, value in action.parameters.items():
        where = action.loc("parameters", name)
        if name not in declared:
            hint = did_you_mean(name, declared)
            problems.append(error(where, f"unknown parameter '{name}' of workflow '{workflow.ref}'{hint}"))
            continue
        found, templated = _template_problems(action, ("parameters", name), value)
        problems += found
        if not templated:
            message = _value_problem(declared[name], value)
            if message is not None:
                problems.append(error(where, f"parameter '{name}': {message}"))
    for name, prop in declared.items():
        if is_required(prop) and not has_default(prop) and name not in action.parameters:
            problems.append(
                error(
                    action.loc("parameters") if action.parameters else action.loc("ref"),
                    f"missing required parameter '{name}' of workflow '{workflow.ref}'",
                )
            )
    return problems


def check_rule(entry: RuleEntry, catalog: Catalog) -> list[Problem]:
    """A rule: its ref, its trigger, and the workflow it starts with its parameters."""
    problems = [*_check_rule_ref(entry), *_check_trigger(entry)]
    action = entry.rule.action
    workflow = catalog.workflows.get(action.ref)
    if workflow is None:
        where = action.loc("ref")
        if action.ref in catalog.actions:
            problems.append(error(where, f"'{action.ref}' is an action: a rule starts a workflow"))
        else:
            hint = did_you_mean(action.ref, catalog.workflows)
            problems.append(error(where, f"unknown workflow '{action.ref}'{hint}"))
        return problems
    return [*problems, *_check_parameters(entry, workflow)]


def rules_of_broken_workflows(catalog: Catalog, invalid: Mapping[str, Any]) -> list[Problem]:
    """A rule that starts a workflow left out is left out too, with an error saying why."""
    problems = []
    for entry in catalog.rules.values():
        target = entry.rule.action.ref
        if target in invalid:
            message = f"workflow '{target}' has errors: this rule is left out"
            problems.append(error(entry.rule.action.loc("ref"), message))
    return problems
