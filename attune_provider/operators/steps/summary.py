"""The readable summary of a run (docs/observability.md, Run summaries): Markdown with the
workflow's outcome, its failed tasks with their errors, and its output.

The final step (`attune_outcome` of a top-level workflow) pushes it as the `summary` XCom;
the provider's listener (attune_provider/plugin.py) copies it to the DAG run's note when
the run ends; `attune-airflow run` prints the same text. Values are the ones stored for the
run (secrets redacted); a confidential run shows no output and no error message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

SUMMARY_KEY = "summary"
MAX_SUMMARY_CHARS = 1000  # a DAG run's note holds at most 1000 characters
MAX_MESSAGE_CHARS = 200
FAILED_STATUSES = ("failed", "timeout")


def _clip(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut, with how much was left out."""
    if len(text) <= limit:
        return text
    keep = limit
    for _ in range(2):  # the marker's own length depends on the count it gives
        marker = f"… ({len(text) - keep} more characters)"
        keep = max(limit - len(marker), 0)
    return text[:keep] + f"… ({len(text) - keep} more characters)"


def _message(error: Mapping[str, Any], confidential: bool) -> str:
    kind = str(error.get("type") or "Error")
    if confidential:
        return kind
    message = " ".join(str(error.get("message") or "").split())  # one line in a Markdown list
    return f"{kind}: {_clip(message, MAX_MESSAGE_CHARS)}" if message else kind


def summary_markdown(
    ref: str,
    status: str,
    tasks: Mapping[str, str],
    errors: Mapping[str, Any],
    reasons: list[str],
    output: Any,
    has_output: bool,
    confidential: bool = False,
) -> str:
    """The summary of a run of workflow `ref`: `tasks` and `errors` by task id (as the
    `workflow` XCom holds them), `output` the rendered output_map."""
    lines = [f"**Attune workflow `{ref}`: {status}**", ""]
    failed = [tid for tid, outcome in tasks.items() if outcome in FAILED_STATUSES]
    if failed or status != "succeeded":
        lines.append("Failed tasks:" if failed else "Failed tasks: none")
        for tid in failed:
            error = errors.get(tid)
            detail = _message(error, confidential) if isinstance(error, Mapping) else tasks[tid]
            lines.append(f"- `{tid}` ({tasks[tid]}): {detail}")
        if not confidential:
            lines += ["", *(f"Why: {_clip(reason, MAX_MESSAGE_CHARS)}" for reason in reasons)]
        lines.append("")
    if confidential:
        lines.append("Output: not shown (confidential run)")
    elif not has_output:
        lines.append("Output: none (the workflow has no output_map)")
    else:
        lines += ["Output:", ""]
    text = "\n".join(line for index, line in enumerate(lines) if line or lines[index - 1]).strip()
    text = _clip(text, MAX_SUMMARY_CHARS)
    if has_output and not confidential:
        rendered = json.dumps(output, indent=2, ensure_ascii=False, default=str).replace("```", "` ` `")
        budget = MAX_SUMMARY_CHARS - len(text) - len("\n\n```json\n\n```")
        if budget >= 40:  # else no room left for the output: the line above says where it is
            text += "\n\n```json\n" + _clip(rendered, budget) + "\n```"
    return text


def push_summary(ti: Any, plan: Any, report: Mapping[str, Any], output: Any) -> None:
    """Push the summary of a top-level workflow's run (a subworkflow's run has none)."""
    if plan.parent is not None:
        return
    from attune_provider.operators.state.sealed import run_plan
    from attune_provider.operators.state.secrets import redact_secrets

    stored: Mapping[str, Any] = redact_secrets(dict(report))
    ti.xcom_push(
        key=SUMMARY_KEY,
        value=summary_markdown(
            plan.ref,
            str(stored["status"]),
            stored["tasks"],
            stored["errors"],
            list(stored["reasons"]),
            redact_secrets(output),
            plan.workflow.output_map is not None,
            run_plan(plan).confidential,
        ),
    )
