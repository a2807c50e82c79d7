"""Template limits through Airflow, with the limits configured for one test (the YAML cases
run under the defaults): a template running past `[attune] template_timeout` and one making
more than `[attune] max_template_result_bytes` fail their task with an ordinary
TemplateRenderError, which on_failure handles. Also the design's key-value examples, which
need Airflow Variables."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from attune_provider.local_run import RunResult

LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"

WORKFLOW = f"""
ref: t.wf
tasks:
  - name: slow
    action: core.echo
    input:
      message: "{LOOPS}"
    on_failure: handler
  - name: large
    action: core.echo
    input:
      message: "{{{{ 'x' * 5000 }}}}"
    on_failure: handler
  - name: within
    action: core.echo
    input:
      message: "{{{{ ('x' * 4000) | length }}}}"
  - name: handler
    action: core.echo
    input:
      message: "{{{{ [task.slow.error.type, task.large.error.type] }}}}"
output_map:
  handled: "{{{{ task.handler.result.message }}}}"
  within: "{{{{ task.within.result.message }}}}"
"""


def test_configured_limits_fail_the_task_and_on_failure_handles_it(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__TEMPLATE_TIMEOUT", "0.5")
    monkeypatch.setenv("AIRFLOW__ATTUNE__MAX_TEMPLATE_RESULT_BYTES", "4096")
    result = run(WORKFLOW)
    assert result.status == "succeeded", result
    statuses = {name: task.status for name, task in result.tasks.items()}
    assert statuses == {"slow": "failed", "large": "failed", "within": "succeeded", "handler": "succeeded"}
    assert result.tasks["slow"].error == {
        "type": "TemplateRenderError",
        "message": f"cannot render '{LOOPS}': the template ran for more than 0.5 s of CPU time "
        "([attune] template_timeout)",
    }
    assert result.tasks["large"].error == {
        "type": "TemplateRenderError",
        "message": "cannot render \"{{ 'x' * 5000 }}\": str * int would make more than the 4,096 bytes "
        "of [attune] max_template_result_bytes",
    }
    assert result.output == {"handled": ["TemplateRenderError", "TemplateRenderError"], "within": 4000}


def test_key_value_examples_of_the_design(run: Callable[..., RunResult]) -> None:
    """`kv.get('feature.flags.enabled', default=false)` and `kv.get_secret(...)` with the
    Variables set: the flag is its text, the secret reaches the action and is masked."""
    from airflow.models.variable import Variable

    Variable.set("feature.flags.enabled", "true")
    Variable.set("api.credentials.token", "tok-7c1e9a55")
    try:
        result = run(
            """
            ref: t.wf
            tasks:
              - name: t
                action: core.local
                input:
                  cmd: 'test "$TOKEN" = tok-7c1e9a55 && echo "flag=$FLAG"'
                  env:
                    FLAG: "{{ kv.get('feature.flags.enabled', default=false) }}"
                    TOKEN: "{{ kv.get_secret('api.credentials.token') }}"
            output_map:
              stdout: "{{ task.t.result.stdout | trim }}"
              flag: "{{ kv.get('feature.flags.enabled', default=false) | from_json }}"
              unset: "{{ kv.get('feature.flags.unset', default=false) }}"
            """
        )
    finally:
        Variable.delete("feature.flags.enabled")
        Variable.delete("api.credentials.token")
    assert result.status == "succeeded", result
    assert result.output == {"stdout": "flag=true", "flag": True, "unset": False}
