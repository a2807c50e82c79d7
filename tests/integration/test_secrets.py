"""Pack configuration and secrets (docs/language.md) through Airflow.

The secret values come from `kv.get_secret` and from a `secret: true` pack config key;
they must not appear in clear anywhere a user can look: the task log (the file
`attune-airflow run` writes, or its standard error with `--json`), the command's standard
output, the XCom table and the rendered-template table (RenderedTaskInstanceFields) of
the metadata database, where `***` stands in their place.
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

from tests.integration.conftest import write_pack

SECRET_CONFIG = "cfg-secret-9f8e7d6c"
SECRET_DEFAULT = "cfg-default-0a1b2c3d"
SECRET_KV = "kv-secret-4b3a2c1d"
PLAIN_KV = "plain-visible-5e6f7a"
SECRETS = (SECRET_CONFIG, SECRET_DEFAULT, SECRET_KV)

CONFIG = f"""
    type: object
    properties:
      api_token: {{type: string, secret: true, default: {SECRET_DEFAULT}}}
      region: {{type: string, default: eu-west}}
      port: {{type: integer, default: 80}}
"""
WORKFLOW = """
    ref: t.secrets
    vars:
      region: "{{ pack.config.region }}"
    tasks:
      - name: use
        action: core.local
        input:
          cmd: 'echo "cfg=$CFG kv=$KV"; echo "again $KV" >&2'
          env:
            CFG: "{{ pack.config.api_token }}"
            KV: "{{ kv.get_secret('attune_test_opaque') }}"
        publish:
          - seen: "{{ task.use.result.stdout }}"
          - port: "{{ pack.config.port }}"
          - plain: "{{ kv.get('attune_test_plain') }}"
          - api_token_label: public-label
        on_success: each
      - name: each
        with_items: "{{ [1, 2] }}"
        action: core.echo
        input:
          message: "{{ item }}:{{ kv.get_secret('attune_test_opaque') }}"
        on_success: child
      - name: child
        action: t.child
        input:
          token: "{{ kv.get_secret('attune_test_opaque') }}"
    output_map:
      seen: "{{ vars.seen }}"
      port: "{{ vars.port }}"
      region: "{{ vars.region }}"
      plain: "{{ vars.plain }}"
      label: "{{ vars.api_token_label }}"
      each: "{{ task.each.result }}"
      child: "{{ task.child.result }}"
"""
CHILD = """
    ref: t.child
    parameters:
      token: {type: string, required: true}
    tasks:
      - name: show
        action: t.show
        input: {token: "{{ parameters.token }}"}
    output_map:
      length: "{{ task.show.result.length }}"
      tail: "{{ task.show.result.tail }}"
"""
SHOW = """
    name: show
    runner_type: python-script
    entry_point: show.py
    parameters:
      token: {type: string, required: true}
"""
SHOW_PY = """
import sys

def run(token):
    print("printed", token)
    print("printed to stderr", token, file=sys.stderr)
    return {"length": len(token), "tail": token[-4:]}
"""
EXPECTED_OUTPUT = {
    "seen": "cfg=*** kv=***",
    "port": 8080,
    "region": "eu-west",
    "plain": PLAIN_KV,
    "label": "public-label",  # a key named like a secret is not hidden: only secrets are
    "each": [{"message": "1:***"}, {"message": "2:***"}],
    # the secret reached the subworkflow's action in clear (not as "***")
    "child": {"length": len(SECRET_KV), "tail": SECRET_KV[-4:]},
}


def database_rows(query: str) -> list[str]:
    """Text of the rows of the session's metadata database (SQLite) for the secrets workflow."""
    path = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(path) as db:
        rows = db.execute(query, ("t.secrets",)).fetchall()
    return [" ".join(v.decode() if isinstance(v, bytes) else str(v) for v in row) for row in rows]


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} in clear in {where}"


@pytest.fixture(scope="module")
def packs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("secret-packs")
    files = {
        "config.yaml": CONFIG,
        "workflows/secrets.yaml": WORKFLOW,
        "workflows/child.yaml": CHILD,
        "actions/show.yaml": SHOW,
        "actions/show.py": SHOW_PY,
    }
    write_pack(root, "t", files)
    return root


@pytest.mark.parametrize("mode", ["--json", "readable"])
def test_secrets_are_masked_everywhere(airflow_db: None, packs_dir: Path, mode: str) -> None:
    env = dict(os.environ)
    env.update(
        AIRFLOW_VAR_ATTUNE_TEST_OPAQUE=SECRET_KV,
        AIRFLOW_VAR_ATTUNE_TEST_PLAIN=PLAIN_KV,
        AIRFLOW_VAR_ATTUNE_PACK_CONFIG__T=json.dumps({"api_token": SECRET_CONFIG, "port": 8080}),
    )
    command = [sys.executable, "-m", "attune_provider", "run", "t.secrets", "--packs", str(packs_dir)]
    if mode == "--json":
        command.append("--json")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_clean(proc.stdout, "the command's standard output")
    assert_clean(proc.stderr, "the command's standard error")
    if mode == "--json":
        result = json.loads(proc.stdout)
        assert result["output"] == EXPECTED_OUTPUT
        assert result["vars"]["seen"] == "cfg=*** kv=***"
        log = proc.stderr
    else:
        assert PLAIN_KV in proc.stdout and "cfg=*** kv=***" in proc.stdout
        logs = sorted(Path(env["AIRFLOW_HOME"]).glob("logs/attune/t.secrets/*.log"), key=os.path.getmtime)
        assert logs, "the run command wrote no log file"
        log = logs[-1].read_text()
        assert_clean(log, str(logs[-1]))
    assert "[stdout] cfg=*** kv=***" in log and "[stderr] again ***" in log
    assert "printed ***" in log and "printed to stderr ***" in log

    xcoms = database_rows("SELECT task_id, key, value FROM xcom WHERE dag_id = ?")
    assert_clean("\n".join(xcoms), "the xcom table")
    assert any("cfg=*** kv=***" in row for row in xcoms)
    rendered = database_rows(
        "SELECT task_id, map_index, rendered_fields FROM rendered_task_instance_fields WHERE dag_id = ?"
    )
    assert_clean("\n".join(rendered), "the rendered_task_instance_fields table")
    assert any(row.startswith("use ") and '"CFG": "***"' in row for row in rendered), rendered
    assert any(row.startswith("each 1 ") and "2:***" in row for row in rendered), rendered


CONFIG_WORKFLOW = """
    ref: t.wf
    tasks:
      - name: read
        action: core.echo
        input:
          message: "{{ pack.config.region }}:{{ pack.config.port }}:{{ kv.get('attune_no_such', 'dflt') }}"
"""


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (None, {"status": "succeeded", "message": "eu-west:80:dflt"}),
        ('{"region": "us-east"}', {"status": "succeeded", "message": "us-east:80:dflt"}),
        ('{"port": "eighty"}', {"status": "failed", "error": "pack config key 'port': 'eighty' is not of"}),
        ('{"port": ', {"status": "failed", "error": "(Variable attune_pack_config__t): not valid JSON"}),
        ("[1]", {"status": "failed", "error": "(Variable attune_pack_config__t): not a JSON object"}),
    ],
    ids=["defaults", "override", "bad-value", "bad-json", "not-an-object"],
)
def test_pack_config_is_defaults_overridden_by_the_variable_and_validated(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, variable: str | None, expected: dict[str, str]
) -> None:
    if variable is not None:
        monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_PACK_CONFIG__T", variable)
    result = run(CONFIG_WORKFLOW, files={"config.yaml": CONFIG})
    read = result.tasks["read"]
    assert read.status == expected["status"]
    if "message" in expected:
        assert result.xcom("read") == {"message": expected["message"]}
    else:
        assert read.error is not None and read.error["type"] == "TemplateRenderError"
        assert expected["error"] in read.error["message"]
        assert "invalid configuration of pack 't'" in read.error["message"]


MULTILINE_WORKFLOW = """
    ref: t.multiline
    tasks:
      - name: shell
        action: core.local
        input:
          cmd: 'printf "%s\\n" "$S"'
          env: {S: "{{ kv.get_secret('attune_test_lines') }}"}
        on_success: python
      - name: python
        action: t.show
        input: {token: "{{ kv.get_secret('attune_test_lines') }}"}
"""
LINES = ("multi-line-first-7c1e", "second-line-of-it-2d4f")


def test_a_secret_of_several_lines_is_masked_line_by_line(airflow_db: None, tmp_path: Path) -> None:
    """Output is logged one line at a time: no line of the secret shows in clear."""
    write_pack(
        tmp_path,
        "t",
        {
            "workflows/multiline.yaml": MULTILINE_WORKFLOW,
            "actions/show.yaml": SHOW,
            "actions/show.py": SHOW_PY,
        },
    )
    env = {**os.environ, "AIRFLOW_VAR_ATTUNE_TEST_LINES": "\n".join(LINES)}
    command = [
        sys.executable,
        "-m",
        "attune_provider",
        "run",
        "t.multiline",
        "--packs",
        str(tmp_path),
        "--json",
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["tasks"] == {"shell": "succeeded", "python": "succeeded"}
    for line in LINES:
        assert line not in proc.stdout + proc.stderr
    assert "[stdout] ***" in proc.stderr and "printed ***" in proc.stderr


WITHHELD = """
    ref: t.withheld
    parameters:
      api_key: {type: string, secret: true, default: sk-default-5c4b3a}
    tasks:
      - name: use
        action: core.echo
        input: {message: "{{ parameters.api_key | length }}"}
"""


@pytest.mark.parametrize("conf", [{}, {"api_key": None}], ids=["not-given", "empty-form-field"])
def test_a_secret_parameter_s_default_withheld_from_the_dag_applies_when_its_tasks_run(
    airflow_db: None, tmp_path: Path, conf: dict[str, Any]
) -> None:
    from attune_provider.local_run import prepare_environment, resolve, run_plan

    packs = tmp_path / "packs"
    write_pack(packs, "t", {"workflows/withheld.yaml": WITHHELD})
    prepare_environment([packs])
    result = run_plan(resolve("t.withheld", [packs]), conf)  # as the trigger form sends it
    assert result.status == "succeeded"
    assert result.xcom("use") == {"message": len("sk-default-5c4b3a")}


def test_a_secret_turned_into_a_number_is_not_recorded_as_a_rendered_field(
    run: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_ATTUNE_TEST_PIN", "98765432")
    workflow = """
    ref: t.pin
    tasks:
      - name: use
        action: core.echo
        input: {message: "{{ kv.get_secret('attune_test_pin') | int }}"}
    """
    result = run(workflow, name="pin")
    assert result.status == "succeeded" and result.xcom("use") == {"message": "***"}
    path = Path(os.environ["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(path) as db:
        query = "SELECT rendered_fields FROM rendered_task_instance_fields WHERE dag_id = 't.pin'"
        rows = db.execute(query).fetchall()
    assert rows and all("98765432" not in str(row) for row in rows), rows
    assert any('"message": "***"' in str(row[0]) for row in rows), rows
