"""The parse cache (cache.py) and the one-workflow loader: never a different answer.

A catalog loaded through the cache, cold or warm, validates exactly as one loaded
without it; an edit is seen even when size and mtime stay the same; processes sharing
the cache directory may write at once; and loading only one workflow's closure decides
about that workflow as loading everything does.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from attune_provider.dag_factory import file_cache as cache_module
from attune_provider.dag_factory.closure import load_workflow_closure
from attune_provider.dag_factory.file_cache import FileCache, configured_dir
from attune_provider.dag_factory.loader import load_catalog
from attune_provider.dag_factory.validation.cached import validate_cached
from attune_provider.dag_factory.validation.checks import Report, validate_catalog
from attune_provider.language.catalog import Catalog

CALLS_GREET = """\
    ref: p.ok
    parameters:
      who: {type: string, default: you}
    tasks:
      - name: first
        action: p.greet
        input: {name: "{{ parameters.who }} in {{ pack.config.region }}"}
        on_success: second
      - name: second
        action: p.renamed
        on_success: third
      - name: third
        action: p.child
        input: {n: 1}
"""
FILES = {
    "config.yaml": "type: object\nproperties:\n  region: {type: string, default: eu}\n",
    "actions/greet.yaml": "name: greet\nrunner_type: python-script\nentry_point: greet.py\n"
    "parameters:\n  name: {type: string, required: true}\n",
    "actions/greet.py": "def run(name):\n    return name\n",
    "actions/ghost.yaml": "name: ghost\nrunner_type: python-script\nentry_point: missing.py\n",
    "actions/bad.yaml": "name: bad\nrunner_type: [unclosed\n",
    "actions/other_file.yaml": "name: renamed\nrunner_type: noop\n",
    "workflows/ok.yaml": CALLS_GREET,
    "workflows/child.yaml": "ref: p.child\nparameters: {n: {type: integer}}\ntasks:\n"
    "  - name: only\n    action: core.noop\n",
    "workflows/uses_bad.yaml": "ref: p.uses_bad\ntasks:\n  - name: t\n    action: p.bad\n",
    "workflows/uses_ghost.yaml": "ref: p.uses_ghost\ntasks:\n  - name: t\n    action: p.ghost\n",
    "workflows/loop_a.yaml": "ref: p.loop_a\ntasks:\n  - name: t\n    action: p.loop_b\n",
    "workflows/loop_b.yaml": "ref: p.loop_b\ntasks:\n  - name: t\n    action: p.loop_a\n",
    "workflows/bad_template.yaml": "ref: p.bad_template\ntasks:\n  - name: t\n    action: core.echo\n"
    "    input: {message: '{{ vars.nope }}'}\n",
    "workflows/calls_bad_template.yaml": "ref: p.calls_bad_template\ntasks:\n  - name: t\n"
    "    action: p.bad_template\n",
    "workflows/unconventional.yaml": "ref: p.named_otherwise\ntasks:\n  - name: t\n    action: p.renamed\n",
    "workflows/order.yaml": "ref: p.order\ntasks:\n  - name: t\n    action: p.renamed\n    on_success: u\n"
    "  - name: u\n    action: p.greet\n    input: {name: x}\n",
    "workflows/typo.yaml": "ref: p.typo\ntasks:\n  - name: t\n    action: p.greeet\n",
    "workflows/unknown_key.yaml": "ref: p.unknown_key\ntasks:\n  - name: t\n    action: core.noop\n"
    "    colour: red\n",
}


def write_all(packs) -> None:  # type: ignore[no-untyped-def]
    packs.pack("p", FILES, meta="ref: p\ndependencies: [missing]\n")
    packs.pack(
        "q", {"workflows/x.yaml": "ref: q.x\ntasks:\n  - name: t\n    action: p.child\n    input: {n: 2}\n"}
    )
    packs.pack(
        "dirname",
        {"workflows/y.yaml": "ref: r.y\ntasks:\n  - name: t\n    action: core.noop\n"},
        meta="ref: r\n",
    )
    packs.pack("broken", {"workflows/z.yaml": "ref: broken.z\ntasks: []\n"}, meta="ref: Bad Ref\n")
    (packs.root / "p" / "workflows" / "latin.yaml").write_bytes(b"ref: p.latin\n# \xff\xfe\n")


def lines(report: Report) -> list[str]:
    return [problem.format() for problem in report.problems]


def cached(root: Path, scope: str = "all") -> tuple[Catalog, Report]:
    store = FileCache(root, version="test")
    catalog = load_catalog([Path("packs")], cache=store)
    return catalog, validate_cached(catalog, 5, store, scope)


def test_reports_are_identical_without_the_cache_cold_and_warm(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    plain = validate_catalog(load_catalog([Path("packs")]))
    assert plain.errors() and plain.warnings()  # the packs above do have problems
    for _ in ("cold", "warm"):
        catalog, report = cached(tmp_path / "cache")
        assert lines(report) == lines(plain)
        assert report.invalid_workflows == plain.invalid_workflows
        assert sorted(catalog.workflows) == sorted(load_catalog([Path("packs")]).workflows)
    store = FileCache(tmp_path / "cache", version="test")
    load_catalog([Path("packs")], cache=store)
    assert store.hits > 0 and store.misses == 0


def test_a_closure_decides_about_its_workflow_as_the_whole_catalog_does(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    full = validate_catalog(load_catalog([Path("packs")]))
    refs = sorted(load_catalog([Path("packs")]).workflows)
    assert "p.named_otherwise" in refs and "r.y" in refs
    for use_cache in (False, True, True):
        store = FileCache(tmp_path / "cache", version="test") if use_cache else None
        for ref in refs:
            closure = load_workflow_closure([Path("packs")], ref, cache=store)
            assert closure is not None, ref
            report = validate_cached(closure, 5, store, f"workflow:{ref}")
            assert (ref in report.invalid_workflows) == (ref in full.invalid_workflows), ref
            if ref in full.invalid_workflows and ref != "p.typo":  # "did you mean" sees fewer refs
                assert report.invalid_workflows[ref] == full.invalid_workflows[ref], ref
    assert load_workflow_closure([Path("packs")], "p.nothing_like_it") is None
    assert load_workflow_closure([Path("packs")], "broken.z") is None


def test_a_closure_reads_only_what_the_workflow_calls(packs) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    closure = load_workflow_closure([Path("packs")], "q.x")
    assert closure is not None
    assert sorted(closure.workflows) == ["p.child", "q.x"]
    assert sorted(closure.actions) == ["core.noop"]
    assert sorted(closure.packs) == ["core", "p", "q"]
    closure = load_workflow_closure([Path("packs")], "p.ok")
    assert closure is not None
    assert sorted(closure.actions) == ["core.noop", "p.greet", "p.renamed"]
    closure = load_workflow_closure([Path("packs")], "p.order")  # scanning for p.renamed reads greet.yaml
    assert closure is not None
    assert sorted(closure.actions) == ["p.greet", "p.renamed"]


def test_an_edit_is_seen_even_with_the_same_size_and_mtime(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    path = packs.root / "p" / "workflows" / "ok.yaml"
    catalog, _ = cached(tmp_path / "cache")
    assert catalog.workflows["p.ok"].workflow.tasks[0].name == "first"
    stat = path.stat()
    path.write_text(path.read_text().replace("first", "frist"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size
    catalog, report = cached(tmp_path / "cache")
    assert catalog.workflows["p.ok"].workflow.tasks[0].name == "frist"
    assert lines(report) == lines(validate_catalog(load_catalog([Path("packs")])))


def test_a_new_entry_point_file_changes_the_report(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    _, before = cached(tmp_path / "cache")
    assert "p.uses_ghost" in before.invalid_workflows
    (packs.root / "p" / "actions" / "missing.py").write_text("def run():\n    return 1\n")
    _, after = cached(tmp_path / "cache")
    assert "p.uses_ghost" not in after.invalid_workflows
    assert lines(after) == lines(validate_catalog(load_catalog([Path("packs")])))


def test_unreadable_entries_are_misses(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    _, first = cached(tmp_path / "cache")
    entries = [p for p in (tmp_path / "cache").rglob("*.pickle")]
    assert entries
    for entry in entries:
        entry.write_bytes(b"not a pickle")
    _, again = cached(tmp_path / "cache")
    assert lines(again) == lines(first)


def _load_many(root: str) -> list[str]:
    result: list[str] = []
    for _ in range(4):
        _, report = cached(Path(root))
        result = lines(report)
    return result


def test_processes_writing_the_cache_at_once_agree(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_all(packs)
    expected = lines(validate_catalog(load_catalog([Path("packs")])))
    # spawn, not fork: forking a process that runs Airflow's threads can deadlock
    pool = multiprocessing.get_context("spawn").Pool(4)
    try:
        results = pool.map(_load_many, [str(tmp_path / "cache")] * 8)
    finally:
        pool.close()
        pool.join()
    assert all(result == expected for result in results)
    assert not [p for p in (tmp_path / "cache").rglob(".tmp-*")]  # no temporary file left


def test_where_the_cache_lives(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(cache_module.CACHE_DIR_ENV, raising=False)
    monkeypatch.setenv("AIRFLOW__ATTUNE__CACHE_DIR", "")
    assert configured_dir() == tmp_path / "home" / "attune_cache"
    monkeypatch.setenv("AIRFLOW__ATTUNE__CACHE_DIR", str(tmp_path / "from-airflow"))
    assert configured_dir() == tmp_path / "from-airflow"
    monkeypatch.setenv(cache_module.CACHE_DIR_ENV, str(tmp_path / "from-env"))
    assert configured_dir() == tmp_path / "from-env"
    monkeypatch.setenv(cache_module.CACHE_DIR_ENV, "off")
    assert configured_dir() is None
    assert FileCache.open() is None


def test_a_batch_keeps_one_bundle_per_scope(packs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Within `batch`, file entries live in one bundle: a cold load creates one file, a
    warm one reads it back, an edit is seen, and a deleted file leaves the bundle."""

    def load(scope: str = "all") -> tuple[Catalog, FileCache]:
        store = FileCache(tmp_path / "cache", version="test")
        with store.batch(scope):
            catalog = load_catalog([Path("packs")], cache=store)
        return catalog, store

    write_all(packs)
    catalog, store = load()
    assert store.misses > 0 and store.hits == 0
    written = sorted(p.relative_to(tmp_path / "cache") for p in (tmp_path / "cache").rglob("*.pickle"))
    assert [p.parts[1] for p in written] == ["bundles"]
    _, store = load()
    assert store.hits > 0 and store.misses == 0
    path = packs.root / "p" / "workflows" / "ok.yaml"
    stat = path.stat()
    path.write_text(path.read_text().replace("first", "frist"))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    catalog, store = load()
    assert catalog.workflows["p.ok"].workflow.tasks[0].name == "frist" and store.misses == 1

    def bundled() -> int:
        bundle = next((tmp_path / "cache").rglob("bundles/*.pickle"))
        return len(cache_module.pickle.loads(bundle.read_bytes()))

    before = bundled()
    path.unlink()
    catalog, _ = load()
    assert "p.ok" not in catalog.workflows
    assert bundled() == before - 1
    _, store = load()
    assert store.misses == 0


def test_a_load_interrupted_midway_keeps_what_it_parsed(tmp_path: Path) -> None:
    """Airflow's import timeout raises in the middle of a cold load of many files: the files
    parsed by then are kept, so the next parse goes further instead of starting cold again."""
    from attune_provider.dag_factory.file_cache import FileCache
    from attune_provider.language.source import Problem

    files = []
    for i in range(4):
        path = tmp_path / f"f{i}.yaml"
        path.write_text(f"value: {i}\n")
        files.append(path)
    cache = FileCache(tmp_path / "cache")

    def parse(loaded: object) -> tuple[object, list[Problem]]:
        return {"parsed": True}, []

    with pytest.raises(TimeoutError), cache.batch("all"):
        for path in files[:2]:
            cache.parsed(path, path.name, "Thing", 10_000, parse)
        raise TimeoutError("the import timeout, halfway")
    with cache.batch("all"):
        for path in files:
            cache.parsed(path, path.name, "Thing", 10_000, parse)
    assert cache.hits == 2 and cache.misses == 4  # the first two came from the interrupted load
