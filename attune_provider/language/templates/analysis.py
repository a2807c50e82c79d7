"""Static analysis of templates: the names a template reads and its problems, found
without rendering it (the validator's template checks). No Airflow import.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jinja2
from jinja2 import nodes

from attune_provider.language.templates.environment import ENV, has_syntax


class Reference(NamedTuple):
    """A name a template reads from its scope, e.g. `task.t1.result.id`."""

    scope: str
    name: str | None
    attrs: tuple[str, ...]
    line: int


class TemplateIssue(NamedTuple):
    """A problem found in a template without rendering it."""

    message: str
    line: int


class _Analyser:
    """Walks a Jinja AST, tracking names the template binds itself (set, for, macro...)."""

    def __init__(self) -> None:
        self.references: list[Reference] = []
        self.issues: list[TemplateIssue] = []

    def visit(self, node: nodes.Node, bound: set[str]) -> None:
        if isinstance(node, (nodes.Getattr, nodes.Getitem)):
            self._visit_access(node, bound)
        elif isinstance(node, nodes.Name):
            self._visit_name(node, bound)
        elif isinstance(node, nodes.For):
            self._visit_for(node, bound)
        elif isinstance(node, (nodes.Macro, nodes.CallBlock)):
            self._visit_callable(node, bound)
        elif isinstance(node, nodes.With):
            self._visit_with(node, bound)
        elif isinstance(node, (nodes.Assign, nodes.AssignBlock)):
            self._visit_assign(node, bound)
        elif isinstance(node, (nodes.Import, nodes.FromImport)):
            self._visit_import(node, bound)
        else:
            self._check_name(node)
            self._visit_children(node, bound)

    def _visit_children(self, node: nodes.Node, bound: set[str]) -> None:
        if isinstance(node, (nodes.FilterBlock, nodes.Scope, nodes.OverlayScope)):
            bound = set(bound)  # these blocks scope their assignments
        for child in node.iter_child_nodes():
            self.visit(child, bound)

    def _check_name(self, node: nodes.Node) -> None:
        if isinstance(node, nodes.Filter) and node.name not in ENV.filters:
            self.issues.append(TemplateIssue(f"unknown filter {node.name!r}", node.lineno))
        elif isinstance(node, nodes.Test) and node.name not in ENV.tests:
            self.issues.append(TemplateIssue(f"unknown test {node.name!r}", node.lineno))

    def _visit_name(self, node: nodes.Name, bound: set[str]) -> None:
        if node.ctx != "load":  # "store" (set, for) or "param" (with, macro arguments)
            bound.add(node.name)
        elif node.name not in bound and node.name not in ENV.globals:
            self.references.append(Reference(node.name, None, (), node.lineno))

    def _visit_access(self, node: nodes.Getattr | nodes.Getitem, bound: set[str]) -> None:
        """Follow a chain of constant keys down to its root name; other subscripts end it."""
        keys: list[str] = []
        pending: list[nodes.Node] = []
        current: nodes.Node = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            key = _constant_key(current)
            if key is None:
                keys.clear()
                if isinstance(current, nodes.Getitem):
                    pending.append(current.arg)
            else:
                if key.startswith("_"):
                    message = f"attribute {key!r} is unsafe in templates"
                    self.issues.append(TemplateIssue(message, current.lineno))
                keys.insert(0, key)
            current = current.node
        if isinstance(current, nodes.Name) and current.ctx == "load" and current.name not in bound:
            if current.name not in ENV.globals:
                name = keys[0] if keys else None
                self.references.append(Reference(current.name, name, tuple(keys[1:]), current.lineno))
        else:
            self.visit(current, bound)
        for child in reversed(pending):
            self.visit(child, bound)

    def _visit_for(self, node: nodes.For, bound: set[str]) -> None:
        self.visit(node.iter, bound)
        inner = set(bound) | {"loop"}
        self.visit(node.target, inner)
        if node.test is not None:
            self.visit(node.test, inner)
        for child in node.body:
            self.visit(child, inner)
        outer = set(bound)
        for child in node.else_:
            self.visit(child, outer)

    def _visit_callable(self, node: nodes.Macro | nodes.CallBlock, bound: set[str]) -> None:
        if isinstance(node, nodes.CallBlock):
            self.visit(node.call, bound)
        for default in node.defaults:
            self.visit(default, bound)
        inner = set(bound) | {"caller", "varargs", "kwargs"}
        inner.update(arg.name for arg in node.args)
        if isinstance(node, nodes.Macro):
            inner.add(node.name)  # a macro may call itself (the template timeout bounds it)
        for child in node.body:
            self.visit(child, inner)
        if isinstance(node, nodes.Macro):
            bound.add(node.name)

    def _visit_with(self, node: nodes.With, bound: set[str]) -> None:
        inner = set(bound)
        for target, value in zip(node.targets, node.values, strict=False):
            self.visit(value, bound)
            self.visit(target, inner)
        for child in node.body:
            self.visit(child, inner)

    def _visit_assign(self, node: nodes.Assign | nodes.AssignBlock, bound: set[str]) -> None:
        if isinstance(node, nodes.Assign):
            self.visit(node.node, bound)
        else:
            if node.filter is not None:
                self.visit(node.filter, bound)
            for child in node.body:
                self.visit(child, set(bound))
        self.visit(node.target, bound)

    def _visit_import(self, node: nodes.Import | nodes.FromImport, bound: set[str]) -> None:
        self.visit(node.template, bound)
        if isinstance(node, nodes.Import):
            bound.add(node.target)
            return
        for name in node.names:
            bound.add(name[1] if isinstance(name, tuple) else name)


def _constant_key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    """The attribute, or the subscript when it is a constant string; None otherwise."""
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def analyse(template: str) -> tuple[list[Reference], list[TemplateIssue]]:
    """References and problems of one template string, found without rendering it."""
    if not has_syntax(template):
        return [], []
    references, issues = _analyse(_skeleton(template) or template)
    return list(references), list(issues)


_EXPRESSION_BLOCK = re.compile(r"\{\{(.*?)\}\}", re.S)
_UNSURE_IN_EXPRESSION = ("'", '"', "{", "}")


def _skeleton(template: str) -> str | None:
    """The template with its literal text reduced to its line breaks, so that templates
    differing only in text share one analysis (`"Deploy {{ parameters.app }} now"` and
    `"{{ parameters.app }}"` find the same references on the same lines).

    Only for templates made of `{{ ... }}` blocks and plain text; None (analyse the whole
    text) when a block holds a quote or a brace (a `}}` could hide in a string) or the
    text holds anything else Jinja reads (`{%`, a comment, an unclosed `{{`).
    """
    if "{#" in template:  # a comment may hold what looks like a block
        return None
    parts: list[str] = []
    last = 0
    for block in _EXPRESSION_BLOCK.finditer(template):
        text = template[last : block.start()]
        if has_syntax(text) or any(c in block.group(1) for c in _UNSURE_IN_EXPRESSION):
            return None
        parts += ["\n" * text.count("\n"), block.group(0)]
        last = block.end()
    if has_syntax(template[last:]):
        return None
    return "".join(parts)


@functools.lru_cache(maxsize=4096)
def _analyse(template: str) -> tuple[tuple[Reference, ...], tuple[TemplateIssue, ...]]:
    """`analyse`, once per distinct template (workflows repeat many of theirs)."""
    try:
        tree = ENV.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        return (), (TemplateIssue(f"Jinja syntax error: {exc.message}", exc.lineno),)
    analyser = _Analyser()
    analyser.visit(tree, set())
    if not analyser.issues and (_may_fail_to_compile(tree) or tree.find(nodes.Call) is not None):
        try:  # whatever else the compiler rejects (from the tree: parsing again doubled the cost)
            ENV.compile(tree)
        except jinja2.TemplateSyntaxError as exc:
            analyser.issues.append(TemplateIssue(f"Jinja syntax error: {exc.message}", exc.lineno))
        except SyntaxError as exc:  # Python rejects the generated code, e.g. f(a=1, a=2)
            analyser.issues.append(TemplateIssue(f"invalid expression: {exc.msg}", 1))
    return tuple(analyser.references), tuple(analyser.issues)


# Nodes the compiler turns into Python without any check of its own (statements such as
# blocks, macros, loops and assignments have some): for a template made of these alone,
# parsing is the whole syntax check, and compiling it (most of `analyse`'s cost) is skipped.
_EXPRESSION_NODES = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.Compare,
    nodes.Operand,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.BinExpr,
    nodes.Concat,
    nodes.CondExpr,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Filter,
    nodes.Test,
    nodes.Call,
    nodes.Keyword,
)


def _may_fail_to_compile(tree: nodes.Template) -> bool:
    """False when compiling cannot fail: only expression nodes, and no call, filter or test
    repeats a keyword argument (Python rejects `f(a=1, a=2)`)."""
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, _EXPRESSION_NODES):
            return True
        if isinstance(node, (nodes.Call, nodes.Filter, nodes.Test)):
            keys = [keyword.key for keyword in node.kwargs]
            if len(keys) != len(set(keys)):
                return True
        stack.extend(node.iter_child_nodes())
    return False


def template_strings(value: Any) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Every templated string in a nested value, with its key/index path from the root."""
    if isinstance(value, str):
        if has_syntax(value):
            yield (), value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            for path, text in template_strings(item):
                yield (key, *path), text
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for path, text in template_strings(item):
                yield (index, *path), text
