"""The output formats of `attune-airflow validate` (docs/validation.md): text, JSON, SARIF.

- text: one `FILE:LINE:COL: severity: MESSAGE` line per problem (`Problem.format`), the
  severity coloured on a terminal (`colour_wanted`), plain and byte-identical when piped;
- json: one array of `{file, line, column, severity, message, code}`;
- sarif: a SARIF 2.1.0 log with one run, its rules the problem codes
  (language/problem_codes.py) and one result per problem, as GitHub code scanning reads.

Imports no Airflow; rich only when the text goes to a terminal.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from attune_provider import __version__
from attune_provider.language.problem_codes import CODES
from attune_provider.language.source import Problem

FORMATS = ("text", "json", "sarif")
SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "attune-airflow"
INFORMATION_URI = "https://github.com/attune-airflow/airflow-provider-attune"  # pyproject.toml
SRCROOT = "SRCROOT"  # the uriBaseId of relative paths: the directory validate ran in


def colour_wanted(stream: TextIO) -> bool:
    """Colour for a terminal, unless NO_COLOR is set (https://no-color.org) or TERM=dumb."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def write_text(problems: Sequence[Problem], stream: TextIO, colour: bool) -> None:
    """One line per problem; with `colour`, the same characters with the severity in colour."""
    if not colour:
        for problem in problems:
            print(problem.format(), file=stream)
        return
    from rich.console import Console
    from rich.text import Text

    console = Console(
        file=stream, force_terminal=True, highlight=False, soft_wrap=True, emoji=False, markup=False
    )
    style = {"error": "bold red", "warning": "bold yellow"}
    for problem in problems:
        text = problem.format()  # the plain line, cut into its parts: the same characters
        location, severity = f"{problem.location}", f"{problem.severity.value}:"
        line = Text()
        line.append(location, style="bold")
        line.append(": ")
        line.append(severity, style=style.get(problem.severity.value, ""))
        line.append(text[len(location) + 2 + len(severity) :])
        console.print(line)


def as_json(problems: Sequence[Problem]) -> str:
    """One JSON array, a problem an object; the message as written (line breaks included)."""
    items = [
        {
            "file": p.location.file,
            "line": p.location.line,
            "column": p.location.col,
            "severity": p.severity.value,
            "message": p.message,
            "code": p.code,
        }
        for p in problems
    ]
    return json.dumps(items, indent=2, ensure_ascii=False)


def _artifact(file: str) -> dict[str, str]:
    """A SARIF artifactLocation: a relative path (percent-encoded) against SRCROOT, a file
    URI for an absolute path, a URL (a workflow source's) as it is."""
    if len(urllib.parse.urlsplit(file).scheme) > 1:
        return {"uri": file}
    path = Path(file)
    if path.is_absolute():
        return {"uri": path.as_uri()}
    return {"uri": urllib.parse.quote(path.as_posix(), safe="/"), "uriBaseId": SRCROOT}


def _rules() -> list[dict[str, Any]]:
    return [
        {
            "id": code.id,
            "name": code.name,
            "shortDescription": {"text": code.summary},
            "helpUri": f"{INFORMATION_URI}/blob/main/docs/validation.md#problem-codes",
        }
        for code in CODES.values()
    ]


def as_sarif(problems: Sequence[Problem], root: Path | None = None) -> str:
    """A SARIF 2.1.0 log of the problems; relative paths are relative to `root` (the
    current directory by default)."""
    index = {code: position for position, code in enumerate(CODES)}
    results = []
    for p in problems:
        region = {"startLine": p.location.line, "startColumn": p.location.col}
        result: dict[str, Any] = {
            "ruleId": p.code,
            "level": p.severity.value,  # "error" / "warning", as SARIF names them
            "message": {"text": p.message},
            "locations": [
                {"physicalLocation": {"artifactLocation": _artifact(p.location.file), "region": region}}
            ],
        }
        if p.code in index:
            result["ruleIndex"] = index[p.code]
        results.append(result)
    base = (root or Path.cwd()).resolve().as_uri().rstrip("/") + "/"
    log = {
        "$schema": SARIF_SCHEMA,
        "version": SARIF_VERSION,
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": __version__,
                        "informationUri": INFORMATION_URI,
                        "rules": _rules(),
                    }
                },
                "originalUriBaseIds": {SRCROOT: {"uri": base}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2, ensure_ascii=False)
