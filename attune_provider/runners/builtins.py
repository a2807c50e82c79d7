"""The core pack's in-process actions: noop, echo, sleep."""

from __future__ import annotations

import threading
from typing import Any

from attune_provider.runners.base import Invocation


class NoopRunner:
    def run(self, invocation: Invocation) -> Any:
        return None

    def kill(self) -> None:
        return None


class EchoRunner:
    def run(self, invocation: Invocation) -> Any:
        return {"message": invocation.params.get("message")}

    def kill(self) -> None:
        return None


class SleepRunner:
    """Sleeps on an event so a timeout or a kill can end it early."""

    def __init__(self) -> None:
        self._stop = threading.Event()

    def run(self, invocation: Invocation) -> Any:
        self._stop.wait(float(invocation.params.get("seconds", 0)))
        return None

    def kill(self) -> None:
        self._stop.set()
