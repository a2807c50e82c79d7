"""The template language of LANGUAGE.md section 4: one sandboxed Jinja environment.

`render` and `truthy` serve the task runtime; `analyse` and `template_strings` let the
validator find undeclared names and unsafe attributes before any run. No Airflow import.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any, NamedTuple

import jinja2
from jinja2 import meta, nodes
from jinja2.environment import TemplateExpression
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from attune_provider.exceptions import AttuneError

_FALSE_STRINGS = frozenset({"", "false", "no", "off", "0", "none", "null"})
_SYNTAX = ("{{", "{%")
_MAX_SOURCE_IN_MESSAGE = 200


class TemplateRenderError(AttuneError):
    """A template failed to compile or evaluate; the message names the template."""


class _AttuneUndefined(jinja2.ChainableUndefined):
    """Chainable, so `task.x.result.y` on a task that did not run is null, not an error."""

    __slots__ = ()


_LAZY_SEQUENCES = (range, Iterator, KeysView, ItemsView, ValuesView)  # data as their list


def _finalize(value: Any) -> Any:
    """Inside a larger string, null and missing values print as nothing, not 'None'; a
    scope read lazily (`vars`, `pack`, `task`) prints as the data it holds; a method
    (`d.items` where `d` has no key `items`) is no value, and a lazy sequence (`range`,
    `map`) prints as its list."""
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return _strip_undefined(value)
    if callable(value):
        return ""
    if isinstance(value, _LAZY_SEQUENCES):
        return _strip_undefined(value)
    return value


def _unsafe(name: str) -> SecurityError:
    return SecurityError(f"access to attribute {name!r} is unsafe")


class AttuneEnvironment(SandboxedEnvironment):
    """The one template environment of the project (see LANGUAGE.md section 4)."""

    def __init__(self, **options: Any) -> None:
        options.setdefault("undefined", _AttuneUndefined)
        options.setdefault("finalize", _finalize)
        options.setdefault("autoescape", False)
        options.setdefault("keep_trailing_newline", True)  # a string keeps its last newline, as in Airflow
        super().__init__(**options)
        self.filters.update(_FILTERS)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Mapping keys win over methods: `parameters.items` is the parameter `items`.

        `_` names raise instead of the sandbox's silent undefined, as the validator reports
        them; a lookup on None (like any failed lookup) gives an undefined.
        """
        if attribute.startswith("_"):
            raise _unsafe(attribute)
        if isinstance(obj, Mapping):
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """Ordinary subscription, except that `_` string keys are unsafe as attributes are."""
        if isinstance(argument, str) and argument.startswith("_"):
            raise _unsafe(argument)
        return super().getitem(obj, argument)


# --- extra filters -------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, jinja2.Undefined) else str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=False, ensure_ascii=False, default=_json_default)


def _from_json(value: Any) -> Any:
    """A missing value (a task that did not run) parses to null instead of failing."""
    if value is None or isinstance(value, jinja2.Undefined):
        return None
    return json.loads(value)


def _append(value: Any, suffix: Any) -> str:
    return _text(value) + _text(suffix)


def _prepend(value: Any, prefix: Any) -> str:
    return _text(prefix) + _text(value)


def _as_list(value: Any, filter_name: str) -> list[Any]:
    """Null and missing values are empty lists, so skipped branches do not break filters."""
    if value is None or isinstance(value, jinja2.Undefined):
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(f"filter {filter_name!r} needs a list, not {type(value).__name__}")
    return list(value)


def _filter(value: Any, **criteria: Any) -> list[Any]:
    """Keep the mappings whose keys equal every given value."""
    return [
        element
        for element in _as_list(value, "filter")
        if isinstance(element, Mapping)
        and all(key in element and element[key] == wanted for key, wanted in criteria.items())
    ]


def _batch(value: Any, size: int) -> list[list[Any]]:
    """Lists of `size` elements, the last one shorter (Jinja's own `batch` pads it)."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"filter 'batch' needs an integer size >= 1, got {size!r}")
    items = _as_list(value, "batch")
    return [items[start : start + size] for start in range(0, len(items), size)]


_FILTERS: dict[str, Callable[..., Any]] = {
    "to_json": _to_json,
    "from_json": _from_json,
    "append": _append,
    "prepend": _prepend,
    "filter": _filter,
    "batch": _batch,
}

ENV = AttuneEnvironment()


# --- rendering -----------------------------------------------------------------------


def _has_syntax(text: str) -> bool:
    return any(marker in text for marker in _SYNTAX)


def _single_expression(template: str) -> nodes.Expr | None:
    """The expression of a template that is exactly one `{{ ... }}`, else None: anything
    around it (whitespace, a YAML block scalar's final newline, a `{# comment #}`) makes it
    a string template (LANGUAGE.md section 4)."""
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


def _strip_undefined(value: Any) -> Any:
    """Missing values never leave this module: they become None, also inside containers;
    scopes read lazily (any Mapping) leave it as plain dicts. A template's value is data:
    a method where a key was missing (`d.items`) is None; a tuple, a lazy sequence
    (`range(3)`, `map(...)` without `| list`) or a dict view (`d.items()`) its list."""
    if isinstance(value, jinja2.Undefined) or callable(value):
        return None
    if isinstance(value, (list, tuple, *_LAZY_SEQUENCES)):
        return [_strip_undefined(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _strip_undefined(item) for key, item in value.items()}
    return value


def _render_error(source: str, exc: Exception) -> TemplateRenderError:
    shown = source if len(source) <= _MAX_SOURCE_IN_MESSAGE else source[:_MAX_SOURCE_IN_MESSAGE] + "..."
    reason = str(exc) or type(exc).__name__
    return TemplateRenderError(f"cannot render {shown!r}: {reason}")


def _render_string(source: str, scope: Mapping[str, Any]) -> Any:
    if not _has_syntax(source):
        return source
    try:
        compiled = _compile(source)
        if isinstance(compiled, TemplateExpression):
            return _strip_undefined(compiled(scope))
        return compiled.render(scope)
    except Exception as exc:  # any failure of user code in a template is a render error
        raise _render_error(source, exc) from exc


def render(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every string inside `value` once; what templates return is data, never re-rendered."""
    if isinstance(value, str):
        return _render_string(value, scope)
    if isinstance(value, dict):
        return {key: render(item, scope) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, scope) for item in value]
    return value


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
    """
    if not all(_reads_nothing(text) for _, text in template_strings(value)):
        raise NotConstant(value)
    try:
        return render(value, {})
    except TemplateRenderError as exc:
        raise NotConstant(value) from exc


def truthy(value: Any) -> bool:
    """Truth of `when` / `decision`: YAML-ish false words in strings count as false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


# --- static analysis -----------------------------------------------------------------


class Reference(NamedTuple):
    """A name a template reads from its scope, e.g. `task.t1.result.id`."""

    scope: str
    name: str | None
    attrs: tuple[str, ...]
    line: int


class TemplateIssue(NamedTuple):
    """A problem found in a template without rendering it."""

    message: str
    line: int


class _Analyser:
    """Walks a Jinja AST, tracking names the template binds itself (set, for, macro...)."""

    def __init__(self) -> None:
        self.references: list[Reference] = []
        self.issues: list[TemplateIssue] = []

    def visit(self, node: nodes.Node, bound: set[str]) -> None:
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            self._visit_access(node, bound)
        elif isinstance(node, nodes.Name):
            self._visit_name(node, bound)
        elif isinstance(node, nodes.For):
            self._visit_for(node, bound)
        elif isinstance(node, (nodes.Macro, nodes.CallBlock)):
            self._visit_callable(node, bound)
        elif isinstance(node, nodes.With):
            self._visit_with(node, bound)
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            self._visit_assign(node, bound)
        elif isinstance(node, (nodes.Import, nodes.FromImport)):
            self._visit_import(node, bound)
        else:
            self._check_name(node)
            self._visit_children(node, bound)

    def _visit_children(self, node: nodes.Node, bound: set[str]) -> None:
        if isinstance(node, (nodes.FilterBlock, nodes.Scope, nodes.OverlayScope)):
            bound = set(bound)  # these blocks scope their assignments
        for child in node.iter_child_nodes():
            self.visit(child, bound)

    def _check_name(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Filter) and node.name not in ENV.filters:
            self.issues.append(TemplateIssue(f"unknown filter {node.name!r}", node.lineno))
        elif isinstance(node, nodes.Test) and node.name not in ENV.tests:
            self.issues.append(TemplateIssue(f"unknown test {node.name!r}", node.lineno))

    def _visit_name(self, node: nodes.Name, bound: set[str]) -> None:
        if node.ctx != "load":  # "store" (set, for) or "param" (with, macro arguments)
            bound.add(node.name)
        elif node.name not in bound and node.name not in ENV.globals:
            self.references.append(Reference(node.name, None, (), node.lineno))

    def _visit_access(self, node: nodes.Getattr | nodes.Getitem, bound: set[str]) -> None:
        """Follow a chain of constant keys down to its root name; other subscripts end it."""
        keys: list[str] = []
        pending: list[nodes.Node] = []
        current: nodes.Node = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            key = _constant_key(current)
            if key is None:
                keys.clear()
                if isinstance(current, nodes.Getitem):
                    pending.append(current.arg)
            else:
                if key.startswith("_"):
                    message = f"attribute {key!r} is unsafe in templates"
                    self.issues.append(TemplateIssue(message, current.lineno))
                keys.insert(0, key)
            current = current.node
        if isinstance(current, nodes.Name) and current.ctx == "load" and current.name not in bound:
            if current.name not in ENV.globals:
                name = keys[0] if keys else None
                self.references.append(Reference(current.name, name, tuple(keys[1:]), current.lineno))
        else:
            self.visit(current, bound)
        for child in reversed(pending):
            self.visit(child, bound)

    def _visit_for(self, node: nodes.For, bound: set[str]) -> None:
        self.visit(node.iter, bound)
        inner = set(bound) | {"loop"}
        self.visit(node.target, inner)
        if node.test is not None:
            self.visit(node.test, inner)
        for child in node.body:
            self.visit(child, inner)
        outer = set(bound)
        for child in node.else_:
            self.visit(child, outer)

    def _visit_callable(self, node: nodes.Macro | nodes.CallBlock, bound: set[str]) -> None:
        if isinstance(node, nodes.CallBlock):
            self.visit(node.call, bound)
        for default in node.defaults:
            self.visit(default, bound)
        inner = set(bound) | {"caller", "varargs", "kwargs"}
        inner.update(arg.name for arg in node.args)
        for child in node.body:
            self.visit(child, inner)
        if isinstance(node, nodes.Macro):
            bound.add(node.name)

    def _visit_with(self, node: nodes.With, bound: set[str]) -> None:
        inner = set(bound)
        for target, value in zip(node.targets, node.values, strict=False):
            self.visit(value, bound)
            self.visit(target, inner)
        for child in node.body:
            self.visit(child, inner)

    def _visit_assign(self, node: nodes.Assign | nodes.AssignBlock, bound: set[str]) -> None:
        if isinstance(node, nodes.Assign):
            self.visit(node.node, bound)
        else:
            if node.filter is not None:
                self.visit(node.filter, bound)
            for child in node.body:
                self.visit(child, set(bound))
        self.visit(node.target, bound)

    def _visit_import(self, node: nodes.Import | nodes.FromImport, bound: set[str]) -> None:
        self.visit(node.template, bound)
        if isinstance(node, nodes.Import):
            bound.add(node.target)
            return
        for name in node.names:
            bound.add(name[1] if isinstance(name, tuple) else name)


def _constant_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """The attribute, or the subscript when it is a constant string; None otherwise."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def analyse(template: str) -> tuple[list[Reference], list[TemplateIssue]]:
    """References and problems of one template string, found without rendering it."""
    if not _has_syntax(template):
        return [], []
    references, issues = _analyse(_skeleton(template) or template)
    return list(references), list(issues)


_EXPRESSION_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.S)
_UNSURE_IN_EXPRESSION = ("'", '"', "{", "}")


def _skeleton(template: str) -> str | None:
    """The template with its literal text reduced to its line breaks, so that templates
    differing only in text share one analysis (`"Deploy {{ parameters.app }} now"` and
    `"{{ parameters.app }}"` find the same references on the same lines).

    Only for templates made of `{{ ... }}` blocks and plain text; None (analyse the whole
    text) when a block holds a quote or a brace (a `}}` could hide in a string) or the
    text holds anything else Jinja reads (`{%`, a comment, an unclosed `{{`).
    """
    if "{#" in template:  # a comment may hold what looks like a block
        return None
    parts: list[str] = []
    last = 0
    for block in _EXPRESSION_BLOCK.finditer(template):
        text = template[last : block.start()]
        if _has_syntax(text) or any(c in block.group(1) for c in _UNSURE_IN_EXPRESSION):
            return None
        parts += ["\n" * text.count("\n"), block.group(0)]
        last = block.end()
    if _has_syntax(template[last:]):
        return None
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def _analyse(template: str) -> tuple[tuple[Reference, ...], tuple[TemplateIssue, ...]]:
    """`analyse`, once per distinct template (workflows repeat many of theirs)."""
    try:
        tree = ENV.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        return (), (TemplateIssue(f"Jinja syntax error: {exc.message}", exc.lineno),)
    analyser = _Analyser()
    analyser.visit(tree, set())
    if not analyser.issues and (_may_fail_to_compile(tree) or tree.find(nodes.Call) is not None):
        try:  # whatever else the compiler rejects (from the tree: parsing again doubled the cost)
            ENV.compile(tree)
        except jinja2.TemplateSyntaxError as exc:
            analyser.issues.append(TemplateIssue(f"Jinja syntax error: {exc.message}", exc.lineno))
        except SyntaxError as exc:  # Python rejects the generated code, e.g. f(a=1, a=2)
            analyser.issues.append(TemplateIssue(f"invalid expression: {exc.msg}", 1))
    return tuple(analyser.references), tuple(analyser.issues)


# Nodes the compiler turns into Python without any check of its own (statements such as
# blocks, macros, loops and assignments have some): for a template made of these alone,
# parsing is the whole syntax check, and compiling it (most of `analyse`'s cost) is skipped.
_EXPRESSION_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Compare,
    nodes.Operand,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.BinExpr,
    nodes.Concat,
    nodes.CondExpr,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Filter,
    nodes.Test,
    nodes.Call,
    nodes.Keyword,
)


def _may_fail_to_compile(tree: nodes.Template) -> bool:
    """False when compiling cannot fail: only expression nodes, and no call, filter or test
    repeats a keyword argument (Python rejects `f(a=1, a=2)`)."""
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, _EXPRESSION_NODES):
            return True
        if isinstance(node, (nodes.Call, nodes.Filter, nodes.Test)):
            keys = [keyword.key for keyword in node.kwargs]
            if len(keys) != len(set(keys)):
                return True
        stack.extend(node.iter_child_nodes())
    return False


def template_strings(value: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every templated string in a nested value, with its key/index path from the root."""
    if isinstance(value, str):
        if _has_syntax(value):
            yield (), value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            for path, text in template_strings(item):
                yield (key, *path), text
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, text in template_strings(item):
                yield (index, *path), text
