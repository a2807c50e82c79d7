"""Static analysis of templates (analysis.py): references, issues, `template_strings`, the skeleton."""

from __future__ import annotations

import pytest

from attune_provider.language.templates.analysis import Reference, TemplateIssue, analyse, template_strings
from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import render

# --- analyse -------------------------------------------------------------------------


def test_analyse_reports_references_with_chains_and_lines() -> None:
    template = "{{ parameters.a }}\n{{ task.t1.result.id }} {{ vars['x'].y }}\n\n{{ item }} {{ index + 1 }}"
    references, issues = analyse(template)
    assert issues == []
    assert references == [
        Reference("parameters", "a", (), 1),
        Reference("task", "t1", ("result", "id"), 2),
        Reference("vars", "x", ("y",), 2),
        Reference("item", None, (), 4),
        Reference("index", None, (), 4),
    ]


def test_analyse_non_constant_subscript_ends_the_chain() -> None:
    references, _ = analyse("{{ parameters[vars.k].q }} {{ task.t1.result[0].id }}")
    assert set(references) == {
        Reference("parameters", None, (), 1),
        Reference("vars", "k", (), 1),
        Reference("task", "t1", ("result",), 1),
    }


def test_analyse_ignores_names_bound_inside_the_template() -> None:
    template = (
        "{% set total = parameters.n %}{{ total }}\n"
        "{% for u in vars.users %}{{ u.name }}{{ loop.index }}{% endfor %}\n"
        "{% for k, v in task.t1.result.items() %}{{ k }}={{ v }}{% endfor %}\n"
        "{% macro m(a, b=parameters.d) %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}\n"
        "{% with w = vars.w %}{{ w }}{% endwith %}{{ w }}\n"
        "{{ range(3) | list }}{{ namespace() }}"
    )
    references, issues = analyse(template)
    assert issues == []
    assert references == [
        Reference("parameters", "n", (), 1),
        Reference("vars", "users", (), 2),
        Reference("task", "t1", ("result", "items"), 3),
        Reference("parameters", "d", (), 4),
        Reference("vars", "w", (), 5),
        Reference("w", None, (), 5),
    ]


def test_analyse_loop_variable_does_not_leak_out_of_the_loop() -> None:
    references, _ = analyse("{% for item in items %}{{ item }}{% endfor %}{{ item.x }}")
    assert references == [Reference("items", None, (), 1), Reference("item", "x", (), 1)]


def test_analyse_flags_unsafe_attributes() -> None:
    references, issues = analyse("{{ parameters._secret }}\n{{ task.t1['__class__'] }}\n{{ ''.__len__() }}")
    assert issues == [
        TemplateIssue("attribute '_secret' is unsafe in templates", 1),
        TemplateIssue("attribute '__class__' is unsafe in templates", 2),
        TemplateIssue("attribute '__len__' is unsafe in templates", 3),
    ]
    assert references[0] == Reference("parameters", "_secret", (), 1)


def test_analyse_reports_syntax_errors_with_their_line() -> None:
    assert analyse("line one\n{{ parameters.a }}\n{% if %}") == (
        [],
        [TemplateIssue("Jinja syntax error: Expected an expression, got 'end of statement block'", 3)],
    )
    references, issues = analyse("{{ a }")
    assert references == []
    assert [issue.line for issue in issues] == [1]
    assert issues[0].message.startswith("Jinja syntax error: ")


def test_analyse_reports_unknown_filters_and_tests() -> None:
    _, issues = analyse("{{ a | to_json }}\n{{ b | no_such }}\n{% if c is weird %}{% endif %}")
    assert issues == [TemplateIssue("unknown filter 'no_such'", 2), TemplateIssue("unknown test 'weird'", 3)]
    _, issues = analyse("{% filter shout %}x{% endfilter %}")
    assert issues == [TemplateIssue("unknown filter 'shout'", 1)]


def test_analyse_without_template_syntax_is_empty() -> None:
    assert analyse("no templates here {x}") == ([], [])
    assert analyse("") == ([], [])


# --- template_strings ----------------------------------------------------------------


def test_template_strings_yields_paths_of_templated_strings() -> None:
    value = {
        "action": "core.noop",
        "input": {"a": "{{ parameters.a }}", "list": ["x", "{% if b %}y{% endif %}", {"deep": "{{ c }}"}]},
        "count": 3,
    }
    assert list(template_strings(value)) == [
        (("input", "a"), "{{ parameters.a }}"),
        (("input", "list", 1), "{% if b %}y{% endif %}"),
        (("input", "list", 2, "deep"), "{{ c }}"),
    ]
    assert list(template_strings("{{ x }}")) == [((), "{{ x }}")]
    assert list(template_strings(["plain", 1, None])) == []


def test_python_level_syntax_errors_are_template_issues_not_crashes() -> None:
    references, issues = analyse("{{ dict(a=1, a=2) }}")
    assert [issue.message for issue in issues] == ["invalid expression: keyword argument repeated: a"]
    with pytest.raises(TemplateRenderError):
        render("{{ dict(a=1, a=2) }}", {})


def test_analyse_of_the_skeleton_equals_analyse_of_the_whole_text() -> None:
    """Templates are analysed by their skeleton (text reduced to line breaks) when that is
    safe: over many generated templates it must find exactly what the whole text gives."""
    import random

    from attune_provider.language.templates.analysis import _analyse, _skeleton

    texts = ["", "x", "a b ", "\n", "l1\nl2\n", "}", "{", "#", "%}", "-", "{{", "}}", "{#c#}", "{% if a %}"]
    expressions = [
        "parameters.a",
        "vars.x.y",
        "task.t.result['k']",
        "a | upper",
        "a._b",
        "",
        "a +",
        "1 if b else 2",
        "item",
        "x\n.y",
        "'s'",
        '"}}"',
        "{'k': 1}",
        "-a-",
        "a.b(c)",
        "range(3)",
        "undefined_filter | nope",
    ]
    rng = random.Random(7)
    skeletons = 0
    for _ in range(3000):
        parts = []
        for _ in range(rng.randint(1, 4)):
            parts.append(rng.choice(texts))
            parts.append("{{ " + rng.choice(expressions) + " }}")
        parts.append(rng.choice(texts))
        template = "".join(parts)
        skeleton = _skeleton(template)
        if skeleton is not None:
            skeletons += 1
            assert _analyse(skeleton) == _analyse(template), template
    assert skeletons > 500  # the generator does exercise the shortcut
