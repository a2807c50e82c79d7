"""Picks the runner for a runner type; heavier runners are imported only when used."""

from __future__ import annotations

import importlib

from attune_provider.runners.base import Runner

_RUNNERS = {
    "noop": "attune_provider.runners.builtins:NoopRunner",
    "echo": "attune_provider.runners.builtins:EchoRunner",
    "sleep": "attune_provider.runners.builtins:SleepRunner",
    "python-script": "attune_provider.runners.python:PythonScriptRunner",
    "local-shell-cmd": "attune_provider.runners.shell:ShellCommandRunner",
    "local-shell-script": "attune_provider.runners.shell:ShellScriptRunner",
    "http-request": "attune_provider.runners.http:HttpRunner",
    "inquiry": "attune_provider.runners.inquiry:InquiryRunner",
    "airflow": "attune_provider.runners.airflow_operator:AirflowOperatorRunner",
}


def get_runner(runner_type: str) -> Runner:
    """A fresh runner instance for one execution."""
    target = _RUNNERS.get(runner_type)
    if target is None:
        raise NotImplementedError(f"runner type '{runner_type}' is not implemented")
    module_name, _, class_name = target.partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), class_name)()
    return runner
