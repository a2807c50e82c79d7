"""The run summary in the DAG run's note on the real scheduler (docs/observability.md, "Run
summaries"): the final step pushes it, the provider's listener writes it into the note
where the scheduler sets the run's state (PostgreSQL, Celery workers), for a success and a
failure alike; the REST API shows it as the UI's grid does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.conftest import CLUSTER_PACKS, Cluster

pytestmark = pytest.mark.cluster

WORKFLOW = """
ref: notes.w
parameters:
  fail: {type: boolean, default: false}
tasks:
  - name: greet
    action: core.echo
    input: {message: hello}
    on_success: check
  - name: check
    action: core.local
    input: {cmd: "test {{ parameters.fail }} = False"}
output_map:
  said: "{{ task.greet.result.message }}"
"""


def write_notes_pack(packs: Path) -> None:
    (packs / "notes" / "workflows").mkdir(parents=True)
    (packs / "notes" / "pack.yaml").write_text("ref: notes\n")
    (packs / "notes" / "workflows" / "w.yaml").write_text(WORKFLOW)


CLUSTER_PACKS.append(write_notes_pack)


@pytest.mark.parametrize("fail", [False, True])
def test_the_run_note_is_the_summary(cluster: Cluster, fail: bool) -> None:
    label = f"notes-{fail}"
    cluster.wait_for_dags({"notes.w"}, 600)
    cluster.trigger("notes.w", {"fail": fail}, label=label)
    state, _ = cluster.wait(label)
    assert state == ("failed" if fail else "success")
    summary = cluster.xcom(label, "summary")
    run = cluster.request("GET", cluster.run_path(label))
    assert run["note"] == summary, (run["note"], summary)
    status = "failed" if fail else "succeeded"
    assert summary.startswith(f"**Attune workflow `notes.w`: {status}**")
    assert '"said": "hello"' in summary
    if fail:
        assert "`check` (failed): NonZeroExit" in summary
