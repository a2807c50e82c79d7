"""How much one template may make and how long it may run (docs/language.md, Templates).

The language reads no configuration: the layer that runs templates (the operators) says
where the limits come from with `set_limits_source`; without a source the defaults apply
(those of `[attune] max_template_result_bytes` and `[attune] template_timeout`).

While a template renders, a `Guard` is active: the sandbox's hooks (calls, attribute and
item lookups, intercepted operators, every step of a `{% for %}` loop) `tick` it, and it
fails the template once its thread has spent `timeout` seconds of CPU time in it (time
waiting for Airflow, e.g. an XCom read, does not count); operations that could make
something huge ask it to `check` the size they would make before making it. It works in
any thread of any process (a task, the DAG processor, `attune-airflow validate`): no
signal, no second thread. No Airflow import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from jinja2.sandbox import SecurityError

DEFAULT_MAX_RESULT_BYTES = 1024 * 1024
DEFAULT_TIMEOUT = 5.0

SIZE_OPTION = "[attune] max_template_result_bytes"
TIMEOUT_OPTION = "[attune] template_timeout"

_TICKS_PER_CLOCK_READ = 64  # reading the thread's CPU clock costs a system call


@dataclass(frozen=True)
class TemplateLimits:
    """The largest string, number or list one template operation may make (bytes), and the
    CPU seconds one template may run."""

    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    timeout: float = DEFAULT_TIMEOUT


_source: Callable[[], TemplateLimits] = TemplateLimits


def set_limits_source(source: Callable[[], TemplateLimits] | None) -> None:
    """Where `render` takes its limits from, called once per `render` (None: the defaults)."""
    global _source
    _source = source or TemplateLimits


def current_limits() -> TemplateLimits:
    return _source()


@contextmanager
def limits_read_once() -> Iterator[None]:
    """Within it, the limits are read from their source once: a parse folds thousands of
    constant templates (`render.constant`), and reading the options each time was a tenth
    of compiling a workflow; they do not change within one parse."""
    global _source
    previous = _source
    snapshot = previous()
    _source = lambda: snapshot  # noqa: E731 - a source is any callable
    try:
        yield
    finally:
        _source = previous


class TemplateLimitError(SecurityError):
    """A template went past a limit: it would make too large a value, or ran too long."""


def amount(size: int) -> str:
    """`1,048,576 bytes`."""
    return f"{size:,} bytes"


class Guard:
    """The limits of the template being rendered, and when its time is up."""

    __slots__ = ("max_bytes", "timeout", "_deadline", "_countdown", "list_sizes")

    def __init__(self, limits: TemplateLimits, timed: bool = True) -> None:
        self.max_bytes = limits.max_result_bytes
        self.timeout = limits.timeout
        self.list_sizes: dict[int, tuple[int, int]] = {}  # lists grown here: id -> (length, size)
        self._deadline = time.thread_time() + limits.timeout if timed else float("inf")
        self._countdown = _TICKS_PER_CLOCK_READ

    def tick(self) -> None:
        """One step of the template: fails it once its time is up."""
        self._countdown -= 1
        if self._countdown > 0:
            return
        self._countdown = _TICKS_PER_CLOCK_READ
        if time.thread_time() > self._deadline:
            raise TemplateLimitError(
                f"the template ran for more than {self.timeout:g} s of CPU time ({TIMEOUT_OPTION})"
            )

    def check(self, size: int | None, what: str) -> None:
        """Refuse an operation (`what`) that would make `size` bytes, more than the limit."""
        if size is not None and size > self.max_bytes:  # (sizes of values walked in part are
            # lower bounds: the message gives the limit, not them)
            limit = amount(self.max_bytes)
            raise TemplateLimitError(f"{what} would make more than the {limit} of {SIZE_OPTION}")


_ACTIVE: ContextVar[Guard | None] = ContextVar("attune_template_guard", default=None)
_UNTIMED = Guard(TemplateLimits(), timed=False)  # the environment used outside `render`


def active_guard() -> Guard:
    """The guard of the template rendering now (outside `render`: the default sizes, no timeout)."""
    return _ACTIVE.get() or _UNTIMED


@contextmanager
def limited(limits: TemplateLimits) -> Iterator[Guard]:
    """Render one template under `limits`; a template rendered while another one is (a lazy
    scope that renders) shares the outer one's guard and time."""
    outer = _ACTIVE.get()
    if outer is not None:
        yield outer
        return
    token = _ACTIVE.set(Guard(limits))
    try:
        yield _ACTIVE.get() or _UNTIMED
    finally:
        _ACTIVE.reset(token)
