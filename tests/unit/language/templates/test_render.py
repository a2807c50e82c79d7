"""Rendering templates (render.py): native values of single expressions, the compile cache, `truthy`."""

from __future__ import annotations

from typing import Any

import pytest

from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.render import is_single_expression, truthy
from tests.unit.language.templates.helpers import r

# --- single expressions: native values -----------------------------------------------


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


# --- errors --------------------------------------------------------------------------


def test_render_errors_name_the_template() -> None:
    with pytest.raises(TemplateRenderError, match=r"^cannot render '\{\{ 1 / 0 \}\}': division by zero"):
        r("{{ 1 / 0 }}")
    with pytest.raises(TemplateRenderError, match="cannot render"):
        r("{{ 1 + }}")
    with pytest.raises(TemplateRenderError, match="nope"):
        r("{{ 1 | nope }}")
    with pytest.raises(TemplateRenderError, match="cannot render"):
        r({"deep": ["{{ missing + 1 }}"]})


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
