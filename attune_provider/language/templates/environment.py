"""The one sandboxed Jinja environment of the language (docs/language.md, Templates).

Missing values are chainable undefineds (`task.x.result.y` of a task that did not run is
null), mapping keys win over methods, `_` names are refused, and a few filters are added
(`to_json`, `from_json`, `append`, `prepend`, `filter`, `batch`); `default` replaces null
too. The sandbox's hooks keep a template within its limits (limits.py): the operators
`*`, `**`, `+`, `%` and `~`, the methods of strings and lists and the filters that could
make a huge value work out its size first, and every call, lookup, operator and loop step
counts towards the template's time. No Airflow import.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from attune_provider.exceptions import AttuneError
from attune_provider.language.templates.bounded import BOUNDED_FILTERS, as_text, lipsum
from attune_provider.language.templates.limits import Guard, active_guard
from attune_provider.language.templates.sizes import (
    bound_method,
    json_size,
    method_size,
    power_size,
    prepare_method_args,
    printf_size,
    product_size,
    sum_size,
    text_size,
)

_SYNTAX = ("{{", "{%")


def has_syntax(text: str) -> bool:
    """Whether a string is a template at all (holds `{{` or `{%`): others are plain text."""
    return any(marker in text for marker in _SYNTAX)


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
    if type(value) is str:  # most values printed
        return value
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, (list, tuple, set, frozenset, Mapping)):
        as_text(value, "printing a value")  # refused before it is printed when too large
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return plain_data(value)
    if callable(value):
        return ""
    if isinstance(value, _LAZY_SEQUENCES):
        return plain_data(value)
    return value


def _unsafe(name: str) -> SecurityError:
    return SecurityError(f"access to attribute {name!r} is unsafe")


def _concat(pieces: Iterable[str]) -> str:
    """A template's text (and a block's, a macro's): refused once it passes the limit."""
    guard = active_guard()
    limit = guard.max_bytes
    parts: list[str] = []
    total = 0
    for piece in pieces:
        total += len(piece) if piece.isascii() else text_size(piece)
        if total > limit:
            guard.check(total, "the template's text")
        parts.append(piece)
    return "".join(parts)


class _Ticking:
    """The sequence a `{% for %}` loop walks, counting each step towards the template's time."""

    __slots__ = ("_sequence", "_iterator", "_guard")

    def __init__(self, sequence: Any, guard: Guard) -> None:
        self._sequence = sequence
        self._iterator = iter(sequence)
        self._guard = guard

    def __iter__(self) -> _Ticking:
        return self

    def __next__(self) -> Any:
        self._guard.tick()
        return next(self._iterator)

    def __len__(self) -> int:  # `loop.length` without copying the sequence
        return len(self._sequence)


class _CodeGenerator(CodeGenerator):
    """Jinja's, except that loops walk `environment.iterate(...)` and `~` is
    `environment.join_texts(...)` (in the sandbox, other operators have hooks already)."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        ticking = copy.copy(node)
        ticking.iter = nodes.Call(nodes.EnvironmentAttribute("iterate"), [node.iter], [], None, None)
        ticking.iter.set_lineno(node.lineno)
        super().visit_For(ticking, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.join_texts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _operator_size(operator: str, left: Any, right: Any, budget: int) -> int | None:
    if operator == "**":
        return power_size(left, right)
    if operator == "*":
        return product_size(left, right, budget)
    if operator == "+":
        return sum_size(left, right)
    return printf_size(left, right, budget)  # %


class AttuneEnvironment(SandboxedEnvironment):
    """The one template environment of the project (see docs/language.md)."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)
    intercepted_binops = frozenset({"*", "**", "+", "%"})  # never folded at compile time either

    def __init__(self, **options: Any) -> None:
        options.setdefault("undefined", _AttuneUndefined)
        options.setdefault("finalize", _finalize)
        options.setdefault("autoescape", False)
        options.setdefault("keep_trailing_newline", True)  # a string keeps its last newline, as in Airflow
        super().__init__(**options)
        self.filters.update(BOUNDED_FILTERS)
        self.filters.update(_FILTERS)
        self.globals["lipsum"] = lipsum

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """`*`, `**`, `+` and `%`, refused before they are computed when they would make
        more than the limit."""
        guard = active_guard()
        guard.tick()
        what = f"{type(left).__name__} {operator} {type(right).__name__}"
        guard.check(_operator_size(operator, left, right, guard.max_bytes), what)
        result = self.binop_table[operator](left, right)
        if operator == "%" and isinstance(result, str):
            guard.check(text_size(result), what)
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """Every call counts towards the template's time; a method of a string or a list
        that could make a huge value (`center`, `replace`, `join`, `format`, `extend`, ...)
        is refused first when it would make more than the limit."""
        guard = active_guard()
        guard.tick()
        method = bound_method(__obj)
        if method is not None:
            owner, name = method
            args = prepare_method_args(owner, name, args)
            size = method_size(owner, name, args, kwargs, guard.max_bytes, guard.list_sizes)
            kind = owner.__name__ if isinstance(owner, type) else type(owner).__name__
            guard.check(size, f"{kind}.{name}()")
        return super().call(__context, __obj, *args, **kwargs)

    def iterate(self, sequence: Any) -> _Ticking:
        """What a `{% for %}` loop walks (see `_CodeGenerator`)."""
        return _Ticking(sequence, active_guard())

    def join_texts(self, parts: Iterable[Any]) -> str:
        """`a ~ b ~ c`: each part as text, refused once the whole passes the limit."""
        guard = active_guard()
        texts: list[str] = []
        total = 0
        for part in parts:
            text = part if isinstance(part, str) else as_text(part, "the operator '~'")
            total += text_size(text)
            guard.check(total, "the operator '~'")
            texts.append(text)
        return "".join(texts)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """Mapping keys win over methods: `parameters.items` is the parameter `items`.

        `_` names raise instead of the sandbox's silent undefined, as the validator reports
        them; a lookup on None (like any failed lookup) gives an undefined.
        """
        active_guard().tick()
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
        active_guard().tick()
        if isinstance(argument, str) and argument.startswith("_"):
            raise _unsafe(argument)
        return super().getitem(obj, argument)


# --- extra filters -------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None or isinstance(value, jinja2.Undefined) else as_text(value, "printing a value")


def _json_default(value: Any) -> Any:
    if isinstance(value, jinja2.Undefined):
        return None
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _to_json(value: Any) -> str:
    active_guard().check(json_size(value, active_guard().max_bytes), "the filter 'to_json'")
    return json.dumps(value, sort_keys=False, ensure_ascii=False, default=_json_default)


def _from_json(value: Any) -> Any:
    """A missing value (a task that did not run) parses to null instead of failing."""
    if value is None or isinstance(value, jinja2.Undefined):
        return None
    return json.loads(value)


def _joined(first: Any, second: Any, name: str) -> str:
    texts = [_text(first), _text(second)]
    active_guard().check(text_size(texts[0]) + text_size(texts[1]), f"the filter {name!r}")
    return "".join(texts)


def _append(value: Any, suffix: Any) -> str:
    return _joined(value, suffix, "append")


def _prepend(value: Any, prefix: Any) -> str:
    return _joined(prefix, value, "prepend")


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


def plain_data(value: Any) -> Any:
    """Missing values never leave this module: they become None, also inside containers;
    scopes read lazily (any Mapping) leave it as plain dicts. A template's value is data:
    a method where a key was missing (`d.items`) is None; a tuple, a lazy sequence
    (`range(3)`, `map(...)` without `| list`) or a dict view (`d.items()`) its list."""
    if isinstance(value, jinja2.Undefined) or callable(value):
        return None
    if isinstance(value, (list, tuple, *_LAZY_SEQUENCES)):
        return [plain_data(item) for item in value]
    if isinstance(value, Mapping):
        return {key: plain_data(item) for key, item in value.items()}
    return value
