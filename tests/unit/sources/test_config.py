"""`[attune] sources` / ATTUNE_SOURCES: what is accepted, and the one clear error for the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attune_provider.sources.config import SourceConfigError, SourceSpec, configured_sources, parse_sources


def test_dir_and_http_sources_are_read_in_order() -> None:
    text = json.dumps(
        [
            {"name": "team_a", "kind": "dir", "path": "/srv/packs-team-a"},
            {"name": "central", "kind": "http", "url": "https://reg.example/attune/", "conn_id": "c"},
            {"name": "mirror-2", "kind": "http", "url": "http://10.0.0.2:8000", "refresh_seconds": 5},
        ]
    )
    assert parse_sources(text) == [
        SourceSpec("team_a", "dir", path=Path("/srv/packs-team-a")),
        SourceSpec("central", "http", url="https://reg.example/attune", conn_id="c"),
        SourceSpec("mirror-2", "http", url="http://10.0.0.2:8000", refresh_seconds=5),
    ]


def _dir(name: str) -> dict[str, str]:
    return {"name": name, "kind": "dir", "path": f"/p/{name}"}


@pytest.mark.parametrize(
    "value, message",
    [
        ("[{", "ATTUNE_SOURCES is not valid JSON"),
        ('{"name": "x"}', "must be a JSON list of sources, got dict"),
        ([_dir(f"s{i}") for i in range(6)], "lists 6 sources: at most 5 are allowed"),
        ([_dir("a"), _dir("a")], "ATTUNE_SOURCES[1]: source name 'a' is used twice"),
        ([_dir("local")], "source name 'local' is the packs path's name"),
        ([{"name": "a", "kind": "git", "url": "x"}], "ATTUNE_SOURCES[0] ('a'): unknown kind 'git'"),
        ([{"name": "a b", "kind": "dir", "path": "/x"}], "'name' must be 1-64 characters"),
        ([{"name": "a", "kind": "dir"}], "a dir source needs 'path'"),
        ([{"name": "a", "kind": "http", "url": "ftp://x"}], "needs 'url', an http(s):// URL"),
        ([{"name": "a", "kind": "http", "url": "http://x", "refresh_seconds": 0}], "'refresh_seconds'"),
        ([{"name": "a", "kind": "dir", "path": "/x", "url": "u"}], "unknown key(s) url for kind 'dir'"),
        (["a"], "a source is a JSON object, got str"),
    ],
)
def test_a_bad_setting_is_one_clear_error(value: object, message: str) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    with pytest.raises(SourceConfigError) as raised:
        parse_sources(text)
    assert message in str(raised.value)


def test_the_environment_wins_over_the_airflow_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__SOURCES", json.dumps([_dir("from_airflow")]))
    assert [s.name for s in configured_sources()] == ["from_airflow"]
    monkeypatch.setenv("ATTUNE_SOURCES", json.dumps([_dir("from_env")]))
    assert [s.name for s in configured_sources()] == ["from_env"]
    monkeypatch.setenv("ATTUNE_SOURCES", " ")
    monkeypatch.delenv("AIRFLOW__ATTUNE__SOURCES")
    assert configured_sources() == []
