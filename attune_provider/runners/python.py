"""`python-script`: the entry point module's `run(**params)`, in the task's own process."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

from attune_provider.runners.base import ActionFailed, Invocation, error_of
from attune_provider.runners.masking import masked_prints


def load_module(path: str) -> ModuleType:
    """Import the entry point file under a name unique to its path (no clashes between packs)."""
    name = "attune_action_" + hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import entry point {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class PythonScriptRunner:
    def run(self, invocation: Invocation) -> Any:
        entry = invocation.action.entry_point
        if entry is None:
            raise ActionFailed(
                {"type": "ConfigurationError", "message": "python-script action has no entry_point"}
            )
        try:
            with masked_prints(quiet=invocation.quiet):
                module = load_module(str(entry))
                run = getattr(module, "run", None)
                if not callable(run):
                    raise AttributeError(f"{entry.name} defines no function run(**params)")
                result = run(**invocation.params)
        except ActionFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any exception is the action's failure
            raise ActionFailed(error_of(exc)) from exc
        try:
            return json.loads(json.dumps(result))  # JSON data: a tuple becomes the list it is in JSON
        except (TypeError, ValueError) as exc:
            raise ActionFailed({"type": "TypeError", "message": f"result is not JSON-serialisable: {exc}"})

    def kill(self) -> None:
        return None
