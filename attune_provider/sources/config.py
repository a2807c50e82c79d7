"""`[attune] sources` / `ATTUNE_SOURCES`: the workflow sources besides the packs path.

A JSON list of at most five sources (docs/sources.md). Anything wrong with it is a
`SourceConfigError` whose message says which entry and why; the caller reports it as an
import error and still loads the packs path (source `local`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, NamedTuple

from attune_provider.exceptions import AttuneError
from attune_provider.settings import airflow_option

SOURCES_ENV = "ATTUNE_SOURCES"
LOCAL = "local"  # the packs path's source name
MAX_SOURCES = 5
DEFAULT_REFRESH_SECONDS = 60
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_KEYS = {
    "dir": {"name", "kind", "path"},
    "http": {"name", "kind", "url", "conn_id", "refresh_seconds"},
}


class SourceConfigError(AttuneError):
    """The sources setting cannot be used; the message names the entry and the fault."""


class SourceSpec(NamedTuple):
    """One configured source."""

    name: str
    kind: Literal["dir", "http"]
    path: Path | None = None  # dir
    url: str = ""  # http: the registry's base URL (index.json is below it)
    conn_id: str | None = None  # http: the connection whose password is the bearer token
    refresh_seconds: int = DEFAULT_REFRESH_SECONDS


def configured_text() -> tuple[str | None, str]:
    """The raw setting and where it came from (for messages): env first, then Airflow."""
    raw = os.environ.get(SOURCES_ENV)
    if raw is not None and raw.strip():
        return raw, SOURCES_ENV
    return airflow_option("sources"), "[attune] sources"


def configured_sources() -> list[SourceSpec]:
    """The configured sources (none when unset); SourceConfigError when unusable."""
    raw, origin = configured_text()
    return parse_sources(raw, origin) if raw is not None and raw.strip() else []


def parse_sources(text: str, origin: str = SOURCES_ENV) -> list[SourceSpec]:
    """Every source of the JSON list `text`, checked as a whole."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SourceConfigError(f"{origin} is not valid JSON: {exc}") from None
    if not isinstance(data, list):
        raise SourceConfigError(f"{origin} must be a JSON list of sources, got {type(data).__name__}")
    if len(data) > MAX_SOURCES:
        raise SourceConfigError(f"{origin} lists {len(data)} sources: at most {MAX_SOURCES} are allowed")
    specs = [_spec(entry, f"{origin}[{index}]") for index, entry in enumerate(data)]
    seen: set[str] = set()
    for index, spec in enumerate(specs):
        if spec.name in seen or spec.name == LOCAL:
            why = "is the packs path's name" if spec.name == LOCAL else "is used twice"
            raise SourceConfigError(f"{origin}[{index}]: source name '{spec.name}' {why}")
        seen.add(spec.name)
    return specs


def _spec(entry: Any, where: str) -> SourceSpec:
    if not isinstance(entry, dict):
        raise SourceConfigError(f"{where}: a source is a JSON object, got {type(entry).__name__}")
    name, kind = entry.get("name"), entry.get("kind")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise SourceConfigError(f"{where}: 'name' must be 1-64 characters of [A-Za-z0-9_-], got {name!r}")
    if kind not in _KEYS:
        raise SourceConfigError(f"{where} ('{name}'): unknown kind {kind!r} (expected 'dir' or 'http')")
    unknown = sorted(set(entry) - _KEYS[kind])
    if unknown:
        raise SourceConfigError(f"{where} ('{name}'): unknown key(s) {', '.join(unknown)} for kind '{kind}'")
    if kind == "dir":
        path = entry.get("path")
        if not isinstance(path, str) or not path.strip():
            raise SourceConfigError(f"{where} ('{name}'): a dir source needs 'path', a directory")
        return SourceSpec(name, "dir", path=Path(path).expanduser())
    return _http_spec(entry, name, where)


def _http_spec(entry: dict[str, Any], name: str, where: str) -> SourceSpec:
    url, conn_id = entry.get("url"), entry.get("conn_id")
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        raise SourceConfigError(f"{where} ('{name}'): an http source needs 'url', an http(s):// URL")
    if conn_id is not None and (not isinstance(conn_id, str) or not conn_id.strip()):
        raise SourceConfigError(f"{where} ('{name}'): 'conn_id' must be a connection id")
    refresh = entry.get("refresh_seconds", DEFAULT_REFRESH_SECONDS)
    if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1:
        raise SourceConfigError(f"{where} ('{name}'): 'refresh_seconds' must be a whole number >= 1")
    return SourceSpec(name, "http", url=url.rstrip("/"), conn_id=conn_id, refresh_seconds=refresh)
