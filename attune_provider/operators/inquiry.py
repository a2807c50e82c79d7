"""`inquiry` (`core.inquiry`): a human answer through Airflow's human-in-the-loop machinery.

`InquiryTaskOperator` is both an Attune task (gate, `when`, input rendering, publish,
decision, outcome: `RendersInput`/`AttuneOperator`) and a `HITLOperator`: once its input is rendered it
writes a Human-in-the-loop request (the `prompt` as subject, one form field per property
of the answer `schema`, a single option `Submit`) and parks the task in Airflow's
`awaiting_input` state: no worker slot is held while it waits. The answer comes from the
"Required actions" page of the UI or the REST API
(`PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/{map_index}/hitlDetails`
with `{"chosen_options": ["Submit"], "params_input": {...}}`); the task then resumes in
`execute_complete`, validates the answer (`params_input`) against the schema (defaults
applied) and makes it the task's result. An answer that does not match fails the task
(`InvalidAnswer`, naming the field).

The task's `timeout` is the HITL `response_timeout` (not an execution timeout): when no
answer came in time, Airflow's scheduler resumes the task with a timeout event and the
outcome is `timeout`. `dag.test()` runs no scheduler; `answer_deadlines()` runs the
scheduler's sweep for a process that runs workflows that way.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple, NoReturn

from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk.definitions.param import Param, ParamsDict
from airflow.sdk.exceptions import AirflowTaskTimeout

from attune_provider.exceptions import ParameterError
from attune_provider.language.parameters import check_values, is_required, property_schema
from attune_provider.language.templates.render import render
from attune_provider.operators.base import AttuneOperator, RendersInput
from attune_provider.operators.state.secrets import redact_secrets
from attune_provider.operators.steps.failure import FAILURES
from attune_provider.runners.base import ActionFailed

SUBMIT = "Submit"
DEFAULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"approved": {"type": "boolean", "description": "Approve?"}},
    "required": ["approved"],
}
_NOT_SCHEMA = ("default", "description", "required")


def answer_schema(given: Any) -> dict[str, Any]:
    """The inquiry's answer schema: DEFAULT_SCHEMA when none is given; inline
    `required: true` on a property (as in parameters) joins the `required` list."""
    if not given:
        return dict(DEFAULT_SCHEMA)
    schema = dict(given)
    properties = {}
    required = list(schema.get("required") or [])
    for name, prop in (schema.get("properties") or {}).items():
        if is_required(prop):
            required.append(name)
        properties[name] = property_schema(prop) if isinstance(prop, dict) else {}
    schema.setdefault("type", "object")
    schema["properties"] = properties
    if required:
        schema["required"] = list(dict.fromkeys(required))
    return schema


def form_fields(schema: dict[str, Any]) -> ParamsDict:
    """One HITL form field (a task-level Param) per property of the answer schema."""
    fields = {}
    required = set(schema.get("required") or [])
    for name, prop in schema["properties"].items():
        field_schema = {k: v for k, v in prop.items() if k not in _NOT_SCHEMA}
        kind = field_schema.get("type")
        if name not in required and isinstance(kind, str):
            field_schema["type"] = [kind, "null"]
        field_schema.setdefault("title", name)
        description = prop.get("description")
        fields[name] = Param(prop.get("default"), description=description, source="task", **field_schema)
    return ParamsDict(fields)


class Question(NamedTuple):
    prompt: str
    schema: dict[str, Any]
    auto_answer: dict[str, Any] | None = None
    assigned_users: list[dict[str, str]] | None = None  # Airflow's HITLUser {id, name}
    notifiers: list[dict[str, Any]] = []  # {notifier: dotted path, args: {...}}

    def check(self, given: dict[str, Any]) -> dict[str, Any]:
        """The answer with defaults applied, or ActionFailed naming the offending field."""
        required = set(self.schema.get("required") or [])
        answer = {k: v for k, v in given.items() if v is not None or k in required}
        try:
            return check_values(self.schema, answer, what="answer field")
        except ParameterError as exc:
            raise ActionFailed({"type": "InvalidAnswer", "message": str(exc)}) from None


def notifier_of(spec: dict[str, Any]) -> Any:
    """An Airflow notifier from `{notifier: dotted path, args: {...}}` (ParameterError if not)."""
    from airflow.sdk import BaseNotifier
    from airflow.sdk.module_loading import import_string

    path = spec["notifier"]
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise ParameterError(f"notifier '{path}' does not import: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseNotifier)):
        raise ParameterError(f"notifier '{path}' is not an Airflow BaseNotifier class")
    try:
        return cls(**dict(spec.get("args") or {}))
    except TypeError as exc:
        raise ParameterError(f"notifier '{path}' refuses its args: {exc}") from None


class InquiryTaskOperator(RendersInput, HITLOperator):
    """An Attune task whose action is an inquiry, asked through Airflow's HITL requests."""

    template_fields = ("input", "subject", "body")  # type: ignore[assignment]  # the prompt too
    ui_color = "#fdf0d5"
    # renders in `execute` (the prompt fields too, and again when the answer comes back):
    render_template_fields = AttuneOperator.render_template_fields  # type: ignore[assignment]
    overwrite_rtif_after_execution = True

    def __init__(self, **kwargs: Any) -> None:
        timeout = kwargs.pop("execution_timeout", None)  # the task's `timeout` bounds the wait
        if timeout is not None:
            kwargs.setdefault("response_timeout", timeout)
        kwargs.setdefault("subject", str(kwargs.get("task_id")))
        super().__init__(options=[SUBMIT], **kwargs)
        self.error_scope: dict[str, Any] | None = None

    def _question(self, scope: dict[str, Any]) -> Question:
        """Render the input and check it against `core.inquiry`'s parameters."""
        rendered = render(dict(self.spec.input), scope)
        self.input = redact_secrets(rendered)  # recorded as the rendered field after execution
        action = self.plan.actions.get(self.task_name)
        if not isinstance(rendered, dict) or action is None:
            raise ParameterError("task input must render to a mapping")
        params = check_values(action.input_schema, rendered, what="input")
        prompt = params.get("prompt") or f"{self.plan.ref}: {self.task_name}"
        users = params.get("assigned_users")
        assigned = [{"id": u["id"], "name": u.get("name") or u["id"]} for u in users] if users else None
        return Question(
            str(prompt),
            answer_schema(params.get("schema")),
            params.get("auto_answer"),
            assigned,
            list(params.get("notifiers") or []),
        )

    def execute(self, context: Any) -> Any:
        builder = self.scope_builder(context)
        scope, vars_ = self.open_gate(context, builder)
        try:
            question = self._question(scope)
            if question.auto_answer is not None:
                answer = question.check(question.auto_answer)
                return self._answered(context, scope, vars_, answer, "auto_answer")
        except FAILURES as exc:
            self._fail(context, scope, exc)
        self.subject = redact_secrets(question.prompt)
        self.body = f"Workflow `{self.plan.ref}`, task `{self.task_name}`: answer the form and submit."
        self.params = form_fields(question.schema)
        self.assigned_users = question.assigned_users  # type: ignore[assignment]  # HITLUser is this TypedDict
        try:  # before the request is written: a notifier that fails leaves none pending
            for notifier in [notifier_of(spec) for spec in question.notifiers]:
                notifier(context)
        except Exception as exc:  # noqa: BLE001 - the notifier's failure is the task's, named
            self._fail(context, scope, ParameterError(f"a notifier failed: {type(exc).__name__}: {exc}"))
        self.notifiers = []  # called above
        self.log.info("asking: %s (answer schema %s)", self.subject, question.schema)
        return HITLOperator.execute(self, context)  # writes the request, parks the task

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        builder = self.scope_builder(context)
        vars_ = builder.vars_before(self.task_name)
        scope = builder.scope(vars_)
        try:
            if "error" in event:
                if event.get("error_type") == "timeout":
                    raise AirflowTaskTimeout(str(event["error"]))
                raise ActionFailed({"type": "InquiryError", "message": str(event["error"])})
            answer = self._question(scope).check(dict(event.get("params_input") or {}))
            by = (event.get("responded_by_user") or {}).get("name", "?")
            return self._answered(context, scope, vars_, answer, by)
        except FAILURES as exc:
            self._fail(context, scope, exc)

    def _answered(
        self, context: Any, scope: dict[str, Any], vars_: Mapping[str, Any], answer: dict[str, Any], by: str
    ) -> Any:
        self.log.info("answered by %s", by)
        self.succeed(context, scope, vars_, answer)
        return self.stored(answer)

    def timeout_error(self, seconds: float) -> dict[str, Any]:
        return {"type": "timeout", "message": f"task '{self.task_name}' got no answer in {seconds:g}s"}

    def _fail(self, context: Any, scope: dict[str, Any], exc: BaseException) -> NoReturn:
        timeout = self.response_timeout.total_seconds() if self.response_timeout else 0.0
        self.fail(context, exc, timeout=timeout, scope=scope)


def expire_overdue_answers() -> None:
    """Resume the `awaiting_input` tasks whose answer deadline passed, as the scheduler does."""
    from airflow.jobs.job import Job
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    SchedulerJobRunner(job=Job(), executors=[]).check_awaiting_input_timeouts()


@contextlib.contextmanager
def answer_deadlines(every: float = 1.0) -> Iterator[None]:
    """While inside, sweep overdue inquiries every `every` seconds (for `dag.test()` runs,
    which have no scheduler to do it)."""
    stop = threading.Event()

    def sweep() -> None:
        while not stop.wait(every):
            with contextlib.suppress(Exception):
                expire_overdue_answers()

    thread = threading.Thread(target=sweep, name="attune-inquiry-deadlines", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 5)
