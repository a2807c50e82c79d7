"""Safe YAML loading that remembers where every value came from.

Every error a user can cause must name a file, line and column, so the loader keeps the
position of every mapping key, mapping value and list item next to the plain data
(`MarkedDict` / `MarkedList`). Only PyYAML's safe constructors are used: no arbitrary tags.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from attune_provider.language import problem_codes as codes

try:  # the C-accelerated parser when libyaml is present: several times faster
    from yaml import CSafeLoader as _BaseLoader

    _BYTE_POSITIONS = True  # libyaml reads UTF-8: its reader errors give byte offsets
except ImportError:  # pragma: no cover - depends on the PyYAML build
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

    _BYTE_POSITIONS = False

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
    """One finding of the loader or validator, printed like a compiler diagnostic.

    `code` is the stable code of the check that found it (language/problem_codes.py); the
    text format does not show it, `validate --format json|sarif` do."""

    location: Location
    message: str
    severity: Severity = Severity.ERROR
    code: str = codes.UNCLASSIFIED

    def format(self) -> str:
        """One line, always: a line break inside a message (from a name in the YAML) is
        shown escaped, as tools reading `FILE:LINE:COL: ...` lines rely on one per problem."""
        message = self.message.replace("\r", "\\r").replace("\n", "\\n")
        return f"{self.location}: {self.severity.value}: {message}"

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


def coded(code: str, problems: Iterable[Problem]) -> list[Problem]:
    """The problems, those without a code yet given `code`: what a check returns is given
    its code where the check is called, and a code set where a problem is made is kept."""
    return [p._replace(code=code) if p.code == codes.UNCLASSIFIED else p for p in problems]


class MarkedDict(dict[Any, Any]):
    """A mapping from YAML with the positions of its keys and values."""

    loc: Location
    key_locs: dict[Hashable, Location]
    value_locs: dict[Hashable, Location]


class MarkedList(list[Any]):
    """A sequence from YAML with the positions of its items."""

    loc: Location
    item_locs: list[Location]


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """PyYAML's safe loader (C parser when present); `_Builder` turns its nodes into data."""


MAX_DEPTH = 200  # nesting of YAML collections; deeper is refused (and would recurse too deep)
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


def _timestamp_text(loader: Any, node: yaml.ScalarNode) -> str:
    """A YAML timestamp (`2026-01-31`) is read as its text: the language's data is JSON's,
    which has no dates (`format: date` checks such strings), and an impossible date such as
    `2026-02-30` is then a value to check, not a crash of the YAML reader."""
    return str(node.value)


_MAP, _SEQ, _MERGE = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq", "tag:yaml.org,2002:merge"


class _TooDeep(Exception):
    def __init__(self, node: yaml.Node) -> None:
        self.node = node


class _Builder:
    """The data of a composed document, with the position of every mapping key, mapping
    value and list item (`MarkedDict` / `MarkedList`), and its size once aliases are
    expanded (each alias counts its whole value again; a recursive one counts as too large).

    One walk over the nodes instead of PyYAML's generic constructor, which is built for
    recursive structures (refused here anyway) and is slower (docs/performance.md).
    Scalars and collections with another tag
    (`!!set`, `!!omap`, ...) go to PyYAML's safe constructors, so values are exactly what
    `yaml.safe_load` gives, except timestamps, which stay text (`_timestamp_text`).
    """

    def __init__(self, loader: _Loader, file: str, limit: int) -> None:
        self.loader, self.file, self.limit = loader, file, limit
        self.built: dict[int, tuple[Any, int]] = {}  # id(node) -> (value, expanded size)
        self.open: set[int] = set()  # collections being built (an alias to one recurses)
        self.duplicates: list[Problem] = []
        self.scalars = {**loader.yaml_constructors, _TIMESTAMP: _timestamp_text}

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, depth: int = 0) -> tuple[Any, int]:
        key = id(node)
        if key in self.built:
            return self.built[key]
        if isinstance(node, yaml.ScalarNode):
            scalar = self.scalars.get(node.tag)
            if scalar is not None:
                result = scalar(self.loader, node), len(node.value) + 2
                self.built[key] = result
                return result
        if key in self.open:
            return None, self.limit + 1
        if depth > MAX_DEPTH:
            raise _TooDeep(node)
        self.open.add(key)
        if isinstance(node, yaml.MappingNode) and node.tag == _MAP:
            result = self._mapping(node, depth)
        elif isinstance(node, yaml.SequenceNode) and node.tag == _SEQ:
            result = self._sequence(node, depth)
        else:
            value = self.loader.construct_object(node, deep=True)
            result = value, (len(str(node.value)) + 2 if isinstance(node, yaml.ScalarNode) else _size(value))
        self.open.discard(key)
        self.built[key] = result
        return result

    def _mapping(self, node: yaml.MappingNode, depth: int) -> tuple[MarkedDict, int]:
        data = MarkedDict()
        data.loc = self.loc(node)
        data.key_locs, data.value_locs = {}, {}
        own = {id(key_node) for key_node, _ in node.value if key_node.tag != _MERGE}
        self.loader.flatten_mapping(node)  # merged keys first: the mapping's own ones override them
        written: set[Any] = set()
        size = 2
        for key_node, value_node in node.value:
            key, key_size = self.build(key_node, depth + 1)
            if not isinstance(key, Hashable):
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable mapping key", key_node.start_mark
                )
            if id(key_node) in own:
                if key in written:
                    message = f"duplicate key '{key}' in mapping"
                    self.duplicates.append(Problem(self.loc(key_node), message, code=codes.DUPLICATE_KEY))
                written.add(key)
            data[key], value_size = self.build(value_node, depth + 1)
            data.key_locs[key] = self.loc(key_node)
            data.value_locs[key] = self.loc(value_node)
            size = min(size + key_size + value_size, self.limit + 1)
        return data, size

    def _sequence(self, node: yaml.SequenceNode, depth: int) -> tuple[MarkedList, int]:
        data = MarkedList()
        data.loc = self.loc(node)
        data.item_locs = [self.loc(item) for item in node.value]
        size = 2
        for item in node.value:
            value, item_size = self.build(item, depth + 1)
            data.append(value)
            size = min(size + item_size, self.limit + 1)
        return data, size


def _size(value: Any) -> int:
    """Rough size of a value PyYAML built from a tagged collection (`!!set`, `!!omap`)."""
    return len(repr(value)) + 2


class LoadedYaml(NamedTuple):
    """The result of reading one YAML file: its data, or the problems that stopped it."""

    data: Any
    problems: list[Problem]


def load_yaml_text(text: str, display_name: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedYaml:
    """Parse one YAML document; never raises for bad input, returns problems instead."""
    start = Location(display_name)
    if len(text.encode("utf-8", errors="replace")) > max_bytes:
        message = f"file is larger than the limit of {max_bytes} bytes"
        return LoadedYaml(None, [Problem(start, message, code=codes.FILE_TOO_LARGE)])
    loader = _Loader(text)
    builder = _Builder(loader, display_name, max_bytes)
    try:
        node = loader.get_single_node()
        if node is None:
            return LoadedYaml(None, [])
        data, size = builder.build(node)
        if size > max_bytes:
            message = f"document expands past the limit of {max_bytes} bytes (aliases)"
            return LoadedYaml(None, [Problem(start, message, code=codes.FILE_TOO_LARGE)])
    except _TooDeep as exc:
        mark = exc.node.start_mark
        message = f"the document nests collections more than {MAX_DEPTH} levels deep"
        where = Location(display_name, mark.line + 1, mark.column + 1)
        return LoadedYaml(None, [Problem(where, message, code=codes.FILE_TOO_LARGE)])
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(display_name, mark.line + 1, mark.column + 1) if mark else start
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        return LoadedYaml(None, [Problem(where, f"invalid YAML: {what}", code=codes.INVALID_YAML)])
    except yaml.reader.ReaderError as exc:  # a character YAML refuses, at its position
        where = _position(display_name, text.encode() if _BYTE_POSITIONS else text, exc.position)
        return LoadedYaml(
            None,
            [
                Problem(
                    where,
                    f"invalid YAML: unacceptable character #x{exc.character:04x}: {exc.reason}",
                    code=codes.INVALID_YAML,
                )
            ],
        )
    except yaml.YAMLError as exc:
        return LoadedYaml(None, [Problem(start, f"invalid YAML: {exc}", code=codes.INVALID_YAML)])
    finally:
        loader.dispose()
    return LoadedYaml(data, builder.duplicates)


def _position(display_name: str, text: str | bytes, offset: int) -> Location:
    """The 1-based line and column of character `offset` of `text` (of byte `offset`, for
    bytes: the column then counts the characters before it on its line)."""
    if isinstance(text, bytes):
        line_start = text.rfind(b"\n", 0, offset) + 1
        before = text[line_start:offset].decode("utf-8", errors="replace")
        return Location(display_name, text.count(b"\n", 0, offset) + 1, len(before) + 1)
    line_start = text.rfind("\n", 0, offset) + 1
    return Location(display_name, text.count("\n", 0, offset) + 1, offset - line_start + 1)


def load_yaml_file(path: Path, display_name: str, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> LoadedYaml:
    """Read and parse a YAML file, refusing files over `max_bytes` before reading them."""
    start = Location(display_name)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            message = f"file is larger than the limit of {max_bytes} bytes"
            return LoadedYaml(None, [Problem(start, message, code=codes.FILE_TOO_LARGE)])
        raw = path.read_bytes()
    except OSError as exc:
        return LoadedYaml(None, [Problem(start, f"cannot read file: {exc}", code=codes.READ_FAILED)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:  # at the first byte that is not UTF-8
        message = f"file is not UTF-8: byte 0x{raw[exc.start]:02x} cannot be decoded ({exc.reason})"
        where = _position(display_name, raw, exc.start)
        return LoadedYaml(None, [Problem(where, message, code=codes.NOT_UTF8)])
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
