"""The template language of LANGUAGE.md section 4, rendered for real (no mocks)."""

from __future__ import annotations

from typing import Any

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from attune_provider.language.templates.analysis import Reference, TemplateIssue, analyse, template_strings
from attune_provider.language.templates.environment import ENV, AttuneEnvironment, TemplateRenderError
from attune_provider.language.templates.render import is_single_expression, render, truthy

SCOPE: dict[str, Any] = {
    "parameters": {
        "items": ["a", "b"],
        "keys": "k",
        "count": 3,
        "name": "world",
        "literal": "{{ 7 * 7 }}",
        "nothing": None,
        "_hidden": "secret",
    },
    "vars": {
        "greeting": "hello",
        "users": [{"name": "ann", "role": "admin"}, {"name": "bob", "role": "dev"}],
    },
    "task": {
        "t1": {"status": "succeeded", "result": {"id": 7, "tags": ["x", "y"]}},
        "skipped": {"status": "skipped", "result": None},
    },
}


def r(template: Any) -> Any:
    return render(template, SCOPE)


# --- environment ---------------------------------------------------------------------


def test_env_is_the_sandboxed_singleton() -> None:
    assert isinstance(ENV, AttuneEnvironment)
    assert isinstance(ENV, SandboxedEnvironment)
    assert issubclass(ENV.undefined, jinja2.ChainableUndefined)
    assert ENV.autoescape is False
    assert r("{{ '<b>' }} & {{ '<i>' }}") == "<b> & <i>"


# --- single expressions: native values ---------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ '42' }}", "42"),
        ("{{ 4 }}", 4),
        ("{{ 1.5 }}", 1.5),
        ("{{ true }}", True),
        ("{{ none }}", None),
        ("{{ [1, 2] }}", [1, 2]),
        ("{{ {'a': 1} }}", {"a": 1}),
        ("{{- parameters.count -}}", 3),
        ("{{ parameters.count + 1 }}", 4),
        ("{{ task.t1.result }}", {"id": 7, "tags": ["x", "y"]}),
        ("{{ '[1, 2]' }}", "[1, 2]"),
        ("{{ 'true' }}", "true"),
        ("{{ task.t1.result.keys }}", None),  # no key `keys`: a method is no value
        ("{{ range(3) }}", [0, 1, 2]),  # a lazy sequence is its list
        ("{{ (1, 2) }}", [1, 2]),  # a tuple, as in JSON
        ("{{ {'a': 1}.items() }}", [["a", 1]]),  # a dict view
        ("{{ parameters.items | map('upper') }}", ["A", "B"]),
    ],
)
def test_single_expression_returns_native_value(template: str, expected: Any) -> None:
    result = r(template)
    assert result == expected
    assert type(result) is type(expected)


def test_mixed_strings_render_to_strings() -> None:
    assert r(" {{ 5 }} ") == " 5 "
    assert r("  {{- parameters.count -}}\n") == "3"  # Jinja strips the text, still a string
    assert r("{# note #}{{ 1 }}") == "1"
    assert r("s={{ task.t1.result.items }}") == "s="  # a method is no value
    assert r("r={{ range(2) }}") == "r=[0, 1]"
    assert r("{{ parameters.count }}\n") == "3\n"  # a block scalar's newline: a string
    assert r("{{ 4 }}2") == "42"
    assert r("{{ vars.greeting }} {{ parameters.name }}") == "hello world"
    assert r("{{ 1 }}{{ 2 }}") == "12"
    assert r("n={% for i in parameters.items %}{{ i }}{% endfor %}") == "n=ab"
    assert r("{% if parameters.count > 2 %}big{% endif %}") == "big"
    assert r("{{ [1, 2] }} items") == "[1, 2] items"


def test_strings_without_template_syntax_are_returned_unchanged() -> None:
    text = "plain {text} with # and % and {#"
    assert r(text) is text
    assert r("") == ""


def test_missing_values_are_none_in_expressions_and_empty_in_strings() -> None:
    assert r("{{ missing }}") is None
    assert r("{{ parameters.unknown }}") is None
    assert r("{{ parameters.nothing }}") is None
    assert r("[{{ missing }}|{{ parameters.nothing }}|{{ task.skipped.result }}]") == "[||]"
    assert r("{{ missing | default('dflt') }}") == "dflt"


def test_chained_lookups_on_missing_or_none_never_raise() -> None:
    assert r("{{ task.t9.result.x.y }}") is None
    assert r("{{ task.skipped.result.id }}") is None
    assert r("{{ task.skipped.result.id.deeper }}") is None
    assert r("{{ task.skipped.result['id'][0] }}") is None
    assert r("id={{ task.skipped.result.id }}") == "id="


def test_undefined_never_leaks_out_of_native_results() -> None:
    result = r("{{ [missing, {'a': missing, 'b': [task.skipped.result.x]}, (missing, 1)] }}")
    assert result == [None, {"a": None, "b": [None]}, [None, 1]]  # a tuple is the list it is in JSON
    assert not any(isinstance(v, jinja2.Undefined) for v in (result[0], result[1]["a"], result[2][0]))


def test_mapping_keys_win_over_dict_methods() -> None:
    assert r("{{ parameters.items }}") == ["a", "b"]
    assert r("{{ parameters.keys }}") == "k"
    assert r("{{ parameters['items'] }}") == ["a", "b"]
    assert r("{{ vars.get('greeting') }}") == "hello"  # not a key: still the method


def test_rendered_data_is_never_rendered_again() -> None:
    assert r("{{ parameters.literal }}") == "{{ 7 * 7 }}"
    assert r("value: {{ parameters.literal }}") == "value: {{ 7 * 7 }}"
    assert r(["{{ parameters.literal }}"]) == ["{{ 7 * 7 }}"]


def test_render_walks_dicts_and_lists_keeping_keys() -> None:
    value = {
        "{{ key }}": "{{ parameters.count }}",
        "nested": [{"greet": "{{ vars.greeting }}!"}, 5, None, True],
        "n": 1.5,
    }
    assert r(value) == {
        "{{ key }}": 3,
        "nested": [{"greet": "hello!"}, 5, None, True],
        "n": 1.5,
    }
    assert r(42) == 42
    assert r(None) is None


def test_compiled_templates_are_cached() -> None:
    from attune_provider.language.templates import render as expressions

    template = "{{ parameters.count * 1001 }}"
    r(template)
    hits = expressions._compile.cache_info().hits
    assert r(template) == 3003
    assert expressions._compile.cache_info().hits == hits + 1


# --- sandbox and errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{{ parameters._hidden }}",
        "{{ parameters['_hidden'] }}",
        "{{ ''.__class__ }}",
        "x {{ task.t1.__class__.__mro__ }}",
        "{{ missing._x }}",
        "{{ vars.users | map(attribute='_x') | list }}",
    ],
)
def test_underscore_attributes_fail_at_render_time(template: str) -> None:
    with pytest.raises(TemplateRenderError, match=r"cannot render .*: access to attribute '_\w*' is unsafe"):
        r(template)


def test_render_errors_name_the_template() -> None:
    with pytest.raises(TemplateRenderError, match=r"^cannot render '\{\{ 1 / 0 \}\}': division by zero"):
        r("{{ 1 / 0 }}")
    with pytest.raises(TemplateRenderError, match="cannot render"):
        r("{{ 1 + }}")
    with pytest.raises(TemplateRenderError, match="nope"):
        r("{{ 1 | nope }}")
    with pytest.raises(TemplateRenderError, match="cannot render"):
        r({"deep": ["{{ missing + 1 }}"]})


# --- filters -------------------------------------------------------------------------


def test_to_json_and_from_json() -> None:
    assert r("{{ {'b': 1, 'a': 'é'} | to_json }}") == '{"b": 1, "a": "é"}'
    assert r("{{ missing | to_json }}") == "null"
    assert r("{{ [missing] | to_json }}") == "[null]"
    assert r("{{ '{\"x\": [1, true]}' | from_json }}") == {"x": [1, True]}
    assert r("{{ task.t1.result | to_json | from_json }}") == SCOPE["task"]["t1"]["result"]
    assert r("{{ task.skipped.result | from_json }}") is None


def test_append_and_prepend() -> None:
    assert r("{{ 'b' | append('c') | prepend('a') }}") == "abc"
    assert r("{{ parameters.count | append('!') }}") == "3!"
    assert r("{{ missing | prepend('x') }}") == "x"


def test_filter_keeps_matching_mappings() -> None:
    assert r("{{ vars.users | filter(role='dev') }}") == [{"name": "bob", "role": "dev"}]
    assert r("{{ vars.users | filter(role='admin', name='ann') | length }}") == 1
    assert r("{{ vars.users | filter(role='admin', name='bob') }}") == []
    assert r("{{ [1, {'a': 1}, {'b': 1}] | filter(a=1) }}") == [{"a": 1}]
    assert r("{{ task.skipped.result | filter(a=1) }}") == []


def test_batch_replaces_jinja_builtin() -> None:
    assert r("{{ [1, 2, 3, 4, 5] | batch(size=2) }}") == [[1, 2], [3, 4], [5]]
    assert r("{{ [1, 2, 3, 4] | batch(2) }}") == [[1, 2], [3, 4]]
    assert r("{{ [] | batch(size=3) }}") == []
    assert r("{{ [1] | batch(size=3) }}") == [[1]]
    for bad in ("0", "-1", "'2'"):
        with pytest.raises(TemplateRenderError, match="size >= 1"):
            r(f"{{{{ [1, 2] | batch(size={bad}) }}}}")


def test_jinja_builtin_filters_remain() -> None:
    assert r("{{ '  Hi ' | trim | upper }}") == "HI"
    assert r("{{ parameters.items | first }}") == "a"
    assert r("{{ parameters.items | length }}") == 2
    assert r("{{ vars.users | map(attribute='name') | join(',') }}") == "ann,bob"
    users = "{{ vars.users | selectattr('role', 'equalto', 'dev') | map(attribute='name') | list }}"
    assert r(users) == ["bob"]


# --- is_single_expression ------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ a }}", True),
        ("  {{ a.b | upper }} \n", False),
        ("{{ a }}\n", False),
        (" {{ a }}", False),
        ("{{- a -}}", True),
        ("{{ a }}{{ b }}", False),
        ("{{ a }} {{ b }}", False),
        ("{{ a }}x", False),
        ("x{{ a }}", False),
        ("{% if a %}{{ a }}{% endif %}", False),
        ("{% set x = 1 %}{{ x }}", False),
        ("plain", False),
        ("{{ a", False),
        ("{% raw %}{{ a }}{% endraw %}", False),
    ],
)
def test_is_single_expression(template: str, expected: bool) -> None:
    assert is_single_expression(template) is expected


# --- truthy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", " ", "false", "False", " NO ", "off", "0", "none", "Null", None, 0, 0.0, False, [], {}],
)
def test_falsy_values(value: Any) -> None:
    assert truthy(value) is False


@pytest.mark.parametrize("value", ["true", "yes", "1", "anything", "nope", 1, -1, 0.1, True, [0], {"a": 0}])
def test_truthy_values(value: Any) -> None:
    assert truthy(value) is True


def test_truthy_of_rendered_conditions() -> None:
    assert truthy(r("{{ parameters.count > 2 }}")) is True
    assert truthy(r("{{ task.skipped.result.ok }}")) is False
    assert truthy(r("{{ 'no' }}")) is False


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
