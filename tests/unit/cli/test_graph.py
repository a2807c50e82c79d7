"""`attune-airflow graph` (docs/cli.md): the Mermaid and DOT outputs parsed back (a small
parser of the subset the renderer writes) and compared as node, group and edge sets."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from attune_provider.cli import main

if TYPE_CHECKING:
    from tests.unit.conftest import PackWriter

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class Parsed:
    """A diagram read back, every node and group by its path (the names of the groups
    holding it, then its own name: `call/one`)."""

    nodes: dict[str, list[str]] = field(default_factory=dict)  # path -> its text's lines
    reserved: set[str] = field(default_factory=set)  # paths of fail / succeed / noop nodes
    groups: dict[str, list[str]] = field(default_factory=dict)  # path -> its title's lines
    edges: set[tuple[str, str, str]] = field(default_factory=set)


# -- Mermaid ---------------------------------------------------------------------------------

MERMAID_ENTITIES = {"#quot;": '"', "#lt;": "<", "#gt;": ">", "#amp;": "&", "#124;": "|", "#35;": "#"}
M_ID = r"[A-Za-z][A-Za-z0-9_]*"
M_TEXT = r'"([^"]*)"'
M_NODE = re.compile(rf"^({M_ID})(?:\[{M_TEXT}\]|\(\({M_TEXT}\)\))$")
M_GROUP = re.compile(rf"^subgraph ({M_ID}) \[{M_TEXT}\]$")
M_EDGE = re.compile(rf"^({M_ID}) -->\|{M_TEXT}\| ({M_ID})$")


def mermaid_decode(text: str) -> str:
    return re.sub(r"#\w+;", lambda m: MERMAID_ENTITIES[m.group(0)], text)


def parse_mermaid(text: str) -> Parsed:
    lines = [line.strip() for line in text.splitlines()]
    assert lines[0].startswith("%% ") and lines[1] == "flowchart TD", lines[:2]
    parsed, paths, stack = Parsed(), {}, []  # stack: the paths of the open subgraphs
    edges = []
    for line in lines[2:]:
        if not line:
            continue
        if line == "end":
            stack.pop()
        elif match := M_GROUP.match(line):
            title = mermaid_decode(match[2]).split("<br/>")
            path = "/".join([*stack[-1:], title[0]])
            paths[match[1]] = path
            parsed.groups[path] = title
            stack.append(path)
        elif match := M_NODE.match(line):
            node_id, text = match[1], match[2] if match[2] is not None else match[3]
            content = mermaid_decode(text).split("<br/>")
            path = "/".join([*stack[-1:], content[0]])
            assert node_id not in paths, f"node {node_id} declared twice"
            paths[node_id] = path
            parsed.nodes[path] = content
            if match[3] is not None:
                parsed.reserved.add(path)
        elif match := M_EDGE.match(line):
            edges.append((match[1], mermaid_decode(match[2]), match[3]))
        else:
            raise AssertionError(f"not in the Mermaid subset: {line!r}")
    assert not stack, "a subgraph is not closed"
    parsed.edges = {(paths[a], paths[b], label) for a, label, b in edges}
    return parsed


# -- DOT -------------------------------------------------------------------------------------

D_ID = r"[A-Za-z][A-Za-z0-9_]*"
D_STRING = r'"((?:[^"\\]|\\.)*)"'
D_ATTR = re.compile(rf"(\w+)=(?:{D_STRING}|([A-Za-z0-9_]+))")
D_NODE = re.compile(rf"^({D_ID}) \[(.*)\];$")
D_EDGE = re.compile(rf"^({D_ID}) -> ({D_ID}) \[(.*)\];$")
D_CLUSTER = re.compile(rf"^subgraph (cluster_{D_ID}) \{{$")
D_LABEL = re.compile(rf"^label={D_STRING};$")


def dot_decode(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], text)


def dot_attributes(text: str) -> dict[str, str]:
    found = {m[1]: dot_decode(m[2]) if m[2] is not None else m[3] for m in D_ATTR.finditer(text)}
    assert D_ATTR.sub("", text).replace(",", "").strip() == "", text
    return found


def parse_dot(text: str) -> Parsed:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    assert re.fullmatch(rf"digraph {D_STRING} \{{", lines[0]) and lines[-1] == "}", (lines[0], lines[-1])
    assert lines[1:3] == ["compound=true;", "node [shape=box];"]
    parsed, paths, stack = Parsed(), {}, []
    clusters: dict[str, str] = {}
    edges = []
    pending: str | None = None  # a cluster opened, its label not read yet
    for line in lines[3:-1]:
        if line == "}":
            stack.pop()
        elif match := D_CLUSTER.match(line):
            pending = match[1]
        elif pending and (match := D_LABEL.match(line)):
            title = dot_decode(match[1]).split("\n")
            path = "/".join([*stack[-1:], title[0]])
            clusters[pending] = path
            parsed.groups[path] = title
            stack.append(path)
            pending = None
        elif match := D_EDGE.match(line):
            edges.append((match[1], match[2], dot_attributes(match[3])))
        elif match := D_NODE.match(line):
            attributes = dot_attributes(match[2])
            content = attributes["label"].split("\n")
            path = "/".join([*stack[-1:], content[0]])
            paths[match[1]] = path
            parsed.nodes[path] = content
            assert attributes["shape"] in ("box", "doublecircle")
            if attributes["shape"] == "doublecircle":
                parsed.reserved.add(path)
        else:
            raise AssertionError(f"not in the DOT subset: {line!r}")
    assert not stack and pending is None
    parsed.edges = {dot_edge(edge, paths, clusters) for edge in edges}
    return parsed


def dot_edge(
    edge: tuple[str, str, dict[str, str]], paths: dict[str, str], clusters: dict[str, str]
) -> tuple[str, str, str]:
    """(source, target, label) of an edge, a cluster's when `ltail` / `lhead` name one: it
    is then drawn through a node inside that cluster."""
    tail, head, attributes = edge
    source = clusters[attributes["ltail"]] if "ltail" in attributes else paths[tail]
    target = clusters[attributes["lhead"]] if "lhead" in attributes else paths[head]
    assert paths[tail] == source or paths[tail].startswith(source + "/")
    assert paths[head] == target or paths[head].startswith(target + "/")
    return source, target, attributes["label"]


# -- the command -----------------------------------------------------------------------------


def graph(capsys: pytest.CaptureFixture[str], ref: str, *extra: str) -> tuple[int, str, str]:
    code = main(["graph", ref, "--packs", "packs", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def both(capsys: pytest.CaptureFixture[str], ref: str) -> Parsed:
    """The graph of `ref` in both formats, which must say the same."""
    code, mermaid, err = graph(capsys, ref)
    assert (code, err) == (0, ""), err
    code, dot, err = graph(capsys, ref, "--format", "dot")
    assert (code, err) == (0, ""), err
    from_mermaid, from_dot = parse_mermaid(mermaid), parse_dot(dot)
    assert from_mermaid == from_dot
    return from_mermaid


DECISIONS = """
    ref: p.wf
    parameters:
      n: {type: integer, default: 1}
    tasks:
      - name: start
        action: core.noop
        decision:
          - when: '{{ parameters.n > 3 and "a|b" != "<x>" }}'
            next: big
          - when: "{{ parameters.n
                     == 2 }}"
            next: small
          - default: small
        on_failure: fail
        on_complete: small
      - name: big
        action: core.noop
        timeout: 5
        on_success: merge
        on_timeout: noop
        on_failure: [fail, merge]
      - name: small
        action: core.noop
        on_success: merge
      - name: merge
        action: core.echo
        join: all
        on_success: succeed
"""


def test_decisions_transitions_joins_and_reserved_targets(packs: PackWriter, capsys) -> None:
    packs.pack("p", {"workflows/wf.yaml": DECISIONS})
    parsed = both(capsys, "p.wf")
    assert parsed.nodes == {
        "start": ["start", "core.noop"],
        "big": ["big", "core.noop"],
        "small": ["small", "core.noop"],
        "merge": ["merge", "core.echo", "join: all"],
        "fail": ["fail"],
        "noop": ["noop"],
        "succeed": ["succeed"],
    }
    assert parsed.reserved == {"fail", "noop", "succeed"}
    assert parsed.groups == {}
    assert parsed.edges == {
        ("start", "big", 'decision: {{ parameters.n > 3 and "a|b" != "<x>" }}'),
        ("start", "small", "decision: {{ parameters.n == 2 }}"),  # on one line
        ("start", "small", "default"),
        ("start", "small", "complete"),
        ("start", "fail", "failure"),
        ("big", "merge", "success"),
        ("big", "merge", "failure"),
        ("big", "fail", "failure"),
        ("big", "noop", "timeout"),
        ("small", "merge", "success"),
        ("merge", "succeed", "success"),
    }


CHILD = """
    ref: p.child
    parameters:
      n: {type: integer, default: 0}
    tasks:
      - name: one
        action: core.noop
        on_success: two
        on_failure: fail
      - name: two
        action: core.noop
"""

GROUPS = """
    ref: p.wf
    tasks:
      - name: a
        action: core.echo
        on_success: [grp, each, items, call]
        on_failure: retried
      - name: grp
        type: parallel
        tasks:
          - {name: m1, action: core.noop}
          - {name: m-2, action: core.noop}
        on_success: after
        on_failure: calls
      - name: each
        action: core.echo
        with_items: [1, 2, 3]
        batch_size: 2
      - name: items
        action: core.echo
        with_items: "{{ [1, 2] }}"
        concurrency: 3
        publish: [{x: "{{ 1 }}"}]
      - name: call
        action: p.child
        on_complete: after
      - name: retried
        action: p.child
        retry: {count: 2}
        on_success: after
      - name: calls
        action: p.child
        with_items: "{{ [1, 2] }}"
        input: {n: "{{ item }}"}
      - name: after
        action: core.noop
        join: all
"""


def test_groups_are_subgraphs_and_subworkflows_are_expanded(packs: PackWriter, capsys) -> None:
    packs.pack("p", {"workflows/wf.yaml": GROUPS, "workflows/child.yaml": CHILD})
    parsed = both(capsys, "p.wf")
    child = {"one": ["one", "core.noop"], "two": ["two", "core.noop"], "fail": ["fail"]}
    assert parsed.groups == {
        "grp": ["grp", "parallel"],
        "each": ["each", "with_items: 3 items, batch_size 2"],
        "items": ["items", "with_items: {{ [1, 2] }}, concurrency 3"],
        "call": ["call", "subworkflow p.child"],
        "retried": ["retried", "subworkflow p.child, retry: 2"],
        "calls": ["calls", "with_items: {{ [1, 2] }}", "subworkflow p.child"],
    }
    assert parsed.nodes == {
        "a": ["a", "core.echo"],
        "grp/m1": ["m1", "core.noop"],
        "grp/m-2": ["m-2", "core.noop"],
        "each/each": ["each", "core.echo"],
        "items/items": ["items", "core.echo"],
        **{f"{call}/{name}": text for call in ("call", "retried", "calls") for name, text in child.items()},
        "after": ["after", "core.noop", "join: all"],
    }
    assert parsed.reserved == {"call/fail", "retried/fail", "calls/fail"}
    child_edges = {("one", "two", "success"), ("one", "fail", "failure")}
    assert parsed.edges == {
        ("a", "grp", "success"),
        ("a", "each", "success"),
        ("a", "items", "success"),
        ("a", "call", "success"),
        ("a", "retried", "failure"),
        ("grp", "after", "success"),
        ("grp", "calls", "failure"),
        ("call", "after", "complete"),
        ("retried", "after", "success"),
        *{
            (f"{call}/{a}", f"{call}/{b}", label)
            for call in ("call", "retried", "calls")
            for a, b, label in child_edges
        },
    }


NESTED = """
    ref: p.wf
    tasks:
      - name: outer
        action: p.middle
        on_success: done
      - name: done
        action: core.noop
"""
MIDDLE = """
    ref: p.middle
    tasks:
      - name: inner
        action: p.child
        on_failure: end
      - name: end
        action: core.noop
"""


def test_nested_subworkflows_and_names_mermaid_or_dot_would_misread(packs: PackWriter, capsys) -> None:
    """`end` is a Mermaid keyword and `graph` a DOT one: ids never are."""
    packs.pack(
        "p",
        {"workflows/wf.yaml": NESTED, "workflows/middle.yaml": MIDDLE, "workflows/child.yaml": CHILD},
    )
    parsed = both(capsys, "p.wf")
    assert set(parsed.groups) == {"outer", "outer/inner"}
    assert set(parsed.nodes) == {
        "done",
        "outer/end",
        "outer/inner/one",
        "outer/inner/two",
        "outer/inner/fail",
    }
    assert parsed.edges == {
        ("outer", "done", "success"),
        ("outer/inner", "outer/end", "failure"),
        ("outer/inner/one", "outer/inner/two", "success"),
        ("outer/inner/one", "outer/inner/fail", "failure"),
    }
    code, mermaid, _ = graph(capsys, "p.wf")
    ids = {m[1] for m in re.finditer(r"^\s*(?:subgraph )?([A-Za-z0-9_]+) ?[\[(]", mermaid, re.M)}
    assert not ids & {"end", "graph", "subgraph", "flowchart"}
    assert len(ids) == 7


def test_the_sample_pack_workflow(capsys, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    code, mermaid, err = graph(capsys, "my_pack.deploy_application")
    assert code == 0, err
    edges = parse_mermaid(mermaid).edges
    assert ("approve_deployment", "cleanup_deployment", "timeout") in edges
    assert ("approve_deployment", "cleanup_deployment", "default") in edges
    assert ("rollback_deployment", "cleanup_deployment", "complete") in edges


def test_unknown_workflow_exits_2_naming_it(packs: PackWriter, capsys) -> None:
    packs.pack("p", {"workflows/wf.yaml": DECISIONS})
    code, out, err = graph(capsys, "p.nope")
    assert (code, out) == (2, "")
    assert "unknown workflow 'p.nope'" in err


def test_invalid_workflow_exits_2_with_file_line_col(packs: PackWriter, capsys) -> None:
    packs.pack(
        "p",
        {"workflows/wf.yaml": "ref: p.wf\ntasks:\n  - name: a\n    action: core.noop\n    on_success: b\n"},
    )
    code, out, err = graph(capsys, "p.wf")
    assert (code, out) == (2, "")
    assert "packs/p/workflows/wf.yaml:5:17: error: task 'a' transitions to unknown task 'b'" in err


def test_an_unknown_format_is_a_usage_error(packs: PackWriter, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", "p.wf", "--format", "svg"])
    assert exit_info.value.code == 2


def test_help_gives_an_example_the_exit_codes_and_the_environment(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["graph", "--help"])
    text = capsys.readouterr().out
    assert "attune-airflow graph my_pack.deploy_application" in text
    assert "exit codes" in text and "ATTUNE_PACKS_PATH" in text


def test_graph_imports_no_airflow(packs: PackWriter) -> None:
    packs.pack("p", {"workflows/wf.yaml": DECISIONS})
    script = (
        "import sys\nfrom attune_provider.cli import main\n"
        "code = main(['graph', 'p.wf', '--packs', 'packs'])\n"
        "assert code == 0, code\n"
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("%% p.wf\nflowchart TD\n")
