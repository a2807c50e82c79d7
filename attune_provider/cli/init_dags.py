"""`attune-airflow init-dags DIR [--parts K]`: install the DAG files from the installed package.

A team that installs the wheel has no clone to copy `dags/` from: the files ship inside
the package (`attune_provider/airflow_dags/`), and this command writes them into the
DAGs folder. An existing file with other content is left alone unless `--force`.

With `--parts K` the workflows are split over K DAG files (`attune_dags_<i>_of_<K>.py`,
dag_factory/parts.py) that Airflow's DAG processor parses in parallel; the Attune DAG files
of another split in DIR are removed, since they would define the same DAGs again.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import resources
from pathlib import Path

from attune_provider.dag_factory.parts import MAX_PARTS

WHOLE_FILE, ERRORS_FILE = "attune_dags.py", "attune_errors.py"
DAG_FILES = (WHOLE_FILE, ERRORS_FILE)
PART_FILE = re.compile(r"attune_dags_(\d+)_of_(\d+)\.py")
EXIT_OK, EXIT_FAILED = 0, 1

PART_TEMPLATE = '''"""Airflow DAG file: part {i} of {k} of the valid Attune workflows on the packs path.

Written by `attune-airflow init-dags --parts {k}`: the workflows are split over {k} DAG files
so that Airflow's DAG processor parses them in parallel (docs/scale.md). Broken workflows
are left out; their problems are the import error of attune_errors.py, installed beside it.
"""

from attune_provider.dag_factory.factory import dags_for_airflow

globals().update(dags_for_airflow(part={i}, parts={k}))
'''


PART_ERRORS_TEMPLATE = '''"""Airflow DAG file holding no DAG: the Attune packs' problems, as its import error.

Written by `attune-airflow init-dags --parts {k}` beside the part files: it validates every
pack but compiles nothing (compiling every workflow in one file would not fit Airflow's
import timeout); each part logs a valid workflow its compiler refuses (docs/scale.md).
"""

from attune_provider.dag_factory.factory import errors_for_airflow

globals().update(errors_for_airflow(compile_check=False))
'''


EPILOG = """\
examples:
  attune-airflow init-dags "$AIRFLOW_HOME/dags"
  attune-airflow init-dags "$AIRFLOW_HOME/dags" --parts 8   # thousands of workflows

exit codes:
  0  the files are in DIR (written, or already there with the same content)
  1  DIR cannot be used, or a file of the same name has other content (see --force)
  2  a usage error (no DIR, an unknown option, --parts out of range)

environment: none read (give the DAGs folder as DIR).
"""


def _parts(text: str) -> int:
    value = int(text) if text.isdigit() else 0
    if not 1 <= value <= MAX_PARTS:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to {MAX_PARTS}, got {text!r}")
    return value


def add_init_dags_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = commands.add_parser(
        "init-dags",
        help="write the DAG files into an Airflow DAGs folder",
        description="Write the Attune DAG files, shipped in the package, into DIR.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("directory", metavar="DIR", help="the DAGs folder (e.g. $AIRFLOW_HOME/dags)")
    init.add_argument("--force", action="store_true", help="replace (or remove) files of the same name")
    init.add_argument(
        "--parts",
        type=_parts,
        default=1,
        metavar="K",
        help="split the workflows over K DAG files parsed in parallel (default 1: one attune_dags.py)",
    )
    init.set_defaults(handler=init_dags_main)


def _shipped(name: str) -> str:
    return (resources.files("attune_provider") / "airflow_dags" / name).read_text(encoding="utf-8")


def _ours(name: str) -> str | None:
    """The content this command writes under `name` for one DAG file or any split (None: not a
    name of its; the errors file: as written beside a single DAG file)."""
    if name in DAG_FILES:
        return _shipped(name)
    match = PART_FILE.fullmatch(name)
    return PART_TEMPLATE.format(i=match[1], k=match[2]) if match else None


def _content(name: str, parts: int) -> str:
    if name == ERRORS_FILE and parts > 1:
        return PART_ERRORS_TEMPLATE.format(k=parts)
    return _ours(name) or ""


def _written_by_us(path: Path) -> bool:
    """Whether `path` holds what this command wrote there for some split."""
    text = path.read_text(encoding="utf-8")
    if path.name == ERRORS_FILE:
        return text == _shipped(ERRORS_FILE) or text == PART_ERRORS_TEMPLATE.format(k=_split_of(text))
    return text == _ours(path.name)


def _split_of(errors_text: str) -> str:
    found = re.search(r"--parts (\d+)", errors_text)
    return found[1] if found else "?"


def _wanted(parts: int) -> list[str]:
    if parts == 1:
        return list(DAG_FILES)
    return [*(f"attune_dags_{i}_of_{parts}.py" for i in range(1, parts + 1)), ERRORS_FILE]


def _write(path: Path, parts: int, force: bool) -> bool:
    content = _content(path.name, parts)
    if path.exists() and path.read_text(encoding="utf-8") != content and not (force or _written_by_us(path)):
        print(f"error: {path} exists with other content (use --force to replace it)", file=sys.stderr)
        return False
    path.write_text(content, encoding="utf-8")
    print(f"wrote {path}")
    return True


def _remove_other_split(target: Path, wanted: list[str], force: bool) -> bool:
    """Remove the Attune DAG files of another split: they would load every DAG twice."""
    ok = True
    for path in sorted(target.glob("attune_dags*.py")):
        if path.name in wanted or _ours(path.name) is None:
            continue
        if not (force or _written_by_us(path)):
            print(
                f"error: {path} would load the workflows a second time: remove it (or use --force)",
                file=sys.stderr,
            )
            ok = False
            continue
        path.unlink()
        print(f"removed {path}")
    return ok


def init_dags_main(args: argparse.Namespace) -> int:
    target = Path(args.directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot use {target} as the DAGs folder: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    wanted = _wanted(args.parts)
    written = [_write(target / name, args.parts, args.force) for name in wanted]
    removed = _remove_other_split(target, wanted, args.force)
    return EXIT_OK if all(written) and removed else EXIT_FAILED
