"""`attune-airflow validate [--packs DIR]... [--format text|json|sarif] [PATH]...` (docs/cli.md).

Prints one line per problem on standard output, `FILE:LINE:COL: error: MESSAGE` (or
`warning:`), and nothing else there; a summary goes to standard error. `--format json`
prints one JSON array of problems instead, `--format sarif` a SARIF 2.1.0 log
(cli/validate_output.py, docs/validation.md). Exits 0 when there is no error and 1 when
there is one (2 for a usage or settings error). Imports no Airflow.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attune_provider import settings
from attune_provider.cli.validate_output import as_json, as_sarif, colour_wanted, write_text
from attune_provider.dag_factory.loader import load_catalog, pack_directories
from attune_provider.dag_factory.validation.checks import validate_catalog
from attune_provider.language import problem_codes as codes
from attune_provider.language.catalog import Catalog
from attune_provider.language.source import Location, Problem, coded
from attune_provider.language.templates.limits import set_limits_source
from attune_provider.sources.reconcile import resolve_quietly

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def _pack_holding(path: Path) -> Path | None:
    """The pack directory (with a pack.yaml) that is `path` or holds it, as an absolute path."""
    absolute = Path(os.path.abspath(path))
    return next((c for c in (absolute, *absolute.parents) if (c / "pack.yaml").is_file()), None)


def _containing_packs_dir(path: Path) -> Path | None:
    """The packs directory a path belongs to: itself, or the parent of the pack holding it."""
    absolute = Path(os.path.abspath(path))
    if absolute.is_dir() and any((child / "pack.yaml").is_file() for child in absolute.iterdir()):
        found = absolute
    else:
        pack = _pack_holding(path)
        if pack is None:
            return None
        found = pack.parent
    return found if path.is_absolute() else Path(os.path.relpath(found))


def _packs_paths(cli_packs: Sequence[str], targets: Sequence[Path]) -> list[Path]:
    """The packs path; with PATHs and no --packs, the packs directories holding them first."""
    packs, origin = settings.resolve_packs_paths(cli_packs)
    if origin == settings.ORIGIN_DEFAULT and not packs[0].exists():
        packs = []  # ./packs is only a default: its absence is not an error
    if targets and not cli_packs:
        extra = [found for found in map(_containing_packs_dir, targets) if found is not None]
        packs = [*extra, *packs]
    unique: dict[str, Path] = {}
    for path in packs:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _target_problems(targets: Sequence[Path], pack_dirs: Sequence[Path]) -> list[Problem]:
    """PATHs that do not exist, or that no pack on the packs path covers."""
    problems: list[Problem] = []
    roots = [os.path.realpath(directory) for directory in pack_dirs]
    for target in targets:
        where = Location(os.path.normpath(str(target)))
        real = os.path.realpath(target)
        if not target.exists():
            problems.append(Problem(where, "no such file or directory", code=codes.NO_SUCH_PATH))
        elif not any(_under(real, root) or _under(root, real) for root in roots):
            message = "not inside a pack on the packs path (see --packs)"
            problems.append(Problem(where, message, code=codes.PATH_OUTSIDE_PACKS))
    return problems


def _pack_files(target: Path) -> list[str]:
    """The pack.yaml and config.yaml of the pack holding `target`: their errors make every
    file of the pack unusable, so they are reported with it."""
    pack = _pack_holding(target)
    if pack is None:
        return []
    return [os.path.realpath(pack / "pack.yaml"), os.path.realpath(pack / "config.yaml")]


def _select(problems: Sequence[Problem], targets: Sequence[Path]) -> list[Problem]:
    """The problems located in the given files or directories (all of them without PATHs),
    with those of the pack.yaml and config.yaml of the packs holding them."""
    if not targets:
        return list(problems)
    roots = [os.path.realpath(target) for target in targets]
    roots += [path for target in targets for path in _pack_files(target)]
    return [p for p in problems if any(_under(os.path.realpath(p.location.file), r) for r in roots)]


def _summary(problems: Sequence[Problem]) -> str:
    errors = sum(1 for p in problems if p.is_error)
    warnings = len(problems) - errors
    return f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}"


def _test_file_problems(catalog: Catalog, report: Any, pack_dirs: Sequence[Path]) -> list[Problem]:
    """The problems of the packs' test files (`<pack>/tests/*.yaml`): every file is checked,
    used or not. Only those in the test files themselves: a tested workflow's own problems
    are reported at the workflow."""
    from attune_provider.testing.spec import load_test_file, test_files_in

    found: list[Problem] = []
    plans: dict[str, Any] = {}
    for directory in pack_dirs:
        if not (directory / "tests").is_dir():
            continue
        for path in test_files_in(directory / "tests"):
            display = os.path.normpath(str(path))
            _, problems = load_test_file(path, display, catalog, report, plans, catalog.max_file_bytes)
            found += [p for p in problems if p.location.file == display]
    return coded(codes.PACK_TEST, found)


def _write(problems: Sequence[Problem], output_format: str) -> None:
    if output_format == "json":
        print(as_json(problems))
    elif output_format == "sarif":
        print(as_sarif(problems))
    else:
        write_text(problems, sys.stdout, colour_wanted(sys.stdout))


def validate_main(args: argparse.Namespace) -> int:
    """The `validate` subparser's namespace (packs, paths, format) -> exit code."""
    targets = [Path(value) for value in args.paths]
    try:
        settings.template_limits()  # an invalid limit is a settings error, as for the others
        set_limits_source(settings.template_limits)  # templates folded while checking obey them
        packs = _packs_paths(args.packs or [], targets)
        sources = resolve_quietly(settings.max_file_bytes())
        catalog = load_catalog(packs, max_file_bytes=settings.max_file_bytes(), sources=sources.sources)
        report = validate_catalog(catalog, max_depth=settings.max_depth())
    except ValueError as exc:
        print(f"attune-airflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    source_paths = [path for source in sources.sources for path in source.paths]
    pack_dirs = [directory for directory, _ in pack_directories([*packs, *source_paths])]
    shown = sorted(
        [
            *coded(codes.SOURCES, sources.problems),
            *_select([*report.problems, *_test_file_problems(catalog, report, pack_dirs)], targets),
            *_target_problems(targets, pack_dirs),
        ],
        key=lambda p: (p.location, p.severity.value, p.message),
    )
    try:
        _write(shown, getattr(args, "format", "text"))
        sys.stdout.flush()
    except BrokenPipeError:  # `validate | head`: the reader has seen enough; exit as usual
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    print(_summary(shown), file=sys.stderr)
    return EXIT_ERRORS if any(p.is_error for p in shown) else EXIT_OK
