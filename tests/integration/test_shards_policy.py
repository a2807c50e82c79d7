"""The cluster policy of shards/policy.py, applied by Airflow itself when a run is created.

`attune-airflow run` in a process started with `[attune] shards = 3` (the policy is
registered through the `airflow.policy` entry point and defined only when shards are on):
every task instance of the run gets its workflow's shard queue among the live shards, the
run is pinned, and a confidential workflow's tasks keep the confidential queue.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from attune_provider.shards import mapping, tables
from attune_provider.shards.rendezvous import assign, queue_name
from tests.support import write_pack

WORKFLOW = """
ref: s.spread
tasks:
  - name: first
    action: core.echo
    input: {message: one}
    on_success: each
  - name: each
    action: core.echo
    with_items: "{{ [1, 2, 3] }}"
    input: {message: "{{ item }}"}
"""
SECRET = """
ref: s.secret
attributes: {confidential: true}
tasks:
  - name: only
    action: core.noop
"""


def test_a_run_s_task_instances_go_to_its_workflow_s_live_shard(airflow_db: None, tmp_path: Path) -> None:
    packs = tmp_path / "packs"
    write_pack(packs, "s", {"workflows/spread.yaml": WORKFLOW, "workflows/secret.yaml": SECRET})
    engine = create_engine(f"sqlite:///{Path(os.environ['AIRFLOW_HOME']) / 'airflow.db'}")
    live = {0, 2}
    with engine.begin() as connection:
        tables.ensure_tables(connection)
        connection.execute(tables.workers.delete())
        for shard in live:
            mapping.beat(connection, f"test-worker-{shard}", shard)
    env = {
        **os.environ,
        "AIRFLOW__ATTUNE__SHARDS": "3",
        "AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE": "attune-confidential",
        "AIRFLOW__CORE__FERNET_KEY": os.environ["AIRFLOW__CORE__FERNET_KEY"],
    }
    for ref in ("s.spread", "s.secret"):
        command = [sys.executable, "-m", "attune_provider", "run", ref, "--packs", str(packs), "--json"]
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    with engine.connect() as connection:
        queues = connection.execute(
            text("SELECT dag_id, task_id, map_index, queue FROM task_instance WHERE dag_id LIKE 's.%'")
        ).all()
        pinned = text("SELECT dag_id, shard FROM attune_shard_run WHERE dag_id LIKE 's.%'")
        pins = connection.execute(pinned).all()
    engine.dispose()
    expected = queue_name(assign("s.spread", (0, 1, 2), live))
    spread = {(task, index): queue for dag_id, task, index, queue in queues if dag_id == "s.spread"}
    assert ("each", 2) in spread  # mapped instances, expanded during the run, too
    assert set(spread.values()) == {expected}, spread
    assert {queue for dag_id, _, _, queue in queues if dag_id == "s.secret"} == {"attune-confidential"}
    assert [tuple(pin) for pin in pins] == [("s.spread", assign("s.spread", (0, 1, 2), live))]


@pytest.mark.parametrize("value", ["0", "many"])
def test_an_invalid_shards_setting_is_refused_by_the_commands(value: str) -> None:
    env = {**os.environ, "AIRFLOW__ATTUNE__SHARDS": value}
    proc = subprocess.run(
        [sys.executable, "-m", "attune_provider", "shards", "status"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "[attune] shards must be" in proc.stderr
