"""What an operation of a template would make, worked out before it is made (limits.py).

Sizes are bytes as the value would be written out: a string its UTF-8 length, an integer
its bytes, any other scalar 8, a list, tuple or mapping 8 per element plus its elements
(a list that appears twice inside a value counts twice, as it would be written twice,
though it is walked once). Estimates are upper bounds within a small factor: enough to
refuse `'ab' * 4000000000` or `10 ** (10 ** 10)` in a few microseconds instead of
failing for want of memory minutes later. No Airflow import.
"""

from __future__ import annotations

import math
import re
import string
import types
from collections.abc import Iterable, Mapping, Sequence, Sized
from typing import Any

WORD = 8  # a pointer, a float, a small number
_CONTAINERS = (list, tuple, set, frozenset, Mapping)
_SCALARS = frozenset({bool, float, type(None)})  # ints are their bytes (at least 8)
_HUGE = 2**62  # stands for any count too large to matter (keeps float arithmetic finite)


def is_int(value: Any) -> bool:
    return isinstance(value, int)  # bool too: True * 'x' is 'x'


def int_bytes(value: int) -> int:
    return (value.bit_length() + 7) // 8


def text_size(text: str | bytes, budget: int | None = None) -> int:
    """UTF-8 bytes of a text (its length when that is over `budget` already: no encoding)."""
    if isinstance(text, bytes) or text.isascii():
        return len(text)
    if budget is not None and len(text) > budget:
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


class _Sizer:
    """Walks a value once (containers met again count their known size without a walk),
    stopping as soon as the total is over the budget."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.text_budget = int(min(budget, _HUGE))
        self.known: dict[int, int] = {}
        self.open: set[int] = set()
        self.shared = False
        self.depth = 0

    def size(self, value: Any, depth: int = 1) -> int:
        kind = type(value)
        if kind is str:
            return len(value) if value.isascii() else text_size(value, self.text_budget)
        if kind in _SCALARS:
            return WORD
        if kind is dict or kind is list or kind is tuple:
            return self._container(value, depth)
        return self._other(value, depth)

    def _other(self, value: Any, depth: int) -> int:
        if isinstance(value, (str, bytes)):
            return text_size(value, self.text_budget)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(WORD, int_bytes(value))
        if isinstance(value, range):
            return WORD * len(value)
        if isinstance(value, _CONTAINERS):
            return self._container(value, depth)
        return WORD

    def _container(self, value: Any, depth: int) -> int:
        key = id(value)
        if key in self.known:
            self.shared = True
            return self.known[key]
        if key in self.open:  # a list inside itself prints as [...]
            return WORD
        if depth > self.depth:
            self.depth = depth
        self.open.add(key)
        try:
            total = self._pairs(value, depth) if isinstance(value, Mapping) else self._items(value, depth)
        finally:
            self.open.discard(key)
        if total <= self.budget:
            self.known[key] = total
        return total

    def _items(self, value: Any, depth: int) -> int:
        total = WORD * len(value)
        size, budget = self.size, self.budget
        for item in value:
            if total > budget:
                break
            total += size(item, depth + 1)
        return total

    def _pairs(self, value: Mapping[Any, Any], depth: int) -> int:
        total = WORD * len(value)
        size, budget = self.size, self.budget
        for key, item in value.items():
            if total > budget:
                break
            total += size(key, depth + 1) + size(item, depth + 1)
        return total


def deep_size(value: Any, budget: float) -> int:
    """`value`'s size written out; as soon as it is known to be over `budget`, some number
    over it (the walk stops there)."""
    return _Sizer(budget).size(value)


def json_size(value: Any, budget: float, indent: Any = None) -> int:
    """An upper bound of `value`'s JSON text, each element on its own indented line when
    `indent` is given (a number of spaces or a string)."""
    sizer = _Sizer(budget)
    size = sizer.size(value)
    if indent is None or size > budget:
        return size
    width = len(indent) if isinstance(indent, str) else max(0, min(int(indent), _HUGE))
    return size + (size // WORD + 1) * (1 + width * sizer.depth)


def repeated_size(value: Any, limit: int) -> int | None:
    """The size of a value that holds the same list or mapping more than once (something
    only a template makes: data read from JSON never does), when that is over `limit`;
    None for any other value. Walks each container once."""
    sizer = _Sizer(float("inf"))
    size = sizer.size(value)
    return size if sizer.shared and size > limit else None


# --- operators -------------------------------------------------------------------------


def power_size(base: Any, exponent: Any) -> int | None:
    """int ** int: exponent * log2(base) bits (other operands are floats or fail fast)."""
    if not (is_int(base) and is_int(exponent)) or exponent < 0 or abs(base) <= 1:
        return None
    bits = min(exponent, _HUGE) * math.log2(abs(base))
    return int(bits // 8) + 1


def _repeated(sequence: Any, times: int, budget: int) -> int | None:
    if not isinstance(sequence, (str, bytes, list, tuple)):
        return None
    if times <= 0:
        return 0
    if isinstance(sequence, (str, bytes)):
        return text_size(sequence) * times
    return deep_size(sequence, budget) * times


def product_size(left: Any, right: Any, budget: int) -> int | None:
    """int * int, or a string, list or tuple repeated."""
    if is_int(left) and is_int(right):
        return int_bytes(left) + int_bytes(right)
    if is_int(right):
        return _repeated(left, right, budget)
    if is_int(left):
        return _repeated(right, left, budget)
    return None


def sum_size(left: Any, right: Any) -> int | None:
    """Two strings, lists or tuples put end to end (the lists' elements are shared)."""
    if isinstance(left, (str, bytes)) and isinstance(right, type(left)):
        return text_size(left) + text_size(right)
    if isinstance(left, (list, tuple)) and isinstance(right, type(left)):
        return WORD * (len(left) + len(right))
    return None


# --- string formatting -------------------------------------------------------------------

_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[-#0 +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<type>.)?",
    re.DOTALL,
)
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[-+ ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?")
_MAX_DIGITS = 18


def _number(digits: str | None) -> int:
    if not digits:
        return 0
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def _star(values: Sequence[Any], position: int) -> int:
    """A `*` width or precision: taken from the next argument."""
    value = values[position] if position < len(values) else 0
    return abs(value) if is_int(value) else 0


def printf_size(template: Any, args: Any, budget: int) -> int | None:
    """`template % args` (and Jinja's `format` filter): the template, every field's width
    and precision, every argument it prints (of `bytes % ...` too)."""
    if isinstance(template, bytes):
        template = template.decode("latin-1")  # one character per byte: the same fields
    if not isinstance(template, str):
        return None
    values: Sequence[Any] = args if isinstance(args, tuple) else (args,)
    total, position = len(template), 0
    for spec in _PRINTF.finditer(template):
        if spec["type"] == "%" or total > budget:
            continue
        for part in ("width", "precision"):
            if spec[part] == "*":
                total, position = total + _star(values, position), position + 1
            else:
                total += _number(spec[part])
        if spec["key"] is not None and isinstance(args, Mapping):
            total += deep_size(args.get(spec["key"]), budget)
        else:
            total += deep_size(values[position] if position < len(values) else None, budget)
            position += 1
    return total


def _field_value(field: str, args: Sequence[Any], kwargs: Mapping[str, Any], auto: int) -> tuple[Any, int]:
    """The argument a `{field}` prints (the whole of it for `{0.name}` or `{0[key]}`)."""
    name = re.match(r"[^.\[]*", field).group()  # type: ignore[union-attr]
    if name == "":
        return (args[auto] if auto < len(args) else None), auto + 1
    if name.isdigit():
        index = _number(name)
        return (args[index] if index < len(args) else None), auto
    return kwargs.get(name), auto


def _spec_size(spec: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    if "{" in spec:  # nested fields ({:{width}}): any number given may be the width
        numbers = [abs(v) for v in (*args, *kwargs.values()) if is_int(v)]
        return max(numbers, default=0) * 2 + len(spec)
    match = _FORMAT_SPEC.match(spec)
    if match is None:
        return 0
    return _number(match["width"]) + _number(match["precision"])


def format_size(template: str, args: Sequence[Any], kwargs: Mapping[str, Any], budget: int) -> int | None:
    """`template.format(*args, **kwargs)`: the template, every field's width and precision,
    every argument it prints (None when the template is invalid: the call will say so)."""
    try:
        fields = list(string.Formatter().parse(template))
    except ValueError:
        return None
    total, auto = len(template), 0
    for _, field, spec, _ in fields:
        if field is None or total > budget:
            continue
        value, auto = _field_value(field, args, kwargs, auto)
        total += _spec_size(spec or "", args, kwargs) + deep_size(value, budget)
    return total


# --- methods of strings and lists ---------------------------------------------------------

_PADDING = frozenset({"center", "ljust", "rjust", "zfill"})


def replace_size(text: Any, args: Sequence[Any]) -> int | None:
    if len(args) < 2 or not isinstance(args[0], type(text)) or not isinstance(args[1], type(text)):
        return None
    old, new = args[0], args[1]
    found = len(text) + 1 if not old else text.count(old)
    if len(args) > 2 and is_int(args[2]) and args[2] >= 0:
        found = min(found, args[2])
    return text_size(text) + found * max(0, text_size(new) - text_size(old))


def join_size(separator: str | bytes, parts: list[Any], budget: int) -> int:
    """`separator.join(parts)` (a part that is not text: its size printed)."""
    sizer = _Sizer(budget)
    total = text_size(separator) * max(0, len(parts) - 1)
    for part in parts:
        if total > budget:
            break
        total += sizer.size(part)
    return total


def _translate_size(text: str, table: Any) -> int | None:
    if not isinstance(table, Mapping):
        return None
    longest = max((text_size(v) for v in table.values() if isinstance(v, str)), default=1)
    return text_size(text) * max(1, longest)


def _text_method_size(text: Any, name: str, args: Sequence[Any], budget: int) -> int | None:
    if name in _PADDING:
        width = args[0] if args and is_int(args[0]) else 0
        return max(text_size(text), width)
    if name == "expandtabs":
        tab = args[0] if args and is_int(args[0]) else 8
        return text_size(text) + text.count("\t" if isinstance(text, str) else b"\t") * max(0, tab)
    if name == "replace":
        return replace_size(text, args)
    if name == "join" and args and isinstance(args[0], list):
        return join_size(text, args[0], budget)
    if name == "translate" and isinstance(text, str) and args:
        return _translate_size(text, args[0])
    return None


def _list_method_size(
    items: list[Any], name: str, args: Sequence[Any], budget: int, known: dict[int, tuple[int, int]]
) -> int | None:
    """The list's whole size after `append`/`insert`/`extend`: what it holds already and what
    is added (a list grown in a loop by big values is refused). `known`: sizes of lists
    worked out before in this template (id -> (length, size)), so that growing a list
    costs the size of what is added, not a walk of the list each time."""
    if name not in ("append", "insert", "extend"):
        return None
    added = args[-1:] if name != "extend" else (args[0] if args and isinstance(args[0], Sequence) else None)
    if added is None:
        return None
    length, size = known.get(id(items), (-1, 0))
    if length != len(items):
        size = deep_size(items, budget)
    total = size + WORD * len(added) + sum(deep_size(item, budget) for item in added)
    known[id(items)] = (len(items) + len(added), total)
    return total


def _fromkeys_size(args: Sequence[Any], budget: int) -> int | None:
    """`dict.fromkeys(keys, value)`: every key, each with the same value written out."""
    keys = args[0] if args else ()
    if not isinstance(keys, Sized):
        return None
    value = deep_size(args[1], budget) if len(args) > 1 else WORD
    return len(keys) * (2 * WORD + value)


def bound_method(obj: Any) -> tuple[Any, str] | None:
    """(the object, the method's name) of a method of a builtin type (also of the sandbox's
    wrapper of `str.format`)."""
    if isinstance(obj, types.FunctionType):
        obj = getattr(obj, "__wrapped__", None)
    if isinstance(obj, types.BuiltinMethodType) and obj.__self__ is not None:
        return obj.__self__, obj.__name__
    return None


def prepare_method_args(owner: Any, name: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """`str.join` and `list.extend` of an iterator: the iterator read into a list first, so
    that its size can be known before the call (which then gets the list)."""
    if name == "fromkeys" and args and (owner is dict or isinstance(owner, dict)):
        first = args[0]
        if isinstance(first, Iterable) and not isinstance(first, Sized):
            return (list(first), *args[1:])
    if name in ("join", "extend") and args and isinstance(owner, (str, bytes, list)):
        first = args[0]
        if isinstance(first, Iterable) and not isinstance(first, (list, tuple, str, bytes, Mapping)):
            return (list(first), *args[1:])
    return args


def method_size(
    owner: Any,
    name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    budget: int,
    known: dict[int, tuple[int, int]] | None = None,
) -> int | None:
    """What calling `owner.name(*args, **kwargs)` would make, when it could be large."""
    if name == "fromkeys" and (owner is dict or isinstance(owner, dict)):
        return _fromkeys_size(args, budget)
    if name == "to_bytes" and is_int(owner):
        length = args[0] if args else kwargs.get("length", 1)
        return length if is_int(length) else None
    if isinstance(owner, (str, bytes)):
        if name == "format" and isinstance(owner, str):
            return format_size(owner, args, kwargs, budget)
        if name == "format_map" and isinstance(owner, str) and args and isinstance(args[0], Mapping):
            return format_size(owner, (), args[0], budget)
        return _text_method_size(owner, name, args, budget)
    if isinstance(owner, list):
        return _list_method_size(owner, name, args, budget, {} if known is None else known)
    return None
