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

    validate = commands.add_parser("validate", help="check packs without running anything")
    validate.add_argument("--packs", action="append", metavar="DIR", help="a packs directory (repeatable)")
    validate.add_argument("paths", nargs="*", metavar="PATH", help="report only problems in these files/dirs")
    validate.set_defaults(handler=validate_command)

    run = commands.add_parser("run", help="run a workflow once through Airflow")
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
