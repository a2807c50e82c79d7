"""`airflow`: an action backed by any Airflow operator (docs/runners.md).

The action's `operator` is the dotted path of a `BaseOperator` subclass. Inside the Attune
task the runner builds it, `task_id` = the Attune task's name and the validated input as
keyword arguments (a `null` value is left out: the operator's own default applies), then
calls its `execute(context)` with the task's Airflow context, synchronously, in the
task's process. The return value, made JSON data (`default=str` for what JSON cannot
hold), is the result; any exception is the failure `{type: <its class name>, message}`.

What it does not do: render the operator's template fields (Attune rendered the input
already: Airflow's Jinja must not read it again), run `pre_execute`/`post_execute`, or
defer. An operator that takes `deferrable` is built with `deferrable=False` unless the
input sets it; one that defers anyway (raises `TaskDeferred`) fails with a message saying
so. `kill()` (a timeout, a cancellation) calls the operator's `on_kill()` while it runs.

When a DAG is compiled, `check_action` imports the class and checks that its constructor
takes every declared parameter (`accepted_arguments`): a mistake leaves the workflows
that call the action out, with a message naming the action, its file and the problem.
Imports and checks are cached per operator path for the life of the process.
"""

from __future__ import annotations

import contextvars
import importlib
import inspect
import json
import logging
from typing import Any, NamedTuple

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import TaskDeferred

from attune_provider.exceptions import AttuneError
from attune_provider.language.plan import ActionPlan
from attune_provider.runners.base import ActionFailed, Invocation, error_of
from attune_provider.runners.masking import masked_prints

log = logging.getLogger(__name__)

RUNNER_TYPE = "airflow"
NOT_DEFERRED = "deferrable"  # the argument an operator that can defer is built with (False)


class OperatorActionError(AttuneError):
    """An `airflow` action whose operator cannot run it: its workflows are not compiled."""


class OperatorProblem(Exception):
    """Why an operator path is unusable (the end of a sentence starting with its path)."""


class LoadedOperator(NamedTuple):
    """An operator class and the keyword arguments its constructor accepts."""

    cls: type[BaseOperator]
    accepted: frozenset[str]


_LOADED: dict[str, LoadedOperator | str] = {}  # operator path -> the class, or why it is unusable


_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def accepted_arguments(cls: type) -> frozenset[str]:
    """The keyword arguments `cls(...)` accepts: walking the MRO, the named keyword
    parameters of each class's own `__init__`, on to the next class only while the one
    before takes `**kwargs` (which it passes on), up to and including BaseOperator's."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            parameters = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):  # not introspectable (a C constructor): it says nothing
            continue
        if parameters and parameters[0].kind in (inspect.Parameter.POSITIONAL_ONLY, *_KEYWORD):
            parameters = parameters[1:]  # self
        names.update(p.name for p in parameters if p.kind in _KEYWORD)
        passes_on = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
        if klass is BaseOperator or not passes_on:
            break
    return frozenset(names)


def _load(path: str) -> LoadedOperator:
    module_name, _, class_name = path.rpartition(".")
    if not module_name or not class_name:
        raise OperatorProblem("is not a dotted path 'module.Class'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - whatever the import raised is the problem
        raise OperatorProblem(f"cannot be imported: {type(exc).__name__}: {exc}")
    cls = getattr(module, class_name, None)
    if cls is None:
        raise OperatorProblem(f"cannot be imported: module '{module_name}' has no attribute '{class_name}'")
    # the legacy `airflow.models.BaseOperator` is an alias of the SDK's class in Airflow 3
    if not isinstance(cls, type) or not issubclass(cls, BaseOperator):
        what = f"class {cls.__module__}.{cls.__qualname__}" if isinstance(cls, type) else type(cls).__name__
        raise OperatorProblem(f"is not an Airflow operator: a {what}, not a subclass of BaseOperator")
    return LoadedOperator(cls, accepted_arguments(cls))  # type: ignore[arg-type]  # checked above


def load_operator(path: str) -> LoadedOperator:
    """The operator class at `path` (cached per path, failures too); OperatorProblem when
    it does not import or is not a BaseOperator subclass."""
    found = _LOADED.get(path)
    if found is None:
        try:
            found = _load(path)
        except OperatorProblem as problem:
            found = str(problem)
        _LOADED[path] = found
    if isinstance(found, str):
        raise OperatorProblem(found)
    return found


def check_action(action: ActionPlan | None) -> None:
    """Compile time: an `airflow` action's operator imports, is a BaseOperator subclass and
    accepts every declared parameter; else OperatorActionError naming the action, its file
    and the problem. Other actions pass."""
    if action is None or action.runner_type != RUNNER_TYPE:
        return
    where = f"action '{action.ref}' ({action.display or action.metadata_file})"
    path = action.operator or ""
    try:
        loaded = load_operator(path)
    except OperatorProblem as problem:
        raise OperatorActionError(f"{where}: operator '{path}' {problem}")
    declared = (action.input_schema.get("properties") or {}).keys()
    refused = sorted(name for name in declared if name not in loaded.accepted)
    if refused:
        names = ", ".join(f"'{name}'" for name in refused)
        plural = "s" if len(refused) > 1 else ""
        raise OperatorActionError(
            f"{where}: operator '{path}' does not accept the parameter{plural} {names}: neither its"
            " constructor nor those of its base classes up to BaseOperator take such an argument"
        )


def _execute(operator: BaseOperator, context: Any) -> Any:
    """`operator.execute(context)` as Airflow's task runner calls it: marked as the operator
    being run, so that Airflow does not warn about an operator executed inside another."""
    try:  # in a function: the safeguard is not public API, and may move
        from airflow.sdk.bases.operator import ExecutorSafeguard
    except ImportError:  # another Airflow: the call works, with a warning at most
        return operator.execute(context)
    scope = contextvars.copy_context()
    scope.run(ExecutorSafeguard.tracker.set, operator)
    return scope.run(operator.execute, context)


def _deferred(path: str, exc: TaskDeferred) -> dict[str, Any]:
    trigger = type(getattr(exc, "trigger", None)).__name__
    return {
        "type": "TaskDeferred",
        "message": (
            f"operator {path} deferred itself (trigger {trigger}): runner_type airflow runs an operator"
            " synchronously inside the Attune task and does not support deferral; give it"
            " deferrable: false if it takes that argument, or use a non-deferrable operator"
        ),
    }


class AirflowOperatorRunner:
    """Builds the action's operator and runs its `execute(context)` in the task."""

    def __init__(self) -> None:
        self._operator: BaseOperator | None = None
        self._running = False
        self._killed = False

    def run(self, invocation: Invocation) -> Any:
        path = invocation.action.operator or ""
        try:
            loaded = load_operator(path)
        except OperatorProblem as problem:
            raise ActionFailed({"type": "ConfigurationError", "message": f"operator '{path}' {problem}"})
        kwargs = {name: value for name, value in invocation.params.items() if value is not None}
        if NOT_DEFERRED in loaded.accepted and NOT_DEFERRED not in kwargs:
            kwargs[NOT_DEFERRED] = False
        if "task_id" in loaded.accepted:  # else the class names its task itself
            kwargs["task_id"] = invocation.task_name
        try:
            operator = loaded.cls(**kwargs)
        except Exception as exc:  # noqa: BLE001 - the operator refused its arguments: the action failed
            raise ActionFailed(error_of(exc)) from exc
        log.info("running operator %s for task %s", path, invocation.task_name)
        self._operator = operator
        context = invocation.context if invocation.context is not None else {}
        try:
            with masked_prints(quiet=invocation.quiet):
                self._running = True
                result = _execute(operator, context)
        except TaskDeferred as exc:
            raise ActionFailed(_deferred(path, exc))
        except Exception as exc:  # noqa: BLE001 - any exception is the action's failure
            raise ActionFailed(error_of(exc)) from exc
        except BaseException:  # a timeout or a cancellation interrupting the operator
            self.kill()
            raise
        finally:
            self._running = False
        try:
            return json.loads(json.dumps(result, default=str))
        except (TypeError, ValueError) as exc:  # e.g. a circular structure
            raise ActionFailed({"type": "TypeError", "message": f"result is not JSON-serialisable: {exc}"})

    def kill(self) -> None:
        """Call the operator's `on_kill()` (once) while its `execute` runs."""
        operator = self._operator
        if operator is None or not self._running or self._killed:
            return
        self._killed = True
        try:
            operator.on_kill()
        except Exception:  # noqa: BLE001 - stopping must not raise over the reason it stops
            log.exception("on_kill of %s failed", type(operator).__name__)
