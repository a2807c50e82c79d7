"""`local-shell-cmd` and `local-shell-script`: one child process, in its own process group.

- `local-shell-cmd` runs the `cmd` parameter with `/bin/sh -c`; `env` (a mapping) is added
  to the environment and `cwd` is the working directory (default: the worker's).
- `local-shell-script` runs the action's entry point: directly when it is executable and
  starts with `#!` (its interpreter), else with `/bin/sh <file>`; the working directory is
  the script's own directory unless the action declares a `cwd` parameter that is given.

Every other parameter reaches the child as `ATTUNE_PARAM_<NAME>` (name upper-cased,
characters other than letters, digits and `_` turned into `_`; values that are not
strings as JSON); `env` entries win over those. The child inherits the worker's
environment, reads nothing on stdin, and each line it writes is logged to the task log as
it comes (`[stdout] ...` / `[stderr] ...`) while being collected.

The result is `{stdout, stderr, return_code}` with trailing whitespace removed; a
non-zero return code is the failure `NonZeroExit` that keeps this result. `kill()` (a
timeout, a cancellation, or any exception while waiting) sends SIGTERM to the whole
process group, waits up to `TERM_GRACE_SECONDS`, then SIGKILLs what is left, so
background children do not outlive the task. A command that ends normally while its
background children still hold its stdout/stderr is waited for until they close them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from attune_provider.runners.base import ActionFailed, Invocation, error_of

log = logging.getLogger(__name__)

SHELL = "/bin/sh"
PARAM_PREFIX = "ATTUNE_PARAM_"
TERM_GRACE_SECONDS = 5.0
RUNNER_OPTIONS = ("env", "cwd")


def param_env_name(name: str) -> str:
    """`ATTUNE_PARAM_<NAME>` of a parameter."""
    return PARAM_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def _env_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def child_environment(params: Mapping[str, Any], skip: Iterable[str]) -> dict[str, str]:
    """The worker's environment, the parameters as ATTUNE_PARAM_*, then the `env` parameter."""
    skipped = set(skip)
    env = dict(os.environ)
    for name, value in params.items():
        if name not in skipped:
            env[param_env_name(name)] = _env_value(value)
    extra = params.get("env")
    if isinstance(extra, Mapping):
        env.update({str(key): _env_value(value) for key, value in extra.items()})
    return env


def _pump(stream: IO[bytes], name: str, sink: list[str], quiet: bool) -> None:
    """Log each line of a child's output as it arrives (unless `quiet`), and keep it."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace")
            sink.append(line)
            if not quiet:
                log.info("[%s] %s", name, line.rstrip("\r\n"))
    if quiet and sink:
        log.info("[%s] %d lines, not logged: the workflow is confidential", name, len(sink))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal is still there
        return True
    return True


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _exit_message(label: str, code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"{label} was terminated by {name} (return code {code})"
    return f"{label} exited with {code}"


class _ShellRunner:
    """Starting, streaming, waiting for and killing one child process group."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._kill_lock = threading.RLock()  # on_kill may run in a signal handler, mid-kill

    def command(self, invocation: Invocation) -> tuple[list[str], dict[str, str], str | None, str]:
        """(argv, environment, working directory, label for messages)."""
        raise NotImplementedError

    def run(self, invocation: Invocation) -> Any:
        argv, env, cwd, label = self.command(invocation)
        try:
            code, stdout, stderr = self._execute(argv, env, cwd, invocation.quiet)
        except OSError as exc:  # could not start: missing cwd, interpreter, permission...
            self.kill()
            raise ActionFailed(error_of(exc)) from exc
        except BaseException:  # a timeout or cancellation interrupting the wait
            self.kill()
            raise
        result = {"stdout": stdout.rstrip(), "stderr": stderr.rstrip(), "return_code": code}
        if code != 0:
            raise ActionFailed({"type": "NonZeroExit", "message": _exit_message(label, code)}, result)
        return result

    def _execute(
        self, argv: list[str], env: dict[str, str], cwd: str | None, quiet: bool
    ) -> tuple[int, str, str]:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        self._proc = proc
        log.info("started process %s (process group %s)", proc.pid, proc.pid)
        out: list[str] = []
        err: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, "stdout", out, quiet), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, "stderr", err, quiet), daemon=True),
        ]
        for reader in readers:
            reader.start()
        code = proc.wait()
        for reader in readers:
            reader.join()
        return code, "".join(out), "".join(err)

    def kill(self) -> None:
        """SIGTERM the process group, wait up to TERM_GRACE_SECONDS, then SIGKILL it."""
        proc = self._proc
        if proc is None:
            return
        with self._kill_lock:
            pgid = proc.pid  # start_new_session: the child leads its own group
            if proc.poll() is None or _group_alive(pgid):
                log.info("terminating process group %s", pgid)
                _signal_group(pgid, signal.SIGTERM)
            deadline = time.monotonic() + TERM_GRACE_SECONDS
            try:
                proc.wait(timeout=TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            while _group_alive(pgid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _group_alive(pgid):
                log.warning("process group %s outlived SIGTERM; sending SIGKILL", pgid)
                _signal_group(pgid, signal.SIGKILL)
            try:
                proc.wait(timeout=TERM_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                log.error("process %s did not end after SIGKILL", proc.pid)


class ShellCommandRunner(_ShellRunner):
    """`local-shell-cmd`: `cmd` run by /bin/sh."""

    def command(self, invocation: Invocation) -> tuple[list[str], dict[str, str], str | None, str]:
        params = invocation.params
        cmd = params.get("cmd")
        if not isinstance(cmd, str) or not cmd.strip():
            raise ActionFailed({"type": "ConfigurationError", "message": "parameter 'cmd' is empty"})
        log.info("$ %s", "(command not logged: the workflow is confidential)" if invocation.quiet else cmd)
        env = child_environment(params, ("cmd", *RUNNER_OPTIONS))
        cwd = params.get("cwd") or None
        return [SHELL, "-c", cmd], env, cwd, "command"


def _runs_itself(path: Path) -> bool:
    """Executable and starting with `#!`: the kernel runs it with its interpreter."""
    if not os.access(path, os.X_OK):
        return False
    with path.open("rb") as handle:
        return handle.read(2) == b"#!"


class ShellScriptRunner(_ShellRunner):
    """`local-shell-script`: the entry point file, with its shebang if executable, else /bin/sh."""

    def command(self, invocation: Invocation) -> tuple[list[str], dict[str, str], str | None, str]:
        entry = invocation.action.entry_point
        if entry is None:
            raise ActionFailed(
                {"type": "ConfigurationError", "message": "local-shell-script action has no entry_point"}
            )
        if not entry.is_file():
            raise ActionFailed({"type": "FileNotFoundError", "message": f"entry point {entry} not found"})
        argv = [str(entry)] if _runs_itself(entry) else [SHELL, str(entry)]
        log.info("running script %s", entry)
        params = invocation.params
        env = child_environment(params, RUNNER_OPTIONS)
        cwd = params.get("cwd") or str(entry.parent)
        return argv, env, cwd, f"script {entry.name}"
