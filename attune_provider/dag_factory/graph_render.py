"""A workflow's task graph as text: Mermaid or Graphviz DOT (`attune-airflow graph`), and
the transition labels its edges and the compiled DAG's edges carry (docs/cli.md).

Pure Python, like the rest of the language: built from a `WorkflowPlan` (subworkflow
calls expanded with their child's tasks), never from a DAG, so it imports no Airflow.

The diagram is a tree of groups (the workflow, then a parallel group, a with_items task,
a subworkflow call: each a subgraph) holding nodes (tasks, and the reserved targets
`fail` / `succeed` / `noop` of each workflow that names them), and a list of edges, one
per transition, labelled `success` / `failure` / `complete` / `timeout`,
`decision: <when>` or `default`. A transition of a task that is a group starts from (or
ends at) the group itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from attune_provider.language.models import RESERVED_TARGETS, Task
from attune_provider.language.plan import WorkflowPlan
from attune_provider.language.routing import Edge, Graph
from attune_provider.language.statuses import TaskKind

FORMATS = ("mermaid", "dot")

_KEY_WORDS = {
    "on_success": "success",
    "on_failure": "failure",
    "on_complete": "complete",
    "on_timeout": "timeout",
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def transition_label(task: Task, key: str, index: int) -> str:
    """The short name of one transition: `success`, `failure`, `complete`, `timeout`,
    `decision: <when>` (the condition as written, on one line) or `default`."""
    if key != "decision":
        return _KEY_WORDS[key]
    branch = task.decision[index]
    if branch.default is not None:
        return "default"
    when = branch.when
    text = ("true" if when else "false") if isinstance(when, bool) else _one_line(str(when))
    return f"decision: {text}"


def airflow_label(task: Task, edge: Edge) -> str:
    """The text of an edge in Airflow's graph view: `on failure`, `decision: <when>` ..."""
    label = transition_label(task, edge.key, edge.position)
    return label if edge.key == "decision" else f"on {label}"


def airflow_edge_labels(graph: Graph) -> dict[tuple[str, str], str]:
    """(source, target) -> the label of the Airflow edge between two tasks of one scope: the
    transitions from one to the other, in declaration order, joined by `, ` (a task named
    by `on_success` and `on_complete` of another is one edge `on success, on complete`)."""
    labels: dict[tuple[str, str], list[str]] = {}
    for edge in graph.edges:
        text = airflow_label(graph.tasks[edge.source], edge)
        found = labels.setdefault((edge.source, edge.target), [])
        if text not in found:
            found.append(text)
    return {pair: ", ".join(texts) for pair, texts in labels.items()}


# -- the diagram -----------------------------------------------------------------------------


@dataclass
class Node:
    id: str
    lines: list[str]
    reserved: bool = False


@dataclass
class Group:
    id: str
    lines: list[str]
    nodes: list[Node] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)

    def first_node(self) -> Node | None:
        """A node inside (DOT attaches an edge to a cluster through one of its nodes)."""
        if self.nodes:
            return self.nodes[0]
        return next((n for g in self.groups if (n := g.first_node()) is not None), None)

    def walk(self) -> Iterator[Group]:
        yield self
        for group in self.groups:
            yield from group.walk()


@dataclass
class DiagramEdge:
    source: str  # a node's or a group's id
    target: str
    label: str


@dataclass
class Diagram:
    title: str
    root: Group
    edges: list[DiagramEdge] = field(default_factory=list)


class _Ids:
    """Node and group ids valid unquoted in Mermaid and DOT, one per (kind, path): the
    kind's letter, `_`, then the path with every character other than an ASCII letter,
    digit or `_` as `_` (`t_deploy_one` for `deploy.one`); `_2`, `_3` ... after one taken
    already. The letter in front keeps ids off keywords (`end`, `graph`, `subgraph`)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def __call__(self, kind: str, path: str) -> str:
        base = kind + "_" + "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in path)
        found, number = base, 1
        while found in self.taken:
            number += 1
            found = f"{base}_{number}"
        self.taken.add(found)
        return found


def _task_lines(task: Task) -> list[str]:
    lines = [task.name]
    if task.action:
        lines.append(task.action)
    if task.join == "all":
        lines.append("join: all")
    return lines


def _items_line(task: Task) -> str:
    items = task.with_items
    text = _one_line(items) if isinstance(items, str) else f"{len(items or [])} items"
    extra = "".join(
        f", {name} {value}"
        for name, value in (("batch_size", task.batch_size), ("concurrency", task.concurrency))
        if value
    )
    return f"with_items: {text}{extra}"


class _Builder:
    def __init__(self) -> None:
        self.edges: list[DiagramEdge] = []
        self.id = _Ids()

    def scope(self, plan: WorkflowPlan, group: Group, path: str) -> None:
        """The tasks of one workflow (`path`: the calling tasks' names, `call.`) into `group`,
        with their transitions, and the reserved targets they name."""
        ends: dict[str, str] = {}  # task name -> the id its transitions attach to
        for task in plan.workflow.tasks:
            ends[task.name] = self.task(plan, task, group, path)
        reserved: dict[str, str] = {}
        for task in plan.workflow.tasks:
            for key, index, target in task.transitions():
                if target in ends:
                    target_id = ends[target]
                elif target in RESERVED_TARGETS:
                    if target not in reserved:
                        reserved[target] = self.id("r", path + target)
                        group.nodes.append(Node(reserved[target], [target], reserved=True))
                    target_id = reserved[target]
                else:  # unknown: validation refused it already
                    continue
                self.edges.append(DiagramEdge(ends[task.name], target_id, transition_label(task, key, index)))

    def task(self, plan: WorkflowPlan, task: Task, parent: Group, path: str) -> str:
        """One task into `parent`: its node, or its group; the id its transitions use."""
        here = path + task.name
        kind = plan.kind(task.name)
        lines = _task_lines(task)
        if kind == TaskKind.ACTION:
            parent.nodes.append(Node(self.id("t", here), lines))
            return parent.nodes[-1].id
        group = Group(self.id("g", here), [task.name])
        parent.groups.append(group)
        if kind == TaskKind.PARALLEL:
            group.lines.append("parallel")
            for member in task.tasks:
                self.task(plan, member, group, here + ".")
        elif kind == TaskKind.WITH_ITEMS:
            group.lines.append(_items_line(task))
            if plan.calls_workflow(task.name):
                self.call(plan, task, group, here)
            else:
                group.nodes.append(Node(self.id("t", f"{here}.item"), lines))
        else:
            self.call(plan, task, group, here)
        if kind != TaskKind.ACTION and task.join == "all" and "join: all" not in group.lines:
            group.lines.append("join: all")
        return group.id

    def call(self, plan: WorkflowPlan, task: Task, group: Group, here: str) -> None:
        line = f"subworkflow {task.action}"
        if task.retry is not None and task.retry.count > 0:
            line += f", retry: {task.retry.count}"
        group.lines.append(line)
        self.scope(plan.children[task.name], group, here + ".")


def build_diagram(plan: WorkflowPlan) -> Diagram:
    """The diagram of a (validated) workflow's plan, its subworkflows expanded."""
    builder = _Builder()
    root = Group(builder.id("w", plan.ref), [plan.ref])
    builder.scope(plan, root, "")
    return Diagram(plan.ref, root, builder.edges)


# -- Mermaid ---------------------------------------------------------------------------------


def mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: `#`, `"`, `<`, `>`, `&`, `|` as entity codes."""
    for char, code in (
        ("#", "#35;"),
        ('"', "#quot;"),
        ("<", "#lt;"),
        (">", "#gt;"),
        ("&", "#amp;"),
        ("|", "#124;"),
    ):
        text = text.replace(char, code)
    return text


def _mermaid_label(lines: list[str]) -> str:
    return '"' + "<br/>".join(mermaid_text(line) for line in lines) + '"'


def _mermaid_group(group: Group, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    for node in group.nodes:
        opening, closing = ("((", "))") if node.reserved else ("[", "]")
        out.append(f"{pad}{node.id}{opening}{_mermaid_label(node.lines)}{closing}")
    for inner in group.groups:
        out.append(f"{pad}subgraph {inner.id} [{_mermaid_label(inner.lines)}]")
        _mermaid_group(inner, depth + 1, out)
        out.append(f"{pad}end")


def render_mermaid(diagram: Diagram) -> str:
    """`flowchart TD`: a node per task, a subgraph per group, one edge per transition."""
    out = [f"%% {diagram.title}", "flowchart TD"]
    _mermaid_group(diagram.root, 1, out)
    for edge in diagram.edges:
        out.append(f'    {edge.source} -->|"{mermaid_text(edge.label)}"| {edge.target}')
    return "\n".join(out) + "\n"


# -- Graphviz DOT ----------------------------------------------------------------------------


def dot_quote(text: str) -> str:
    """A DOT quoted string (a line break in `text` is a label's line break)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _dot_group(group: Group, depth: int, out: list[str]) -> None:
    pad = "    " * depth
    for node in group.nodes:
        shape = "doublecircle" if node.reserved else "box"
        out.append(f"{pad}{node.id} [label={dot_quote(chr(10).join(node.lines))}, shape={shape}];")
    for inner in group.groups:
        out.append(f"{pad}subgraph cluster_{inner.id} {{")
        out.append(f"{pad}    label={dot_quote(chr(10).join(inner.lines))};")
        _dot_group(inner, depth + 1, out)
        out.append(f"{pad}}}")


def render_dot(diagram: Diagram) -> str:
    """`digraph`: a node per task, a `subgraph cluster_<id>` per group, one edge per
    transition; an edge of a group is drawn to (or from) its cluster (`lhead` / `ltail`,
    `compound=true`) through a node inside it."""
    groups = {g.id: g for g in diagram.root.walk()}
    out = [f"digraph {dot_quote(diagram.title)} {{", "    compound=true;", "    node [shape=box];"]
    _dot_group(diagram.root, 1, out)
    for edge in diagram.edges:
        attributes = [f"label={dot_quote(edge.label)}"]
        ends = []
        for end, attribute in ((edge.source, "ltail"), (edge.target, "lhead")):
            if end in groups:
                inner = groups[end].first_node()
                assert inner is not None  # every group holds a task
                ends.append(inner.id)
                attributes.append(f"{attribute}=cluster_{end}")
            else:
                ends.append(end)
        out.append(f"    {ends[0]} -> {ends[1]} [{', '.join(attributes)}];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(plan: WorkflowPlan, fmt: str = "mermaid") -> str:
    """The plan's diagram in `fmt` (one of FORMATS)."""
    diagram = build_diagram(plan)
    return render_dot(diagram) if fmt == "dot" else render_mermaid(diagram)
