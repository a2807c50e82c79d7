"""`attune-airflow graph REF [--packs DIR]... [--format mermaid|dot]` (docs/cli.md).

Prints the task graph of workflow REF on standard output: Mermaid (`flowchart TD`, the
default) or Graphviz DOT (`digraph`), its transitions labelled, its groups (parallel,
with_items, subworkflow calls with the child's tasks) as subgraphs
(dag_factory/graph_render.py). Exit 0; 2 when REF is unknown or invalid (each problem as
`FILE:LINE:COL: error: MESSAGE` on standard error) or for a usage or settings error.
Imports no Airflow: a rendering of the language, as `validate` is.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from attune_provider import settings
from attune_provider.language.source import Location, Problem

if TYPE_CHECKING:
    from attune_provider.language.plan import WorkflowPlan

EXIT_OK, EXIT_INVALID = 0, 2
FORMATS = ("mermaid", "dot")  # graph_render.FORMATS; not imported before the command runs
PROG = "attune-airflow"

EPILOG = """\
example:
  attune-airflow graph my_pack.deploy_application --packs packs > deploy.mmd
  attune-airflow graph my_pack.deploy_application --format dot | dot -Tsvg > deploy.svg

edges: success, failure, complete, timeout, decision: <when>, default; parallel groups,
with_items tasks and subworkflow calls (the child's tasks inside) are subgraphs;
`join: all` is written in the task's box; fail / succeed / noop are nodes.

exit codes:
  0  the graph was printed
  2  unknown or invalid workflow (FILE:LINE:COL: error: MESSAGE on standard error),
     or a usage or settings error

environment:
  ATTUNE_PACKS_PATH  packs directories, ':'-separated, when no --packs is given
                     (else the Airflow option [attune] packs_path, else ./packs)
  ATTUNE_SOURCES     workflow sources loaded after the packs path (docs/sources.md)
"""


def add_graph_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    graph = commands.add_parser(
        "graph",
        help="print a workflow's task graph (Mermaid or Graphviz DOT)",
        description="Print the task graph of workflow REF, transitions labelled, groups as subgraphs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    graph.add_argument("ref", metavar="REF", help="the workflow ref, <pack>.<name>")
    graph.add_argument("--packs", action="append", metavar="DIR", help="a packs directory (repeatable)")
    graph.add_argument(
        "--format", choices=FORMATS, default="mermaid", help="mermaid (default) or dot (Graphviz)"
    )
    graph.set_defaults(handler=graph_main)


class _Invalid(Exception):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(p.format() for p in problems))
        self.problems = problems


def plan_of(ref: str, packs: list[str]) -> WorkflowPlan:
    """The validated plan of workflow `ref`; `_Invalid` naming the problems; ValueError for
    an invalid setting."""
    from attune_provider.dag_factory.loader import load_catalog
    from attune_provider.dag_factory.validation.checks import validate_catalog
    from attune_provider.language.plan import build_plan
    from attune_provider.language.templates.limits import set_limits_source
    from attune_provider.sources.reconcile import resolve_quietly

    settings.template_limits()
    set_limits_source(settings.template_limits)
    paths = settings.packs_paths(packs)
    sources = resolve_quietly(settings.max_file_bytes())
    catalog = load_catalog(paths, max_file_bytes=settings.max_file_bytes(), sources=sources.sources)
    report = validate_catalog(catalog, max_depth=settings.max_depth())
    entry = catalog.workflows.get(ref)
    if entry is None:
        where = Location(", ".join(str(p) for p in paths) or ".")
        pack, _, name = ref.partition(".")
        wanted = (f"{pack}/workflows/{name}.yaml", f"{pack}/workflows/{name}.yml")
        own = [p for p in report.errors() if Path(p.location.file).as_posix().endswith(wanted)]
        raise _Invalid([Problem(where, f"unknown workflow '{ref}'"), *own])
    if ref in report.invalid_workflows:
        raise _Invalid(report.invalid_workflows[ref])
    return build_plan(entry, catalog)


def graph_main(args: argparse.Namespace) -> int:
    """The `graph` subparser's namespace (ref, packs, format) -> exit code."""
    from attune_provider.dag_factory.graph_render import render

    try:
        plan = plan_of(args.ref, args.packs or [])
    except ValueError as exc:
        print(f"{PROG} graph: error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except _Invalid as exc:
        for problem in exc.problems:
            print(problem.format(), file=sys.stderr)
        if any(p.message.startswith("unknown workflow") for p in exc.problems):
            print(f"{PROG} graph: hint: `{PROG} validate` lists the problems of every pack", file=sys.stderr)
        return EXIT_INVALID
    try:
        sys.stdout.write(render(plan, args.format))
        sys.stdout.flush()
    except BrokenPipeError:  # `graph | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK
