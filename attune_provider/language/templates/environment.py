"""The one sandboxed Jinja environment of the language (docs/language.md, Templates).

Missing values are chainable undefineds (`task.x.result.y` of a task that did not run is
null), mapping keys win over methods, `_` names are refused, and a few filters are added
(`to_json`, `from_json`, `append`, `prepend`, `filter`, `batch`). No Airflow import.
"""

from __future__ import annotations

import json
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment, SecurityError

from attune_provider.exceptions import AttuneError

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
    if value is None or isinstance(value, jinja2.Undefined):
        return ""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        return plain_data(value)
    if callable(value):
        return ""
    if isinstance(value, _LAZY_SEQUENCES):
        return plain_data(value)
    return value


def _unsafe(name: str) -> SecurityError:
    return SecurityError(f"access to attribute {name!r} is unsafe")


class AttuneEnvironment(SandboxedEnvironment):
    """The one template environment of the project (see docs/language.md)."""

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
