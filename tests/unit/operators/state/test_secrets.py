"""Secret values (secrets.py): registered with Airflow's real secrets masker, then kept out
of what Attune writes (XComs, in-process logs and prints).

The masker is one per process and never forgets: every test registers values of its own
(`unique()`), so that no test depends on what another registered.
"""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.execution_time.supervisor import InProcessSupervisorComms, set_supervisor_comms

from attune_provider.language.plan import ActionPlan
from attune_provider.operators.state.secrets import (
    _RedactRendered,
    _wrap_renderer,
    mask,
    mask_inputs,
    redact_secrets,
    was_redacted,
)
from attune_provider.runners.masking import REPLACEMENT, _RedactingStream, masked_prints


def unique(label: str = "secret") -> str:
    return f"{label}-{uuid.uuid4().hex[:12]}"


def test_a_masked_value_is_replaced_wherever_it_appears() -> None:
    secret = unique()
    mask(secret)
    value = {
        "line": f"token={secret};",
        "items": [secret, "plain", (secret, 1)],
        secret: "as a key too",
        "kept": [3, 1.5, True, None, {"x": "y"}],
    }
    assert redact_secrets(value) == {
        "line": "token=***;",
        "items": ["***", "plain", ("***", 1)],  # a tuple stays a tuple
        "***": "as a key too",
        "kept": [3, 1.5, True, None, {"x": "y"}],
    }


def test_values_are_not_hidden_for_their_keys_name() -> None:
    """Only registered secrets are redacted: results stay usable by the tasks after."""
    value = {"password": "not-registered", "api_token": ["also-plain"]}
    assert redact_secrets(value) == value


def test_a_number_whose_text_is_a_secret_becomes_the_replacement() -> None:
    number = int(uuid.uuid4().int % 10**12) + 10**12
    mask(number)
    assert redact_secrets(number) == REPLACEMENT
    assert redact_secrets([number, number + 1]) == [REPLACEMENT, number + 1]
    assert redact_secrets(f"id {number}") == "id ***"


def test_masking_reaches_inside_lists_and_mappings_and_each_line() -> None:
    nested, listed, first, second = unique("nested"), unique("listed"), unique("first"), unique("second")
    mask({"outer": {"inner": nested}, "list": [listed, None, True]})
    assert redact_secrets(f"{nested} {listed}") == "*** ***"
    mask(f"{first}\n{second}\n")  # output is logged line by line: each line alone is a secret
    assert redact_secrets(f"stdout: {second}") == "stdout: ***"
    assert redact_secrets(f"{first} alone") == "*** alone"
    whole = redact_secrets(f"{first}\n{second}\n")
    assert first not in whole and second not in whole and whole.replace("\n", "").strip("*") == ""


def test_secrets_shorter_than_airflows_minimum_are_not_masked() -> None:
    mask("abcd")  # [logging] min_length_masked_secret is 5 by default
    assert redact_secrets("abcd") == "abcd"


@pytest.mark.parametrize(
    ("value", "redacted"),
    [
        ("a *** b", True),
        ({"k": ["x", {"y": "***"}]}, True),
        ({"***": 1}, True),
        (("a", "***"), True),
        ({"k": ["x", 3, None, True]}, False),
        ("a ** b", False),
        (7, False),
    ],
)
def test_was_redacted_finds_the_replacement_anywhere(value: Any, redacted: bool) -> None:
    assert was_redacted(value) is redacted


def test_mask_inputs_masks_the_parameters_marked_secret_only() -> None:
    action = ActionPlan(
        ref="p.a",
        runner_type="python-script",
        pack="p",
        pack_dir=Path("."),
        entry_point=None,
        input_schema={},
        output_schema=None,
        secret_inputs=frozenset({"token"}),
    )
    token, text = unique("token"), unique("text")
    mask_inputs(action, {"token": token, "text": text})
    assert redact_secrets([token, text]) == ["***", text]
    other = unique("other")
    mask_inputs(None, {"token": other})  # a task without action (cannot happen once validated)
    mask_inputs(action, ["token", other])  # an input that did not render to a mapping
    assert redact_secrets(other) == other


def test_the_redacting_stream_writes_whole_lines_redacted() -> None:
    secret = unique()
    mask(secret)
    target = io.StringIO()
    stream = _RedactingStream(target)
    half = len(secret) // 2
    stream.write(f"a {secret[:half]}")  # a secret split over two writes is still caught
    assert target.getvalue() == ""
    stream.write(f"{secret[half:]} b\nrest {secret}")
    assert target.getvalue() == "a *** b\n"
    stream.flush()
    assert target.getvalue() == "a *** b\nrest ***"


def test_prints_are_redacted_only_when_the_task_runs_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    """Under `dag.test()` a print would reach the console in clear; in a worker the
    supervisor masks the task's output, and Attune leaves stdout alone."""
    secret = unique()
    mask(secret)
    with masked_prints():
        assert not isinstance(sys.stdout, _RedactingStream)
    with set_supervisor_comms(InProcessSupervisorComms(supervisor=None)), masked_prints():
        print(f"out {secret}")
        print(f"err {secret}", end="", file=sys.stderr)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("out ***\n", "err ***")


def test_the_last_log_renderer_is_wrapped_once_to_redact_each_line() -> None:
    secret = unique()
    mask(secret)

    def renderer(logger: Any, method_name: str, event_dict: Any) -> Any:
        return event_dict["event"]

    processors: list[Any] = [lambda logger, name, event: event, renderer]
    _wrap_renderer(processors)
    _wrap_renderer(processors)
    assert isinstance(processors[-1], _RedactRendered) and processors[-1].renderer is renderer
    assert processors[-1](None, "info", {"event": f"got {secret}"}) == "got ***"
    assert processors[-1](None, "info", {"event": f"got {secret}".encode()}) == b"got ***"
    assert processors[-1](None, "info", {"event": {"kept": secret}}) == {"kept": secret}  # not rendered text
    _wrap_renderer(None)
    _wrap_renderer([])
