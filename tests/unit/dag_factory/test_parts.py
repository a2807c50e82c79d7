"""DAG file parts (`dags_for_airflow(part=i, parts=k)`, dag_factory/parts.py): every valid
workflow and rule is the DAG of exactly one part, the same DAG the single DAG file builds,
and a part reads only its own files and what they call."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from attune_provider.dag_factory.factory import dags_for_airflow
from attune_provider.dag_factory.parts import Part, load_part
from attune_provider.language.catalog import Catalog
from tests.unit.conftest import PackWriter

PACKS = [Path("packs")]
CALLER = """
ref: {ref}
tasks:
  - name: first
    action: shared.helper
    input: {{who: "{ref}"}}
"""
HELPER = """
ref: shared.helper
parameters:
  who: {type: string, required: true}
tasks:
  - name: say
    action: core.echo
    input: {message: "{{ parameters.who }}"}
"""
RULE = """
ref: {pack}.nightly
trigger: {{type: core.interval, parameters: {{seconds: 3600}}}}
action: {{ref: {pack}.w0}}
"""


def _write_many(packs: PackWriter, per_pack: int = 6) -> None:
    packs.pack("shared", {"workflows/helper.yaml": HELPER})
    for pack in ("alpha", "beta", "gamma"):
        files = {f"workflows/w{i}.yaml": CALLER.format(ref=f"{pack}.w{i}") for i in range(per_pack)}
        files["rules/nightly.yaml"] = RULE.format(pack=pack)
        packs.pack(pack, files)


def _parts(count: int) -> list[set[str]]:
    return [set(dags_for_airflow(PACKS, part=i, parts=count)) for i in range(1, count + 1)]


@pytest.mark.parametrize("count", [2, 3, 7])
def test_the_parts_hold_every_dag_of_the_single_file_once(packs: PackWriter, count: int) -> None:
    _write_many(packs)
    whole = dags_for_airflow(PACKS)
    assert len(whole) == 19 + 3  # 18 callers + the helper, 3 rules
    parts = _parts(count)
    assert sum(len(p) for p in parts) == len(whole)
    assert set().union(*parts) == set(whole)
    assert sum(1 for p in parts if p) > 1  # the hash spreads them


def test_a_dag_of_a_part_is_the_dag_of_the_single_file(packs: PackWriter) -> None:
    _write_many(packs)
    whole = dags_for_airflow(PACKS)
    for number in (1, 2):
        for dag_id, dag in dags_for_airflow(PACKS, part=number, parts=2).items():
            assert sorted(dag.task_dict) == sorted(whole[dag_id].task_dict)
            assert dag.params.dump() == whole[dag_id].params.dump()


def test_a_part_reads_only_its_files_and_what_they_call(packs: PackWriter) -> None:
    _write_many(packs)
    part = Part(1, 3)
    loaded = load_part(PACKS, part, 1_000_000)
    mine = {
        f"{p}.w{i}"
        for p in ("alpha", "beta", "gamma")
        for i in range(6)
        if part.holds(p, "workflows", f"w{i}.yaml")
    }
    assert set(loaded.workflows) == mine | (
        {"shared.helper"} if part.holds("shared", "workflows", "helper.yaml") else set()
    )
    assert set(loaded.catalog.workflows) - set(loaded.workflows) <= {
        "shared.helper",
        "alpha.w0",
        "beta.w0",
        "gamma.w0",
    }
    assert isinstance(loaded.catalog, Catalog)


def test_a_broken_workflow_leaves_out_only_itself_and_its_part_logs_it(
    packs: PackWriter, caplog: pytest.LogCaptureFixture
) -> None:
    _write_many(packs)
    packs.write(
        packs.root / "beta" / "workflows" / "w3.yaml",
        "ref: beta.w3\ntasks:\n  - name: a\n    action: core.nope\n",
    )
    whole = set(dags_for_airflow(PACKS))
    assert "beta.w3" not in whole
    with caplog.at_level(logging.ERROR):
        parts = _parts(3)
    assert set().union(*parts) == whole
    assert "workflows left out: beta.w3" in caplog.text and "core.nope" in caplog.text


def test_a_copy_under_another_file_name_is_not_a_second_dag(packs: PackWriter) -> None:
    _write_many(packs)
    packs.write(packs.root / "alpha" / "workflows" / "a_copy_of_w1.yaml", CALLER.format(ref="alpha.w1"))
    for count in (2, 3, 5):
        parts = _parts(count)
        assert sum(len(p) for p in parts) == len(set().union(*parts))
        assert "alpha.w1" in set().union(*parts)


def test_a_workflow_named_otherwise_than_its_file_is_in_one_part(packs: PackWriter) -> None:
    packs.pack(
        "odd", {"workflows/file_name.yaml": "ref: odd.other_name\ntasks: [{name: a, action: core.noop}]\n"}
    )
    for count in (1, 2, 3):
        parts = _parts(count)
        assert [p for p in parts if "odd.other_name" in p] != [] and sum(
            "odd.other_name" in p for p in parts
        ) == 1


@pytest.mark.parametrize(("part", "parts"), [(0, 2), (3, 2), (1, 0), (1, 1000)])
def test_a_part_out_of_range_loads_nothing_and_says_why(
    packs: PackWriter, caplog: pytest.LogCaptureFixture, part: int, parts: int
) -> None:
    _write_many(packs)
    with caplog.at_level(logging.ERROR):
        assert dags_for_airflow(PACKS, part=part, parts=parts) == {}
    assert "no DAG is loaded from it" in caplog.text


def test_a_workers_parse_gives_the_dag_from_its_own_part_only(
    packs: PackWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`airflow dags test` parses every DAG file in the parsing context of one DAG: a part
    that does not hold it must give nothing, or Airflow sees the DAG in two files."""
    _write_many(packs)
    owners = {ref: i for i, refs in enumerate(_parts(3), 1) for ref in refs}
    for ref in ("alpha.w2", "shared.helper", "gamma.nightly"):
        monkeypatch.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", ref)
        found = [set(dags_for_airflow(PACKS, part=i, parts=3)) for i in (1, 2, 3)]
        assert found[owners[ref] - 1] == {ref}
        assert [f for i, f in enumerate(found, 1) if i != owners[ref]] == [set(), set()]
        assert set(dags_for_airflow(PACKS)) == {ref}  # the single file, as before


def test_a_workflow_with_the_ref_of_an_action_is_left_out_as_by_the_single_file(packs: PackWriter) -> None:
    packs.pack(
        "shop",
        {
            "actions/say.yaml": "name: say\nrunner_type: noop\nparameters: {message: {type: string}}\n",
            "workflows/say.yaml": "ref: shop.say\ntasks: [{name: a, action: core.noop}]\n",
            **{
                f"workflows/zz_{i}.yaml": f"ref: shop.zz_{i}\ntasks:\n  - name: a\n    action: shop.say\n"
                "    input: {message: hi}\n"
                for i in range(6)
            },
        },
    )
    whole = set(dags_for_airflow(PACKS))
    assert whole == {f"shop.zz_{i}" for i in range(6)}
    for count in (2, 3):
        assert set().union(*_parts(count)) == whole


def test_the_errors_file_beside_parts_validates_but_compiles_nothing(
    packs: PackWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune_provider.dag_factory import compiler
    from attune_provider.dag_factory.factory import errors_for_airflow

    _write_many(packs)
    packs.write(
        packs.root / "beta" / "workflows" / "w3.yaml",
        "ref: beta.w3\ntasks:\n  - name: a\n    action: core.nope\n",
    )
    built: list[str] = []
    real = compiler.build_dag
    monkeypatch.setattr(compiler, "build_dag", lambda plan: built.append(plan.ref) or real(plan))
    monkeypatch.setenv("ATTUNE_CACHE_DIR", "off")
    errors = errors_for_airflow(PACKS, compile_check=False)
    assert built == []
    assert "core.nope" in errors["attune_broken_workflows"].attune_message
    errors_for_airflow(PACKS)  # beside one DAG file it compiles to find what the compiler refuses
    assert len(built) == 17 + 1  # the valid callers and the helper
