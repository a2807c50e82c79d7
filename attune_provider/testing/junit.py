"""The JUnit XML report of `attune-airflow test --junit FILE`, as CI systems read it.

One `<testsuite>` per test file (named after it, with the workflow as a property), one
`<testcase>` per case (`classname` the workflow ref, `file` and `line` where the case is),
a `<failure>` listing what differed, an `<error>` when the case could not run.
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from attune_provider.testing.runner import CaseResult


def junit_xml(results: Sequence[CaseResult]) -> ET.ElementTree:
    root = ET.Element("testsuites", name="attune-airflow test")
    suites: dict[str, ET.Element] = {}
    totals = {"tests": 0, "failures": 0, "errors": 0}
    seconds = 0.0
    # the cases ran one after the other, ending now: a suite started when its first case did
    ended = datetime.now(timezone.utc)
    left = sum(result.duration for result in results)  # seconds from this case's start to now
    for result in results:
        file = result.case.file
        suite = suites.get(file)
        stamp = (ended - timedelta(seconds=left)).replace(microsecond=0).isoformat()
        left -= result.duration
        if suite is None:
            suite = ET.SubElement(
                root,
                "testsuite",
                name=file,
                tests="0",
                failures="0",
                errors="0",
                skipped="0",
                time="0",
                timestamp=stamp,
                hostname=socket.gethostname(),
            )
            properties = ET.SubElement(suite, "properties")
            ET.SubElement(properties, "property", name="workflow", value=result.workflow)
            suites[file] = suite
        case = ET.SubElement(
            suite,
            "testcase",
            name=result.case.name,
            classname=result.workflow,
            file=file,
            line=str(result.case.line),
            time=f"{result.duration:.3f}",
        )
        kind = None
        if result.error is not None:
            kind = "errors"
            element = ET.SubElement(case, "error", message=result.error, type="CouldNotRun")
            element.text = result.details or result.error
        elif result.differences:
            kind = "failures"
            element = ET.SubElement(case, "failure", message=result.line(), type="ExpectationFailed")
            element.text = "\n".join(result.differences)
        if result.run_id:
            ET.SubElement(case, "system-out").text = f"run_id: {result.run_id}"
        _add(suite, "tests", 1)
        _add(suite, "time", result.duration)
        totals["tests"] += 1
        seconds += result.duration
        if kind is not None:
            _add(suite, kind, 1)
            totals[kind] += 1
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def _add(element: ET.Element, key: str, amount: float) -> None:
    current = float(element.get(key, "0"))
    total = current + amount
    element.set(key, f"{total:.3f}" if key == "time" else str(int(total)))


def write_junit(results: Sequence[CaseResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_xml(results).write(path, encoding="utf-8", xml_declaration=True)
