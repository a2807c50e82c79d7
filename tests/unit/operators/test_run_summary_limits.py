"""The run summary fits a DAG run's note (1000 characters) whole: a long output is cut
with how much was left out, and its JSON block is still closed (black-box finding)."""

from __future__ import annotations

import re

from attune_provider.operators.steps.summary import MAX_SUMMARY_CHARS, _clip, summary_markdown


def test_a_long_output_is_cut_inside_a_closed_block() -> None:
    text = summary_markdown("p.big", "succeeded", {"a": "succeeded"}, {}, [], {"big": "B" * 1500}, True)
    assert len(text) <= MAX_SUMMARY_CHARS
    assert text.endswith("\n```")
    rendered = '{\n  "big": "' + "B" * 1500 + '"\n}'
    block = text[text.index("```json\n") + len("```json\n") : -len("\n```")]
    kept, _, marker = block.partition("… (")
    assert rendered.startswith(kept) and marker == f"{len(rendered) - len(kept)} more characters)"


def test_clip_keeps_the_limit_with_its_marker() -> None:
    for limit in (50, 100, 999):
        clipped = _clip("x" * 5000, limit)
        assert len(clipped) <= limit
        left_out = int(re.search(r"\((\d+) more", clipped).group(1))  # type: ignore[union-attr]
        assert clipped.count("x") + left_out == 5000
    assert _clip("short", 10) == "short"


def test_many_failed_tasks_still_fit() -> None:
    tasks = {f"t{i}": "failed" for i in range(60)}
    errors = {f"t{i}": {"type": "E", "message": "m" * 300} for i in range(60)}
    text = summary_markdown("p.w", "failed", tasks, errors, ["why"], {"o": 1}, True)
    assert len(text) <= MAX_SUMMARY_CHARS
