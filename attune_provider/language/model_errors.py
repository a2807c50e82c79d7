"""Model errors as users read them: pydantic's validation errors turned into Problems at
the line and column of the YAML value, with suggestions for misspelt keys."""

from collections.abc import Iterable
from typing import Any

import pydantic
from pydantic import BaseModel

from attune_provider.language import problem_codes as codes
from attune_provider.language.models import DecisionBranch, ItemError, Node, Retry, Task
from attune_provider.language.source import Location, Problem, key_location, locate


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_for_path(root: type[BaseModel], path: tuple[Any, ...]) -> type[BaseModel]:
    """Which model class an error path ends in (to suggest its field names)."""
    model = root
    for step in path[:-1]:
        field = model.model_fields.get(step) if isinstance(step, str) else None
        if field is None:
            continue
        for candidate in (Task, Retry, DecisionBranch):
            if candidate.__name__ in repr(field.annotation):
                model = candidate
                break
    return model


def _data_path(data: Any, loc: tuple[Any, ...], keep_last: bool) -> list[Any]:
    """The steps of a pydantic error path that exist in the data (drops union-member tags)."""
    path: list[Any] = []
    node = data
    for index, step in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, (dict, list)) and not isinstance(step, bool):
            try:
                node = node[step]
                path.append(step)
                continue
            except (KeyError, IndexError, TypeError):
                pass
        if last and keep_last:
            path.append(step)
    return path


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest option, or an empty string."""
    import difflib  # only when suggesting a name: a parse without errors does not pay for it

    close = difflib.get_close_matches(word, sorted(set(options)), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _describe(error: Any, path: list[Any], root: type[BaseModel]) -> str:
    dotted = ".".join(str(p) for p in path) or "document"
    if error["type"] == "extra_forbidden":
        key = str(path[-1])
        options = _field_names(_model_for_path(root, tuple(path)))
        return f"unknown key '{key}'{did_you_mean(key, options)}"
    if error["type"] == "missing":
        return f"missing required key '{dotted}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    message = message.replace("a valid tuple", "a list").replace("Tuple should", "The list should")
    if error["loc"][-1:] == ("[key]",) and isinstance(error.get("input"), bool):
        message += " (YAML reads this key as true/false, like on/off/yes/no: quote it)"
    return f"invalid value for '{dotted}': {message}"


_CODES = {"extra_forbidden": codes.UNKNOWN_KEY, "missing": codes.MISSING_KEY}  # else INVALID_VALUE


def _kind(data: Any) -> str:
    """How a YAML value is called in messages."""
    if data is None:
        return "an empty file"
    for types, name in (
        (list, "a list"),
        (str, "a string"),
        (bool, "true/false"),
        ((int, float), "a number"),
    ):
        if isinstance(data, types):
            return name
    return type(data).__name__


def _error_locations(data: Any, error: Any, path: list[Any], fallback: Location) -> list[Location]:
    """Where a pydantic error is written: one place, or each item an `ItemError` names."""
    if error["type"] in ("extra_forbidden", "missing") and path:
        parent: Any = data
        for step in path[:-1]:
            parent = parent[step]
        if error["type"] == "missing":
            return [getattr(parent, "loc", fallback)]
        return [key_location(parent, path[-1], locate(data, path[:-1], fallback))]
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, ItemError):
        return [locate(data, [*path, index], fallback) for index in cause.indexes]
    return [locate(data, path, fallback)]


def parse_model(cls: type[Node], data: Any, fallback: Location) -> tuple[Any, list[Problem]]:
    """Build `cls` from YAML data, or return every problem with its file position."""
    if not isinstance(data, dict):
        where = getattr(data, "loc", fallback)
        message = f"expected a mapping at the top of the file, found {_kind(data)}"
        return None, [Problem(where, message, code=codes.NOT_A_MAPPING)]
    try:
        return cls.model_validate(data), []
    except pydantic.ValidationError as exc:
        problems: dict[Location, Problem] = {}
        errors = exc.errors()
        deeper = {tuple(e["loc"][:i]) for e in errors for i in range(len(e["loc"]))}
        for error in errors:
            if error["type"] == "too_short" and tuple(error["loc"]) in deeper:
                continue  # pydantic's follow-up to a failed item, not a problem of its own
            keep_last = error["type"] in ("extra_forbidden", "missing")
            path = _data_path(data, tuple(error["loc"]), keep_last)
            for where in _error_locations(data, error, path, fallback):
                code = _CODES.get(error["type"], codes.INVALID_VALUE)
                problems.setdefault(where, Problem(where, _describe(error, path, cls), code=code))
        return None, sorted(problems.values(), key=lambda p: p.location)
