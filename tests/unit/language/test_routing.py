"""`Graph.settled_by`: which tasks an outcome leaves with no way to run (skipped at once)."""

from __future__ import annotations

from typing import Any

import pytest

from attune_provider.language.models import Task
from attune_provider.language.routing import Graph


def graph(*tasks: dict[str, Any]) -> Graph:
    return Graph.build([Task.model_validate(t) for t in tasks])


DIAMOND = graph(
    {"name": "start", "action": "core.noop", "on_success": ["a1", "b1"], "on_failure": "oops"},
    {"name": "a1", "action": "core.noop", "on_success": "join"},
    {"name": "b1", "action": "core.noop", "on_success": "b2"},
    {"name": "b2", "action": "core.noop", "on_success": "join"},
    {"name": "oops", "action": "core.noop", "on_complete": "join"},
    {"name": "join", "action": "core.noop", "on_success": "end"},
    {"name": "end", "action": "core.noop"},
)


@pytest.mark.parametrize(
    ("fired", "settled"),
    [
        (["a1", "b1"], ["oops"]),  # the failure path cannot run any more
        (["a1"], ["b1", "oops", "b2"]),  # a whole branch, not the join a1 can still reach
        (["oops"], ["a1", "b1", "b2"]),
        ([], ["a1", "b1", "oops", "b2", "join", "end"]),  # skipped: everything after it
    ],
)
def test_settled_by_is_what_no_transition_can_reach(fired: list[str], settled: list[str]) -> None:
    assert DIAMOND.settled_by("start", fired) == settled


def test_a_task_with_another_live_predecessor_is_not_settled() -> None:
    g = graph(
        {"name": "a", "action": "core.noop", "on_success": "c"},
        {"name": "b", "action": "core.noop", "on_success": "c"},
        {"name": "c", "action": "core.noop"},
    )
    assert g.settled_by("a", []) == []
    assert g.settled_by("c", []) == []


def test_topological_order_keeps_declaration_order_where_free() -> None:
    tasks = [
        Task(name="c", action="x", on_success=["d"]),
        Task(name="a", action="x", on_success=["c", "b"]),
        Task(name="b", action="x"),
        Task(name="d", action="x"),
    ]
    assert Graph.build(tasks).topological() == ["a", "c", "b", "d"]
