"""Checks of one workflow's task names, task shapes, transitions and task graph (workflow.py)."""

from __future__ import annotations

from tests.unit.dag_factory.validation.helpers import NO_OUTPUT_MAP, WF

# --- task names --------------------------------------------------------------------------


def test_duplicate_task_names_at_the_second_occurrence(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                  - name: g
                    type: parallel
                    tasks:
                      - name: a
                        action: core.noop
                  - name: g
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "8:15: error: duplicate task name 'a'",
        "10:11: error: duplicate task name 'g'",
    ]


def test_task_names_must_be_valid_and_not_reserved(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: fail
                    action: core.noop
                  - name: attune_outcome
                    action: core.noop
                  - name: "bad name"
                    action: core.noop
                  - name: noop
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "3:11: error: task name 'fail' is reserved",
        "5:11: error: task name 'attune_outcome' is reserved",
        "7:11: error: task name 'bad name' must match ^[A-Za-z0-9_][A-Za-z0-9_-]*$",
        "9:11: error: task name 'noop' is reserved",
    ]


def test_subworkflow_with_a_task_named_like_a_step_is_refused(packs):
    packs.pack("p", {"workflows/w.yaml": "ref: p.w\ntasks:\n  - {name: attune_input, action: core.noop}\n"})
    assert [p.message for p in packs.validate().errors()] == ["task name 'attune_input' is reserved"]


# --- transitions and the graph -----------------------------------------------------------


def test_unknown_transition_targets_with_suggestions(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: build
                    action: core.noop
                    on_success: deploi
                    on_failure: [build2, notify]
                  - name: deploy
                    action: core.noop
                    decision:
                      - when: "{{ true }}"
                        next: deploy2
                      - default: fial
                  - name: notify
                    action: core.noop
                    on_timeout: zzz
            """
        },
    )
    assert packs.problems(WF) == [
        "5:17: error: task 'build' transitions to unknown task 'deploi' (did you mean 'deploy'?)",
        "6:18: error: task 'build' transitions to unknown task 'build2' (did you mean 'build'?)",
        "11:15: error: task 'deploy' transitions to unknown task 'deploy2' (did you mean 'deploy'?)",
        "12:18: error: task 'deploy' transitions to unknown task 'fial' (did you mean 'fail'?)",
        "15:17: error: task 'notify' transitions to unknown task 'zzz'",
    ]


def test_cycle_is_reported_at_the_closing_transition(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: start
                    action: core.noop
                    on_success: a
                  - name: a
                    action: core.noop
                    on_success: b
                  - name: b
                    action: core.noop
                    on_success: [c]
                  - name: c
                    action: core.noop
                    on_complete: a
            """
        },
    )
    assert packs.problems(WF) == ["14:18: error: cycle: a -> b -> c -> a"]


def test_self_loop_is_a_cycle(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: start
                    action: core.noop
                    on_success: again
                  - name: again
                    action: core.noop
                    on_failure: again
            """
        },
    )
    assert packs.problems(WF) == ["8:17: error: cycle: again -> again"]


def test_no_entry_task(packs):
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
                    on_failure: a
            """
        },
    )
    assert packs.problems(WF) == [
        "3:3: error: workflow has no entry task: every task is the target of a transition",
        "8:17: error: cycle: a -> b -> a",
    ]


def test_every_cycle_is_reported(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - {name: e, action: core.noop, on_success: [a, c]}
                  - {name: a, action: core.noop, on_success: b, on_failure: a}
                  - {name: b, action: core.noop, on_success: a}
                  - {name: c, action: core.noop, on_success: d}
                  - {name: d, action: core.noop, on_success: c}
            """
        },
    )
    assert packs.problems(WF) == [
        "4:61: error: cycle: a -> a",
        "5:46: error: cycle: a -> b -> a",
        "7:46: error: cycle: c -> d -> c",
    ]


def test_unreachable_tasks_are_warnings(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                  - name: b
                    action: core.noop
                    on_success: c
                  - name: c
                    action: core.noop
                    on_success: b
            """
        },
    )
    assert packs.problems(WF) == [
        "5:11: warning: task 'b' is unreachable from the entry tasks",
        "8:11: warning: task 'c' is unreachable from the entry tasks",
        "10:17: error: cycle: b -> c -> b",
    ]


def test_join_all_that_can_never_run_is_a_warning(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: j
                    on_failure: j
                  - name: b
                    action: core.noop
                    on_success: j
                    on_complete: j
                  - name: j
                    action: core.noop
                    join: all
            """
        },
    )
    assert packs.problems(WF) == [
        "13:11: warning: task 'j' joins all its inbound transitions but can never run:"
        " no outcome of 'a' fires its on_success and on_failure together"
    ]


def test_decision_and_on_success_is_a_warning(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: a
                    action: core.noop
                    on_success: b
                    decision:
                      - default: b
                  - name: b
                    action: core.noop
            """
        },
    )
    assert packs.problems(WF) == [
        "5:5: warning: task 'a' has both 'decision' and 'on_success': 'decision' governs success"
    ]
    assert packs.validate().invalid_workflows == {}


def test_a_chain_of_thousands_of_tasks_is_valid(packs, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "3000")  # the default is 500 (test_limits.py)
    tasks = "".join(f"  - {{name: t{i}, action: core.noop, on_success: t{i + 1}}}\n" for i in range(2999))
    packs.pack(
        "p", {"workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}  - {{name: t2999, action: core.noop}}\n"}
    )
    assert packs.validate().errors() == []


def test_a_cycle_at_the_end_of_a_long_chain_is_found(packs, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_TASKS", "3000")
    tasks = "".join(f"  - {{name: t{i}, action: core.noop, on_success: t{i + 1}}}\n" for i in range(2999))
    packs.pack(
        "p",
        {
            "workflows/w.yaml": f"ref: p.w\ntasks:\n{tasks}"
            "  - {name: t2999, action: core.noop, on_failure: t2990}\n"
        },
    )
    assert [p.message for p in packs.validate().errors()] == [
        "cycle: " + " -> ".join(f"t{i}" for i in [*range(2990, 3000), 2990])
    ]


# --- task shapes ---------------------------------------------------------------------------


def test_task_shapes(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: no_action
                    input: {}
                    on_success: g
                  - name: g
                    type: parallel
                    action: core.noop
                    with_items: "{{ [1] }}"
                    tasks:
                      - name: m
                        action: core.noop
                        on_failure: fail
                        decision:
                          - default: noop
                  - name: empty
                    type: parallel
                  - name: plain
                    action: core.noop
                    batch_size: 2
                    concurrency: 1
                    tasks:
                      - name: inner
                        action: core.noop
            """
        },
    )
    member = "(the group's transitions handle its members)"
    assert packs.problems(WF) == [
        "3:5: error: task 'no_action' needs an 'action'",
        "8:5: error: parallel task 'g' takes no 'action'",
        "9:5: error: parallel task 'g' takes no 'with_items'",
        f"13:9: error: task 'm' is a member of parallel group 'g' and takes no 'on_failure' {member}",
        f"14:9: error: task 'm' is a member of parallel group 'g' and takes no 'decision' {member}",
        "17:11: error: parallel task 'empty' needs 'tasks'",
        "20:5: error: 'batch_size' needs 'with_items' (task 'plain')",
        "21:5: error: 'concurrency' needs 'with_items' (task 'plain')",
        "22:5: error: 'tasks' is only for 'type: parallel' (task 'plain')",
    ]


def test_parallel_groups_do_not_nest_and_members_are_not_targets(packs):
    packs.pack(
        "p",
        {
            "workflows/w.yaml": """\
                ref: p.w
                tasks:
                  - name: outer
                    type: parallel
                    tasks:
                      - name: inner
                        type: parallel
                        tasks:
                          - name: leaf
                            action: core.noop
                    on_success: leaf
            """
        },
    )
    assert packs.problems(WF) == [
        "7:15: error: parallel group 'inner' cannot be a member of group 'outer'",
        "11:17: error: task 'outer' transitions to 'leaf', a member of a parallel group",
    ]


def test_with_items_over_a_subworkflow_that_maps_again_is_an_error(packs):
    inner = "ref: p.inner\ntasks: [{name: each, action: core.noop, with_items: '{{ [1] }}'}]\n"
    child = "ref: p.c\ntasks: [{name: x, action: p.inner}]\n"
    workflow = """\
        ref: p.w
        tasks:
          - {name: s, action: p.c, with_items: "{{ [1, 2] }}"}
          - {name: plain, action: p.c}
        output_map: {}
        """
    packs.pack(
        "p", {"workflows/inner.yaml": inner, "workflows/c.yaml": child, "workflows/w.yaml": workflow}
    )
    assert packs.problems(WF) == [
        "3:40: error: 'with_items' over subworkflow 'p.c', which maps again (task 'each' of p.inner "
        "has with_items): Airflow cannot map inside a mapped TaskGroup; give the inner list to the "
        "outer workflow, or batch it",
    ]


def test_options_that_would_be_ignored_are_warnings(packs):
    child = "ref: p.c\ntasks: [{name: x, action: core.noop}]\n"
    workflow = """\
        ref: p.w
        output: {type: object}
        tasks:
          - {name: s, action: p.c, with_items: "{{ [1] }}", retry: {count: 2}, on_success: g}
          - name: g
            type: parallel
            input: {a: 1}
            tasks:
              - {name: m, action: core.noop}
        """
    packs.pack("p", {"workflows/c.yaml": child, "workflows/w.yaml": workflow})
    assert packs.problems(WF) == [
        "2:1: warning: " + NO_OUTPUT_MAP,
        "7:5: warning: 'input' of parallel task 'g' has no effect (set it on its members)",
    ]
