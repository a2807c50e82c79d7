"""The compiled DAG's edges carry the transitions that make them (Airflow `Label`s), so
Airflow's graph view shows the failure paths; the wiring itself is unchanged, and the
labels survive serialization (what the DAG processor stores and the UI reads)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import DAG
from airflow.serialization.serialized_objects import DagSerialization

from attune_provider.dag_factory.compiler import build_dag
from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.language.plan import build_plan

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

CHILD = """
    ref: p.child
    tasks:
      - name: one
        action: core.noop
        on_success: two
        on_failure: two
      - name: two
        action: core.noop
"""

WORKFLOW = """
    ref: p.wf
    tasks:
      - name: a
        action: core.noop
        timeout: 5
        on_success: [b, grp]
        on_complete: b
        on_failure: rescue
        on_timeout: late
      - name: b
        action: core.noop
        decision:
          - when: "{{ true }}"
            next: call
          - default: rescue
      - name: grp
        type: parallel
        tasks:
          - {name: m1, action: core.noop}
          - {name: m2, action: core.noop}
        on_failure: rescue
      - name: call
        action: p.child
        on_success: done
        retry: {count: 1}
      - name: rescue
        action: core.noop
        on_complete: fail
      - name: late
        action: core.noop
      - name: done
        action: core.noop
"""

LABELS = {
    ("a", "b"): "on success, on complete",  # two transitions, one edge: one label naming both
    ("a", "grp.m1"): "on success",  # into a parallel group: on each of its members' edges
    ("a", "grp.m2"): "on success",
    ("a", "rescue"): "on failure",
    ("a", "late"): "on timeout",
    ("b", "call.attempt_1.attune_input"): "decision: {{ true }}",
    ("b", "rescue"): "default",
    ("grp.attune_outcome", "rescue"): "on failure",  # out of a group: from its outcome step
    ("call.attune_outcome", "done"): "on success",
    ("call.attempt_1.one", "call.attempt_1.two"): "on success, on failure",  # inside each attempt
    ("call.attempt_2.one", "call.attempt_2.two"): "on success, on failure",
}


def compiled(packs: PackWriter) -> DAG:
    packs.pack("p", {"workflows/wf.yaml": WORKFLOW, "workflows/child.yaml": CHILD})
    catalog = packs.catalog()
    assert "p.wf" not in validate_catalog(catalog).invalid_workflows
    return build_dag(build_plan(catalog.workflows["p.wf"], catalog))


def labels(dag) -> dict[tuple[str, str], str]:
    return {
        (up, down): info["label"]
        for up, downs in dag.edge_info.items()
        for down, info in downs.items()
        if info.get("label")
    }


def test_each_transition_edge_carries_its_label(packs: PackWriter) -> None:
    dag = compiled(packs)
    assert labels(dag) == LABELS
    assert dag.get_edge_info("a", "late") == {"label": "on timeout"}
    for up, down in LABELS:  # every labelled edge is a real one
        assert down in dag.get_task(up).downstream_task_ids


def test_labels_wire_tasks_not_whole_groups(packs: PackWriter) -> None:
    """`a >> Label() >> b` across TaskGroups would wire every leaf of one group to every
    root of the other: the edges stay those of the transitions."""
    dag = compiled(packs)
    upstream = {task.task_id: set(task.upstream_task_ids) for task in dag.tasks}
    assert upstream["rescue"] == {"a", "b", "grp.attune_outcome"}
    assert upstream["done"] == {"call.attune_outcome"}
    assert upstream["grp.m1"] == upstream["grp.m2"] == {"a"}
    assert upstream["call.attempt_1.attune_input"] == {"b"}
    assert upstream["late"] == {"a"}


def test_the_labels_survive_serialization(packs: PackWriter) -> None:
    dag = compiled(packs)
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert labels(restored) == LABELS
    assert restored.get_edge_info("grp.attune_outcome", "rescue") == {"label": "on failure"}
    assert {t.task_id: set(t.upstream_task_ids) for t in restored.tasks} == {
        t.task_id: set(t.upstream_task_ids) for t in dag.tasks
    }
