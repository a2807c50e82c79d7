"""Trace attributes (issue 25, docs/observability.md): with OpenTelemetry traces on, the span
a task runs in carries `attune.workflow`, `attune.task` and `attune.run_id`.

`dag.test()` runs tasks in process, without the `worker.<task_id>` span the Task SDK's
task runner opens around a task on a worker; the test opens that very span (the task
runner's own `_make_task_span`) around each task, exporting to memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from attune_provider.local_run import RunResult

WORKFLOW = """
    ref: t.wf
    tasks:
      - name: hello
        action: core.echo
        input: {message: hi}
        on_success: both
      - name: both
        type: parallel
        tasks:
          - name: one
            action: core.noop
          - name: two
            action: core.noop
"""


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        trace.set_tracer_provider(TracerProvider())
        provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # fail, never skip: the test could not see spans
        pytest.fail(f"cannot install an OpenTelemetry SDK tracer provider (found {provider!r})")
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield memory
    memory.shutdown()


@pytest.fixture
def worker_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each task of `dag.test()` inside the worker span of the Task SDK's task runner."""
    from airflow.sdk.execution_time import supervisor
    from airflow.sdk.execution_time.task_runner import _make_task_span

    original = supervisor.run_task_in_process

    def in_worker_span(ti: Any, task: Any, **kwargs: Any) -> Any:
        with _make_task_span(SimpleNamespace(ti=ti)):  # type: ignore[arg-type]
            return original(ti, task, **kwargs)

    monkeypatch.setattr(supervisor, "run_task_in_process", in_worker_span)


def test_task_spans_carry_the_workflow(
    run: Callable[..., RunResult], exporter: InMemorySpanExporter, worker_spans: None
) -> None:
    result = run(WORKFLOW)
    assert result.status == "succeeded", result
    spans = [
        span
        for span in exporter.get_finished_spans()
        if span.name.startswith("worker.")
        and (span.attributes or {}).get("airflow.dag_run.run_id") == result.run_id
    ]
    assert {span.name for span in spans} >= {
        "worker.hello",
        "worker.both.one",
        "worker.both.two",
        "worker.attune_outcome",
    }
    for span in spans:
        attributes = dict(span.attributes or {})
        assert attributes.get("attune.workflow") == "t.wf", span.name
        assert attributes.get("attune.run_id") == result.run_id, span.name
        assert attributes.get("attune.task"), span.name
    tasks = {span.name: span.attributes["attune.task"] for span in spans}  # type: ignore[index]
    assert tasks["worker.hello"] == "hello"
    assert tasks["worker.both.one"] == "both.one"
