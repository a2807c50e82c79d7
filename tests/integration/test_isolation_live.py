"""Broken workflows never hide the valid ones, in Airflow's real DAG processor.

An in-process DagBag once showed every valid DAG while the real DAG processor marked them
all stale (an import error of a DAG file hides every DAG of that file). Here a real
Airflow (scheduler, `airflow dag-processor`, API server; tests/live_airflow.py) parses the
provider's DAG files (three parts, `init-dags --parts 3`, and the errors file) over packs
holding broken workflows, actions, packs and YAML beside valid workflows, and everything is
checked through the REST API as a user's tools would: the valid DAGs are listed, not stale
and runnable (a worker's task-time parse while others are broken), the import error of
`attune_errors.py` names each broken file with its line and column, and a fix or a new
break is picked up on the next parse.
"""

from __future__ import annotations

import textwrap
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from attune_provider.cli import main
from tests.live_airflow import STARTUP_TIMEOUT, LiveAirflow, prepare
from tests.support import write_pack

pytestmark = pytest.mark.scheduler

INTERVAL = 10  # [dag_processor] min_file_process_interval of this Airflow, in seconds
STALE_THRESHOLD = 10  # [dag_processor] stale_dag_threshold (Airflow's default: 50)
# A change must show within one interval plus the time the two parses take; the margin
# covers a loaded 2-core machine (parses took 2-4 s here).
PICKUP_LIMIT = INTERVAL + 50.0
# A DAG gone from its file is hidden by Airflow once the file was parsed again and the
# DAG's last parse is `stale_dag_threshold` older (any deleted DAG, not only Attune's).
LEFT_OUT_LIMIT = PICKUP_LIMIT + STALE_THRESHOLD

HELLO = """
ref: good.hello
parameters:
  name: {type: string, default: world}
tasks:
  - name: greet
    action: core.echo
    input: {message: "hello {{ parameters.name }}"}
output_map:
  greeting: "{{ task.greet.result.message }}"
"""
LATER = "ref: good.later\ntasks:\n  - name: only\n    action: core.noop\n"
UNKNOWN_KEY = "ref: broken.unknown_key\nbogus: 1\ntasks:\n  - name: a\n    action: core.noop\n"
FIXED_UNKNOWN_KEY = "ref: broken.unknown_key\ntasks:\n  - name: a\n    action: core.noop\n"
BAD_YAML = "ref: broken.bad_yaml\ntasks: [\n"
BAD_ACTION = "name: bad_action\nrunner_type: teleport\n"
USES_BAD_ACTION = "ref: broken.uses\ntasks:\n  - name: a\n    action: broken.bad_action\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))


def _write_packs(packs: Path) -> None:
    write_pack(packs, "good", {"workflows/hello.yaml": HELLO, "workflows/later.yaml": LATER})
    write_pack(
        packs,
        "broken",
        {
            "workflows/unknown_key.yaml": UNKNOWN_KEY,
            "workflows/bad_yaml.yaml": BAD_YAML,
            "workflows/uses.yaml": USES_BAD_ACTION,
            "actions/bad_action.yaml": BAD_ACTION,
        },
    )
    _write(packs / "nopack" / "pack.yaml", "ref: [not, a, name]\n")  # a pack whose metadata is broken
    _write(packs / "nopack" / "workflows" / "w.yaml", LATER.replace("good.later", "nopack.w"))


class Isolation:
    """The running Airflow and what the tests read of it."""

    def __init__(self, airflow: LiveAirflow) -> None:
        self.airflow = airflow
        self.packs = airflow.root / "packs"

    def dag(self, dag_id: str) -> dict[str, Any] | None:
        found = self.airflow.request("GET", f"/api/v2/dags?dag_id_pattern={urllib.parse.quote(dag_id)}")
        return next((d for d in found["dags"] if d["dag_id"] == dag_id), None)

    def listed(self) -> set[str]:
        """The dag_ids the UI's DAG list shows (the API lists only DAGs that are not stale)."""
        return self.airflow.dag_ids()

    def import_errors(self) -> dict[str, str]:
        return self.airflow.import_errors()

    def until(self, what: str, check: Callable[[], bool], limit: float) -> float:
        return self.airflow.until(what, check, limit)


@pytest.fixture(scope="module")
def isolation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Isolation]:
    root = tmp_path_factory.mktemp("isolation-airflow")
    airflow = prepare(root, min_file_process_interval=INTERVAL)
    # the DAGs split over three part files (init-dags --parts 3), as a large deployment
    # installs them; the other live tests run the single attune_dags.py
    assert main(["init-dags", str(root / "dags"), "--parts", "3"]) == 0
    airflow.env["AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD"] = str(STALE_THRESHOLD)
    _write_packs(root / "packs")
    started = time.monotonic()
    try:
        airflow.start()
        airflow.login(STARTUP_TIMEOUT)
        airflow.wait_for_dags({"good.hello", "good.later"}, STARTUP_TIMEOUT - (time.monotonic() - started))
        yield Isolation(airflow)
    finally:
        airflow.stop()


def test_valid_dags_stay_listed_active_and_runnable(isolation: Isolation) -> None:
    assert {"good.hello", "good.later"} <= isolation.listed()
    for dag_id in ("good.hello", "good.later"):
        dag = isolation.dag(dag_id)
        assert dag is not None and dag["is_stale"] is False and dag["has_import_errors"] is False, dag
    assert not {"broken.unknown_key", "broken.bad_yaml", "broken.uses", "nopack.w"} & isolation.listed()
    airflow = isolation.airflow
    airflow.trigger("good.hello", {"name": "isolated"})
    state, _ = airflow.wait("good.hello")
    assert state == "success"  # its task's parse on the worker ran while other workflows were broken
    assert airflow.xcom("good.hello", "return_value") == {"greeting": "hello isolated"}
    assert airflow.workflow("good.hello")["status"] == "succeeded"
    files = {Path(isolation.dag(d)["fileloc"]).name for d in ("good.hello", "good.later")}  # type: ignore[index]
    assert files <= {f"attune_dags_{i}_of_3.py" for i in (1, 2, 3)}, files


def test_every_problem_is_an_import_error_of_the_errors_file(isolation: Isolation) -> None:
    isolation.until("import error recorded", lambda: "attune_errors.py" in isolation.import_errors(), 60)
    errors = isolation.import_errors()
    assert set(errors) == {"attune_errors.py"}, errors  # never attune_dags.py: it would hide every DAG
    message = errors["attune_errors.py"]
    packs = isolation.packs
    assert "workflows left out: broken.uses" in message, message
    assert f"{packs}/broken/workflows/unknown_key.yaml:2:1: error:" in message and "bogus" in message
    assert f"{packs}/broken/workflows/bad_yaml.yaml:3:1: error: invalid YAML" in message
    assert f"{packs}/broken/actions/bad_action.yaml:2:14: error: invalid value for 'runner_type'" in message
    assert f"{packs}/nopack/pack.yaml:1:6: error:" in message
    assert f"{packs}/broken/workflows/uses.yaml:4:13: error:" in message


def test_a_fix_and_a_new_break_are_picked_up_on_the_next_parse(isolation: Isolation) -> None:
    packs = isolation.packs
    (packs / "broken" / "workflows" / "unknown_key.yaml").write_text(FIXED_UNKNOWN_KEY)
    isolation.until("fixed workflow listed", lambda: "broken.unknown_key" in isolation.listed(), PICKUP_LIMIT)
    isolation.until(
        "fixed file gone from the import error",
        lambda: "unknown_key.yaml" not in isolation.import_errors().get("attune_errors.py", ""),
        PICKUP_LIMIT,
    )

    (packs / "good" / "workflows" / "later.yaml").write_text("ref: good.later\ntasks: [{name: only}]\n")
    isolation.until(
        "new break in the import error",
        lambda: f"{packs}/good/workflows/later.yaml" in isolation.import_errors().get("attune_errors.py", ""),
        PICKUP_LIMIT,
    )
    isolation.until(
        "broken workflow left out", lambda: "good.later" not in isolation.listed(), LEFT_OUT_LIMIT
    )
    hello = isolation.dag("good.hello")
    assert hello is not None and hello["is_stale"] is False, hello
    assert {"good.hello", "broken.unknown_key"} <= isolation.listed()

    for broken in ("broken", "nopack"):  # fix everything: no import error is left
        for path in (packs / broken).rglob("*.yaml"):
            path.unlink()
        _write(packs / broken / "pack.yaml", f"ref: {broken}\n")
    (packs / "good" / "workflows" / "later.yaml").write_text(LATER)
    isolation.until("no import error left", lambda: not isolation.import_errors(), PICKUP_LIMIT)
    isolation.until("repaired workflow listed", lambda: "good.later" in isolation.listed(), PICKUP_LIMIT)
