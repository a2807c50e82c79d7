"""Checks of what workflows call: actions, subworkflows, their inputs, and what breaks.

A task's `action` names an action or a workflow (`<pack>.<name>`). The call must resolve,
its input keys must be parameters of the callee, and its required parameters given.
Subworkflows must not recurse nor nest deeper than the limit; a workflow that calls a
broken action or an invalid subworkflow is invalid too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.dag_factory.loader import YAML_SUFFIXES
from attune_provider.dag_factory.validation.workflow import (
    MAX_AIRFLOW_ID,
    Placed,
    error,
    walk_tasks,
)
from attune_provider.language import problem_codes as codes
from attune_provider.language.catalog import Catalog, WorkflowEntry
from attune_provider.language.model_errors import did_you_mean
from attune_provider.language.models import Task, Workflow
from attune_provider.language.plan import attempt_group
from attune_provider.language.source import Problem, key_location, load_yaml_file
from attune_provider.language.statuses import MAPPED_CALL_ID, OUTCOME_TASK_ID, SUBWORKFLOW_INPUT_ID


class Broken(NamedTuple):
    """An action or workflow file with errors: calls to it cannot work."""

    kind: str  # "action" or "workflow"
    file: str  # its display path


class Call(NamedTuple):
    """A task of a workflow that runs a subworkflow."""

    task: Task
    target: str


Calls = dict[str, list[Call]]


def calling_tasks(workflow: Workflow) -> Iterator[Task]:
    """The tasks (members included) that name an action to run."""
    for placed in walk_tasks(workflow.tasks):
        if placed.task.type != "parallel" and placed.task.action:
            yield placed.task


def _guessed_refs(catalog: Catalog, pack: str, path: Path, display: str, kind: str) -> set[str]:
    """The refs a file that did not load would have had: from its name and its raw YAML."""
    refs = {f"{pack}.{path.stem}"}
    data = load_yaml_file(path, display, catalog.max_file_bytes).data
    if isinstance(data, dict):
        if kind == "action" and isinstance(data.get("name"), str):
            refs.add(f"{pack}.{data['name']}")
        if kind == "workflow" and isinstance(data.get("ref"), str):
            refs.add(data["ref"])
    return refs


def broken_targets(catalog: Catalog, problems: list[Problem]) -> dict[str, Broken]:
    """Actions with errors, and files of actions or workflows that did not load at all."""
    bad_files = {p.location.file for p in problems if p.is_error}
    broken = {
        ref: Broken("action", e.display) for ref, e in catalog.actions.items() if e.display in bad_files
    }
    loaded = {e.display for e in catalog.actions.values()} | {e.display for e in catalog.workflows.values()}
    unloaded = bad_files - loaded  # not a listing of the folders: a task-time parse reads one workflow
    for pack in catalog.packs.values():
        for kind, folder in (("action", "actions"), ("workflow", "workflows")):
            prefix = f"{pack.display}/{folder}/"
            for display in sorted(d for d in unloaded if d.startswith(prefix)):
                path = pack.directory / folder / display[len(prefix) :]
                if path.parent != pack.directory / folder or path.suffix not in YAML_SUFFIXES:
                    continue
                for ref in _guessed_refs(catalog, pack.ref, path, display, kind):
                    if ref not in catalog.actions and ref not in catalog.workflows:
                        broken.setdefault(ref, Broken(kind, display))
    return broken


def callee_parameters(catalog: Catalog, ref: str) -> tuple[str, dict[str, dict[str, Any]]] | None:
    """('action' or 'workflow', its parameters) for a ref of the catalog, else None."""
    if ref in catalog.actions:
        return "action", catalog.actions[ref].action.parameters
    if ref in catalog.workflows:
        return "workflow", catalog.workflows[ref].workflow.parameters
    return None


def check_input(task: Task, ref: str, kind: str, parameters: dict[str, dict[str, Any]]) -> list[Problem]:
    """Input keys must be parameters of the callee; its required parameters must be given."""
    raw = task.source.get("input") if isinstance(task.source, dict) else None
    if "input" in task.model_fields_set and not isinstance(raw, dict):
        return []  # not a mapping literal: nothing to check statically
    problems: list[Problem] = []
    for key in task.input:
        if key not in parameters:
            where = key_location(raw, key, task.loc("input"))
            problems.append(
                error(where, f"{kind} '{ref}' has no parameter '{key}'{did_you_mean(key, parameters)}")
            )
    for name, prop in parameters.items():
        if prop.get("required") is True and "default" not in prop and name not in task.input:
            where = task.key_loc("input") if "input" in task.model_fields_set else task.loc("action")
            problems.append(error(where, f"missing required parameter '{name}' of {kind} '{ref}'"))
    return problems


def check_call(task: Task, catalog: Catalog, broken: dict[str, Broken]) -> list[Problem]:
    """One task's action ref and input."""
    ref = str(task.action)
    if ref in broken:
        return [error(task.loc("action"), f"{broken[ref].kind} '{ref}' is invalid: see {broken[ref].file}")]
    callee = callee_parameters(catalog, ref)
    if callee is None:
        hint = did_you_mean(ref, [*catalog.actions, *catalog.workflows])
        return [error(task.loc("action"), f"unknown action '{ref}'{hint}")]
    if callee[0] == "workflow" and task.with_items is not None:
        inner = mapped_inside(ref, catalog, set())
        if inner is not None:
            message = (
                f"'with_items' over subworkflow '{ref}', which maps again (task '{inner[1]}' of "
                f"{inner[0]} has with_items): Airflow cannot map inside a mapped TaskGroup; "
                "give the inner list to the outer workflow, or batch it"
            )
            return [error(task.loc("with_items"), message)]
    return check_input(task, ref, *callee)


def mapped_inside(ref: str, catalog: Catalog, seen: set[str]) -> tuple[str, str] | None:
    """(workflow, task) of the first with_items task that workflow `ref` runs, itself or
    through its subworkflows at any depth; None when it maps nothing."""
    entry = catalog.workflows.get(ref)
    if entry is None or ref in seen:
        return None
    seen.add(ref)
    for placed in walk_tasks(entry.workflow.tasks):
        if placed.task.with_items is not None:
            return ref, placed.task.name
    for task in calling_tasks(entry.workflow):
        found = mapped_inside(str(task.action), catalog, seen)
        if found is not None:
            return found
    return None


def check_calls(entry: WorkflowEntry, catalog: Catalog, broken: dict[str, Broken]) -> list[Problem]:
    problems: list[Problem] = []
    for task in calling_tasks(entry.workflow):
        problems += check_call(task, catalog, broken)
    return problems


def subworkflow_calls(catalog: Catalog) -> Calls:
    """For each workflow, the tasks that run another (or the same) workflow."""
    return {
        ref: [
            Call(task, str(task.action))
            for task in calling_tasks(entry.workflow)
            if task.action in catalog.workflows
        ]
        for ref, entry in catalog.workflows.items()
    }


def _path(calls: Calls, start: str, goal: str, seen: set[str]) -> list[str] | None:
    """A chain of workflow refs from `start` that reaches `goal`, or None."""
    if start == goal:
        return [start]
    if start in seen:
        return None
    seen.add(start)
    for call in calls.get(start, []):
        rest = _path(calls, call.target, goal, seen)
        if rest:
            return [start, *rest]
    return None


def _deepest(calls: Calls, ref: str, memo: dict[str, list[str]], stack: set[str]) -> list[str]:
    """The longest chain of nested subworkflows starting at `ref` (recursion left out)."""
    if ref in memo:
        return memo[ref]
    stack.add(ref)
    best = [ref]
    for call in calls.get(ref, []):
        if call.target not in stack:
            chain = [ref, *_deepest(calls, call.target, memo, stack)]
            best = chain if len(chain) > len(best) else best
    stack.discard(ref)
    memo[ref] = best
    return best


def check_nesting(calls: Calls, max_depth: int) -> list[Problem]:
    """Recursion (at the task that starts it) and nesting deeper than `max_depth`."""
    problems: list[Problem] = []
    memo: dict[str, list[str]] = {}
    for ref, own in calls.items():
        for call in own:
            cycle = _path(calls, call.target, ref, set())
            if cycle:
                chain = " -> ".join([ref, *cycle])
                problems.append(error(call.task.loc("action"), f"workflow recursion: {chain}"))
                continue
            chain_refs = [ref, *_deepest(calls, call.target, memo, {ref})]
            levels = len(chain_refs) - 1
            if levels > max_depth:
                message = (
                    f"subworkflows nest {levels} levels deep, more than the limit of {max_depth}:"
                    f" {' -> '.join(chain_refs)}"
                )
                problems.append(error(call.task.loc("action"), message))
    return problems


def _longest_id(ref: str, catalog: Catalog, memo: dict[str, int], stack: set[str]) -> int:
    """The length of the longest Airflow task id in the DAG of workflow `ref` (no prefix)."""
    if ref in memo:
        return memo[ref]
    if ref in stack:
        return 0  # recursion is reported on its own
    stack.add(ref)
    tasks = walk_tasks(catalog.workflows[ref].workflow.tasks)
    longest = max([len(OUTCOME_TASK_ID), *(_id_length(p, catalog, memo, stack) for p in tasks)])
    stack.discard(ref)
    memo[ref] = longest
    return longest


def _id_length(placed: Placed, catalog: Catalog, memo: dict[str, int], stack: set[str]) -> int:
    """The longest Airflow task id one task compiles to: its name (after its group's), then
    the steps of a group or the tasks of a subworkflow after a dot."""
    task = placed.task
    own = len(task.name) + (len(placed.group.name) + 1 if placed.group is not None else 0)
    calls = task.action is not None and str(task.action) in catalog.workflows
    if calls:  # the child's tasks after `<task>.`, `run.` (with_items), `attempt_<n>.` (retry)
        inner = _longest_id(str(task.action), catalog, memo, stack)
        mapped = len(MAPPED_CALL_ID) + 1 if task.with_items is not None else 0
        retried = len(attempt_group(task.retry.count + 1)) + 1 if task.retry and task.retry.count else 0
        inside = mapped + retried + max(len(SUBWORKFLOW_INPUT_ID), inner)
        return own + 1 + max(len(OUTCOME_TASK_ID), mapped + len(OUTCOME_TASK_ID), inside)
    if task.type == "parallel" or task.with_items is not None:
        return own + 1 + len(OUTCOME_TASK_ID)
    return own


def check_id_lengths(catalog: Catalog) -> list[Problem]:
    """Airflow refuses a task id over 250 characters: with group and subworkflow prefixes a
    task's ids can pass that even when every name is short enough."""
    memo: dict[str, int] = {}
    problems: list[Problem] = []
    for ref, entry in catalog.workflows.items():
        for placed in walk_tasks(entry.workflow.tasks):
            length = _id_length(placed, catalog, memo, {ref})
            if length > MAX_AIRFLOW_ID:
                message = (
                    f"task '{placed.task.name[:40]}' compiles to Airflow task ids of up to {length}"
                    f" characters (group and subworkflow prefixes included), more than Airflow's"
                    f" {MAX_AIRFLOW_ID}: shorten the names"
                )
                problems.append(error(placed.task.loc("name"), message))
    return problems


class Cascade:
    """Marks invalid the workflows of a pack whose config.yaml is invalid, and the callers of
    invalid subworkflows, from the bottom up."""

    def __init__(self, catalog: Catalog, calls: Calls, bad_files: set[str]) -> None:
        self.catalog = catalog
        self.calls = calls
        self.bad_files = bad_files
        self.problems: list[Problem] = []
        self._state: dict[str, bool] = {}
        self._stack: set[str] = set()

    def invalid(self, ref: str) -> bool:
        if ref in self._state:
            return self._state[ref]
        entry = self.catalog.workflows[ref]
        self._state[ref] = entry.display in self.bad_files
        config = f"{entry.pack.display}/config.yaml"
        if config in self.bad_files:  # the workflow cannot be compiled without its pack config
            message = f"the config of pack '{entry.pack.ref}' is invalid: see {config}"
            self.problems.append(error(entry.workflow.loc("ref"), message, codes.INVALID_PACK_CONFIG))
            self._state[ref] = True
        self._stack.add(ref)
        for call in self.calls.get(ref, []):
            if call.target in self._stack or _path(self.calls, call.target, ref, set()):
                continue  # recursion is reported on its own
            if not self.invalid(call.target):
                continue
            sub = self.catalog.workflows[call.target].display
            message = f"workflow '{call.target}' is invalid: see {sub}"
            self.problems.append(error(call.task.loc("action"), message))
            self._state[ref] = True
        self._stack.discard(ref)
        return self._state[ref]


def cascade(catalog: Catalog, calls: Calls, problems: list[Problem]) -> list[Problem]:
    """Errors at the tasks that call an invalid subworkflow."""
    runner = Cascade(catalog, calls, {p.location.file for p in problems if p.is_error})
    for ref in catalog.workflows:
        runner.invalid(ref)
    return runner.problems


def _depends_on(ref: str, catalog: Catalog, broken: dict[str, Broken], seen: set[str]) -> set[str]:
    """Files whose errors make workflow `ref` unusable: its own, its pack's config, its callees'."""
    seen.add(ref)
    entry = catalog.workflows[ref]
    files = {entry.display, f"{entry.pack.display}/config.yaml"}
    for task in calling_tasks(entry.workflow):
        target = str(task.action)
        if target in broken:
            files.add(broken[target].file)
        elif target in catalog.actions:
            files.add(catalog.actions[target].display)
        elif target in catalog.workflows and target not in seen:
            files |= _depends_on(target, catalog, broken, seen)
    return files


def invalid_workflows(
    catalog: Catalog, broken: dict[str, Broken], problems: list[Problem]
) -> dict[str, list[Problem]]:
    """Workflow ref -> the errors that make it unusable (only workflows that have some)."""
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        if problem.is_error:
            by_file.setdefault(problem.location.file, []).append(problem)
    result: dict[str, list[Problem]] = {}
    for ref in catalog.workflows:
        files = _depends_on(ref, catalog, broken, set())
        errors = sorted((p for f in files for p in by_file.get(f, [])), key=lambda p: (p.location, p.message))
        if errors:
            result[ref] = errors
    return result
