"""Jinja's own filters as the language has them (docs/language.md, Templates).

`default` (and `d`) replaces null as well as a missing value. The filters that can make a
large string or list from a small template (`center`, `indent`, `replace`, `format`,
`wordwrap`, `join`, `sum`, `slice`, `tojson`, `string`, `pprint`, `list`, ...) work out
what they would make first (sizes.py) and refuse past `[attune] max_template_result_bytes`;
the others are Jinja's. No Airflow import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jinja2
from jinja2 import filters as jinja_filters
from jinja2.utils import generate_lorem_ipsum, pass_environment, pass_eval_context

from attune_provider.language.templates.limits import active_guard
from attune_provider.language.templates.sizes import (
    WORD,
    deep_size,
    is_int,
    join_size,
    json_size,
    printf_size,
    replace_size,
    text_size,
)

_CONTAINERS = (list, tuple, set, frozenset, Mapping)


def _check(size: int | None, name: str) -> None:
    active_guard().check(size, f"the filter {name!r}")


def _budget() -> int:
    return active_guard().max_bytes


def as_text(value: Any, what: str) -> str:
    """`str(value)`, refused first when a list or mapping would print past the limit."""
    if isinstance(value, _CONTAINERS):
        active_guard().check(deep_size(value, _budget()), what)
    return str(value)


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """`default_value` where `value` is missing or null (or, with `boolean`, any false value)."""
    if value is None or isinstance(value, jinja2.Undefined) or (boolean and not value):
        return default_value
    return value


def center(value: Any, width: int = 80) -> str:
    text = as_text(value, "the filter 'center'")
    _check(max(text_size(text), width if is_int(width) else 0), "center")
    return jinja_filters.do_center(text, width)


def indent(value: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = value if isinstance(value, str) else as_text(value, "the filter 'indent'")
    step = len(width) if isinstance(width, str) else width if is_int(width) else 0
    _check(text_size(text) + (text.count("\n") + 2) * max(0, step), "indent")
    return jinja_filters.do_indent(text, width, first, blank)


@pass_eval_context
def replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: int | None = None) -> str:
    text = as_text(value, "the filter 'replace'")
    _check(replace_size(text, (str(old), str(new), -1 if count is None else count)), "replace")
    return jinja_filters.do_replace(eval_ctx, text, old, new, count)


def format_(value: Any, *args: Any, **kwargs: Any) -> str:
    text = as_text(value, "the filter 'format'")
    _check(printf_size(text, kwargs or args, _budget()), "format")
    result = jinja_filters.do_format(text, *args, **kwargs)
    _check(text_size(result), "format")
    return result


@pass_environment
def wordwrap(
    environment: Any,
    value: Any,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: str | None = None,
    break_on_hyphens: bool = True,
) -> str:
    text = as_text(value, "the filter 'wordwrap'")
    wrap = wrapstring if wrapstring is not None else environment.newline_sequence
    lines = text_size(text) // max(1, width if is_int(width) else 1) + len(text.split()) + 1
    _check(text_size(text) + lines * text_size(str(wrap)), "wordwrap")
    return jinja_filters.do_wordwrap(environment, text, width, break_long_words, wrapstring, break_on_hyphens)


def _picked(environment: Any, value: Any, attribute: Any) -> list[Any]:
    """The elements of `value` (a missing value has none), or the given attribute of each."""
    items = list(value)
    if attribute is None:
        return items
    return list(map(jinja_filters.make_attrgetter(environment, attribute), items))


@pass_eval_context
def join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> str:
    parts = _picked(eval_ctx.environment, value, attribute)
    _check(join_size(str(d), parts, _budget()), "join")
    return jinja_filters.sync_do_join(eval_ctx, parts, d)


def _sequences_sum(start: list[Any] | tuple[Any, ...], parts: list[Any]) -> Any:
    """sum() of lists (or tuples) in one pass: Python's own copies the total at each step."""
    _check(WORD * (len(start) + sum(len(part) for part in parts)), "sum")
    total = list(start)
    guard = active_guard()
    for part in parts:
        guard.tick()
        total.extend(part)
    return total if isinstance(start, list) else tuple(total)


@pass_environment
def sum_(environment: Any, value: Any, attribute: Any = None, start: Any = 0) -> Any:
    parts = _picked(environment, value, attribute)
    if isinstance(start, (list, tuple)) and all(isinstance(part, type(start)) for part in parts):
        return _sequences_sum(start, parts)
    return jinja_filters.sync_do_sum(environment, parts, start=start)


def slice_(value: Any, slices: int, fill_with: Any = None) -> Any:
    items = list(value)
    _check(WORD * (2 * (slices if is_int(slices) else 0) + len(items)), "slice")
    return jinja_filters.sync_do_slice(items, slices, fill_with)


@pass_eval_context
def tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
    _check(json_size(value, _budget(), indent), "tojson")
    return jinja_filters.do_tojson(eval_ctx, value, indent)


def string(value: Any) -> str:
    return as_text(value, "the filter 'string'")


def pprint(value: Any) -> str:
    _check(json_size(value, _budget(), 1), "pprint")
    return jinja_filters.do_pprint(value)


def list_(value: Any) -> list[Any]:
    """The elements as a list, refused when they pass the limit together (`map` makes each
    one within it, the list holds them all)."""
    result = list(value)
    budget, total = _budget(), WORD * len(result)
    for item in result:  # a number or a boolean is its word; text and containers are more
        if total > budget:
            break
        if not isinstance(item, (int, float, bool)) and item is not None:
            total += deep_size(item, budget)
    _check(total, "list")
    return result


def _text_checked(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose text grows by a small factor (escaping): its result checked."""

    @functools.wraps(original)  # keeps Jinja's pass_eval_context / pass_environment marks
    def checked(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if isinstance(result, str):
            _check(text_size(result), name)
        return result

    return checked


def _input_checked(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """A filter that turns its input into text first (`upper` of a list prints the list):
    that text refused first when it would pass the limit."""

    @functools.wraps(original)
    def checked(value: Any, *args: Any, **kwargs: Any) -> Any:
        as_text(value, f"the filter '{name}'")
        return original(value, *args, **kwargs)

    return checked


def lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    """Jinja's `lipsum()`, refused when it would write more than the limit."""
    words = (n if is_int(n) else 0) * (max if is_int(max) else 0)
    active_guard().check(words * 16, "lipsum()")
    return str(generate_lorem_ipsum(n, html, min, max))


_GROWING = ("e", "escape", "forceescape", "urlencode", "urlize", "xmlattr", "truncate")
# Jinja's filters that take any value as text (str() of a list or mapping) and keep its size
_AS_TEXT = ("upper", "lower", "capitalize", "title", "trim", "striptags", "safe", "wordcount")

BOUNDED_FILTERS: dict[str, Callable[..., Any]] = {
    "default": default,
    "d": default,
    "center": center,
    "indent": indent,
    "replace": replace,
    "format": format_,
    "wordwrap": wordwrap,
    "join": join,
    "sum": sum_,
    "slice": slice_,
    "tojson": tojson,
    "string": string,
    "pprint": pprint,
    "list": list_,
    **{name: _text_checked(name, jinja_filters.FILTERS[name]) for name in _GROWING},
    **{name: _input_checked(name, jinja_filters.FILTERS[name]) for name in _AS_TEXT},
}
