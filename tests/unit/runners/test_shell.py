"""The shell runners on their own (no Airflow): environment, results, streaming, killing."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from attune_provider.language.plan import ActionPlan
from attune_provider.runners import shell
from attune_provider.runners.base import ActionFailed, Invocation
from attune_provider.runners.shell import ShellCommandRunner, ShellScriptRunner


def invocation(params: dict[str, Any], entry_point: Path | None = None) -> Invocation:
    runner_type = "local-shell-script" if entry_point else "local-shell-cmd"
    action = ActionPlan("t.a", runner_type, "t", Path("."), entry_point, {}, None)
    return Invocation(action, params, "task")


def processes_with(marker: str) -> list[str]:
    """Command lines of the live processes that contain `marker` (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline.strip())
    return found


def test_result_is_stdout_stderr_and_return_code_without_trailing_whitespace() -> None:
    result = ShellCommandRunner().run(invocation({"cmd": "printf 'a b  \\n\\n'; echo oops >&2"}))
    assert result == {"stdout": "a b", "stderr": "oops", "return_code": 0}


def test_parameters_become_attune_param_variables_as_json_unless_strings(tmp_path: Path) -> None:
    params = {
        "cmd": "env | grep '^ATTUNE_PARAM_' | sort; echo \"X=$EXTRA\"; pwd",
        "env": {"EXTRA": "from env", "ATTUNE_PARAM_NAME": "env wins"},
        "cwd": str(tmp_path),
        "name": "plain string",
        "count": 3,
        "flags": {"a": [1, True, None]},
        "my-param": False,
    }
    lines = ShellCommandRunner().run(invocation(params))["stdout"].splitlines()
    assert lines == [
        "ATTUNE_PARAM_COUNT=3",
        "ATTUNE_PARAM_FLAGS=" + json.dumps({"a": [1, True, None]}),
        "ATTUNE_PARAM_MY_PARAM=false",
        "ATTUNE_PARAM_NAME=env wins",
        "X=from env",
        str(tmp_path),
    ]


def test_non_zero_exit_fails_and_keeps_the_result() -> None:
    with pytest.raises(ActionFailed) as caught:
        ShellCommandRunner().run(invocation({"cmd": "echo partial; exit 3"}))
    assert caught.value.error == {"type": "NonZeroExit", "message": "command exited with 3"}
    assert caught.value.result == {"stdout": "partial", "stderr": "", "return_code": 3}


def test_a_missing_working_directory_is_a_failure(tmp_path: Path) -> None:
    with pytest.raises(ActionFailed) as caught:
        ShellCommandRunner().run(invocation({"cmd": "true", "cwd": str(tmp_path / "nope")}))
    assert caught.value.error["type"] == "FileNotFoundError"


def test_scripts_run_with_their_shebang_when_executable_else_with_sh(tmp_path: Path) -> None:
    python_script = tmp_path / "hello.py"
    python_script.write_text(
        "#!/usr/bin/env python3\nimport os, sys\nprint(sys.version_info[0], os.getcwd())\n"
    )
    python_script.chmod(0o755)
    result = ShellScriptRunner().run(invocation({}, python_script))
    assert result["stdout"] == f"3 {tmp_path}"

    sh_script = tmp_path / "plain.sh"  # not executable, no shebang: /bin/sh runs it
    sh_script.write_text('echo "n=$ATTUNE_PARAM_N items=$ATTUNE_PARAM_ITEMS"\nexit 2\n')
    with pytest.raises(ActionFailed) as caught:
        ShellScriptRunner().run(invocation({"n": 5, "items": ["a"]}, sh_script))
    assert caught.value.result["stdout"] == 'n=5 items=["a"]'
    assert caught.value.error["message"] == "script plain.sh exited with 2"


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((time.monotonic(), record.getMessage()))


def test_output_is_logged_line_by_line_as_it_comes() -> None:
    handler = _Lines()
    shell.log.addHandler(handler)
    shell.log.setLevel(logging.INFO)
    try:
        started = time.monotonic()
        ShellCommandRunner().run(invocation({"cmd": "echo first; echo warn >&2; sleep 1.5; echo second"}))
        ended = time.monotonic()
    finally:
        shell.log.removeHandler(handler)
    times = {message: when for when, message in handler.seen}
    assert times["[stdout] first"] - started < 1.0
    assert times["[stderr] warn"] - started < 1.0
    assert ended - times["[stdout] first"] > 1.0
    assert "[stdout] second" in times


@pytest.mark.parametrize("trap", [False, True], ids=["sigterm", "needs-sigkill"])
def test_kill_ends_the_whole_process_group(monkeypatch: pytest.MonkeyPatch, trap: bool) -> None:
    monkeypatch.setattr(shell, "TERM_GRACE_SECONDS", 1.0)
    marker = f"{30 + uuid.uuid4().int % 10**6 / 10**7:.7f}"
    prefix = "trap '' TERM; " if trap else ""
    cmd = f"{prefix}sleep {marker} & sleep {marker} & wait"
    runner = ShellCommandRunner()
    failure: list[BaseException] = []

    def target() -> None:
        try:
            runner.run(invocation({"cmd": cmd}))
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            failure.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    sleeping = [f"sleep {marker}"] * 2
    while processes_with(marker).count(f"sleep {marker}") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in processes_with(marker) if p.startswith("sleep")] == sleeping
    started = time.monotonic()
    runner.kill()
    thread.join(10)
    assert not thread.is_alive()
    assert processes_with(marker) == []
    assert time.monotonic() - started < 5
    assert failure and isinstance(failure[0], ActionFailed)
    assert failure[0].result["return_code"] == (-9 if trap else -15)
