"""The DAG files' calls with workflow sources configured (ATTUNE_SOURCES): a configuration
error is one import error while the packs path loads; a task's parse never fetches; the
sources' warnings are the errors file's import error while every valid DAG loads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from attune_provider.dag_factory.factory import dags_for_airflow, errors_for_airflow
from attune_provider.exceptions import AttuneError
from attune_provider.sources.pause_sync import AirflowApi, changes, sync_paused
from attune_provider.sources.store import Store
from tests.registry_server import Registry
from tests.support import write_pack

HELLO = "ref: {pack}.hello\ntasks:\n  - name: say\n    action: core.echo\n    input: {{message: hi}}\n"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A packs path holding pack `team`, a store of its own; returns the packs path."""
    packs = tmp_path / "packs"
    write_pack(packs, "team", {"workflows/hello.yaml": HELLO.format(pack="team")})
    monkeypatch.setenv("ATTUNE_PACKS_PATH", str(packs))
    monkeypatch.setenv("ATTUNE_SOURCES_DIR", str(tmp_path / "store"))
    monkeypatch.setenv("ATTUNE_CACHE_DIR", "off")
    return packs


def _sources(monkeypatch: pytest.MonkeyPatch, value: object) -> None:
    monkeypatch.setenv("ATTUNE_SOURCES", value if isinstance(value, str) else json.dumps(value))


def _alpha(tmp_path: Path) -> Path:
    return write_pack(tmp_path / "src", "alpha", {"workflows/hello.yaml": HELLO.format(pack="alpha")})


def _message(dags: dict) -> str:
    (broken,) = dags.values()
    return str(broken.attune_message)


def test_a_configuration_error_is_one_import_error_and_the_packs_path_loads(
    configured: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _sources(monkeypatch, [{"name": f"s{i}", "kind": "dir", "path": "/nowhere"} for i in range(6)])
    assert set(dags_for_airflow()) == {"team.hello"}
    message = _message(errors_for_airflow())
    assert message.splitlines()[:2] == [
        "Attune: its workflow sources are not loaded (the packs path is)",
        "ATTUNE_SOURCES:1:1: error: sources not loaded: "
        "ATTUNE_SOURCES lists 6 sources: at most 5 are allowed",
    ]


def test_dags_of_every_source_load_tagged_and_a_paused_pack_is_created_paused(
    configured: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    registry.publish(
        {
            write_pack(src, "alpha", {"workflows/hello.yaml": HELLO.format(pack="alpha")}): "active",
            write_pack(src, "beta", {"workflows/hello.yaml": HELLO.format(pack="beta")}): "paused",
        }
    )
    _sources(monkeypatch, [{"name": "central", "kind": "http", "url": registry.url}])
    dags = dags_for_airflow()
    assert set(dags) == {"team.hello", "alpha.hello", "beta.hello"}
    assert "source:central" in dags["alpha.hello"].tags and "source:local" in dags["team.hello"].tags
    assert dags["beta.hello"].is_paused_upon_creation is True
    assert dags["alpha.hello"].is_paused_upon_creation is None  # Airflow's own default
    assert errors_for_airflow() == {}  # first-seen states need no API: creation applies them


def test_a_tasks_parse_serves_the_copy_on_disk_and_never_fetches(
    configured: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish({_alpha(tmp_path): "active"})
    _sources(monkeypatch, [{"name": "central", "kind": "http", "url": registry.url, "refresh_seconds": 1}])
    assert "alpha.hello" in dags_for_airflow()
    fetched = registry.requested("index.json")
    registry.stop()
    monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "alpha.hello")
    time.sleep(1.1)  # the refresh is due: a DAG processor would fetch now, a task's parse does not
    assert set(dags_for_airflow()) == {"alpha.hello"}
    assert registry.requested("index.json") == fetched


def test_a_failed_fetch_is_a_warning_import_error_and_every_dag_loads(
    configured: Path, registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.publish({_alpha(tmp_path): "active"})
    _sources(monkeypatch, [{"name": "central", "kind": "http", "url": registry.url, "refresh_seconds": 1}])
    assert errors_for_airflow() == {}
    registry.stop()
    time.sleep(1.1)
    message = _message(errors_for_airflow())
    assert message.startswith("Attune: its workflow sources need attention (every valid workflow is loaded)")
    assert "warning: source 'central' could not be fetched" in message and "serving its packs of" in message
    assert set(dags_for_airflow()) == {"team.hello", "alpha.hello"}


def test_only_a_change_of_status_is_applied() -> None:
    applied = {"a.w": False, "b.w": True}
    assert changes({"a.w": False, "b.w": True, "c.w": False}, applied) == {}  # c.w: first seen active
    wanted = {"a.w": True, "b.w": False, "d.w": True}  # d.w: first seen paused (it may exist)
    assert changes(wanted, applied) == wanted


def test_a_change_that_cannot_be_applied_is_a_warning_and_is_retried(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")

    def no_api() -> AirflowApi:
        raise AttuneError("connection 'attune_airflow_api' not found (AirflowNotFoundException)")

    assert sync_paused({"a.w": False}, store, api=no_api) == []  # nothing to apply: recorded
    (problem,) = sync_paused({"a.w": True}, store, api=no_api)  # a change: reported
    assert "could not apply the sources' pause states to existing DAGs: a.w (pause)" in problem.message
    assert problem.severity.value == "warning"
    (again,) = sync_paused({"a.w": True}, store, api=no_api)  # not recorded as applied: tried again
    assert again.message == problem.message
    # first seen paused (created paused), API not there: recorded, so going active is a change
    assert sync_paused({"b.w": True}, store, api=no_api) == []
    (unpause,) = sync_paused({"b.w": False}, store, api=no_api)
    assert "b.w (unpause)" in unpause.message
