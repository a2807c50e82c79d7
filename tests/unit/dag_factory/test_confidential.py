"""Confidential workflows (docs/confidential.md), the parts built so far: `attributes`
checked strictly at its lines, and every task of a confidential run routed to the
isolated queue or executor, or the workflow not loaded at all."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from attune_provider.dag_factory.factory import load_packs

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

CHILD = """
ref: p.child
attributes:
  confidential: true
  secrets:
    - {key: API_KEY}
    - {key: SIGNING_KEY, namespace: payments}
tasks:
  - name: sign
    action: core.echo
    input: {message: signed}
    on_success: fan
  - name: fan
    action: core.echo
    with_items: "{{ [1, 2] }}"
    input: {message: "{{ item }}"}
"""
PARENT = """
ref: p.parent
tasks:
  - name: prepare
    action: core.noop
    on_success: call
  - name: call
    action: p.child
  - name: checks
    type: parallel
    tasks:
      - {name: one, action: core.noop}
"""
PLAIN = "ref: p.plain\ntasks:\n  - name: only\n    action: core.noop\n"
ALL = {"workflows/child.yaml": CHILD, "workflows/parent.yaml": PARENT, "workflows/plain.yaml": PLAIN}


@pytest.mark.parametrize(
    "attributes, where, message",
    [
        ('{confidential: "yes"}', "2:28", "'confidential' must be true or false, got 'yes'"),
        ("{confidential: 1}", "2:28", "'confidential' must be true or false, got 1"),
        ("{confidentail: true}", "2:14", "unknown key 'confidentail'"),
        ("{confidential: true, secrets: [{namespace: main}]}", "2:44", "missing required key"),
        ("{confidential: true, secrets: [{key: API-KEY}]}", "2:50", "must match ^[A-Za-z0-9_]+$"),
        ("{confidential: true, secrets: [{key: K, namespace: a.b}]}", "2:64", "must match"),
        ('{confidential: true, secrets: [{key: "API_KEY\\n"}]}', "2:50", "must match"),  # a final newline
        ("{confidential: true, secrets: [{key: K}, {key: K, namespace: x}]}", "2:54", "K declared twice"),
    ],
)
def test_attributes_are_checked_strictly_at_their_lines(
    packs: PackWriter, attributes: str, where: str, message: str
) -> None:
    body = PLAIN.split("\n", 1)[1]
    packs.pack("p", {"workflows/w.yaml": f"ref: p.w\nattributes: {attributes}\n{body}"})
    (problem,) = packs.problems("p/workflows/w.yaml")
    assert problem.startswith(f"{where}: error: ") and message in problem, problem


def test_every_task_of_a_confidential_run_goes_to_the_confidential_queue(
    packs: PackWriter, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    packs.pack("p", ALL)
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", "attune-confidential")
    with caplog.at_level(logging.INFO):
        loaded = load_packs([Path("packs")], cache=None)
    assert loaded.problems is None and set(loaded.dags) == {"p.child", "p.parent", "p.plain"}
    for dag_id in ("p.child", "p.parent"):  # the parent holds the child's data: all of it is confidential
        dag = loaded.dags[dag_id]
        assert "confidential" in dag.tags
        queues = {task.task_id: task.queue for task in dag.tasks}
        assert set(queues.values()) == {"attune-confidential"}, queues
        assert f"routing workflow to confidential execution: {dag_id}" in caplog.text
    assert {task.queue for task in loaded.dags["p.plain"].tasks} == {"default"}
    assert "confidential" not in loaded.dags["p.plain"].tags


def test_an_executor_can_route_them_too(packs: PackWriter, monkeypatch: pytest.MonkeyPatch) -> None:
    packs.pack("p", {"workflows/child.yaml": CHILD})
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_EXECUTOR", "CeleryExecutor")
    dag = load_packs([Path("packs")], cache=None).dags["p.child"]
    assert {task.executor for task in dag.tasks} == {"CeleryExecutor"}


def test_without_an_isolated_queue_a_confidential_workflow_is_not_loaded(packs: PackWriter) -> None:
    packs.pack("p", ALL)
    loaded = load_packs([Path("packs")], cache=None)
    assert set(loaded.dags) == {"p.plain"}
    assert loaded.problems is not None
    assert "workflows left out: p.child, p.parent" in loaded.problems
    assert (
        "packs/p/workflows/child.yaml:1:1: error: could not compile: workflow p.child is confidential "
        "(itself or a subworkflow it calls) but neither [attune] confidential_queue nor [attune] "
        "confidential_executor is set" in loaded.problems
    )


def test_a_template_reading_an_undeclared_secret_is_a_validation_error(packs: PackWriter) -> None:
    workflow = """ref: p.w
attributes:
  secrets: [{key: API_KEY}]
tasks:
  - name: only
    action: core.echo
    input: {message: "{{ secrets.API_KY }} {{ secrets.API_KEY }}"}
"""
    packs.pack("p", {"workflows/w.yaml": workflow})
    (problem,) = packs.problems("p/workflows/w.yaml")
    assert problem.startswith("7:") and "undeclared secret 'API_KY' in template" in problem, problem
    assert "did you mean 'API_KEY'" in problem


def test_the_dag_carries_the_sha256_of_every_file_of_its_definition(
    packs: PackWriter, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attune_provider.dag_factory.integrity import definition_of
    from attune_provider.language.definition import definition_files

    action = "name: run\nrunner_type: local-shell-script\nentry_point: run.sh\n"
    files = {**ALL, "actions/run.yaml": action, "actions/run.sh": "echo 1\n"}
    signing = "action: core.echo\n    input: {message: signed}"
    files["workflows/child.yaml"] = CHILD.replace(signing, "action: p.run")
    packs.pack("p", files)
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", "attune-confidential")
    dags = load_packs([Path("packs")], cache=None).dags
    parent = dags["p.parent"]
    digest = definition_of(parent)
    assert digest is not None and len(digest) == 64 and digest in (parent.doc_md or "")
    assert definition_of(dags["p.plain"]) is None  # only confidential DAGs carry (and pay for) one
    plan = parent.task_dict["attune_outcome"].plan  # type: ignore[attr-defined]
    assert set(definition_files(plan)) == {
        "p/workflows/parent.yaml", "p/workflows/child.yaml", "p/actions/run.yaml", "p/actions/run.sh",
        "core/actions/echo.yaml", "core/actions/noop.yaml",
    }
    Path("packs/p/actions/run.sh").write_text("echo 2\n")  # the entry point of an action of a subworkflow
    changed = load_packs([Path("packs")], cache=None).dags["p.parent"]
    assert definition_of(changed) not in (None, digest)
