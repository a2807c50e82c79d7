"""Workflow sources against a real registry on 127.0.0.1: fetch, retry, verify, and keep
serving the last known good packs through every kind of failure (docs/sources.md)."""

from __future__ import annotations

import io
import shutil
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attune_provider.dag_factory.loader import load_catalog
from attune_provider.language.catalog import SourcePacks
from attune_provider.sources.archive import pack_archive
from attune_provider.sources.config import SourceSpec
from attune_provider.sources.reconcile import Resolved, resolve
from attune_provider.sources.store import Store
from tests.registry_server import Registry, Scripted
from tests.support import write_pack

HELLO = """
ref: {pack}.hello
tasks:
  - name: say
    action: core.echo
    input: {{message: "{message}"}}
"""
MAX_FILE = 1024 * 1024


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def pack(root: Path, name: str, message: str = "hi") -> Path:
    return write_pack(root, name, {"workflows/hello.yaml": HELLO.format(pack=name, message=message)})


def central(registry: Registry, refresh: int = 60) -> SourceSpec:
    return SourceSpec("central", "http", url=registry.url, conn_id=None, refresh_seconds=refresh)


def fetch(registry: Registry, store: Store, *, may_fetch: bool = True, refresh: int = 60) -> Resolved:
    return resolve([central(registry, refresh)], store, MAX_FILE, may_fetch=may_fetch)


def expire(store: Store, name: str = "central") -> None:
    """Make the last try look older than any refresh_seconds."""
    state = store.state(name)
    store.save(name, state._replace(checked_at=(state.checked_at or 0) - 3600))


def messages(resolved: Resolved) -> list[str]:
    return [f"{p.severity.value}: {p.message}" for p in resolved.problems]


def workflows(source: SourcePacks) -> dict[str, str]:
    """ref -> source name of every workflow the source's packs hold (core left out)."""
    catalog = load_catalog([], sources=[source])
    return {ref: e.pack.source for ref, e in catalog.workflows.items() if not ref.startswith("core.")}


def test_a_registry_is_fetched_verified_and_served(registry: Registry, store: Store, tmp_path: Path) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active", pack(tmp_path / "src", "beta"): "paused"})
    resolved = fetch(registry, store)
    assert messages(resolved) == []
    (source,) = resolved.sources
    assert source.name == "central" and source.paused == frozenset({"beta"})
    assert workflows(source) == {"alpha.hello": "central", "beta.hello": "central"}
    assert all(str(path).startswith(str(store.objects)) for path in source.paths)
    assert resolved.ages["central"] is not None and resolved.ages["central"] < 5


def test_between_refreshes_nothing_is_fetched_and_a_task_parse_never_fetches(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    fetch(registry, store)
    assert registry.requested("index.json") == 1
    fetch(registry, store)  # within refresh_seconds
    expire(store)
    fetch(registry, store, may_fetch=False)  # a task's parse: the copy on disk
    assert registry.requested("index.json") == 1
    fetch(registry, store)  # the DAG processor, once refresh_seconds have passed
    assert registry.requested("index.json") == 2


def test_503_then_200_is_retried_with_backoff(registry: Registry, store: Store, tmp_path: Path) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", Scripted(503), Scripted(502))
    resolved = fetch(registry, store)
    assert messages(resolved) == []
    assert registry.requested("index.json") == 3
    assert workflows(resolved.sources[0]) == {"alpha.hello": "central"}


def test_429_waits_what_retry_after_asks(registry: Registry, store: Store, tmp_path: Path) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", Scripted(429, headers={"Retry-After": "1"}))
    started = time.monotonic()
    resolved = fetch(registry, store)
    assert messages(resolved) == [] and time.monotonic() - started >= 1.0
    assert registry.requested("index.json") == 2


def test_401_fails_at_once_and_the_token_is_sent_never_shown(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.token = "s3cr3t-token"
    spec = central(registry)._replace(conn_id="attune_central")
    wrong = resolve([spec], store, MAX_FILE, may_fetch=True, token_for=lambda conn_id: "wrong")
    assert registry.requested("index.json") == 1  # a 4xx is not retried
    (message,) = messages(wrong)
    assert "source 'central' could not be fetched" in message and "HTTP 401" in message
    assert "it serves nothing yet" in message and "wrong" not in message
    expire(store)
    right = resolve([spec], store, MAX_FILE, may_fetch=True, token_for=lambda conn_id: "s3cr3t-token")
    assert messages(right) == []
    assert registry.requests[-1][1] == "Bearer s3cr3t-token"
    assert "s3cr3t" not in (store.state_dir / "central.json").read_text()


@pytest.mark.parametrize(
    "spoil, reason",
    [
        ("sha", "the archive's sha256 is"),
        ("truncated", "truncated or not a .tar.gz"),
        ("escape", ".."),
        ("huge_index", "bytes allowed"),
        ("down", "cannot connect ([Errno 111] Connection refused)"),
        ("bad_index", "index.json is not JSON"),
    ],
)
def test_a_failed_fetch_keeps_the_last_good_packs(
    registry: Registry, store: Store, tmp_path: Path, spoil: str, reason: str
) -> None:
    first = pack(tmp_path / "v1", "alpha", "one")
    registry.publish({first: "active"})
    good = fetch(registry, store)
    assert messages(good) == []
    second = pack(tmp_path / "v2", "alpha", "two")
    if spoil == "sha":
        registry.publish({second: "active"}, sha_override={"alpha": "0" * 64})
    elif spoil == "truncated":
        registry.publish_raw("alpha", pack_archive(second)[:200])
    elif spoil == "escape":
        registry.publish_raw("alpha", escaping_archive())
    elif spoil == "huge_index":
        registry.write_index({"packs": [], "padding": "x" * (MAX_FILE + 10)})
    elif spoil == "down":
        registry.stop()
    else:
        (registry.root / "index.json").write_text("{not json")
    expire(store)
    failed = fetch(registry, store)
    (message,) = messages(failed)
    assert message.startswith("warning: source 'central' could not be fetched") and reason in message
    assert "serving its packs of" in message
    (source,) = failed.sources
    catalog = load_catalog([], sources=[source])
    assert catalog.workflows["alpha.hello"].workflow.tasks[0].input == {"message": "one"}


def escaping_archive() -> bytes:
    """A pack archive with a member that climbs out of the pack (`../`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in (("alpha/pack.yaml", b"ref: alpha\n"), ("alpha/../../evil.txt", b"owned")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text))
    return buffer.getvalue()


def test_one_sources_failure_changes_nothing_of_another(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    other = Registry(tmp_path / "other")
    try:
        other.publish({pack(tmp_path / "src2", "gamma"): "active"})
        specs = [central(registry), SourceSpec("other", "http", url=other.url)]
        assert messages(resolve(specs, store, MAX_FILE, may_fetch=True)) == []
        other.stop()
        expire(store, "central")
        expire(store, "other")
        resolved = resolve(specs, store, MAX_FILE, may_fetch=True)
        assert [m.split(" could")[0] for m in messages(resolved)] == ["warning: source 'other'"]
        catalog = load_catalog([], sources=resolved.sources)
        assert {"alpha.hello", "gamma.hello"} <= set(catalog.workflows)
    finally:
        other.stop()


def test_the_same_pack_from_two_sources_the_first_listed_wins(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha", "from central"): "active"})
    team_dir = tmp_path / "team"
    pack(team_dir, "alpha", "from team")
    specs = [SourceSpec("team", "dir", path=team_dir), central(registry)]
    resolved = resolve(specs, store, MAX_FILE, may_fetch=True)
    catalog = load_catalog([], sources=resolved.sources)
    entry = catalog.workflows["alpha.hello"]
    assert entry.pack.source == "team" and entry.workflow.tasks[0].input == {"message": "from team"}
    (warning,) = [p for p in catalog.problems if "left out" in p.message]
    assert warning.severity.value == "warning"
    assert "source 'central'" in warning.message and "source 'team', listed first" in warning.message
    assert catalog.source_problems == [warning]
    assert not [p for p in catalog.problems if p.is_error]


def test_a_missing_dir_source_serves_nothing_and_says_so(store: Store, tmp_path: Path) -> None:
    resolved = resolve([SourceSpec("team", "dir", path=tmp_path / "gone")], store, MAX_FILE, may_fetch=True)
    assert resolved.sources == [SourcePacks("team", ())]
    gone = tmp_path / "gone"
    expected = f"warning: source 'team': {gone} is not a directory: it serves no workflows"
    assert messages(resolved) == [expected]


@pytest.fixture
def short_budget(monkeypatch: pytest.MonkeyPatch) -> float:
    """A parse budget of 2 s (half of a 4 s dagbag_import_timeout)."""
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "4")
    return 2.0


def test_a_registry_trickling_bytes_is_cut_at_the_parse_budget(
    registry: Registry, store: Store, tmp_path: Path, short_budget: float
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", Scripted(body=None, trickle=0.05))
    started = time.monotonic()
    (message,) = messages(fetch(registry, store))
    assert time.monotonic() - started < short_budget + 1.5
    assert "too slow" in message and "it serves nothing yet" in message


def test_a_hanging_source_never_holds_up_another(
    registry: Registry, store: Store, tmp_path: Path, short_budget: float
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", *[Scripted(body=None, delay=10)] * 4)
    healthy = Registry(tmp_path / "healthy")
    try:
        healthy.publish({pack(tmp_path / "src2", "gamma"): "active"})
        specs = [central(registry), SourceSpec("healthy", "http", url=healthy.url)]
        resolved = resolve(specs, store, MAX_FILE, may_fetch=True)
        assert [m.split(" could")[0] for m in messages(resolved)] == ["warning: source 'central'"]
        assert workflows(resolved.sources[1]) == {"gamma.hello": "healthy"}
    finally:
        healthy.stop()


def test_a_connection_broken_mid_body_is_retried(registry: Registry, store: Store, tmp_path: Path) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", Scripted(body=b'{"packs": [', length=500))
    assert messages(fetch(registry, store)) == []
    assert registry.requested("index.json") == 2


def test_processes_starting_at_once_all_wait_for_the_first_fetch(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    registry.script("index.json", Scripted(body=None, delay=1.0))
    with ThreadPoolExecutor(max_workers=3) as pool:  # each its own lock file description, as processes
        results = list(pool.map(lambda _: fetch(registry, store), range(3)))
    assert registry.requested("index.json") == 1
    for resolved in results:
        assert messages(resolved) == [] and workflows(resolved.sources[0]) == {"alpha.hello": "central"}


def test_a_pack_gone_from_the_store_is_fetched_again(
    registry: Registry, store: Store, tmp_path: Path
) -> None:
    registry.publish({pack(tmp_path / "src", "alpha"): "active"})
    fetch(registry, store)
    shutil.rmtree(store.objects)
    resolved = fetch(registry, store, may_fetch=False)  # even a task's parse: it has no copy
    assert messages(resolved) == [] and workflows(resolved.sources[0]) == {"alpha.hello": "central"}
    assert registry.requested("index.json") == 2
