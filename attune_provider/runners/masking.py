"""What an action's own Python code prints, with registered secrets redacted.

The runners' part of secret handling (operators/state/secrets.py registers the secrets
and keeps them out of XComs): under `dag.test()` a task runs in the calling process, where
nothing masks `print()`; `masked_prints()` redacts it line by line.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator
from typing import TextIO

REPLACEMENT = "***"


def running_in_process() -> bool:
    """True under `dag.test()`: the task runs inside the calling Airflow process."""
    try:
        from airflow.sdk.execution_time import task_runner
        from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms
    except ImportError:
        return False
    return isinstance(getattr(task_runner, "SUPERVISOR_COMMS", None), InProcessSupervisorComms)


class _RedactingStream(io.TextIOBase):
    """Writes whole lines to `target` with registered secrets redacted."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.pending = ""

    def write(self, text: str) -> int:
        self.pending += text
        done, newline, self.pending = self.pending.rpartition("\n")
        if newline:
            self.target.write(redact_text(done + newline))
        return len(text)

    def flush(self) -> None:
        if self.pending:
            self.target.write(redact_text(self.pending))
            self.pending = ""
        self.target.flush()


@contextlib.contextmanager
def masked_prints(quiet: bool = False) -> Iterator[None]:
    """Under `dag.test()`, redact what Python code writes to `sys.stdout`/`sys.stderr`;
    `quiet` (a confidential run): drop it, on a worker too.

    A worker's supervisor masks a task's output itself; in-process, `print()` would reach
    the console (and `attune-airflow run`'s log) in clear. Writes to the file descriptors
    themselves (`os.write`, child processes) are not covered.
    """
    if quiet:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
        return
    if not running_in_process():
        yield
        return
    out, err = _RedactingStream(sys.stdout), _RedactingStream(sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.flush()
        err.flush()


def redact_text(text: str) -> str:
    """`text` with every secret registered with Airflow's masker replaced by `***`."""
    from airflow.sdk.log import redact

    return str(redact(text, replacement=REPLACEMENT))
