"""Transitions as a routing graph, and the routing rules of docs/language.md.

Pure Python: used by the validator (cycles, unreachable tasks) and by the compiler and
the task runtime (who may route to whom, which targets an outcome fires).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import NamedTuple

from attune_provider.language.models import Task
from attune_provider.language.statuses import Status

OUTCOMES = tuple(Status)


class Edge(NamedTuple):
    """One transition: `source` names `target` under `key` (on_success, decision, ...), as
    its `position`-th entry there."""

    source: str
    target: str
    key: str
    position: int


class Graph:
    """The tasks of one scope (a workflow, or a parallel group's members) and their edges."""

    def __init__(self, tasks: dict[str, Task]) -> None:
        self.tasks = tasks
        self.edges: list[Edge] = []

    @classmethod
    def build(cls, tasks: Sequence[Task]) -> Graph:
        by_name: dict[str, Task] = {}
        for task in tasks:
            by_name.setdefault(task.name, task)
        graph = cls(by_name)
        for task in by_name.values():
            for key, index, target in task.transitions():
                if target in by_name:
                    graph.edges.append(Edge(task.name, target, key, index))
        return graph

    @cached_property
    def successors(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {name: [] for name in self.tasks}
        for edge in self.edges:
            if edge.target not in result[edge.source]:
                result[edge.source].append(edge.target)
        return result

    @cached_property
    def predecessors(self) -> dict[str, list[str]]:
        result: dict[str, list[str]] = {name: [] for name in self.tasks}
        for edge in self.edges:
            if edge.source not in result[edge.target]:
                result[edge.target].append(edge.source)
        return result

    @cached_property
    def inbound(self) -> dict[str, list[Edge]]:
        """The transitions that name each task, in declaration order."""
        result: dict[str, list[Edge]] = {name: [] for name in self.tasks}
        for edge in self.edges:
            result[edge.target].append(edge)
        return result

    @cached_property
    def entries(self) -> list[str]:
        return [name for name, preds in self.predecessors.items() if not preds]

    @cached_property
    def leaves(self) -> list[str]:
        return [name for name, succs in self.successors.items() if not succs]

    def ancestors(self, name: str) -> list[str]:
        """Every task that can lead to `name`, in declaration order."""
        seen: set[str] = set()
        stack = list(self.predecessors[name])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.predecessors[current])
        return [task for task in self.tasks if task in seen]

    def settled_by(self, source: str, fired: Iterable[str]) -> list[str]:
        """The tasks that can no longer run once `source` ended having fired `fired`: the
        successors it did not fire whose every predecessor is `source` or such a task."""
        fired_set, dead = set(fired), set[str]()
        queue = [s for s in self.successors.get(source, []) if s not in fired_set]
        found: list[str] = []
        while queue:
            name = queue.pop(0)
            if name in dead or name in fired_set:
                continue
            if all(p == source or p in dead for p in self.predecessors[name]):
                dead.add(name)
                found.append(name)
                queue.extend(self.successors[name])
        return found

    def topological(self) -> list[str]:
        """Every task after all the tasks that can lead to it, else in declaration order
        (the graph of a valid workflow has no cycle)."""
        position = {name: index for index, name in enumerate(self.tasks)}
        waiting = {name: len(self.predecessors[name]) for name in self.tasks}
        ready = [name for name in self.tasks if not waiting[name]]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for successor in self.successors[name]:
                waiting[successor] -= 1
                if not waiting[successor]:
                    ready.append(successor)
            ready.sort(key=position.__getitem__)
        return order

    def reachable(self, starts: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(starts)
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(self.successors[current])
        return seen

    def cycles(self) -> list[list[Edge]]:
        """Cycles until none is left, each as from `find_cycle`, the next one searched
        without the transitions that closed the ones before (so that each is reported
        once, and breaking them all leaves no cycle)."""
        found: list[list[Edge]] = []
        closing: set[Edge] = set()
        while (cycle := self.find_cycle(closing)) is not None:
            found.append(cycle)
            closing.add(cycle[-1])
        return found

    def find_cycle(self, without: set[Edge] | frozenset[Edge] = frozenset()) -> list[Edge] | None:
        """One cycle as its edges, the last being the transition that closes it, or None;
        the transitions `without` left out.

        A depth-first search with its own stack (a chain of thousands of tasks is valid and
        must not hit Python's recursion limit)."""
        out: dict[str, list[Edge]] = {name: [] for name in self.tasks}
        for transition in self.edges:
            if transition not in without:
                out[transition.source].append(transition)
        done: set[str] = set()
        for root in self.tasks:
            if root in done:
                continue
            on_path = {root}
            path: list[Edge] = []  # the edges from root to the task on top of the stack
            stack = [(root, iter(out[root]))]
            while stack:
                name, edges = stack[-1]
                edge = next(edges, None)
                if edge is None:
                    stack.pop()
                    on_path.discard(name)
                    done.add(name)
                    if path:
                        path.pop()
                elif edge.target in on_path:
                    closed = [*path, edge]
                    start = next(i for i, e in enumerate(closed) if e.source == edge.target)
                    return closed[start:]
                elif edge.target not in done:
                    path.append(edge)
                    on_path.add(edge.target)
                    stack.append((edge.target, iter(out[edge.target])))
        return None


def fired_keys(task: Task, outcome: str) -> tuple[str, ...]:
    """The transition keys an outcome fires (docs/language.md): `succeeded` its
    `decision` (which then governs the success path) or else `on_success`; `failed`
    `on_failure`; `timeout` `on_timeout` if the task has one, else `on_failure`; each of
    them `on_complete`; `skipped` nothing."""
    if outcome == Status.SUCCEEDED:
        primary = "decision" if task.decision else "on_success"
    elif outcome == Status.FAILED:
        primary = "on_failure"
    elif outcome == Status.TIMEOUT:
        primary = "on_timeout" if task.on_timeout else "on_failure"
    else:
        return ()
    return primary, "on_complete"


def handles(task: Task, outcome: str) -> bool:
    """Whether the task names a transition for `outcome` (a handled failure)."""
    if outcome not in (Status.FAILED, Status.TIMEOUT):
        return True
    return any(getattr(task, key) for key in fired_keys(task, outcome))


def fired_targets(task: Task, outcome: str, decision_target: str | None = None) -> list[str]:
    """The targets (task names or reserved words) an outcome fires, in order, without repeats;
    of a decision, only what it picked (`decision_target`)."""
    fired: list[str] = []
    for key in fired_keys(task, outcome):
        if key == "decision":
            targets: Sequence[str] = (decision_target,) if decision_target else ()
        else:
            targets = getattr(task, key)
        for target in targets:
            if target not in fired:
                fired.append(target)
    return fired


def transition_fires(task: Task, edge: Edge, outcome: str, decision_target: str | None) -> bool:
    """Whether an outcome of `task` fires transition `edge` (for `join: all`, which counts
    transitions: `on_success` and `on_complete` naming the same task are two). The entries
    of a decision are one transition, fired when it picked `edge.target`."""
    if edge.key not in fired_keys(task, outcome):
        return False
    return edge.key != "decision" or decision_target == edge.target
