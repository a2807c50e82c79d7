"""`attune-airflow init-dags DIR`: install the two DAG files from the installed package.

A team that installs the wheel has no clone to copy `dags/` from: the files ship inside
the package (`attune_provider/airflow_dags/`), and this command writes them into the
DAGs folder. An existing file with other content is left alone unless `--force`.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

DAG_FILES = ("attune_dags.py", "attune_errors.py")
EXIT_OK, EXIT_FAILED = 0, 1


EPILOG = """\
example:
  attune-airflow init-dags "$AIRFLOW_HOME/dags"

exit codes:
  0  both files are in DIR (written, or already there with the same content)
  1  DIR cannot be used, or a file of the same name has other content (see --force)
  2  a usage error (no DIR, an unknown option)

environment: none read (give the DAGs folder as DIR).
"""


def add_init_dags_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    init = commands.add_parser(
        "init-dags",
        help="write the two DAG files into an Airflow DAGs folder",
        description="Write attune_dags.py and attune_errors.py, shipped in the package, into DIR.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    init.add_argument("directory", metavar="DIR", help="the DAGs folder (e.g. $AIRFLOW_HOME/dags)")
    init.add_argument("--force", action="store_true", help="replace files of the same name")
    init.set_defaults(handler=init_dags_main)


def init_dags_main(args: argparse.Namespace) -> int:
    target = Path(args.directory)
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot use {target} as the DAGs folder: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    shipped = resources.files("attune_provider") / "airflow_dags"
    status = EXIT_OK
    for name in DAG_FILES:
        content = (shipped / name).read_text(encoding="utf-8")
        path = target / name
        if path.exists() and path.read_text(encoding="utf-8") != content and not args.force:
            print(f"error: {path} exists with other content (use --force to replace it)", file=sys.stderr)
            status = EXIT_FAILED
            continue
        path.write_text(content, encoding="utf-8")
        print(f"wrote {path}")
    return status
