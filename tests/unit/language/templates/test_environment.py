"""The sandboxed Jinja environment (environment.py): undefined values, lookups, the sandbox, filters."""

from __future__ import annotations

import jinja2
import pytest
from jinja2.sandbox import SandboxedEnvironment

from attune_provider.language.templates.environment import ENV, AttuneEnvironment, TemplateRenderError
from tests.unit.language.templates.helpers import SCOPE, r

# --- environment ---------------------------------------------------------------------


def test_env_is_the_sandboxed_singleton() -> None:
    assert isinstance(ENV, AttuneEnvironment)
    assert isinstance(ENV, SandboxedEnvironment)
    assert issubclass(ENV.undefined, jinja2.ChainableUndefined)
    assert ENV.autoescape is False
    assert r("{{ '<b>' }} & {{ '<i>' }}") == "<b> & <i>"


# --- missing values and lookups ------------------------------------------------------


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


# --- sandbox -------------------------------------------------------------------------


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
