"""Which definition of a ref loads when two claim it: the whole packs path and a task's
parse (which reads only one workflow's files) must agree, and the other is the error."""

from __future__ import annotations

from pathlib import Path

from attune_provider.dag_factory.closure import load_workflow_closure
from tests.unit.conftest import PackWriter

ROUTE = "ref: bb.route\ntasks:\n  - name: measure\n    action: core.noop\n"
IMPOSTOR = "ref: bb.route\nlabel: IMPOSTOR\ntasks:\n  - name: impostor\n    action: core.noop\n"


def _task_names(catalog_workflow: object) -> list[str]:
    return [task.name for task in catalog_workflow.tasks]  # type: ignore[attr-defined]


def test_the_file_named_after_a_workflow_wins_over_a_copy_sorted_before_it(packs: PackWriter) -> None:
    packs.pack("bb", {"workflows/route.yaml": ROUTE, "workflows/a_route_copy.yaml": IMPOSTOR})
    catalog = packs.catalog()
    assert _task_names(catalog.workflows["bb.route"].workflow) == ["measure"]
    closure = load_workflow_closure([Path("packs")], "bb.route")
    assert closure is not None and _task_names(closure.workflows["bb.route"].workflow) == ["measure"]
    assert packs.problems() == [
        "packs/bb/workflows/a_route_copy.yaml:1:6: error: workflow 'bb.route' is defined twice: "
        "workflow 'bb.route' is already defined in packs/bb/workflows/route.yaml"
    ]


def test_the_directory_named_after_a_pack_wins_over_another_claiming_its_ref(packs: PackWriter) -> None:
    packs.pack("bb", {"workflows/route.yaml": ROUTE})
    packs.pack(
        "aa_dup_pack", {"workflows/other.yaml": "ref: bb.other\ntasks: [{name: a, action: core.noop}]\n"}
    )
    packs.write(packs.root / "aa_dup_pack" / "pack.yaml", "ref: bb\n")
    catalog = packs.catalog()
    assert catalog.packs["bb"].directory.name == "bb"
    assert set(catalog.workflows) == {"bb.route"}  # the other pack's workflows are left out with it
    assert packs.problems() == [
        "packs/aa_dup_pack/pack.yaml:1:6: error: pack 'bb' is already loaded from packs/bb"
    ]


def test_an_action_and_a_workflow_of_one_ref_name_each_other(packs: PackWriter) -> None:
    packs.pack(
        "bb", {"workflows/route.yaml": ROUTE, "actions/route.yaml": "name: route\nrunner_type: noop\n"}
    )
    problems = packs.problems()
    assert problems == [
        "packs/bb/workflows/route.yaml:1:6: error: workflow 'bb.route' is defined twice: "
        "action 'bb.route' is already defined in packs/bb/actions/route.yaml"
    ]


def test_what_cannot_load_silently_is_reported(packs: PackWriter) -> None:
    """A broken link where a workflow should be is an error; a directory that looks like a
    pack but has no pack.yaml is a warning (neither loads anything)."""
    directory = packs.pack("bb", {"workflows/route.yaml": ROUTE})
    (directory / "workflows" / "dangling.yaml").symlink_to(directory / "workflows" / "gone.yaml")
    packs.write(packs.root / "nopack" / "workflows" / "w.yaml", ROUTE.replace("bb.route", "nopack.w"))
    assert packs.problems() == [
        "packs/bb/workflows/dangling.yaml:1:1: error: not a readable file (a broken link?)",
        "packs/nopack:1:1: warning: has workflows/ or actions/ but no pack.yaml: not loaded as a pack",
    ]
