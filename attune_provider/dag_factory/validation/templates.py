"""Static checks of the templates of one workflow (docs/language.md).

Every templated string a workflow can render goes through `expressions.analyse`: its
syntax and filter problems, and every name it reads, are checked against what the
workflow declares. Problems point at the line of the template inside the YAML file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from jinja2.defaults import DEFAULT_NAMESPACE

from attune_provider.dag_factory.validation.workflow import error, task_names, walk_tasks
from attune_provider.language.model_errors import did_you_mean
from attune_provider.language.models import Node, Task, Workflow
from attune_provider.language.source import Location, Problem
from attune_provider.language.templates.analysis import Reference, analyse, template_strings

SCOPES = ("parameters", "vars", "task", "pack", "system", "kv", "secrets", "item", "index")
JINJA_GLOBALS = frozenset(DEFAULT_NAMESPACE)
TASK_ATTRIBUTES = ("result", "status", "error", "total_count")
SYSTEM_NAMES = ("execution_id", "timestamp", "workflow", "identity")
KV_FUNCTIONS = ("get", "get_secret")


class Site(NamedTuple):
    """One place of a workflow that holds templates: a value below `owner` at `path`."""

    owner: Node
    path: tuple[Any, ...]
    value: Any
    items: bool = False  # whether `item` / `index` are in scope
    own_items: bool = False  # the `with_items` template of a task itself


class TemplateContext(NamedTuple):
    """What the templates of one workflow may refer to."""

    lines: Sequence[str]  # the workflow file's text, to place multi-line templates
    pack: str
    parameters: frozenset[str]
    variables: frozenset[str]
    tasks: frozenset[str]
    config_keys: frozenset[str] | None  # None: the pack has no config schema
    secrets: frozenset[str]  # the keys `attributes.secrets` declares

    @classmethod
    def of(
        cls, workflow: Workflow, pack: str, config: dict[str, Any] | None, lines: Sequence[str]
    ) -> TemplateContext:
        published = {var for placed in walk_tasks(workflow.tasks) for var, _ in placed.task.publishes}
        keys = None
        if isinstance(config, dict):
            props = config.get("properties")
            keys = frozenset(props) if isinstance(props, dict) else frozenset()
        return cls(
            lines=lines,
            pack=pack,
            parameters=frozenset(workflow.parameters),
            variables=frozenset(workflow.vars) | frozenset(published),
            tasks=frozenset(task_names(workflow)),
            config_keys=keys,
            secrets=frozenset(secret.key for secret in workflow.attributes.secrets),
        )


def _task_sites(task: Task) -> Iterator[Site]:
    """`item`/`index` exist only in the `input` of a with_items task, rendered once per
    execution: its `when` is evaluated before the list exists, its `publish` and `decision`
    once for the whole task (`task.<self>.result` is the list), and `on_error` sees the
    failed execution's error as `task.<self>.error`, not the item."""
    items = task.with_items is not None
    yield Site(task, ("input",), task.input, items)
    for index, (var, value) in enumerate(task.publishes):
        yield Site(task, ("publish", index, var), value)
    yield Site(task, ("when",), task.when)
    yield Site(task, ("with_items",), task.with_items, own_items=items)
    for branch in task.decision:
        yield Site(branch, ("when",), branch.when)
    if task.retry is not None:
        yield Site(task.retry, ("on_error",), task.retry.on_error)


def template_sites(workflow: Workflow) -> Iterator[Site]:
    """Every value of the workflow whose strings are templates."""
    for name, value in workflow.vars.items():
        yield Site(workflow, ("vars", name), value)
    for placed in walk_tasks(workflow.tasks):
        yield from _task_sites(placed.task)
    yield Site(workflow, ("output_map",), workflow.output_map)


def template_location(start: Location, line: int, lines: Sequence[str]) -> Location:
    """Where line `line` (1-based) of a template that starts at `start` is in the file.

    Only a literal block scalar (`|`) keeps the template's lines as the file's: it starts
    on the line after its indicator, and lines are placed at their indentation. A folded
    block (`>`) joins its lines, so a problem is placed at its first line; in any other
    style (quoted or plain strings over several lines, `\\n` escapes) at the string.
    """
    raw = lines[start.line - 1] if 0 < start.line <= len(lines) else ""
    indicator = raw[start.col - 1 : start.col]
    if indicator == "|":
        number = start.line + line
    elif indicator == ">":
        number = start.line + 1
    else:
        return start
    text = lines[number - 1] if number <= len(lines) else ""
    col = len(text) - len(text.lstrip()) + 1 if text.strip() else start.col
    return Location(start.file, number, col)


def _check_parameters(ref: Reference, ctx: TemplateContext) -> str | None:
    if ref.name is None or ref.name in ctx.parameters:
        return None
    return f"unknown parameter '{ref.name}' in template{did_you_mean(ref.name, ctx.parameters)}"


def _check_vars(ref: Reference, ctx: TemplateContext) -> str | None:
    if ref.name is None or ref.name in ctx.variables:
        return None
    hint = did_you_mean(ref.name, ctx.variables)
    return f"unknown variable '{ref.name}' in template: not in 'vars' nor published by a task{hint}"


def _check_task(ref: Reference, ctx: TemplateContext) -> str | None:
    if ref.name is None:
        return None
    if ref.name not in ctx.tasks:
        return f"unknown task '{ref.name}' in template{did_you_mean(ref.name, ctx.tasks)}"
    if ref.attrs and ref.attrs[0] not in TASK_ATTRIBUTES:
        attr = ref.attrs[0]
        hint = did_you_mean(attr, TASK_ATTRIBUTES)
        allowed = ", ".join(TASK_ATTRIBUTES)
        return f"unknown attribute '{attr}' of task '{ref.name}' in template{hint}: use {allowed}"
    return None


def _check_pack(ref: Reference, ctx: TemplateContext) -> str | None:
    if ref.name is None or (ref.name == "ref" and not ref.attrs):
        return None
    if ref.name != "config":
        return f"unknown attribute '{ref.name}' of 'pack' in template: use pack.config or pack.ref"
    if not ref.attrs or ctx.config_keys is None or ref.attrs[0] in ctx.config_keys:
        return None
    key = ref.attrs[0]
    hint = did_you_mean(key, ctx.config_keys)
    return f"unknown config key '{key}' in template: not a property of config.yaml of pack '{ctx.pack}'{hint}"


def _check_secrets(ref: Reference, ctx: TemplateContext) -> str | None:
    if ref.name is None or ref.name in ctx.secrets:
        return None
    hint = did_you_mean(ref.name, ctx.secrets)
    return f"undeclared secret '{ref.name}' in template: declare it in 'attributes.secrets'{hint}"


def _check_fixed(ref: Reference, allowed: Sequence[str]) -> str | None:
    if ref.name is None or ref.name in allowed:
        return None
    hint = did_you_mean(ref.name, allowed)
    return f"unknown attribute '{ref.name}' of '{ref.scope}' in template{hint}: use {', '.join(allowed)}"


def _check_item(ref: Reference, site: Site) -> str | None:
    if site.own_items:
        return f"'{ref.scope}' cannot be used in the 'with_items' that defines it"
    if not site.items:
        return f"'{ref.scope}' is only available in the 'input' of a task with 'with_items'"
    return None


def _unsafe(ref: Reference) -> bool:
    """`_`-prefixed keys are reported by `analyse` itself: no second message about them."""
    return any(key.startswith("_") for key in (ref.name or "", *ref.attrs[:1]))


_SCOPE_CHECKS: dict[str, Callable[[Reference, TemplateContext, Site], str | None]] = {
    "parameters": lambda ref, ctx, site: _check_parameters(ref, ctx),
    "vars": lambda ref, ctx, site: _check_vars(ref, ctx),
    "task": lambda ref, ctx, site: _check_task(ref, ctx),
    "pack": lambda ref, ctx, site: _check_pack(ref, ctx),
    "system": lambda ref, ctx, site: _check_fixed(ref, SYSTEM_NAMES),
    "kv": lambda ref, ctx, site: _check_fixed(ref, KV_FUNCTIONS),
    "secrets": lambda ref, ctx, site: _check_secrets(ref, ctx),
    "item": lambda ref, ctx, site: _check_item(ref, site),
    "index": lambda ref, ctx, site: _check_item(ref, site),
}


def check_reference(ref: Reference, ctx: TemplateContext, site: Site) -> str | None:
    """The problem with one name a template reads, or None when it is fine."""
    if _unsafe(ref):
        return None
    check = _SCOPE_CHECKS.get(ref.scope)
    if check is not None:
        return check(ref, ctx, site)
    if ref.scope in JINJA_GLOBALS:
        return None
    return f"unknown name '{ref.scope}' in template{did_you_mean(ref.scope, SCOPES)}"


def check_site(site: Site, ctx: TemplateContext) -> list[Problem]:
    """Syntax problems and unknown names of every template inside one site's value."""
    problems: list[Problem] = []
    for path, text in template_strings(site.value):
        references, issues = analyse(text)
        found = [(issue.line, issue.message) for issue in issues]
        for ref in references:
            message = check_reference(ref, ctx, site)
            if message is not None:
                found.append((ref.line, message))
        if found:  # located only when needed: most templates are fine
            start = site.owner.loc(*site.path, *path)
            problems += [error(template_location(start, line, ctx.lines), message) for line, message in found]
    return problems


def check_templates(workflow: Workflow, ctx: TemplateContext) -> list[Problem]:
    """Every template of the workflow: syntax, filters, unsafe attributes, names."""
    problems: list[Problem] = []
    for site in template_sites(workflow):
        problems += check_site(site, ctx)
    return problems
