"""Template limits (docs/language.md, Templates > Limits): `default` on null, the size of
what one operation makes, the time one template runs.

No test here measures time: a refused bomb is shown to be refused before it is computed
(the operator is never called, the message names the limit), and a template that runs
too long is stopped by a timeout far below the safety net (`_safety_net`) that would
otherwise fail the test.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from attune_provider.language.templates import limits
from attune_provider.language.templates.environment import ENV, TemplateRenderError
from attune_provider.language.templates.limits import (
    DEFAULT_MAX_RESULT_BYTES,
    DEFAULT_TIMEOUT,
    TemplateLimitError,
    TemplateLimits,
    active_guard,
    limited,
    set_limits_source,
)
from attune_provider.language.templates.render import NotConstant, constant, render

SIZE = "max_template_result_bytes"
REFUSED = rf"cannot render .*would make more than the 1,048,576 bytes of \[attune\] {SIZE}"
TIMEOUT = "template_timeout"
QUICK = TemplateLimits(timeout=0.2)
STOPPED = rf"ran for more than 0.2 s of CPU time \(\[attune\] {TIMEOUT}\)"
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


@pytest.fixture(autouse=True)
def _safety_net() -> Iterator[None]:
    """Fails a test that hangs (a guard that does not work) instead of hanging the suite."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hung(signum: int, frame: Any) -> None:
        raise AssertionError("the template was not stopped")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 60)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def r(template: Any, scope: dict[str, Any] | None = None, limits: TemplateLimits | None = None) -> Any:
    return render(template, scope or {}, limits)


# --- default applies to null ---------------------------------------------------------

SCOPE = {
    "vars": {"host": None, "port": 0, "name": "", "config": {"a": None}},
    "parameters": {"region": None, "zone": "eu-1"},
    "task": {"skipped": {"status": "skipped", "result": None}},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ vars.host | default('localhost') | prepend('https://') }}", "https://localhost"),
        ("{{ vars.host | d('localhost') }}", "localhost"),
        ("{{ parameters.region | default('us-east-1') }}", "us-east-1"),
        ("{{ parameters.zone | default('us-east-1a') }}", "eu-1"),
        ("{{ task.skipped.result | default([]) }}", []),
        ("{{ task.skipped.result.items | default('none') }}", "none"),
        ("{{ task.never.result | default('missing') }}", "missing"),
        ("{{ vars.config.a | default(1) }}", 1),
        ("{{ vars.config.a.b.c | default(2) }}", 2),
        ("{{ undeclared | default(3) }}", 3),
        ("x={{ vars.host | default('h') }}", "x=h"),
    ],
)
def test_default_replaces_null_and_missing_values(template: str, expected: Any) -> None:
    assert r(template, SCOPE) == expected


def test_default_keeps_false_values_unless_asked() -> None:
    assert r("{{ vars.port | default(80) }}", SCOPE) == 0
    assert r("{{ vars.name | default('anon') }}", SCOPE) == ""
    assert r("{{ false | default(true) }}", SCOPE) is False
    assert r("{{ vars.port | default(80, true) }}", SCOPE) == 80
    assert r("{{ vars.name | d('anon', true) }}", SCOPE) == "anon"
    assert r("{{ vars.host | default('h', true) }}", SCOPE) == "h"
    assert r("{{ [] | default([1], boolean=true) }}", SCOPE) == [1]


# --- sizes: refused before they are computed -------------------------------------------

BOMBS = [
    "{{ 10 ** (10 ** 10) }}",
    "{{ 2 ** 10000000 }}",
    "{{ 'ab' * 4000000000 }}",
    "{{ 4000000000 * 'ab' }}",
    "{{ [1] * 10**9 }}",
    "{{ (1, 2) * 10**9 }}",
    "{{ [[1] * 100000] * 100000 }}",
    "{{ (2 ** 5000000) * (2 ** 5000000) }}",
    "{{ 'x' * 1000000 + 'y' * 100000 }}",
    "{{ [0] * 100000 + [0] * 100000 }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%*d' % (999999999, 1) }}",
    "{{ '%.999999999f' % 1.5 }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '{:{}}'.format('x', 999999999) }}",
    "{{ '{a:>999999999}'.format_map({'a': 1}) }}",
    "{{ 'x'.center(10**9) }}",
    "{{ 'x'.ljust(10**9) }}",
    "{{ 'x'.zfill(10**9) }}",
    "{{ ('\t' * 1000).expandtabs(10**7) }}",
    "{{ ('a' * 1000).replace('', 'b' * 10000) }}",
    "{{ ('a' * 1000).translate({97: 'b' * 10000}) }}",
    "{{ ('x' * 100000).join(['a'] * 100) }}",
    "{{ ('x' * 100000).join(range(100) | map('string')) }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'x\ny' | indent(10**9) }}",
    "{{ ('a' * 1000) | replace('a', 'b' * 10000) }}",
    "{{ '%999999999s' | format('x') }}",
    "{{ ('a ' * 1000) | wordwrap(1, wrapstring='x' * 10000) }}",
    "{{ (['x' * 100000] * 11) | join(',') }}",
    "{{ ([[0] * 1000] * 1000) | sum(start=[]) }}",
    "{{ range(10) | slice(10**9) | list }}",
    "{{ (range(100000) | list) | tojson(indent=100000) }}",
    "{{ lipsum(10**6) }}",
    "{{ ('x' * 600000) | append('y' * 600000) }}",
    "{{ ('x' * 600000) | prepend('y' * 600000) }}",
    "{{ ('<' * 600000) | escape }}",
    "{{ 'x' * 600000 ~ 'y' * 600000 }}",
    "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
    "{% set l = [1] %}{% for i in range(400) %}{% for j in range(400) %}{{ l.append(j) }}{% endfor %}"
    "{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "{% macro f(s, n) %}{% set t %}{{ s }}{{ s }}{% endset %}{% if n %}{{ f(t, n - 1) }}{% endif %}"
    "{% endmacro %}{{ f('x', 60) }}",
    "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
]

# A list that holds itself, 60 levels deep: 2^60 elements written out, 61 in memory.
NESTED = "{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% endfor %}"
NESTED_BOMBS = [
    NESTED + "{{ ns.x }}",
    NESTED + "x{{ ns.x }}",
    NESTED + "{{ ns.x | to_json }}",
    NESTED + "{{ ns.x | tojson }}",
    NESTED + "{{ ns.x | string }}",
    NESTED + "{{ ns.x | pprint }}",
    NESTED + "{{ [ns.x] | join }}",
    NESTED + "{{ '%s' % (ns.x,) }}",
    NESTED + "{{ '{}'.format(ns.x) }}",
    NESTED + "{{ 'x' ~ ns.x }}",
    NESTED + "{{ ns.x | center(3) }}",
    # black-box findings: text filters of a container, growing a list, fromkeys, bytes
    *(NESTED + f"{{{{ ns.x | {name} | length }}}}" for name in ("upper", "lower", "title", "trim")),
    "{% set l = [] %}{% for i in range(3000) %}{% if l.append('x' * 1000000) %}{% endif %}{% endfor %}",
    "{{ range(300) | map('center', 1000000) | list | length }}",
    "{{ {}.fromkeys(range(100000), 'x' * 1000000) }}",
    "{{ ('%999999999s'.encode() % 'x'.encode()) | length }}",
    "{{ (1).to_bytes(10**9, 'big') | length }}",
]


@pytest.mark.parametrize("template", BOMBS + NESTED_BOMBS)
def test_bombs_are_refused_with_the_limit_named(template: str) -> None:
    with pytest.raises(TemplateRenderError, match=REFUSED):
        r(template)


@pytest.mark.parametrize("operator", ["*", "**", "+", "%"])
def test_an_operator_refused_is_never_computed(monkeypatch: pytest.MonkeyPatch, operator: str) -> None:
    computed: list[str] = []
    table = dict(ENV.binop_table)
    real = table[operator]
    table[operator] = lambda left, right: computed.append(operator) or real(left, right)
    monkeypatch.setattr(ENV, "binop_table", table)
    template = {
        "*": "{{ 'ab' * 4000000000 }}",
        "**": "{{ 7 ** 123456789 }}",
        "+": "{{ s + s }}",
        "%": "{{ '%999999999d' % 1 }}",
    }[operator]
    with pytest.raises(TemplateRenderError, match=SIZE):
        r(template, {"s": "x" * 600_000})
    assert computed == []
    assert r("{{ 3 " + operator + " 2 }}") == {"*": 6, "**": 9, "+": 5, "%": 1}[operator]
    assert computed == [operator]


def test_operators_are_never_folded_at_compile_time() -> None:
    """Validation and the DAG processor compile templates: `10 ** (10 ** 10)` is left for
    the run (where it is refused) instead of being computed by Jinja's optimizer."""
    code = ENV.compile("{{ f(10 ** (10 ** 10), 'ab' * 4000000000) }}", raw=True)
    assert "environment.call_binop(context, '**'" in code
    assert "environment.call_binop(context, '*'" in code


def test_constant_of_a_bomb_is_left_to_the_run() -> None:
    with pytest.raises(NotConstant):
        constant(["{{ 'ab' * 4000000000 }}"])


def test_the_limit_is_the_one_given() -> None:
    small = TemplateLimits(max_result_bytes=2048)
    assert r("{{ 'x' * 2048 }}", limits=small) == "x" * 2048
    with pytest.raises(TemplateRenderError, match="more than the 2,048 bytes"):
        r("{{ 'x' * 2049 }}", limits=small)
    with pytest.raises(TemplateRenderError, match="more than the 2,048 bytes"):
        r("{% for i in range(300) %}0123456789{% endfor %}", limits=small)
    assert r("{{ 'é' * 1024 }}", limits=small) == "é" * 1024  # two bytes each in UTF-8
    with pytest.raises(TemplateRenderError, match="more than the 2,048 bytes"):
        r("{{ 'é' * 1025 }}", limits=small)


def test_limits_come_from_the_source_the_caller_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "_source", limits._source)  # restored after the test
    set_limits_source(lambda: TemplateLimits(max_result_bytes=4096, timeout=1.0))
    with pytest.raises(TemplateRenderError, match="more than the 4,096 bytes"):
        r("{{ 'x' * 5000 }}")
    set_limits_source(None)
    assert limits.current_limits() == TemplateLimits(DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT)
    assert len(r("{{ 'x' * 5000 }}")) == 5000


def test_values_up_to_the_limit_are_made() -> None:
    assert len(r("{{ 'x' * 1048576 }}")) == 1048576
    assert len(r("{{ [0] * 65536 }}")) == 65536  # 8 bytes an element, 8 its number
    assert r("{{ (2 ** 8000000).bit_length() }}") == 8000001  # 1,000,001 bytes: within the limit
    assert r("{{ [1, 2] * 3 }}") == [1, 2, 1, 2, 1, 2]
    assert r("{{ 'ab' * 3 ~ 'c' }}") == "abababc"
    assert r("{{ '%05d|%-4s|' % (42, 'x') }}") == "00042|x   |"
    assert r("{{ '{:>6}|{n:03}'.format('x', n=7) }}") == "     x|007"
    assert r("{{ ['a', 'b'] | join(', ') }}") == "a, b"
    assert r("{{ [[1], [2, 3]] | sum(start=[]) }}") == [1, 2, 3]
    assert r("{% set l = [] %}{% for i in range(3) %}{{ l.append(i) }}{% endfor %}{{ l }}") == "[0, 1, 2]"


def test_a_large_value_passed_as_it_is_is_not_limited() -> None:
    """Only what template operations make is limited: a large result read as it is passes."""
    big = {"rows": [{"id": i, "text": "x" * 100} for i in range(20_000)]}  # about 3 MB
    assert r("{{ data }}", {"data": big}) == big
    assert r("{{ data.rows | length }}", {"data": big}) == 20_000


def test_a_value_that_repeats_a_list_past_the_limit_is_refused() -> None:
    row = list(range(1000))  # 16 KB written out
    with pytest.raises(TemplateRenderError, match=f"repeats the same list or mapping.*{SIZE}"):
        r("{{ [" + ", ".join(["row"] * 100) + "] }}", {"row": row})
    assert len(r("{{ [row, row] }}", {"row": row})) == 2


# --- time -------------------------------------------------------------------------------

SLOW = [
    NESTED_LOOPS,
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
    "{% set x = range(100000) | list %}{% for i in x %}{% for j in x %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) if j is even %}{% endfor %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{{ loop.index }}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for i in range(100000) %}{% set x = range(1000) | list | sort | first %}{% endfor %}",
]


@pytest.mark.parametrize("template", SLOW)
def test_a_template_running_past_its_timeout_fails(template: str) -> None:
    with pytest.raises(TemplateRenderError, match=STOPPED):
        r(template, limits=QUICK)


def test_a_timeout_is_an_ordinary_render_error_naming_the_template() -> None:
    with pytest.raises(TemplateRenderError) as failed:
        r({"a": [NESTED_LOOPS]}, limits=QUICK)
    assert str(failed.value).startswith("cannot render '{% for i in range(100000) %}")
    assert isinstance(failed.value.__cause__, TemplateLimitError)


def test_each_template_has_its_own_time() -> None:
    loop = "{% for i in range(2000) %}{{ i }}{% endfor %}"
    assert len(r([loop] * 50, limits=QUICK)) == 50


def test_the_guard_counts_steps_against_the_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(limits.time, "thread_time", lambda: clock[0])
    guard = limits.Guard(TemplateLimits(timeout=2.0))
    for _ in range(1000):
        guard.tick()
    clock[0] = 102.5
    with pytest.raises(TemplateLimitError, match="more than 2 s"):
        for _ in range(1000):
            guard.tick()


def test_a_template_rendered_inside_another_shares_its_guard() -> None:
    assert active_guard().timeout == DEFAULT_TIMEOUT  # outside any render: no deadline
    with limited(TemplateLimits(max_result_bytes=5000)) as outer:
        assert active_guard() is outer
        with limited(TemplateLimits()) as inner:
            assert inner is outer
    assert active_guard() is not outer
