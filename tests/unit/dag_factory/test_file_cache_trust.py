"""The parse cache unpickles its entries, so it trusts only its owner (file_cache.py,
docs/design.md "The parse cache trusts only its owner").

A planted pickle whose unpickling would create a marker file is written over every entry:
where someone else could have written it (a directory or entry writable by group or
others, or not ours, or below a parent every user may write) it is never unpickled, a
warning is logged once, and the DAGs still load, uncached. The control case shows the
planted pickle does run when it is an entry of our own private cache: the check, not luck,
is what keeps it out.
"""

from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

import pytest

from attune_provider.dag_factory import file_cache
from attune_provider.dag_factory.factory import load_packs
from attune_provider.dag_factory.file_cache import FileCache, private_dir

WORKFLOW = "ref: p.w\ntasks:\n  - name: a\n    action: core.noop\n"
NOBODY = 65534


class Planted:
    """Unpickling it creates `marker` (what an attacker's code could do, harmlessly)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


@pytest.fixture
def cached(packs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:  # type: ignore[no-untyped-def]
    """Pack `p` loaded once through the cache `tmp_path/cache`; returns that directory."""
    packs.pack("p", {"workflows/w.yaml": WORKFLOW})
    cache = tmp_path / "cache"
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(cache))
    assert "p.w" in load_packs([Path("packs")]).dags
    assert _entries(cache), "the first load wrote entries"
    return cache


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.pickle"))


def _plant(cache: Path, marker: Path) -> bytes:
    """Overwrite every entry in place (owner and mode kept) with the planted pickle."""
    payload = pickle.dumps(Planted(marker))
    for entry in _entries(cache):
        with open(entry, "r+b") as handle:
            handle.truncate(0)
            handle.write(payload)
    return payload


def _loads_without_running(marker: Path) -> None:
    loaded = load_packs([Path("packs")])
    assert "p.w" in loaded.dags and loaded.problems is None
    assert not marker.exists(), "a planted pickle was unpickled"


def test_control_an_entry_of_our_own_private_cache_is_read(cached: Path, tmp_path: Path) -> None:
    """The planted pickle works: in a cache only we can write, entries are trusted (anyone
    who can write as Airflow's user can change the DAG files and packs anyway)."""
    marker = tmp_path / "ran"
    _plant(cached, marker)
    load_packs([Path("packs")])
    assert marker.exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o720, 0o702])
def test_a_cache_directory_others_can_write_is_not_used(
    cached: Path, tmp_path: Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "ran"
    _plant(cached, marker)
    os.chmod(cached, mode)
    with caplog.at_level(logging.WARNING, logger=file_cache.__name__):
        _loads_without_running(marker)
        _loads_without_running(marker)
    warnings = [r.getMessage() for r in caplog.records if "Attune parse cache not used" in r.getMessage()]
    assert len(warnings) == 1, warnings  # once per process
    assert f"{cached} is writable by" in warnings[0] and f"(mode {mode:o})" in warnings[0]
    assert FileCache.open() is None


def test_a_directory_below_the_cache_directory_others_can_write_is_not_used(
    cached: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    _plant(cached, marker)
    (bundles,) = cached.glob("v*/bundles")
    os.chmod(bundles, 0o777)
    _loads_without_running(marker)


def test_an_entry_others_can_write_is_a_miss_and_is_rewritten(cached: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    planted = _plant(cached, marker)
    for entry in _entries(cached):
        os.chmod(entry, 0o666)
    _loads_without_running(marker)
    for entry in _entries(cached):  # the load wrote its own entries over them
        assert entry.stat().st_mode & 0o777 == 0o600
        assert entry.read_bytes() != planted
    _loads_without_running(marker)


def test_an_entry_that_is_a_link_is_a_miss(cached: Path, tmp_path: Path) -> None:
    """A symbolic link (to a file of ours someone else chose) or a second hard link is
    never what this cache wrote."""
    marker = tmp_path / "ran"
    elsewhere = tmp_path / "ours.pickle"
    elsewhere.write_bytes(pickle.dumps(Planted(marker)))
    os.chmod(elsewhere, 0o600)
    entries = _entries(cached)
    for number, entry in enumerate(entries):
        entry.unlink()
        if number % 2:
            entry.symlink_to(elsewhere)
        else:
            os.link(elsewhere, entry)
    _loads_without_running(marker)


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_entries_and_directories_of_another_user_are_not_used(cached: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _plant(cached, marker)
    for entry in _entries(cached):
        os.chown(entry, NOBODY, NOBODY)
    _loads_without_running(marker)
    _plant(cached, marker)
    for entry in _entries(cached):
        os.chown(entry, NOBODY, NOBODY)
    os.chown(cached, NOBODY, NOBODY)
    _loads_without_running(marker)
    assert FileCache.open() is None


def test_a_parent_every_user_may_write_needs_the_sticky_bit(
    packs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    packs.pack("p", {"workflows/w.yaml": WORKFLOW})
    shared = tmp_path / "shared"
    shared.mkdir()
    cache = shared / "cache"
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(cache))
    os.chmod(shared, 0o1777)  # as /tmp: others cannot rename what is ours
    assert FileCache.open() is not None
    marker = tmp_path / "ran"
    load_packs([Path("packs")])
    _plant(cache, marker)
    os.chmod(shared, 0o777)  # anyone could move `cache` away and put their own in its place
    _loads_without_running(marker)
    assert FileCache.open() is None


def test_a_cache_directory_that_is_a_link_is_judged_where_it_really_is(
    packs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """`cache_dir` a symbolic link to a private directory below one every user may write:
    refused as if named directly (black-box finding)."""
    packs.pack("p", {"workflows/w.yaml": WORKFLOW})
    shared = tmp_path / "shared"
    (shared / "cache").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(shared / "cache")
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(link))
    assert FileCache.open() is not None
    marker = tmp_path / "ran"
    load_packs([Path("packs")])
    _plant(shared / "cache", marker)
    os.chmod(shared, 0o777)
    _loads_without_running(marker)
    assert FileCache.open() is None


def test_missing_directories_are_created_private_whatever_the_umask(tmp_path: Path) -> None:
    base = tmp_path / "a" / "b" / "cache"
    old = os.umask(0o002)
    try:
        store = FileCache(base, version="test")
    finally:
        os.umask(old)
    assert store.trusted
    for directory in (tmp_path / "a", tmp_path / "a" / "b", base, store.root, store.root / "files"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_private_dir_judges_the_directory_and_the_parents_it_creates(tmp_path: Path) -> None:
    below = tmp_path / "made" / "below"
    assert private_dir(below) is None
    assert (tmp_path / "made").stat().st_mode & 0o777 == 0o700
    os.chmod(below, 0o775)
    assert private_dir(below) == "is writable by group (mode 775)"
    os.rmdir(below)
    os.chmod(tmp_path / "made", 0o770)
    assert private_dir(below) is None  # `made` existed already: only its o+w matters (_open_parent)
    (tmp_path / "file").write_text("")
    assert private_dir(tmp_path / "file") == "is not a directory"


def test_an_untrusted_cache_reads_and_writes_nothing(tmp_path: Path) -> None:
    base = tmp_path / "cache"
    base.mkdir()
    os.chmod(base, 0o777)
    store = FileCache(base, version="test")
    assert not store.trusted
    store.store_report("scope", "key", ["report"])
    assert store.report("scope", "key") is None
    assert _entries(base) == []
