"""The DAG files loaded through Airflow's own DagBag: good workflows load from
attune_dags.py, broken ones are reported as one import error of attune_errors.py naming
file and line, and never take the others down (test_isolation_live.py checks the same in
Airflow's real DAG processor, which an in-process DagBag does not prove)."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from tests.support import install_dag_files, write_pack

GOOD = """
ref: good.hello
label: Hello Workflow
description: Says hello
tags: [demo]
parameters:
  name: {type: string, required: true, description: Who to greet}
  times: {type: integer, default: 1}
  mood: {type: string, enum: [happy, grumpy], default: happy}
tasks:
  - name: greet
    action: core.echo
    input: {message: "hello {{ parameters.name }}"}
    on_success: [done, also]
    on_failure: oops
  - name: done
    action: core.noop
  - name: also
    action: core.noop
  - name: oops
    action: core.noop
"""


@pytest.fixture
def dagbag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DagBag:
    dags = tmp_path / "dags"
    dags.mkdir()
    install_dag_files(dags)
    packs = tmp_path / "packs"
    write_pack(packs, "good", {"workflows/hello.yaml": GOOD})
    write_pack(
        packs,
        "good2",
        {"workflows/broken.yaml": "ref: good2.broken\ntasks:\n  - name: a\n    action: core.nope\n"},
    )
    write_pack(packs, "bad", {"workflows/w.yaml": "ref: bad.w\ntasks: [\n"})
    monkeypatch.setenv("ATTUNE_PACKS_PATH", str(packs))
    monkeypatch.chdir(tmp_path)
    return DagBag(dag_folder=str(dags), bundle_path=dags)


def test_good_workflows_load_beside_broken_ones(dagbag: DagBag, tmp_path: Path) -> None:
    assert "good.hello" in dagbag.dags
    assert "good2.broken" not in dagbag.dags and "bad.w" not in dagbag.dags
    assert list(dagbag.import_errors) == ["attune_errors.py"]  # never attune_dags.py: see factory.py
    message = dagbag.import_errors["attune_errors.py"]
    packs = tmp_path / "packs"  # as the packs path names it: absolute
    assert f"{packs}/good2/workflows/broken.yaml:4:13: error: unknown action 'core.nope'" in message
    assert f"{packs}/bad/workflows/w.yaml:3:1: error: invalid YAML" in message
    header = message.splitlines()[0]
    assert "workflows left out: good2.broken" in header
    assert f"files that could not be used (what they define is left out): {packs}/bad/workflows/w.yaml" in (
        header
    )


def test_dag_carries_workflow_metadata_and_typed_params(dagbag: DagBag) -> None:
    dag = dagbag.dags["good.hello"]
    assert dag.dag_display_name == "Hello Workflow"
    assert dag.description == "Says hello"
    assert {"demo", "pack:good"} <= set(dag.tags)
    params = dag.params
    assert params.get_param("name").schema["type"] == "string"
    assert params.get_param("times").value == 1
    assert params.get_param("mood").schema["enum"] == ["happy", "grumpy"]


def test_graph_is_the_transition_graph(dagbag: DagBag) -> None:
    dag = dagbag.dags["good.hello"]
    assert set(dag.task_dict) == {"greet", "done", "also", "oops", "attune_outcome"}
    assert dag.task_dict["greet"].downstream_task_ids == {"done", "also", "oops"}
    # reached only by greet's on_success: Airflow's all_success keeps its gate (plan.trigger_gated)
    assert dag.task_dict["done"].trigger_rule == "all_success"
    assert dag.task_dict["oops"].trigger_rule == "all_done"  # on_failure: the task reads its gate
    assert dag.task_dict["attune_outcome"].trigger_rule == "all_done"
    assert dag.task_dict["attune_outcome"].upstream_task_ids == {"done", "also", "oops"}


def test_loaded_dags_keep_no_yaml_positions(dagbag: DagBag) -> None:
    """Positions serve validation only; DAGs keep their workflow's models alive (memory)."""
    greet = dagbag.dags["good.hello"].task_dict["greet"]
    assert greet.plan.workflow.source is None
    assert all(task.source is None for task in greet.plan.workflow.tasks)
    assert greet.spec.input == {"message": "hello {{ parameters.name }}"}


def test_provider_is_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "airflow-provider-attune" in providers
    from attune_provider import __version__

    assert providers["airflow-provider-attune"].version == __version__ == "0.5.0"


def test_a_workflow_that_fails_to_compile_is_an_import_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workflow the validator passes but the compiler cannot build (a bug, or an Airflow
    limit no check knows of) is reported like any broken workflow, and the others load."""
    from attune_provider.dag_factory import compiler

    dags = tmp_path / "dags"
    dags.mkdir()
    install_dag_files(dags)
    write_pack(
        tmp_path / "packs",
        "p",
        {
            "workflows/odd.yaml": "ref: p.odd\ntasks: [{name: a, action: core.noop}]\n",
            "workflows/fine.yaml": "ref: p.fine\ntasks: [{name: a, action: core.noop}]\n",
        },
    )
    real = compiler.build_dag

    def build_dag(plan):  # type: ignore[no-untyped-def]
        if plan.ref == "p.odd":
            raise ValueError("something Airflow refused")
        return real(plan)

    monkeypatch.setattr(compiler, "build_dag", build_dag)
    monkeypatch.setenv("ATTUNE_PACKS_PATH", str(tmp_path / "packs"))
    monkeypatch.setenv("ATTUNE_CACHE_DIR", "off")
    monkeypatch.chdir(tmp_path)
    dagbag = DagBag(dag_folder=str(dags), bundle_path=dags)
    assert "p.fine" in dagbag.dags and "p.odd" not in dagbag.dags
    message = dagbag.import_errors["attune_errors.py"]
    assert "workflows left out: p.odd" in message
    assert "packs/p/workflows/odd.yaml:1:1: error: could not compile: something Airflow refused" in message


def test_an_invalid_option_is_a_one_line_import_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    install_dag_files(dags)
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_FILE_BYTES", "abc")
    dagbag = DagBag(dag_folder=str(dags), bundle_path=dags)
    assert dagbag.dags == {}
    message = dagbag.import_errors["attune_errors.py"]
    assert "Attune could not load its packs: [attune] max_file_bytes must be an integer, got 'abc'" in message
    assert "Traceback" not in message


def test_the_errors_file_reuses_the_compile_the_dag_file_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the cache on, attune_errors.py compiles nothing that attune_dags.py compiled from
    the same inputs: it reports the compile failure recorded then, not a new one."""
    from attune_provider.dag_factory import compiler, factory

    one_task = "tasks: [{name: a, action: core.noop}]\n"
    write_pack(tmp_path / "packs", "p", {"workflows/odd.yaml": "ref: p.odd\n" + one_task})
    write_pack(tmp_path / "packs", "q", {"workflows/ok.yaml": "ref: q.ok\n" + one_task})
    monkeypatch.setenv("ATTUNE_PACKS_PATH", str(tmp_path / "packs"))
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(tmp_path / "cache"))
    real = compiler.build_dag

    def refuse(ref: str):  # type: ignore[no-untyped-def]
        def build_dag(plan):  # type: ignore[no-untyped-def]
            if plan.ref == ref:
                raise ValueError(f"refused {ref}")
            return real(plan)

        return build_dag

    monkeypatch.setattr(compiler, "build_dag", refuse("p.odd"))
    assert set(factory.dags_for_airflow()) == {"q.ok"}
    monkeypatch.setattr(compiler, "build_dag", refuse("q.ok"))  # would fail q.ok if compiled again
    message = factory.errors_for_airflow()[factory.BROKEN_DAG_ID].attune_message
    assert "workflows left out: p.odd" in message and "refused p.odd" in message and "q.ok" not in message
    (tmp_path / "packs" / "q" / "workflows" / "ok.yaml").write_text(
        "ref: q.ok\ntasks: [{name: b, action: core.noop}]\n"
    )  # new inputs: the errors file compiles them itself
    message = factory.errors_for_airflow()[factory.BROKEN_DAG_ID].attune_message
    assert "workflows left out: p.odd, q.ok" not in message  # p.odd compiles now: only q.ok is refused
    assert "workflows left out: q.ok" in message and "refused q.ok" in message


def test_dag_file_parts_load_every_dag_and_a_worker_runs_one_from_its_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, airflow_db: None
) -> None:
    """`init-dags --parts 3`: the good workflows spread over the part files, the broken one
    is still the errors file's import error, and a worker's parse of the part file that
    holds a DAG (Airflow's parsing context) gives that DAG, which runs."""
    from attune_provider.cli import main

    dags = tmp_path / "dags"
    assert main(["init-dags", str(dags), "--parts", "3"]) == 0
    packs = tmp_path / "packs"
    write_pack(
        packs, "good", {f"workflows/w{i}.yaml": GOOD.replace("good.hello", f"good.w{i}") for i in range(8)}
    )
    write_pack(packs, "bad", {"workflows/w.yaml": "ref: bad.w\ntasks: [\n"})
    monkeypatch.setenv("ATTUNE_PACKS_PATH", str(packs))
    monkeypatch.setenv("ATTUNE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    dagbag = DagBag(dag_folder=str(dags), bundle_path=dags)
    assert sorted(dagbag.dags) == [f"good.w{i}" for i in range(8)]
    assert list(dagbag.import_errors) == ["attune_errors.py"]
    assert "packs/bad/workflows/w.yaml" in dagbag.import_errors["attune_errors.py"]
    files = {Path(dag.fileloc).name for dag in dagbag.dags.values()}
    assert len(files) > 1 and files <= {f"attune_dags_{i}_of_3.py" for i in (1, 2, 3)}
    home = Path(dagbag.dags["good.w5"].fileloc)
    with monkeypatch.context() as parsing:  # Airflow's parsing context, as a worker sets it
        parsing.setenv("_AIRFLOW_PARSING_CONTEXT_DAG_ID", "good.w5")
        worker = DagBag(dag_folder=str(home), bundle_path=dags)
    assert list(worker.dags) == ["good.w5"]
    run = worker.dags["good.w5"].test(run_conf={"name": "parts"})
    assert run.state == "success"
