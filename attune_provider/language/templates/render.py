"""Rendering templates: every string of a value once, a single `{{ expression }}` to its
native value (docs/language.md, Templates); and the parse-time helpers `constant` and
`truthy`. No Airflow import.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2 import meta, nodes
from jinja2.environment import TemplateExpression

from attune_provider.language.templates.analysis import template_strings
from attune_provider.language.templates.environment import ENV, TemplateRenderError, has_syntax, plain_data
from attune_provider.language.templates.limits import Guard, TemplateLimits, current_limits, limited
from attune_provider.language.templates.sizes import repeated_size

_FALSE_STRINGS = frozenset({"", "false", "no", "off", "0", "none", "null"})
_MAX_SOURCE_IN_MESSAGE = 200


def _single_expression(template: str) -> nodes.Expr | None:
    """The expression of a template that is exactly one `{{ ... }}`, else None: anything
    around it (whitespace, a YAML block scalar's final newline, a `{# comment #}`) makes it
    a string template (docs/language.md)."""
    if not (template.startswith("{{") and template.endswith("}}")):
        return None
    try:
        tree = ENV.parse(template)
    except jinja2.TemplateSyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = tree.body[0].nodes
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    return parts[0]


def is_single_expression(template: str) -> bool:
    """True when the string is one `{{ expression }}` and nothing else."""
    return _single_expression(template) is not None


@functools.lru_cache(maxsize=4096)
def _compile(source: str) -> TemplateExpression | jinja2.Template:
    """A single expression compiles to a native-valued expression, anything else to a template."""
    expr = _single_expression(source)
    if expr is None:
        return ENV.from_string(source)
    body: list[nodes.Node] = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=expr.lineno)]
    return TemplateExpression(ENV.from_string(nodes.Template(body, lineno=1)), False)


def _render_error(source: str, exc: Exception) -> TemplateRenderError:
    shown = source if len(source) <= _MAX_SOURCE_IN_MESSAGE else source[:_MAX_SOURCE_IN_MESSAGE] + "..."
    reason = str(exc) or type(exc).__name__
    return TemplateRenderError(f"cannot render {shown!r}: {reason}")


def _value(compiled: TemplateExpression, scope: Mapping[str, Any], guard: Guard) -> Any:
    """A single expression's value as data; refused when it repeats the same list or
    mapping past the limit (`ns.l` after `ns.l.append(big)` 10,000 times): written out
    (as data, JSON, an XCom) it would be that large."""
    value = compiled(scope)
    guard.check(repeated_size(value, guard.max_bytes), "the value, which repeats the same list or mapping,")
    return plain_data(value)


def _render_string(source: str, scope: Mapping[str, Any], limits: TemplateLimits) -> Any:
    if not has_syntax(source):
        return source
    try:
        with limited(limits) as guard:
            compiled = _compile(source)
            if isinstance(compiled, TemplateExpression):
                return _value(compiled, scope, guard)
            return compiled.render(scope)
    except Exception as exc:  # any failure of user code in a template is a render error
        raise _render_error(source, exc) from exc


def _render(value: Any, scope: Mapping[str, Any], limits: TemplateLimits) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope, limits)
    if isinstance(value, dict):
        return {key: _render(item, scope, limits) for key, item in value.items()}
    if isinstance(value, list):
        return [_render(item, scope, limits) for item in value]
    return value


def render(value: Any, scope: Mapping[str, Any], limits: TemplateLimits | None = None) -> Any:
    """Render every string inside `value` once; what templates return is data, never re-rendered.

    Each template runs under `limits` (by default those `set_limits_source` gives): what
    one operation makes, and the CPU time one template takes (limits.py).
    """
    return _render(value, scope, limits or current_limits())


CONSTANT_TIMEOUT = 0.05  # seconds of CPU time a constant may take at parse time


class NotConstant(Exception):
    """The value depends on what a run has (it reads a name, or could not be worked out)."""


# Filters whose result is not a function of their input.
_UNSTABLE_FILTERS = frozenset({"random"})


@functools.lru_cache(maxsize=1024)
def _reads_nothing(template: str) -> bool:
    try:
        tree = ENV.parse(template)
    except jinja2.TemplateSyntaxError:
        return False
    if meta.find_undeclared_variables(tree):
        return False
    return not any(node.name in _UNSTABLE_FILTERS for node in tree.find_all(nodes.Filter))


def constant(value: Any) -> Any:
    """What `value` renders to in every run, when its templates name nothing at all
    (`"{{ [1, 2, 3] }}"`, a YAML list of plain values); `NotConstant` otherwise.

    Lets the compiler use a value at parse time that the run would compute the same way.
    Worked out under a short time budget (`CONSTANT_TIMEOUT`): the DAG processor parses every
    workflow in one DAG file within Airflow's import timeout, so a slow template is left to
    the run (its task has the whole `template_timeout`), never paid at parse time.
    """
    if not all(_reads_nothing(text) for _, text in template_strings(value)):
        raise NotConstant(value)
    limits = current_limits()
    brief = TemplateLimits(limits.max_result_bytes, min(limits.timeout, CONSTANT_TIMEOUT))
    try:
        return render(value, {}, brief)
    except TemplateRenderError as exc:
        raise NotConstant(value) from exc


def truthy(value: Any) -> bool:
    """Truth of `when` / `decision`: YAML-ish false words in strings count as false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)
