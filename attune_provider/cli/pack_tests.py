"""`attune-airflow test [--packs DIR]... [PATH]... [--junit FILE]` (docs/testing-packs.md).

Runs the workflow tests of every pack (`<pack>/tests/*.yaml`, or the given files and
directories) through Airflow as `run` does, with the mocks of each case, and prints one
line per case on standard output (`PASS file:line name` / `FAIL file:line name: what
differed`), then `N passed, M failed`.

Exit codes: 0 every case passed, 1 one failed, 2 nothing ran: an invalid test file (each
problem as `FILE:LINE:COL: error: MESSAGE` on standard error), a PATH that does not exist,
or a settings error. Airflow's output during the runs (fds 1 and 2) goes to a log file
(`<[logging] base_log_folder>/attune/tests/<time>.log`), named at the end on standard error.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from attune_provider import settings
from attune_provider.language.source import Location, Problem

EXIT_PASSED, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
PROG = "attune-airflow test"

DESCRIPTION = """\
Run the workflow tests of packs through Airflow (dag.test(), as `attune-airflow run`
does), with chosen actions or tasks replaced by mocks.

A test file (<pack>/tests/<name>.yaml) names one workflow and lists cases:

  workflow: ops.check_service
  cases:
    - name: a degraded service is restarted
      parameters: {base_url: "http://svc"}
      mocks:                                  # by action ref, or task:<name>
        task:ping: {result: {status_code: 200}}
        task:read_status: {result: {body: {degraded: true, version: "2"}}}
        core.http: [{fail: {type: HTTPError, message: "503"}}, {result: {}}]  # one per call
      expect:
        status: succeeded                     # also: tasks, output / output_subset,
        tasks: {restart: succeeded}           #       vars / vars_subset
"""

EPILOG = """\
example:
  attune-airflow test --packs packs                      # every pack's tests/*.yaml
  attune-airflow test packs/ops/tests/check_service.yaml --junit report.xml

exit codes:
  0  every case passed
  1  a case failed (or could not run)
  2  nothing ran: an invalid test file (FILE:LINE:COL: error: MESSAGE on standard
     error), a PATH that does not exist, or a settings error

environment:
  ATTUNE_PACKS_PATH  packs directories (':'-separated) when --packs is not given, else
                     [attune] packs_path of airflow.cfg, else ./packs
  AIRFLOW_HOME       the Airflow home whose metadata database the runs use (created or
                     upgraded when needed), as for `attune-airflow run`

docs/testing-packs.md describes test files, mocks and expectations.
"""


def add_test_parser(commands: Any) -> None:
    """The `test` subcommand, on the `attune-airflow` subparsers."""
    parser = commands.add_parser(
        "test",
        help="run the workflow tests of packs (<pack>/tests/*.yaml) with mocks",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--packs", action="append", metavar="DIR", help="a packs directory (repeatable)")
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="test files, or directories holding them (default: every pack's tests/)",
    )
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    parser.set_defaults(handler=test_command)


def test_command(args: argparse.Namespace) -> int:
    try:
        return test_main(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


# -- finding the test files ----------------------------------------------------------------


def _holding_pack(path: Path) -> Path | None:
    absolute = Path(os.path.abspath(path))
    return next((c for c in (absolute, *absolute.parents) if (c / "pack.yaml").is_file()), None)


def packs_for(cli_packs: Sequence[str], targets: Sequence[Path]) -> list[Path]:
    """The packs path; with PATHs and no --packs, the packs directories holding them first."""
    packs, origin = settings.resolve_packs_paths(cli_packs)
    if origin == settings.ORIGIN_DEFAULT and not packs[0].exists():
        packs = []
    if targets and not cli_packs:
        found = []
        for target in targets:
            pack = _holding_pack(target)
            if (
                pack is None
                and target.is_dir()
                and any((c / "pack.yaml").is_file() for c in target.iterdir())
            ):
                found.append(target)
            elif pack is not None:
                found.append(pack.parent if target.is_absolute() else Path(os.path.relpath(pack.parent)))
        packs = [*found, *packs]
    unique: dict[str, Path] = {}
    for path in packs:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _tests_of_dir(directory: Path) -> list[Path]:
    from attune_provider.testing.spec import test_files_in

    if (directory / "pack.yaml").is_file():  # a pack: its tests/
        tests = directory / "tests"
        return list(test_files_in(tests)) if tests.is_dir() else []
    packs = [c for c in sorted(directory.iterdir()) if c.is_dir() and (c / "pack.yaml").is_file()]
    if packs:  # a packs directory: every pack's tests/
        return [path for pack in packs for path in _tests_of_dir(pack)]
    return list(test_files_in(directory))


def find_test_files(packs: Sequence[Path], targets: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """The test files to run (each once, in order) and the PATHs that do not exist."""
    from attune_provider.dag_factory.loader import pack_directories

    problems: list[Problem] = []
    files: list[Path] = []
    if targets:
        for target in targets:
            if target.is_file():
                files.append(target)
            elif target.is_dir():
                files.extend(_tests_of_dir(target))
            else:
                problems.append(Problem(Location(os.path.normpath(str(target))), "no such file or directory"))
    else:
        for directory, _ in pack_directories(packs, with_core=False):
            files.extend(_tests_of_dir(directory))
    unique: dict[str, Path] = {}
    for path in files:
        unique.setdefault(os.path.realpath(path), Path(os.path.normpath(str(path))))
    return list(unique.values()), problems


# -- the command ---------------------------------------------------------------------------


def _problems(lines: Sequence[Problem]) -> None:
    from attune_provider.cli.validate_output import colour_wanted, write_text

    write_text(lines, sys.stderr, colour_wanted(sys.stderr))  # as `validate` prints them


_VERDICT_COLOURS = {"PASS": "\x1b[32m", "FAIL": "\x1b[1;31m"}


def _coloured(line: str) -> str:
    """A case's line with its verdict in colour (for a terminal only)."""
    verdict, _, rest = line.partition(" ")
    start = _VERDICT_COLOURS.get(verdict)
    return f"{start}{verdict}\x1b[0m {rest}" if start else line


def load_tests(args: argparse.Namespace) -> tuple[list[Any], list[Problem]]:
    """(test files, problems): the packs parsed and validated once, every test file checked."""
    from attune_provider.dag_factory.loader import load_catalog
    from attune_provider.dag_factory.validation.checks import validate_catalog
    from attune_provider.local_run import airflow_defaults, prepare_environment
    from attune_provider.sources.reconcile import resolve_quietly
    from attune_provider.testing.spec import load_test_file

    targets = [Path(value) for value in args.paths]
    airflow_defaults()  # before settings may import Airflow to read `[attune] packs_path`
    packs = packs_for(args.packs or [], targets)
    max_bytes = settings.max_file_bytes()
    prepare_environment(packs)
    files, problems = find_test_files(packs, targets)
    for given in map(Path, args.packs or []):  # a typo in CI's --packs must not pass with no test run
        if not given.is_dir():
            what = "is not a directory" if given.exists() else "does not exist"
            problems.append(Problem(Location(os.path.normpath(str(given))), f"packs directory {what}"))
    sources = resolve_quietly(max_bytes)
    catalog = load_catalog(packs, max_file_bytes=max_bytes, sources=sources.sources)
    report = validate_catalog(catalog, max_depth=settings.max_depth())
    plans: dict[str, Any] = {}
    tests = []
    for path in files:
        test, found = load_test_file(path, os.path.normpath(str(path)), catalog, report, plans, max_bytes)
        problems.extend(found)
        if test is not None:
            tests.append(test)
    return tests, problems


def _log_path() -> Path:
    from attune_provider.cli.run_report import log_path_for

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H-%M-%S.%fZ")
    return log_path_for("tests", stamp)


def _summary(results: Sequence[Any]) -> str:
    passed = sum(1 for result in results if result.passed)
    return f"{passed} passed, {len(results) - passed} failed"


def _run(tests: Sequence[Any], out: TextIO) -> tuple[list[Any], Path]:
    from attune_provider.cli.run_report import redirected
    from attune_provider.testing.runner import run_all

    log_path = _log_path()
    log_path.parent.mkdir(parents=True, exist_ok=True)

    from attune_provider.cli.validate_output import colour_wanted

    colour = colour_wanted(out)

    def report(result: Any) -> None:
        out.write((_coloured(result.line()) if colour else result.line()) + "\n")
        out.flush()

    with open(log_path, "a", encoding="utf-8") as log:
        count = sum(len(test.cases) for test in tests)
        log.write(f"{PROG}: {count} cases, started {datetime.now(timezone.utc).isoformat()}\n")
        log.flush()
        with redirected(log.fileno(), 1, 2):
            results = run_all(tests, report)
        for result in results:
            if result.details:
                log.write(f"{result.case.where} {result.case.name}:\n{result.details}\n")
    return results, log_path


def test_main(args: argparse.Namespace) -> int:
    """The `test` subparser's namespace (packs, paths, junit) -> exit code."""
    started = time.monotonic()
    try:
        tests, problems = load_tests(args)
    except ValueError as exc:  # an invalid setting
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if problems:
        _problems(sorted(problems, key=lambda p: (p.location, p.message)))
        count = sum(1 for p in problems if p.is_error)
        print(f"{PROG}: {count} error{'s' * (count != 1)} in test files; no case ran", file=sys.stderr)
        return EXIT_INVALID
    if not tests:
        print(f"{PROG}: no test files found (<pack>/tests/*.yaml)", file=sys.stderr)
    sys.stdout.flush()
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    with os.fdopen(os.dup(1), "w", encoding=encoding, errors="backslashreplace") as out:
        results, log_path = _run(tests, out) if tests else ([], None)
        out.write(_summary(results) + "\n")
        out.flush()
    if args.junit:
        from attune_provider.testing.junit import write_junit

        write_junit(results, Path(args.junit))
    if log_path is not None:
        print(f"logs: {log_path} ({time.monotonic() - started:.1f}s)", file=sys.stderr)
    return EXIT_PASSED if all(result.passed for result in results) else EXIT_FAILED
