"""Limits on a workflow's size (limits.py): `[attune] max_tasks`, and `[attune] max_items`
for a with_items list written out in the workflow. Both are set low through the
environment here; docs/validation.md lists the defaults."""

from __future__ import annotations

import pytest

from attune_provider.cli import main
from attune_provider.dag_factory.validation.checks import validate_catalog
from tests.unit.dag_factory.validation.helpers import WF

CHILD = """\
    ref: p.child
    tasks:
      - name: c1
        action: core.noop
        on_success: c2
      - name: c2
        action: core.noop
        on_success: c3
      - name: c3
        action: core.noop
"""


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "5")
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_ITEMS", "3")
    return monkeypatch


def test_every_task_counts_parallel_members_too(packs, limits):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: b
                  - name: b
                    action: core.noop
                    on_success: group
                  - name: group
                    type: parallel
                    tasks:
                      - name: m1
                        action: core.noop
                      - name: m2
                        action: core.noop
                    on_success: c
                  - name: c
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "17:11: error: the workflow has 6 tasks (parallel members and subworkflows' tasks included),"
        " more than the limit of 5 ([attune] max_tasks): task 'c' passes it"
    ]


def test_a_workflow_at_the_limit_is_valid(packs, limits):
    packs.pack("p", {"workflows/w.yaml": CHILD.replace("ref: p.child", "ref: p.w")})
    limits.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "3")
    assert packs.problems() == []


def test_a_subworkflows_tasks_count_toward_its_caller(packs, limits):
    """The child (3 tasks) is valid; a caller with 2 tasks of its own and the call has 6."""
    packs.pack(
        "p",
        {
            "workflows/child.yaml": CHILD,
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: b
                  - name: b
                    action: core.noop
                    on_success: call
                  - name: call
                    action: p.child
            """,
            "workflows/fits.yaml": """\
                ref: p.fits
                tasks:
                  - name: call
                    action: p.child
                    on_success: last
                  - name: last
                    action: core.noop
            """,
        },
    )
    assert packs.problems() == [
        "packs/p/workflows/w.yaml:9:11: error: the workflow has 6 tasks (parallel members and"
        " subworkflows' tasks included), more than the limit of 5 ([attune] max_tasks):"
        " task 'call' (it runs 'p.child', 3 tasks) passes it"
    ]


def test_nested_subworkflows_count_at_every_depth(packs, limits):
    packs.pack(
        "p",
        {
            "workflows/child.yaml": CHILD,
            "workflows/middle.yaml": "ref: p.middle\ntasks:\n  - name: m\n    action: p.child\n",
            "workflows/w.yaml": "ref: p.w\ntasks:\n  - name: x\n    action: core.noop\n"
            "    on_success: y\n  - name: y\n    action: p.middle\n",
        },
    )
    assert packs.problems() == [
        "packs/p/workflows/w.yaml:6:11: error: the workflow has 6 tasks (parallel members and"
        " subworkflows' tasks included), more than the limit of 5 ([attune] max_tasks):"
        " task 'y' (it runs 'p.middle', 4 tasks) passes it"
    ]
    report = packs.validate()
    assert set(report.invalid_workflows) == {"p.w"}


def test_recursion_is_reported_and_counting_ends(packs, limits):
    packs.pack(
        "p",
        {
            "workflows/a.yaml": "ref: p.a\ntasks:\n  - name: t\n    action: p.b\n",
            "workflows/b.yaml": "ref: p.b\ntasks:\n  - name: t\n    action: p.a\n",
        },
    )
    problems = packs.problems()
    assert problems and all("workflow recursion" in p for p in problems)


def test_the_default_limit_and_an_explicit_one(packs, limits):
    limits.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "")  # empty: the default, 500
    tasks = "".join(f"  - name: t{i}\n    action: core.noop\n" for i in range(501))
    packs.pack("p", {"workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}"})
    assert packs.problems(WF) == [
        "1003:11: error: the workflow has 501 tasks (parallel members and subworkflows' tasks included),"
        " more than the limit of 500 ([attune] max_tasks): task 't500' passes it"
    ]
    assert not validate_catalog(packs.catalog(), max_tasks=501).errors()


def test_an_invalid_setting_is_an_error_of_the_command(packs, limits, capsys):
    packs.pack("p", {"workflows/w.yaml": CHILD.replace("ref: p.child", "ref: p.w")})
    limits.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "lots")
    assert main(["validate", "--packs", "packs"]) == 2
    assert "[attune] max_tasks must be an integer, got 'lots'" in capsys.readouterr().err


def test_the_command_prints_the_error_at_the_line(packs, limits, capsys):
    tasks = "".join(f"  - name: t{i}\n    action: core.noop\n    on_success: t{i + 1}\n" for i in range(5))
    packs.pack("p", {"workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}  - name: t5\n    action: core.noop\n"})
    assert main(["validate", "--packs", "packs"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "packs/p/workflows/w.yaml:18:11: error: the workflow has 6 tasks (parallel members and"
        " subworkflows' tasks included), more than the limit of 5 ([attune] max_tasks): task 't5' passes it"
    ]


# --- with_items lists written out in the workflow -------------------------------------------

ITEMS = """\
    ref: p.w
    parameters:
      n: {type: integer, default: 10}
    tasks:
      - name: yaml_list
        action: core.echo
        with_items: [1, 2, 3, 4]
        input: {message: "{{ item }}"}
      - name: template
        action: core.echo
        with_items: "{{ range(5) | list }}"
        batch_size: 2
        input: {message: "{{ item }}"}
      - name: at_the_limit
        action: core.echo
        with_items: [a, b, c]
        input: {message: "{{ item }}"}
      - name: at_run_time
        action: core.echo
        with_items: "{{ range(parameters.n) | list }}"
        input: {message: "{{ item }}"}
      - name: group
        type: parallel
        tasks:
          - name: member
            action: core.echo
            with_items:
              - 1
              - 2
              - 3
              - 4
            input: {message: "{{ item }}"}
"""


def test_a_constant_list_over_max_items_is_an_error_at_its_line(packs, limits):
    limits.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "")
    packs.pack("p", {"workflows/w.yaml": ITEMS})
    assert packs.problems(WF) == [
        "7:17: error: with_items of task 'yaml_list' lists 4 items, more than the limit of 3"
        " ([attune] max_items)",
        "11:17: error: with_items of task 'template' lists 5 items, more than the limit of 3"
        " ([attune] max_items)",
        "28:11: error: with_items of task 'member' lists 4 items, more than the limit of 3"
        " ([attune] max_items)",
    ]


def test_a_constant_list_at_the_default_limit_is_valid(packs, limits):
    limits.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "")
    limits.setenv("AIRFLOW__ATTUNE__MAX_ITEMS", "")
    packs.pack("p", {"workflows/w.yaml": ITEMS.replace("range(5)", "range(1024)")})
    assert packs.problems(WF) == []
    packs.pack("p", {"workflows/w.yaml": ITEMS.replace("range(5)", "range(1025)")})
    assert packs.problems(WF) == [
        "11:17: error: with_items of task 'template' lists 1025 items, more than the limit of 1024"
        " ([attune] max_items)"
    ]
