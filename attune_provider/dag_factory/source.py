"""Safe YAML loading that remembers where every value came from.

Every error a user can cause must name a file, line and column, so the loader keeps the
position of every mapping key, mapping value and list item next to the plain data
(`MarkedDict` / `MarkedList`). Only PyYAML's safe constructors are used: no arbitrary tags.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

try:  # the C-accelerated parser when libyaml is present: several times faster
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

DEFAULT_MAX_FILE_BYTES = 1024 * 1024


class Location(NamedTuple):
    """A 1-based position in a source file."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


class Problem(NamedTuple):
    """One finding of the loader or validator, printed like a compiler diagnostic."""

    location: Location
    message: str
    severity: Severity = Severity.ERROR

    def format(self) -> str:
        """One line, always: a line break inside a message (from a name in the YAML) is
        shown escaped, as tools reading `FILE:LINE:COL: ...` lines rely on one per problem."""
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.location}: {self.severity.value}: {message}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class MarkedDict(dict[Any, Any]):
    """A mapping from YAML with the positions of its keys and values."""

    loc: Location
    key_locs: dict[Hashable, Location]
    value_locs: dict[Hashable, Location]


class MarkedList(list[Any]):
    """A sequence from YAML with the positions of its items."""

    loc: Location
    item_locs: list[Location]


def _loc(file: str, node: yaml.Node) -> Location:
    return Location(file, node.start_mark.line + 1, node.start_mark.column + 1)


class _MarkingLoader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Safe loader whose mappings and sequences carry their source positions."""

    display_name = "<string>"

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[Problem] = []

    def construct_yaml_map(self, node: yaml.MappingNode) -> Any:
        data = MarkedDict()
        data.loc = _loc(self.display_name, node)
        data.key_locs, data.value_locs = {}, {}
        yield data
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable mapping key", key_node.start_mark
                )
            if key in data.key_locs:
                self.duplicates.append(
                    Problem(_loc(self.display_name, key_node), f"duplicate key '{key}' in mapping")
                )
            data[key] = self.construct_object(value_node, deep=True)
            data.key_locs[key] = _loc(self.display_name, key_node)
            data.value_locs[key] = _loc(self.display_name, value_node)

    def construct_yaml_seq(self, node: yaml.SequenceNode) -> Any:
        data = MarkedList()
        data.loc = _loc(self.display_name, node)
        data.item_locs = [_loc(self.display_name, item) for item in node.value]
        yield data
        data.extend(self.construct_object(item, deep=True) for item in node.value)


_MarkingLoader.add_constructor("tag:yaml.org,2002:map", _MarkingLoader.construct_yaml_map)
_MarkingLoader.add_constructor("tag:yaml.org,2002:seq", _MarkingLoader.construct_yaml_seq)


MAX_DEPTH = 200  # nesting of YAML collections; deeper is refused (and would recurse too deep)


class _TooDeep(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int, depth: int = 0) -> int:
    """Size of the document once aliases are expanded, stopping early past `limit`."""
    key = id(node)
    if key in memo:
        return memo[key]
    if depth > MAX_DEPTH:
        raise _TooDeep(node)
    memo[key] = limit + 1  # a recursive alias counts as too large
    if isinstance(node, yaml.ScalarNode):
        size = len(str(node.value)) + 2
    else:
        size = 2
        children: Sequence[Any] = node.value
        for child in children:
            parts = child if isinstance(child, tuple) else (child,)
            for part in parts:
                size += _expanded_size(part, memo, limit, depth + 1)
                if size > limit:
                    break
    memo[key] = size
    return size


class LoadedYaml(NamedTuple):
    """The result of reading one YAML file: its data, or the problems that stopped it."""

    data: Any
    problems: list[Problem]


def load_yaml_text(text: str, display_name: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedYaml:
    """Parse one YAML document; never raises for bad input, returns problems instead."""
    start = Location(display_name)
    if len(text.encode("utf-8", errors="replace")) > max_bytes:
        return LoadedYaml(None, [Problem(start, f"file is larger than the limit of {max_bytes} bytes")])
    loader = _MarkingLoader(text)
    loader.display_name = display_name
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(None, [])
        if _expanded_size(node, {}, max_bytes) > max_bytes:
            message = f"document expands past the limit of {max_bytes} bytes (aliases)"
            return LoadedYaml(None, [Problem(start, message)])
        data = loader.construct_document(node)
    except _TooDeep as exc:
        mark = exc.node.start_mark
        message = f"the document nests collections more than {MAX_DEPTH} levels deep"
        return LoadedYaml(None, [Problem(Location(display_name, mark.line + 1, mark.column + 1), message)])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(display_name, mark.line + 1, mark.column + 1) if mark else start
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return LoadedYaml(None, [Problem(where, f"invalid YAML: {what}")])
    except yaml.YAMLError as exc:
        return LoadedYaml(None, [Problem(start, f"invalid YAML: {exc}")])
    finally:
        loader.dispose()
    return LoadedYaml(data, list(loader.duplicates))


def load_yaml_file(path: Path, display_name: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedYaml:
    """Read and parse a YAML file, refusing files over `max_bytes` before reading them."""
    start = Location(display_name)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return LoadedYaml(None, [Problem(start, f"file is larger than the limit of {max_bytes} bytes")])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return LoadedYaml(None, [Problem(start, f"cannot read file: {exc}")])
    return load_yaml_text(text, display_name, max_bytes)


def locate(root: Any, path: Sequence[Any], fallback: Location) -> Location:
    """Position of the value at `path` (keys and indexes) below `root`, as close as known.

    Used to turn a pydantic error path or a template path into a file position: walks
    down as far as the path goes and returns the deepest known position.
    """
    best = getattr(root, "loc", fallback)
    node = root
    for step in path:
        if isinstance(node, MarkedDict) and step in node:
            best = node.value_locs.get(step, best)
            node = node[step]
        elif isinstance(node, MarkedList) and isinstance(step, int) and 0 <= step < len(node):
            best = node.item_locs[step]
            node = node[step]
        else:
            break
    return best


def key_location(mapping: Any, key: Any, fallback: Location) -> Location:
    """Position of a key in a mapping (for errors about the key itself)."""
    if isinstance(mapping, MarkedDict):
        return mapping.key_locs.get(key, mapping.loc)
    return fallback
