"""Run summaries (issue 25, docs/observability.md): the DAG run's note holds the workflow's
outcome, its failed tasks with their errors and its output, in Markdown, written when the
run ends; `attune-airflow run` prints the same summary."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from attune_provider.local_run import RunResult
from attune_provider.operators.steps.summary import SUMMARY_KEY, summary_markdown
from tests.integration.test_run_command import run_command
from tests.support import write_pack

EXPLODE = {
    "actions/explode.yaml": """
        name: explode
        runner_type: python-script
        entry_point: explode.py
    """,
    "actions/explode.py": """
        def run():
            raise ValueError("kaboom")
    """,
}
GOOD = """
    ref: t.wf
    tasks:
      - name: hello
        action: core.echo
        input: {message: hi}
    output_map:
      said: "{{ task.hello.result.message }}"
"""
BAD = """
    ref: t.wf
    tasks:
      - name: hello
        action: core.echo
        input: {message: hi}
        on_success: explode
      - name: explode
        action: t.explode
    output_map:
      said: "{{ task.hello.result.message }}"
      why: "{{ task.explode.error.message }}"
"""


def note_and_xcom(result: RunResult) -> tuple[str | None, str | None]:
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == result.workflow, DagRun.run_id == result.run_id)
        ).one()
        row = session.scalars(
            select(XComModel).where(
                XComModel.dag_id == result.workflow,
                XComModel.run_id == result.run_id,
                XComModel.task_id == "attune_outcome",
                XComModel.key == SUMMARY_KEY,
            )
        ).first()
        return run.note, (XComModel.deserialize_value(row) if row is not None else None)


def test_note_of_a_success(run: Callable[..., RunResult]) -> None:
    result = run(GOOD)
    assert result.status == "succeeded"
    note, pushed = note_and_xcom(result)
    expected = summary_markdown("t.wf", "succeeded", {"hello": "succeeded"}, {}, [], {"said": "hi"}, True)
    assert note == pushed == expected, note
    assert note.startswith("**Attune workflow `t.wf`: succeeded**")
    assert "Failed tasks" not in note
    assert '```json\n{\n  "said": "hi"\n}\n```' in note


def test_note_of_a_failure(run: Callable[..., RunResult]) -> None:
    result = run(BAD, files=EXPLODE)
    assert result.status == "failed"
    note, pushed = note_and_xcom(result)
    assert note is not None and note == pushed
    assert note.startswith("**Attune workflow `t.wf`: failed**"), note
    assert "Failed tasks:\n- `explode` (failed): ValueError: kaboom" in note, note
    assert '"why": "kaboom"' in note and '"said": "hi"' in note, note


def test_run_command_prints_the_note(airflow_db: None, tmp_path: Path) -> None:
    write_pack(tmp_path / "packs", "t", {"workflows/wf.yaml": BAD, **EXPLODE})
    proc = subprocess.run(**run_command("t.wf"), cwd=tmp_path, capture_output=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr[-3000:]
    run_id = next(line.split()[1] for line in proc.stdout.splitlines() if line.startswith("run "))
    note, _ = note_and_xcom(RunResult(workflow="t.wf", run_id=run_id, status="failed"))
    assert note and note in proc.stdout, proc.stdout
