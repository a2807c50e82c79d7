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

import logging
from typing import TYPE_CHECKING, Any

from attune_provider.runners.masking import REPLACEMENT, redact_text, running_in_process

if TYPE_CHECKING:
    from attune_provider.language.plan import ActionPlan


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
            return redact_text(rendered)
        if isinstance(rendered, bytes):
            return redact_text(rendered.decode("utf-8", errors="replace")).encode()
        return rendered


def _wrap_renderer(processors: Any) -> None:
    if isinstance(processors, list) and processors and not isinstance(processors[-1], _RedactRendered):
        processors[-1] = _RedactRendered(processors[-1])


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
    if _in_process_masking or not running_in_process():
        return
    import structlog

    _wrap_renderer(structlog.get_config()["processors"])  # the live list loggers share
    for handler in logging.getLogger().handlers:
        _wrap_renderer(getattr(handler.formatter, "processors", None))
    _in_process_masking = True


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
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_secrets(key): redact_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_secrets(item) for item in value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value if redact_text(str(value)) == str(value) else REPLACEMENT
    return value
