"""The `attune-airflow` command (docs/cli.md): its parser, and one module per command.

Each command's module is imported only when that command runs: `validate` never pays
for Airflow, which `run` imports.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from attune_provider import __version__

EXIT_USAGE = 2
VALIDATE_FORMATS = ("text", "json", "sarif")  # cli/validate_output.py

PACKS_ENVIRONMENT = """\
  ATTUNE_PACKS_PATH  packs directories, ':'-separated, when no --packs is given
                     (else the Airflow option [attune] packs_path, else ./packs)
  ATTUNE_SOURCES     workflow sources loaded after the packs path (docs/sources.md)
  AIRFLOW_HOME, AIRFLOW_CONFIG, AIRFLOW__ATTUNE__<OPTION>
                     where the [attune] options are read (limits: docs/configuration.md)"""

VALIDATE_EPILOG = f"""\
examples:
  attune-airflow validate --packs packs
  attune-airflow validate packs/my_pack/workflows/deploy.yaml
  attune-airflow validate --format sarif > attune.sarif   # for GitHub code scanning

formats: text (default) is one line per problem, FILE:LINE:COL: error|warning: MESSAGE,
coloured on a terminal; json is one array of {{file, line, column, severity, message, code}};
sarif is SARIF 2.1.0. Codes and formats: docs/validation.md. A summary goes to standard error.

exit codes:
  0  no error (warnings allowed)
  1  at least one error
  2  a usage or settings error

environment:
{PACKS_ENVIRONMENT}
  NO_COLOR           set and not empty: no colour, even on a terminal
"""

RUN_EPILOG = f"""\
examples:
  attune-airflow run my_pack.deploy_application -p app_name=shop -p version=1.4.2
  attune-airflow run my_pack.deploy_application -p app_name=shop -p version=1.4.2 \\
      -p auto_approve=true --json > result.json

exit codes:
  0    the workflow succeeded
  1    the workflow failed
  2    it could not start: unknown or invalid workflow, invalid parameters, a usage or
       settings error (FILE:LINE:COL: error: MESSAGE on standard error)
  130  interrupted (Ctrl-C)

environment:
{PACKS_ENVIRONMENT}
  AIRFLOW__<SECTION>__<KEY>
                     Airflow's settings: the metadata database of AIRFLOW_HOME is used
                     (and initialised when new)
"""


def validate_command(args: argparse.Namespace) -> int:
    from attune_provider.cli.validate import validate_main

    return validate_main(args)


def run_command(args: argparse.Namespace) -> int:
    from attune_provider.cli.run import run_main

    return run_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attune-airflow", description="Validate and run Attune workflow packs on Apache Airflow."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check packs without running anything",
        description="Check every pack (or only the given files) without running anything.",
        epilog=VALIDATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    validate.add_argument("--packs", action="append", metavar="DIR", help="a packs directory (repeatable)")
    validate.add_argument(
        "--format",
        choices=VALIDATE_FORMATS,
        default="text",
        help="text (default), json (one array of problems) or sarif (SARIF 2.1.0)",
    )
    validate.add_argument("paths", nargs="*", metavar="PATH", help="report only problems in these files/dirs")
    validate.set_defaults(handler=validate_command)

    run = commands.add_parser(
        "run",
        help="run a workflow once through Airflow",
        description="Run workflow REF once through Airflow (dag.test() on the metadata database).",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("ref", metavar="REF", help="the workflow ref, <pack>.<name>")
    run.add_argument("--packs", action="append", metavar="DIR", help="a packs directory (repeatable)")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter (VALUE read by its declared type: text for a string, else JSON)",
    )
    run.add_argument("--json", action="store_true", help="print one JSON object on standard output")
    run.set_defaults(handler=run_command)

    from attune_provider.cli.registry import add_registry_parser

    add_registry_parser(commands)
    from attune_provider.cli.shards import add_shards_parser

    add_shards_parser(commands)
    from attune_provider.cli.init_dags import add_init_dags_parser

    add_init_dags_parser(commands)
    from attune_provider.cli.pack_tests import add_test_parser

    add_test_parser(commands)
    from attune_provider.cli.schema import add_schema_parser

    add_schema_parser(commands)
    from attune_provider.cli.graph import add_graph_parser

    add_graph_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `attune-airflow` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    return int(handler(args))
