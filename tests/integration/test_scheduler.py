"""Workflows run by a real Airflow: scheduler, DAG processor and API server (LocalExecutor).

One module-scoped Airflow on a PostgreSQL database of its own (tests/live_airflow.py)
parses copies of the provider's DAG files over the packs written here; runs are triggered
and read back only through the REST API (`/api/v2`), with a token from the simple auth
manager's generated admin password. Every run is triggered as soon as Airflow is up, so
they proceed together; each test then waits for its own run.

Scale: on a 2-core machine each mapped task instance costs about 0.8 s of wall time
under this scheduler (a task process parsing the DAG file, several execution-API calls,
scheduling), so 1,000 unbatched instances take ~14 minutes (measured: 794 s). The default run covers
1,000 items in batches of 25 (40 instances); `ATTUNE_SCHEDULER_FULL_SCALE=1` adds the
1,000-instance run.

Seen before these tests moved to PostgreSQL (Airflow 3.3.2, Python 3.11.7, SQLite): the API server
died of SIGSEGV three times, in a thread serialising `GET /api/v2/dags/{dag}/dagRuns/{run}`
(a lazy load of `DagRun.dag_versions` -> sqlite3 `fetchall`; faulthandler's stack is in the
api-server log). Runs are therefore waited for through their final task's `status` XCom,
and the run itself is read only once that exists.
"""

from __future__ import annotations

import os
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.live_airflow import STARTUP_TIMEOUT, ApiError, LiveAirflow, prepare
from tests.support import RECORD_ACTION, max_overlap, records

pytestmark = pytest.mark.scheduler

FULL_SCALE = os.environ.get("ATTUNE_SCHEDULER_FULL_SCALE") == "1"

PACK_FILES = {
    "pack.yaml": "ref: live\n",
    **RECORD_ACTION,
    "actions/size.yaml": """
        name: size
        runner_type: python-script
        entry_point: size.py
        parameters:
          batch: {type: array, required: true}
    """,
    "actions/size.py": "def run(batch):\n    return len(batch)\n",
    "workflows/ok.yaml": """
        ref: live.ok
        parameters:
          name: {type: string, required: true}
        vars: {greeting: null}
        tasks:
          - name: greet
            action: core.echo
            input: {message: "hello {{ parameters.name }}"}
            publish:
              - greeting: "{{ task.greet.result.message }}"
            decision:
              - when: "{{ 'world' in vars.greeting }}"
                next: world
              - default: other
          - name: world
            action: core.noop
          - name: other
            action: core.noop
        output_map:
          greeting: "{{ vars.greeting }}"
          run: "{{ system.execution_id }}"
    """,
    "workflows/handled.yaml": """
        ref: live.handled
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: risky
            action: live.record
            input: {log: "{{ parameters.log }}", value: bad, fail_on: [bad]}
            on_success: celebrate
            on_failure: recover
          - name: celebrate
            action: core.noop
          - name: recover
            action: core.echo
            input: {message: "{{ task.risky.error.message }}"}
        output_map:
          recovered: "{{ task.recover.result.message }}"
          risky: "{{ task.risky.status }}"
    """,
    "workflows/unhandled.yaml": """
        ref: live.unhandled
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: risky
            action: live.record
            input: {log: "{{ parameters.log }}", value: bad, fail_on: [bad]}
            on_success: celebrate
          - name: celebrate
            action: core.noop
          - name: bystander
            action: core.noop
        output_map: {risky: "{{ task.risky.status }}"}
    """,
    "workflows/fanout.yaml": """
        ref: live.fanout
        parameters:
          log: {type: string, required: true}
        tasks:
          - name: each
            action: live.record
            with_items: "{{ range(6) | list }}"
            concurrency: 2
            input: {log: "{{ parameters.log }}", value: "{{ item }}", sleep: 4}
        output_map: "{{ task.each.result | map(attribute='value') | list }}"
    """,
    "workflows/big.yaml": """
        ref: live.big
        parameters:  # a list known only at run time: the `items` / `run` / `attune_outcome` form
          count: {type: integer, default: 1000}
        tasks:
          - name: each
            action: live.size
            with_items: "{{ range(parameters.count) | list }}"
            batch_size: 25
            input: {batch: "{{ item }}"}
        output_map:
          total: "{{ task.each.total_count }}"
          executions: "{{ task.each.result | length }}"
          delivered: "{{ task.each.result | sum }}"
    """,
    "workflows/big_unbatched.yaml": """
        ref: live.big_unbatched
        tasks:
          - name: each
            action: core.noop
            with_items: "{{ range(1000) | list }}"
        output_map:
          total: "{{ task.each.total_count }}"
          executions: "{{ task.each.result | length }}"
    """,
    "workflows/child.yaml": """
        ref: live.child
        parameters:
          who: {type: string, required: true}
        tasks:
          - name: greet
            action: core.echo
            input: {message: "hi {{ parameters.who }}"}
        output_map:
          greeting: "{{ task.greet.result.message }}"
    """,
    "workflows/parent.yaml": """
        ref: live.parent
        tasks:
          - name: sub
            action: live.child
            input: {who: parent}
            publish:
              - got: "{{ task.sub.result.greeting }}"
            on_success: after
          - name: after
            action: core.echo
            input: {message: "{{ vars.got }}!"}
        output_map:
          sub: "{{ task.sub.result }}"
          after: "{{ task.after.result.message }}"
    """,
}


def _write_packs(packs: Path) -> None:
    for rel, text in PACK_FILES.items():
        path = packs / "live" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


CONF = {  # label -> (dag id, conf); fanout alone first: its executions must find free executor slots
    "live.fanout": ("live.fanout", {"log": "fanout.log"}),
    "live.ok": ("live.ok", {"name": "world"}),
    "live.ok#undeclared": ("live.ok", {"name": "world", "bogus": 1}),
    "live.handled": ("live.handled", {"log": "handled.log"}),
    "live.unhandled": ("live.unhandled", {"log": "unhandled.log"}),
    "live.parent": ("live.parent", {}),
    "live.big": ("live.big", {}),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveAirflow]:
    """A running Airflow with every workflow of pack `live` triggered once."""
    root = tmp_path_factory.mktemp("live-airflow")
    airflow = prepare(root)
    _write_packs(root / "packs")
    started = time.monotonic()
    try:
        airflow.start()
        airflow.login(STARTUP_TIMEOUT)
        dag_ids = {dag_id for dag_id, _ in CONF.values()} | {"live.child", "live.big_unbatched"}
        airflow.wait_for_dags(dag_ids, STARTUP_TIMEOUT - (time.monotonic() - started))
        print(f"\nAirflow up and DAGs parsed in {time.monotonic() - started:.1f}s")
        assert airflow.request("GET", "/api/v2/importErrors")["total_entries"] == 0
        for label, (dag_id, conf) in CONF.items():
            conf = {k: str(root / v) if k == "log" else v for k, v in conf.items()}
            airflow.trigger(dag_id, conf, label)
            if label == "live.fanout":  # on a busy machine the other runs' tasks took its slots
                airflow.wait(label)
        yield airflow
    finally:
        airflow.stop()
        print(f"Airflow stopped after {time.monotonic() - started:.1f}s")


def test_success_path(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.ok")
    print(f"live.ok: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.workflow("live.ok")["status"] == "succeeded"
    assert live.xcom("live.ok", "return_value") == {
        "greeting": "hello world",
        "run": live.runs["live.ok"][1],
    }
    assert live.workflow("live.ok")["vars"] == {"greeting": "hello world"}
    tasks = live.workflow("live.ok")["tasks"]
    assert tasks == {"greet": "succeeded", "world": "succeeded", "other": "skipped"}
    states = live.task_states("live.ok")
    assert states == {"greet": "success", "world": "success", "other": "skipped", "attune_outcome": "success"}


def test_wrong_parameter_type_is_refused_at_trigger(live: LiveAirflow) -> None:
    with pytest.raises(ApiError) as refused:
        live.trigger("live.ok", {"name": 5}, label="live.ok#wrong-type")
    assert "HTTP 400" in str(refused.value) and "name" in str(refused.value), refused.value


def test_undeclared_parameter_fails_the_run(live: LiveAirflow) -> None:
    """Airflow accepts any conf key; Attune checks the parameters in every task."""
    state, _ = live.wait("live.ok#undeclared")
    assert state == "failed"
    assert live.workflow("live.ok#undeclared")["status"] == "failed"
    states = live.task_states("live.ok#undeclared")
    assert states["greet"] == "failed" and states["attune_outcome"] == "failed", states


def test_handled_failure_path(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.handled")
    print(f"live.handled: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.workflow("live.handled")["status"] == "succeeded"
    assert live.xcom("live.handled", "return_value") == {
        "recovered": "value bad is refused",
        "risky": "failed",
    }
    assert live.xcom("live.handled", "attune", task_id="risky")["error"] == {
        "type": "ValueError",
        "message": "value bad is refused",
    }
    states = live.task_states("live.handled")
    assert (states["risky"], states["celebrate"], states["recover"]) == ("failed", "skipped", "success")


def test_unhandled_failure_fails_the_dag_run(live: LiveAirflow) -> None:
    state, _ = live.wait("live.unhandled")
    assert state == "failed"
    assert live.workflow("live.unhandled")["status"] == "failed"
    assert live.xcom("live.unhandled", "return_value") == {"risky": "failed"}
    assert live.workflow("live.unhandled")["tasks"] == {
        "risky": "failed",
        "celebrate": "skipped",
        "bystander": "succeeded",
    }


def test_with_items_concurrency_limits_real_overlap(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.fanout")
    print(f"live.fanout: {state} in {elapsed:.1f}s")
    assert state == "success"
    assert live.xcom("live.fanout", "return_value") == [0, 1, 2, 3, 4, 5]
    log = live.root / "fanout.log"
    spans = records(log)
    assert sorted(s["value"] for s in spans) == [0, 1, 2, 3, 4, 5]
    overlap = max_overlap(spans)
    print(f"live.fanout: at most {overlap} executions at once (concurrency 2)")
    assert overlap <= 2, spans
    assert overlap >= 2, f"executions never overlapped: {spans}"


def test_subworkflow(live: LiveAirflow) -> None:
    state, elapsed = live.wait("live.parent")
    print(f"live.parent: {state} in {elapsed:.1f}s")
    assert state == "success"
    output = live.xcom("live.parent", "return_value")
    assert output == {"sub": {"greeting": "hi parent"}, "after": "hi parent!"}
    assert live.xcom("live.parent", "return_value", task_id="sub.greet") == {"message": "hi parent"}
    assert live.workflow("live.parent")["tasks"] == {"sub": "succeeded", "after": "succeeded"}


def test_with_items_over_1000_items(live: LiveAirflow, record_property: Callable[..., None]) -> None:
    state, elapsed = live.wait("live.big")
    print(f"live.big: 1,000 items in 40 batches: {state} in {elapsed:.1f}s")
    record_property("seconds", round(elapsed, 1))
    assert state == "success"
    assert live.xcom("live.big", "return_value") == {"total": 1000, "executions": 40, "delivered": 1000}


@pytest.mark.skipif(
    not FULL_SCALE,
    reason="1,000 unbatched task instances take ~14 min on 2 cores; set ATTUNE_SCHEDULER_FULL_SCALE=1",
)
def test_with_items_over_1000_unbatched_instances(
    live: LiveAirflow, record_property: Callable[..., None]
) -> None:
    live.trigger("live.big_unbatched", {})
    state, elapsed = live.wait("live.big_unbatched", timeout=1800)
    print(f"live.big_unbatched: 1,000 task instances: {state} in {elapsed:.1f}s")
    record_property("seconds", round(elapsed, 1))
    assert state == "success"
    assert live.xcom("live.big_unbatched", "return_value") == {"total": 1000, "executions": 1000}
