"""The operators render templates under `[attune] max_template_result_bytes` and
`[attune] template_timeout` (scope.py sets them as the language's source of limits)."""

from __future__ import annotations

import pytest

from attune_provider.language.templates.environment import TemplateRenderError
from attune_provider.language.templates.limits import TemplateLimits, current_limits
from attune_provider.language.templates.render import render
from attune_provider.operators.state import scope  # noqa: F401 - sets the source of limits
from attune_provider.settings import template_limits

SIZE_VARIABLE = "AIRFLOW__ATTUNE__MAX_TEMPLATE_RESULT_BYTES"
TIMEOUT_VARIABLE = "AIRFLOW__ATTUNE__TEMPLATE_TIMEOUT"


def test_the_defaults_without_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIZE_VARIABLE, raising=False)
    monkeypatch.delenv(TIMEOUT_VARIABLE, raising=False)
    assert current_limits() == template_limits() == TemplateLimits(1024 * 1024, 5.0)


def test_templates_rendered_by_the_operators_use_the_configured_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SIZE_VARIABLE, "2048")
    monkeypatch.setenv(TIMEOUT_VARIABLE, "0.25")
    assert current_limits() == TemplateLimits(2048, 0.25)
    assert render("{{ 'x' * 2048 }}", {}) == "x" * 2048
    with pytest.raises(
        TemplateRenderError, match=r"more than the 2,048 bytes of \[attune\] max_template_result_bytes"
    ):
        render("{{ 'x' * 2049 }}", {})
    loops = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    with pytest.raises(
        TemplateRenderError, match=r"more than 0.25 s of CPU time \(\[attune\] template_timeout\)"
    ):
        render(loops, {})


def test_a_bad_option_is_reported_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TIMEOUT_VARIABLE, "soon")
    with pytest.raises(ValueError, match=r"\[attune\] template_timeout must be a number of seconds"):
        render("{{ 1 }}", {})
