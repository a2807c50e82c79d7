"""`attune-airflow registry build DIR OUT`: a pack registry an `http` source can serve.

Validates DIR exactly as `attune-airflow validate --packs DIR` does (same report, nothing
written on an error), then writes `OUT/<ref>-<version>.tar.gz` per pack and `OUT/index.json`
last, each atomically, so a registry served from OUT never lists a missing archive.
The validation modules are imported only when the command runs, as for the other commands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from attune_provider.sources.archive import ArchiveError, pack_archive

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2
INDEX = "index.json"
# A version becomes part of a file name in OUT: no '/', no leading '.'.
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


BUILD_EPILOG = """\
example:
  attune-airflow registry build packs/ registry/ --paused my_pack
  then serve registry/ over HTTP and list it as an http source (docs/sources.md)

exit codes:
  0  the archives and index.json were written
  1  DIR has errors (reported as validate does; nothing written), holds no pack,
     or OUT could not be written
  2  a usage or settings error (an unknown --paused pack, OUT not a directory)

environment:
  ATTUNE_SOURCES     workflow sources, validated with DIR as validate does (docs/sources.md)
  AIRFLOW_HOME, AIRFLOW_CONFIG, AIRFLOW__ATTUNE__<OPTION>
                     where the [attune] options are read (limits: docs/configuration.md)
  NO_COLOR           set and not empty: no colour in the validation report
"""


class _Pack(NamedTuple):
    ref: str
    version: str
    directory: Path


def add_registry_parser(commands: Any) -> None:
    """Add `registry build` to the `attune-airflow` sub-commands (an argparse subparsers)."""
    registry = commands.add_parser(
        "registry",
        help="build a pack registry for an http source",
        epilog="actions: build (see `attune-airflow registry build --help`)\n\n" + BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = registry.add_subparsers(dest="registry_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="validate the packs in DIR, write archives and index to OUT",
        description="Validate the packs in DIR, then write one archive per pack and index.json to OUT.",
        epilog=BUILD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("dir", metavar="DIR", help="a packs directory (or one pack directory)")
    build.add_argument("out", metavar="OUT", help="the registry directory to write")
    build.add_argument(
        "--paused", action="append", default=[], metavar="REF", help="list this pack as paused (repeatable)"
    )
    build.set_defaults(handler=registry_main)


def _error(message: str) -> None:
    print(f"attune-airflow: error: {message}", file=sys.stderr)


def _packs(source: Path) -> tuple[list[_Pack], list[str]]:
    """The packs in `source` (as validate finds them) and, formatted, why any cannot be listed."""
    from attune_provider import settings
    from attune_provider.dag_factory.loader import CORE_PACKS_DIR, load_catalog, pack_directories
    from attune_provider.language.source import Problem

    directories = {d.resolve() for d, _ in pack_directories([source]) if d != CORE_PACKS_DIR / "core"}
    catalog = load_catalog([source], max_file_bytes=settings.max_file_bytes())
    packs, problems = [], []
    for entry in catalog.packs.values():
        if entry.meta is None or entry.directory.resolve() not in directories:
            continue
        version = entry.meta.version
        if version is not None and VERSION_PATTERN.fullmatch(version):
            packs.append(_Pack(entry.ref, version, entry.directory))
            continue
        fault = f"version '{version}' must match {VERSION_PATTERN.pattern}" if version else "no version"
        where = entry.meta.loc() if version is None else entry.meta.loc("version")
        problems.append(Problem(where, f"pack '{entry.ref}': {fault} (its archive is named after it)"))
    return sorted(packs), [problem.format() for problem in problems]


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers of `path` see the old content or the new, never part of it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def _build(packs: list[_Pack], out: Path, paused: set[str]) -> list[dict[str, str]]:
    archives = [(pack, pack_archive(pack.directory)) for pack in packs]  # all built before any write
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for pack, data in archives:
        name = f"{pack.ref}-{pack.version}.tar.gz"
        _write_atomically(out / name, data)
        index.append(
            {
                "ref": pack.ref,
                "version": pack.version,
                "sha256": hashlib.sha256(data).hexdigest(),
                "archive": name,
                "status": "paused" if pack.ref in paused else "active",
            }
        )
    _write_atomically(out / INDEX, (json.dumps({"packs": index}, indent=2) + "\n").encode())
    return index


def registry_main(args: argparse.Namespace) -> int:
    """The `registry build` namespace (dir, out, paused) -> exit code."""
    from attune_provider.cli.validate import validate_main

    source, out, paused = Path(args.dir), Path(args.out), set(args.paused or [])
    packs, problems = _packs(source)
    if problems:  # reported alone, with their own summary (validate's would count none of them)
        for line in problems:
            print(line)
        print(f"{len(problems)} error{'s' * (len(problems) != 1)}, 0 warnings", file=sys.stderr)
        return EXIT_ERRORS
    code = validate_main(argparse.Namespace(packs=[args.dir], paths=[]))
    if code != EXIT_OK:
        return code
    if not packs:
        _error(f"no pack in {source} (a pack is a directory holding pack.yaml)")
        return EXIT_ERRORS
    unknown = sorted(paused - {pack.ref for pack in packs})
    if unknown:
        _error(f"--paused {', '.join(unknown)}: no such pack in {source}")
        return EXIT_USAGE
    if out.exists() and not out.is_dir():
        _error(f"{out}: not a directory")
        return EXIT_USAGE
    try:
        index = _build(packs, out, paused)
    except (ArchiveError, OSError) as exc:
        _error(str(exc))
        return EXIT_ERRORS
    for item in index:
        print(item["ref"], item["version"], item["sha256"][:12], item["archive"], item["status"])
    return EXIT_OK
