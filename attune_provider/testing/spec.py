"""Reading and checking one test file (`<pack>/tests/<name>.yaml`, docs/testing-packs.md).

Every mistake is a `Problem` at the file, line and column of the offending key or value:
an unknown key, an unknown workflow, a mock naming an action or task the workflow does
not run, an expectation naming a task the workflow lacks, parameters the workflow refuses.
Imports no Airflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attune_provider.exceptions import ParameterError
from attune_provider.language.catalog import Catalog
from attune_provider.language.parameters import check_values
from attune_provider.language.plan import WorkflowPlan, build_plan
from attune_provider.language.source import (
    Location,
    MarkedDict,
    MarkedList,
    Problem,
    key_location,
    load_yaml_file,
)
from attune_provider.language.statuses import Status, TaskKind
from attune_provider.runners.mocks import TASK_PREFIX, Mock, MockTable, Reply

FILE_KEYS = ("workflow", "description", "cases")
CASE_KEYS = ("name", "description", "parameters", "mocks", "expect")
EXPECT_KEYS = ("status", "tasks", "output", "output_subset", "vars", "vars_subset")
REPLY_KEYS = ("result", "fail")
FAIL_KEYS = ("type", "message")
WORKFLOW_STATUSES = (Status.SUCCEEDED.value, Status.FAILED.value)
TASK_STATUSES = tuple(status.value for status in Status)
NOT_MOCKABLE = {"inquiry": "an inquiry (answer it with its auto_answer input)", "workflow": "a subworkflow"}


@dataclass
class Expect:
    """What a case expects; `output` / `vars` and their `_subset` forms hold only what was given."""

    status: str | None = None
    tasks: dict[str, str] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)  # "output" / "output_subset" -> value
    vars: dict[str, Any] = field(default_factory=dict)  # "vars" / "vars_subset" -> value


@dataclass
class TestCase:
    __test__ = False  # not a pytest class

    name: str
    file: str  # as shown: the test file's path from the current directory
    line: int
    parameters: dict[str, Any]
    mocks: dict[str, tuple[list[Reply], bool]]  # key -> (replies, consumed one per call)
    expect: Expect

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def mock_table(self) -> MockTable:
        """Fresh mocks (call counters at zero) for one run of this case."""
        return MockTable({key: Mock(key, replies, seq) for key, (replies, seq) in self.mocks.items()})


@dataclass
class TestFile:
    __test__ = False  # not a pytest class

    path: Path
    display: str
    workflow: str
    plan: WorkflowPlan | None = None
    cases: list[TestCase] = field(default_factory=list)


def _loc(mapping: Any, key: Any, fallback: Location) -> Location:
    if isinstance(mapping, MarkedDict):
        return mapping.value_locs.get(key, mapping.loc)
    return fallback


def _start(value: Any, fallback: Location) -> Location:
    return getattr(value, "loc", fallback)


def _unknown_keys(mapping: MarkedDict, allowed: tuple[str, ...], what: str, where: Location) -> list[Problem]:
    return [
        Problem(
            key_location(mapping, key, where),
            f"unknown key '{key}' in {what} (expected one of: {', '.join(allowed)})",
        )
        for key in mapping
        if key not in allowed
    ]


def called_actions(plan: WorkflowPlan) -> set[str]:
    """The refs of every action the workflow runs, its subworkflows' included."""
    refs = {action.ref for action in plan.actions.values() if action.runner_type != "workflow"}
    for child in plan.children.values():
        refs |= called_actions(child)
    return refs


class _Checker:
    """Checks one loaded test file against the catalog, collecting problems."""

    def __init__(self, display: str, catalog: Catalog, plans: dict[str, WorkflowPlan]) -> None:
        self.display = display
        self.catalog = catalog
        self.plans = plans
        self.problems: list[Problem] = []
        self.top = Location(display)

    def error(self, where: Location, message: str) -> None:
        self.problems.append(Problem(where, message))

    # -- mocks ---------------------------------------------------------------------------

    def reply(self, value: Any, where: Location) -> Reply | None:
        if isinstance(value, dict) and len(value) == 1 and "result" in value:
            return Reply(result=value["result"])
        if isinstance(value, dict) and len(value) == 1 and "fail" in value:
            return self.failure(value["fail"], _loc(value, "fail", where))
        if isinstance(value, MarkedDict):
            unknown = _unknown_keys(value, REPLY_KEYS, "a mock", where)
            self.problems.extend(unknown)
            if unknown:
                return None
        self.error(where, "a mock is {result: VALUE}, {fail: {type, message}} or a list of them")
        return None

    def failure(self, fail: Any, where: Location) -> Reply | None:
        if not isinstance(fail, dict):
            self.error(where, "'fail' must be a mapping {type, message}")
            return None
        before = len(self.problems)
        if isinstance(fail, MarkedDict):
            self.problems.extend(_unknown_keys(fail, FAIL_KEYS, "'fail'", where))
        for key in FAIL_KEYS:
            if not isinstance(fail.get(key), str) or not fail.get(key):
                self.error(_loc(fail, key, where) if key in fail else where, f"'fail' needs '{key}', a text")
        if len(self.problems) > before:
            return None
        return Reply(error={"type": fail["type"], "message": fail["message"]})

    def mock_key(self, plan: WorkflowPlan, key: Any, where: Location) -> str | None:
        """The key as the mock table uses it (`task:<name>` or an action ref), or None."""
        if not isinstance(key, str) or not key:
            self.error(where, f"a mock key is an action ref or task:<name>, got {key!r}")
            return None
        if key.startswith(TASK_PREFIX):
            name = key[len(TASK_PREFIX) :]
            by_id = {task_id: task for task, task_id in plan.task_ids.items()}
            task = name if name in plan.tasks else by_id.get(name)
            if task is None:
                self.error(where, f"unknown task '{name}' in a mock: workflow '{plan.ref}' has no such task")
                return None
            kind = plan.kind(task)
            if kind in (TaskKind.PARALLEL, TaskKind.WORKFLOW):
                what = "a parallel group" if kind == TaskKind.PARALLEL else "a subworkflow"
                self.error(
                    where, f"task '{name}' runs {what}, not an action: mock its tasks' actions instead"
                )
                return None
            action = plan.actions.get(task)
            if action is not None and action.runner_type in NOT_MOCKABLE:
                self.error(
                    where, f"task '{name}' cannot be mocked: it runs {NOT_MOCKABLE[action.runner_type]}"
                )
                return None
            return TASK_PREFIX + task
        if key not in self.catalog.actions:
            why = "a workflow, not an action" if key in self.catalog.workflows else "no such action"
            self.error(where, f"unknown action '{key}' in a mock ({why}; a task is task:<name>)")
            return None
        runner_type = self.catalog.actions[key].action.runner_type
        if runner_type in NOT_MOCKABLE:
            self.error(where, f"action '{key}' cannot be mocked: it is {NOT_MOCKABLE[runner_type]}")
            return None
        if key not in called_actions(plan):
            self.error(
                where,
                f"action '{key}' in a mock is not called by workflow '{plan.ref}' (nor its subworkflows)",
            )
            return None
        return key

    def mocks(self, plan: WorkflowPlan, mocks: Any, where: Location) -> dict[str, tuple[list[Reply], bool]]:
        found: dict[str, tuple[list[Reply], bool]] = {}
        if mocks is None:
            return found
        if not isinstance(mocks, dict):
            self.error(where, "'mocks' must be a mapping of action refs and task:<name> to mocks")
            return found
        for key, value in mocks.items():
            key_where = key_location(mocks, key, where)
            value_where = _loc(mocks, key, where)
            table_key = self.mock_key(plan, key, key_where)
            if isinstance(value, list):
                if not value:
                    self.error(value_where, "a list of mocks needs at least one")
                    continue
                item_locs = value.item_locs if isinstance(value, MarkedList) else [value_where] * len(value)
                replies = [self.reply(item, loc) for item, loc in zip(value, item_locs, strict=True)]
                sequence = True
            else:
                replies, sequence = [self.reply(value, value_where)], False
            if table_key is None or any(reply is None for reply in replies):
                continue
            if table_key in found:
                self.error(key_where, f"'{key}' mocks the same task as another key of this case")
                continue
            found[table_key] = ([r for r in replies if r is not None], sequence)
        return found

    # -- expectations --------------------------------------------------------------------

    def expect(self, plan: WorkflowPlan, value: Any, where: Location) -> Expect:
        expect = Expect()
        if value is None:
            return expect
        if not isinstance(value, MarkedDict):
            self.error(where, "'expect' must be a mapping")
            return expect
        for problem in _unknown_keys(value, EXPECT_KEYS, "'expect'", where):
            self.error(problem.location, problem.message)
        if "status" in value:
            status = value["status"]
            if status not in WORKFLOW_STATUSES:
                self.error(
                    _loc(value, "status", where),
                    f"'status' is one of {', '.join(WORKFLOW_STATUSES)}, got {status!r}",
                )
            else:
                expect.status = status
        tasks = value.get("tasks")
        if "tasks" in value:
            expect.tasks = self.task_statuses(plan, tasks, _loc(value, "tasks", where))
        for name in ("output", "vars"):
            getattr(expect, name).update(self.values(value, name, where))
        return expect

    def values(self, expect: MarkedDict, name: str, where: Location) -> dict[str, Any]:
        """`output` / `output_subset` (or `vars` / `vars_subset`) as given: key -> value."""
        given = [key for key in (name, f"{name}_subset") if key in expect]
        if len(given) == 2:
            self.error(
                key_location(expect, f"{name}_subset", where), f"use '{name}' or '{name}_subset', not both"
            )
            return {}
        found = {}
        for key in given:
            if name == "vars" and not isinstance(expect[key], dict):
                self.error(_loc(expect, key, where), f"'{key}' must be a mapping of variable names to values")
            elif key.endswith("_subset") and not isinstance(expect[key], dict | list):
                self.error(_loc(expect, key, where), f"'{key}' must be a mapping (or a list)")
            else:
                found[key] = expect[key]
        return found

    def task_statuses(self, plan: WorkflowPlan, tasks: Any, where: Location) -> dict[str, str]:
        found: dict[str, str] = {}
        if not isinstance(tasks, dict):
            self.error(where, "'tasks' must be a mapping of task names to statuses")
            return found
        ids = set(plan.task_ids.values())
        for name, status in tasks.items():
            key_where = key_location(tasks, name, where)
            task_id = name if name in ids else plan.task_ids.get(name) if isinstance(name, str) else None
            if task_id is None:
                known = ", ".join(plan.task_ids.values())
                self.error(key_where, f"unknown task '{name}': workflow '{plan.ref}' has {known}")
                continue
            if status not in TASK_STATUSES:
                self.error(
                    _loc(tasks, name, where),
                    f"a task's status is one of {', '.join(TASK_STATUSES)}, got {status!r}",
                )
                continue
            found[task_id] = status
        return found

    # -- cases and the file --------------------------------------------------------------

    def case(self, plan: WorkflowPlan, value: Any, where: Location, seen: set[str]) -> TestCase | None:
        if not isinstance(value, MarkedDict):
            self.error(where, "a case must be a mapping with 'name' (and parameters, mocks, expect)")
            return None
        before = len(self.problems)
        for problem in _unknown_keys(value, CASE_KEYS, "a case", where):
            self.error(problem.location, problem.message)
        name = value.get("name")
        if not isinstance(name, str) or not name.strip():
            self.error(
                _loc(value, "name", where) if "name" in value else where, "a case needs a 'name', a text"
            )
            name = ""
        elif name in seen:
            self.error(_loc(value, "name", where), f"another case of this file is named '{name}'")
        seen.add(name)
        params = value.get("parameters") or {}
        params_where = _loc(value, "parameters", where)
        if not isinstance(params, dict):
            self.error(params_where, "'parameters' must be a mapping")
            params = {}
        else:
            try:
                check_values(plan.params_schema, params)
            except ParameterError as exc:
                self.error(params_where, f"invalid parameters for workflow '{plan.ref}': {exc}")
        mocks = self.mocks(plan, value.get("mocks"), _loc(value, "mocks", where))
        expect = self.expect(plan, value.get("expect"), _loc(value, "expect", where))
        if len(self.problems) > before:
            return None
        return TestCase(name, self.display, where.line, dict(params), mocks, expect)

    def plan(self, ref: str) -> WorkflowPlan:
        if ref not in self.plans:
            self.plans[ref] = build_plan(self.catalog.workflows[ref], self.catalog)
        return self.plans[ref]

    def check(self, path: Path, data: Any, report: Any) -> TestFile | None:
        if not isinstance(data, MarkedDict):
            self.error(_start(data, self.top), "a test file is a mapping with 'workflow' and 'cases'")
            return None
        for problem in _unknown_keys(data, FILE_KEYS, "a test file", data.loc):
            self.error(problem.location, problem.message)
        ref = data.get("workflow")
        ref_where = _loc(data, "workflow", data.loc)
        if not isinstance(ref, str) or not ref:
            self.error(
                ref_where if "workflow" in data else data.loc,
                "a test file needs 'workflow', the ref <pack>.<name>",
            )
            return None
        if ref not in self.catalog.workflows:
            self.error(ref_where, f"unknown workflow '{ref}'")
            return None
        if ref in report.invalid_workflows:
            self.problems.extend(report.invalid_workflows[ref])
            self.error(ref_where, f"workflow '{ref}' is invalid (see its errors; `attune-airflow validate`)")
            return None
        plan = self.plan(ref)
        cases = data.get("cases")
        cases_where = _loc(data, "cases", data.loc)
        if not isinstance(cases, MarkedList) or not cases:
            self.error(
                cases_where if "cases" in data else data.loc,
                "a test file needs 'cases', a list of at least one case",
            )
            return None
        found = TestFile(path, self.display, ref, plan)
        seen: set[str] = set()
        for item, where in zip(cases, cases.item_locs, strict=True):
            case = self.case(plan, item, where, seen)
            if case is not None:
                found.cases.append(case)
        return found


def load_test_file(
    path: Path,
    display: str,
    catalog: Catalog,
    report: Any,
    plans: dict[str, WorkflowPlan],
    max_bytes: int,
) -> tuple[TestFile | None, list[Problem]]:
    """A checked test file, or None and its problems. `report` is the catalog's validation
    report (`validate_catalog`); `plans` caches the plan of each workflow across files."""
    loaded = load_yaml_file(path, display, max_bytes)
    if loaded.problems and loaded.data is None:
        return None, list(loaded.problems)
    checker = _Checker(display, catalog, plans)
    checker.problems.extend(loaded.problems)
    found = checker.check(path, loaded.data, report)
    if checker.problems:
        return None, checker.problems
    return found, []


def test_files_in(directory: Path) -> Iterator[Path]:
    """The `*.yaml` / `*.yml` files of a directory, by name."""
    yield from sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml"))
