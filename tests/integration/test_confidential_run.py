"""Confidential workflows run through Airflow (docs/confidential.md).

Declared secrets reach the run as `secrets.<key>` and nothing else does; nothing of the run
is left in clear in the metadata database (XComs sealed with the Fernet key, no rendered
fields) nor in its task log; a definition that changed between the DAG's parse and the
task's run stops the task.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from attune_provider.local_run import RunResult, collect, planned_run_id, resolve
from tests.support import write_pack

API_KEY = "api-key-7c1e9b2d4f"
SIGNING_KEY = "signing-key-3a8f6e0b5d"
MARKER = "result-marker-4711-zq"
QUEUE = "attune-confidential"

VAULT = """
ref: v.rotate
attributes:
  confidential: true
  secrets:
    - {key: API_KEY}
    - {key: SIGNING_KEY, namespace: payments}
tasks:
  - name: call
    action: core.local
    input:
      cmd: 'echo "$MARK:${#TOKEN}"; echo "token $TOKEN" >&2'
      env: {TOKEN: "{{ secrets.API_KEY }}", MARK: "MARKER"}
    publish:
      - seen: "{{ task.call.result.stdout | trim }}"
    on_success: each
  - name: each
    action: core.echo
    with_items: "{{ ['a', 'b'] }}"
    input: {message: "{{ item }}-{{ secrets.SIGNING_KEY }}"}
    on_success: child
  - name: child
    action: v.check
    input: {key: "{{ secrets.API_KEY }}"}
output_map:
  seen: "{{ vars.seen }}"
  child: "{{ task.child.result }}"
""".replace("MARKER", MARKER)
CHECK = """
ref: v.check
parameters:
  key: {type: string, required: true, secret: true}
tasks:
  - name: script
    action: v.show
    input: {token: "{{ parameters.key }}"}
output_map:
  length: "{{ task.script.result.length }}"
"""
SHOW = """
name: show
runner_type: python-script
entry_point: show.py
parameters:
  token: {type: string, required: true}
"""
SHOW_PY = """
def run(token):
    print("printed", token)
    return {"length": len(token)}
"""
FILES = {
    "workflows/rotate.yaml": VAULT,
    "workflows/check.yaml": CHECK,
    "actions/show.yaml": SHOW,
    "actions/show.py": SHOW_PY,
}
SECRET_ENV = {
    "AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY": API_KEY,
    "AIRFLOW_VAR_ATTUNE_SECRET__PAYMENTS__SIGNING_KEY": SIGNING_KEY,
    "AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE": QUEUE,
}


def database_text(dag_id: str) -> str:
    """Every XCom and rendered-field row of `dag_id` in the session's SQLite database, as text."""
    path = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    found = []
    with sqlite3.connect(path) as db:
        for table, column in (("xcom", "value"), ("rendered_task_instance_fields", "rendered_fields")):
            rows = db.execute(f"SELECT task_id, {column} FROM {table} WHERE dag_id = ?", (dag_id,)).fetchall()
            for task_id, value in rows:
                text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
                found.append(f"{table} {task_id} {text}")
    return "\n".join(found)


@pytest.fixture(scope="module")
def vault_packs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vault-packs")
    write_pack(root, "v", FILES)
    return root


def test_a_confidential_run_reads_its_declared_secrets_and_leaves_nothing_in_clear(
    airflow_db: None, vault_packs: Path
) -> None:
    env = {**os.environ, **SECRET_ENV}
    command = [sys.executable, "-m", "attune_provider", "run", "v.rotate", "--packs", str(vault_packs)]
    proc = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    # the secrets reached the actions in clear: the shell saw the key's length, the child its value
    assert result["output"] == {"seen": f"{MARKER}:{len(API_KEY)}", "child": {"length": len(API_KEY)}}
    log = proc.stderr
    for secret in (API_KEY, SIGNING_KEY):
        assert secret not in log and secret not in proc.stdout
    assert MARKER not in log, "a confidential task logged its output"
    assert "command not logged: the workflow is confidential" in log
    assert "definition of v.rotate verified: SHA-256" in log

    stored = database_text("v.rotate")
    assert "attune_sealed" in stored, stored[:2000]
    for clear in (API_KEY, SIGNING_KEY, MARKER, "signing", "printed"):
        assert clear not in stored, f"{clear!r} in clear in the metadata database"
    assert "rendered_task_instance_fields" not in stored, "a confidential task recorded rendered fields"


def test_other_dags_xcoms_and_rendered_fields_are_left_as_they_are(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", QUEUE)
    workflow = "ref: t.plain\ntasks:\n  - name: say\n    action: core.echo\n"
    workflow += f"    input: {{message: {MARKER}}}\n"
    result = run(workflow, name="plain")
    assert result.status == "succeeded"
    stored = database_text("t.plain")
    assert MARKER in stored and "attune_sealed" not in stored


REFUSED = {
    "undeclared": (
        '{{ secrets["SIGN" ~ "ING_KEY"] }}', "secret 'SIGNING_KEY' is not declared by workflow t.refuse"
    ),
    "kv.get_secret": (
        "{{ kv.get_secret('attune_secret__main__API_KEY') }}",
        "Variable 'attune_secret__main__API_KEY' holds a declared secret",
    ),
    "kv.get_secret other": (
        "{{ kv.get_secret('some_password') }}", "kv.get_secret('some_password') is refused"
    ),
    "kv.get": ("{{ kv.get('ATTUNE_SECRET__PAYMENTS__SIGNING_KEY') }}", "holds a declared secret"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_reading_a_secret_the_workflow_did_not_declare_fails_the_task_naming_only_the_key(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AIRFLOW_VAR_SOME_PASSWORD", "hunter2-hunter2")
    template, message = REFUSED[case]
    workflow = f"""
ref: t.refuse
attributes:
  confidential: true
  secrets: [{{key: API_KEY}}]
tasks:
  - name: read
    action: core.echo
    input:
      message: |-
        {template}
"""
    result = run(workflow, name="refuse")
    read = result.tasks["read"]
    assert result.status == "failed" and read.status == "failed"
    assert read.error is not None and message in read.error["message"], read.error
    for secret in (API_KEY, SIGNING_KEY, "hunter2"):
        assert secret not in str(read.error)


def test_a_declared_secret_without_its_variable_fails_naming_the_variable(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", QUEUE)
    workflow = """
ref: t.missing
attributes: {confidential: true, secrets: [{key: NOT_SET_ANYWHERE, namespace: ops}]}
tasks:
  - name: read
    action: core.echo
    input: {message: "{{ secrets.NOT_SET_ANYWHERE }}"}
"""
    read = run(workflow, name="missing").tasks["read"]
    assert read.status == "failed" and read.error is not None
    assert "Variable attune_secret__ops__NOT_SET_ANYWHERE is not set" in read.error["message"]


def test_a_definition_changed_after_the_parse_stops_the_task(
    airflow_db: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    from airflow.sdk import timezone

    from attune_provider.dag_factory.compiler import build_dag
    from attune_provider.local_run import _test_run, prepare_environment

    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    packs = tmp_path / "packs"
    write_pack(packs, "v", FILES)
    prepare_environment([packs])
    plan = resolve("v.rotate", [packs])
    dag = build_dag(plan)  # the DAG processor's parse
    script = packs / "v" / "actions" / "show.py"
    script.write_text(SHOW_PY.replace('print("printed", token)', "print('exfiltrated', token)"))
    instant = timezone.utcnow()
    _test_run(dag, {}, instant)
    logged = "".join(capfd.readouterr())
    result: Any = collect(plan, planned_run_id(instant))
    assert result.status == "failed"
    assert result.tasks["call"].status == "failed"  # the first task: before anything ran
    assert "definition changed: the files of workflow v.rotate changed since its DAG was parsed" in logged
    assert "exfiltrated" not in logged and API_KEY not in logged


def test_a_look_alike_letter_does_not_get_kv_past_the_refusal(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's environment backend upper-cases a Variable's name: `ſ` (long s) becomes `S`."""
    monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY", API_KEY)
    workflow = """
ref: t.lookalike
tasks:
  - name: read
    action: core.echo
    input:
      message: "{{ kv.get('attune_\u017fecret__main__API_KEY') }}"
"""
    read = run(workflow, name="lookalike").tasks["read"]
    assert read.status == "failed" and read.error is not None
    assert "holds a declared secret" in read.error["message"] and API_KEY not in str(read.error)


def test_a_plain_subworkflow_of_a_confidential_run_cannot_use_kv_get_secret(
    run: Callable[..., RunResult], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE", QUEUE)
    monkeypatch.setenv("AIRFLOW_VAR_SOME_TOKEN", "token-value-0099")
    child = "ref: t.child\ntasks:\n  - name: read\n    action: core.echo\n"
    child += "    input: {message: \"{{ kv.get_secret('some_token') }}\"}\n"
    parent = "ref: t.parent\nattributes: {confidential: true}\ntasks:\n  - name: call\n    action: t.child\n"
    result = run(parent, files={"workflows/child.yaml": child}, name="parent")
    assert result.status == "failed"
    read = result.xcom("call.read", "attune")  # the child's task's outcome (unsealed)
    assert read["status"] == "failed" and "kv.get_secret('some_token') is refused" in read["error"]["message"]
