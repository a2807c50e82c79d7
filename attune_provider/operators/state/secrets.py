"""Secret values: registered with Airflow's masker, and kept out of XComs.

`mask()` registers a value (every string inside lists and mappings too) with the Task
SDK's secrets masker, which then shows it as `***` in task logs and in the
rendered-template view (and, for a run in-process under `dag.test()`, makes the process's
logging mask it too).

`redact_secrets()` is applied to everything an Attune task writes to XCom (outcomes,
results, vars, output): every registered secret inside a string is replaced by `***`,
and a number whose text is a secret becomes `"***"`. Unlike Airflow's `redact()`, values
are not hidden because of their key's name (`password`, `token`...): only registered
secrets are, so results stay usable by the tasks after.

Airflow does not mask secrets shorter than `[logging] min_length_masked_secret` (5
characters by default), nor the word `airflow`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from attune_provider.dag_factory.plan import ActionPlan

REPLACEMENT = "***"


def mask(value: Any) -> None:
    """Mask a secret (strings inside lists and mappings too); None and booleans are ignored."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, dict):
        for item in value.values():
            mask(item)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            mask(item)
        return
    from airflow.sdk.log import mask_secret

    text = str(value)
    mask_secret(text)
    if "\n" in text or "\r" in text:  # output is logged line by line: each line is a secret too
        for line in text.splitlines():
            if line.strip():
                mask_secret(line)
    _mask_in_process_logs()


def mask_inputs(action: ActionPlan | None, values: Any) -> None:
    """Mask the values of the action's (or subworkflow's) parameters marked `secret: true`,
    before anything records them (rendered fields, XCom, logs)."""
    if action is None or not isinstance(values, dict):
        return
    for name in action.secret_inputs:
        mask(values.get(name))


class _RedactRendered:
    """Wraps a log renderer: the rendered line, traceback included, with secrets redacted."""

    def __init__(self, renderer: Any) -> None:
        self.renderer = renderer

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        rendered = self.renderer(logger, method_name, event_dict)
        if isinstance(rendered, str):
            return _redact_text(rendered)
        if isinstance(rendered, bytes):
            return _redact_text(rendered.decode("utf-8", errors="replace")).encode()
        return rendered


def _wrap_renderer(processors: Any) -> None:
    if isinstance(processors, list) and processors and not isinstance(processors[-1], _RedactRendered):
        processors[-1] = _RedactRendered(processors[-1])


def _running_in_process() -> bool:
    """True under `dag.test()`: the task runs inside the calling Airflow process."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


_in_process_masking = False


def _mask_in_process_logs() -> None:
    """Mask the logs of a task run in-process by `dag.test()` (`attune-airflow run`, tests).

    A worker's task logs go through the Task SDK's logging, which masks registered secrets.
    Under `dag.test()` they go through the calling process's logging, which Airflow 3.3
    configures without masking; so the first time a secret is registered there, the final
    renderer of structlog and of the root handlers' formatters is wrapped to redact each
    rendered line (once per process).
    """
    global _in_process_masking
    if _in_process_masking or not _running_in_process():
        return
    import structlog

    _wrap_renderer(structlog.get_config()["processors"])  # the live list loggers share
    for handler in logging.getLogger().handlers:
        _wrap_renderer(getattr(handler.formatter, "processors", None))
    _in_process_masking = True


class _RedactingStream(io.TextIOBase):
    """Writes whole lines to `target` with registered secrets redacted."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        done, newline, self.pending = self.pending.rpartition("\n")
        if newline:
            self.target.write(_redact_text(done + newline))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.target.write(_redact_text(self.pending))
            self.pending = ""
        self.target.flush()


@contextlib.contextmanager
def masked_prints() -> Iterator[None]:
    """Under `dag.test()`, redact what Python code writes to `sys.stdout`/`sys.stderr`.

    A worker's supervisor masks a task's output itself; in-process, `print()` would reach
    the console (and `attune-airflow run`'s log) in clear. Writes to the file descriptors
    themselves (`os.write`, child processes) are not covered.
    """
    if not _running_in_process():
        yield
        return
    out, err = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.flush()
        err.flush()


def _redact_text(text: str) -> str:
    from airflow.sdk.log import redact

    return str(redact(text, replacement=REPLACEMENT))


def was_redacted(value: Any) -> bool:
    """True when `value` (a redacted XCom read back) has `***` anywhere in it."""
    if isinstance(value, str):
        return REPLACEMENT in value
    if isinstance(value, dict):
        return any(was_redacted(key) or was_redacted(item) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return any(was_redacted(item) for item in value)
    return False


def redact_secrets(value: Any) -> Any:
    """`value` with every registered secret replaced by `***` (structure and other types kept)."""
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {redact_secrets(key): redact_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_secrets(item) for item in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if _redact_text(str(value)) == str(value) else REPLACEMENT
    return value
