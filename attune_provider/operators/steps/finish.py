"""After a success: publish in order, then the `decision` (docs/language.md, publish and
decision). Each publish sees the variables published before it, and the decision all of
them; `vars` is read from XCom only if a template looks at it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from attune_provider.language.models import Task
from attune_provider.language.templates.render import render, truthy


class SelfOverlay(Mapping[str, Any]):
    """The `task` scope with one task's own current outcome (for `publish`, `on_error`)."""

    def __init__(self, base: Mapping[str, Any], name: str, own: dict[str, Any]) -> None:
        self._base, self._name, self._own = base, name, own

    def __getitem__(self, key: str) -> Any:
        return self._own if key == self._name else self._base[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def own_scope(scope: dict[str, Any], name: str, own: dict[str, Any]) -> dict[str, Any]:
    """`scope` where `task.<name>` is the task's own outcome `own` (status, result, error)."""
    return {**scope, "task": SelfOverlay(scope["task"], name, own)}


class Finished(NamedTuple):
    published: dict[str, Any]  # what this task published
    vars: Mapping[str, Any]  # the variables after it
    decided: str | None  # the decision's target, if it has a decision


def publish_and_decide(
    task: Task, scope: dict[str, Any], vars_: Mapping[str, Any], own: dict[str, Any]
) -> Finished:
    """Render the task's `publish` list in order, then its `decision`."""
    published: dict[str, Any] = {}
    current: Mapping[str, Any] = vars_
    for name, template in task.publishes:
        published[name] = render(template, {**own_scope(scope, task.name, own), "vars": current})
        current = {**current, name: published[name]}
    decide_scope = {**own_scope(scope, task.name, own), "vars": current}
    for branch in task.decision:
        if branch.default is not None or truthy(render(branch.when, decide_scope)):
            return Finished(published, current, branch.target)
    return Finished(published, current, None)
