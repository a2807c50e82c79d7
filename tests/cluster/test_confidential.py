"""Confidential workflows on the cluster (docs/confidential.md).

`scripts/cluster.sh` starts, beside the shared Celery workers worker-1..N (queue `default`),
the worker `worker-confidential` (celery hostname `wc@%h`) that consumes the queue
`attune-confidential` alone; every process has `[attune] confidential_queue` set to it, and
the variables of ATTUNE_CLUSTER_CONFIDENTIAL_ENV (here the secret API_KEY of namespace main,
as Airflow's environment-variable Variable `AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY`) are
in that worker's environment only.

Which worker ran a task: every worker logs `[<celery task id>] Executing workload in Celery:
ExecuteTask(... ti=TaskInstance(id=UUID('<task instance id>') ...` into its own log
(`log/worker-<K>.log`, `log/worker-confidential.log`) when it starts a try, and each try of a
task instance has an id of its own (`task_instance.id`, `task_instance_history.task_instance_id`).
`task_instance.hostname` is the machine's name, the same for every worker of this one-machine
cluster, so it is checked but cannot tell the workers apart.

The pack `vault`:
- `vault.rotate`: confidential, declares and reads `secrets.API_KEY`, and makes the marker
  `result-marker-4711` at run time (the string is nowhere in the definition, so finding it
  in the database or a log can only be a result stored in clear);
- `vault.routed`: confidential without secrets: every kind of task (a shell probe that
  needs the confidential worker's environment, a parallel group, with_items, a
  subworkflow and the outcome task), with a run-time marker too;
- `vault.plain`: not confidential: a shell probe that needs the secret to be absent, and
  with_items.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import CLUSTER_CONFIDENTIAL_ENV, CLUSTER_PACKS, CONFIDENTIAL_QUEUE, Cluster
from tests.live_airflow import ApiError

pytestmark = pytest.mark.cluster

RUN_TIMEOUT = 900.0  # the other modules' runs share the workers: generous, never the load alone
LIST_WORKERS_TIMEOUT = 300.0
SECRET_VARIABLE = "AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY"  # Variable attune_secret__main__API_KEY
SECRET = f"s3cr3t-{secrets.token_hex(8)}"  # this session's, so found nowhere by chance
MARKER = "result-marker-4711"  # vault.rotate's result, made at run time
ROUTED_MARKER = "routed-marker-5822"  # vault.routed's results, made at run time
CONFIDENTIAL_WORKER = "worker-confidential"
DEFAULT_QUEUE = "default"
PLAIN_RESULT = "plain-result-6933"  # vault.plain's, in clear like any plain run's

CLUSTER_CONFIDENTIAL_ENV[SECRET_VARIABLE] = SECRET

ROTATE = """
ref: vault.rotate
attributes:
  confidential: true
  secrets:
    - {key: API_KEY}
tasks:
  - name: first
    action: core.echo
    input: {message: "token {{ secrets.API_KEY }} used"}
    on_success: second
  - name: second
    action: core.echo
    input: {message: "{{ 'result-marker-' ~ (4700 + 11) }}"}
output_map:
  done: "{{ task.second.result.message }}"
"""

ROUTED = """
ref: vault.routed
attributes:
  confidential: true
tasks:
  - name: probe
    action: core.local
    input: {cmd: 'test -n "${AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY:-}"'}
    on_success: both
  - name: both
    type: parallel
    tasks:
      - name: left
        action: core.echo
        input: {message: "{{ 'routed-marker-' ~ (5800 + 22) }}"}
      - name: right
        action: core.noop
    on_success: fan
  - name: fan
    action: core.echo
    with_items: "{{ [1, 2, 3] }}"
    input: {message: "{{ 'routed-marker-' ~ (5800 + 22) }} {{ item }}"}
    on_success: call
  - name: call
    action: vault.helper
output_map:
  left: "{{ task.left.result.message }}"
  call: "{{ task.call.result }}"
"""

HELPER = """
ref: vault.helper
tasks:
  - name: inner
    action: core.echo
    input: {message: "{{ 'routed-marker-' ~ (5800 + 22) }} inner"}
output_map:
  inner: "{{ task.inner.result.message }}"
"""

PLAIN = """
ref: vault.plain
tasks:
  - name: probe
    action: core.local
    input: {cmd: 'test -z "${AIRFLOW_VAR_ATTUNE_SECRET__MAIN__API_KEY:-}"'}
    on_success: fan
  - name: fan
    action: core.echo
    with_items: "{{ [1, 2, 3, 4, 5, 6] }}"
    input: {message: "{{ 'plain-result-' ~ (6900 + 33) }} {{ item }}"}
output_map:
  count: "{{ task.fan.total_count }}"
"""


def write_vault_pack(packs: Path) -> None:
    workflows = packs / "vault" / "workflows"
    workflows.mkdir(parents=True)
    (packs / "vault" / "pack.yaml").write_text("ref: vault\n")
    for name, text in {"rotate": ROTATE, "routed": ROUTED, "helper": HELPER, "plain": PLAIN}.items():
        (workflows / f"{name}.yaml").write_text(textwrap.dedent(text).lstrip())


CLUSTER_PACKS.append(write_vault_pack)


# -- the cluster's processes, database and logs ------------------------------------------------


def home(cluster: Cluster) -> Path:
    return Path(cluster.env["ATTUNE_CLUSTER_HOME"])


def recorded_pids(cluster: Cluster) -> dict[str, int]:
    """Process name -> pid, from cluster.sh's pid files (run/<name>.pid; redis too when the
    cluster started its own)."""
    found = {}
    for path in sorted((home(cluster) / "run").glob("*.pid")):
        try:
            found[path.stem] = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return found


def _stat(pid: int | str) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def session_members(sid: int) -> list[int]:
    """Every live process of session `sid` (cluster.sh starts each process with setsid):
    Celery pool processes, API server workers, task supervisors..."""
    members = []
    for path in Path("/proc").glob("[0-9]*"):
        fields = _stat(path.name)
        if fields and int(fields[3]) == sid and fields[0] not in ("Z", "X"):
            members.append(int(path.name))
    return members


def memory_holds(pid: int, needles: list[bytes]) -> set[bytes] | None:
    """Which of `needles` are in the process's memory that is not a mapped file (heap, stack,
    anonymous mappings); None when the process is gone.

    Its environment is there: /proc/<pid>/environ is not a process's environment once it
    calls setproctitle (Airflow's and Celery's processes all do): that overwrites the
    original environment area with the title, after copying every NAME=VALUE to the heap.
    """
    found: set[bytes] = set()
    try:
        maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
            for line in maps:
                fields = line.split(maxsplit=5)
                path = fields[5] if len(fields) > 5 else ""
                if "r" not in fields[1] or (path and not path.startswith("[")):
                    continue
                if path in ("[vvar]", "[vvar_vclock]", "[vsyscall]", "[vdso]"):
                    continue
                start, end = (int(address, 16) for address in fields[0].split("-"))
                try:
                    memory.seek(start)
                    data = memory.read(end - start)
                except OSError:  # unmapped meanwhile
                    continue
                found.update(needle for needle in needles if needle in data)
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError as exc:
        raise AssertionError(f"cannot read the memory of process {pid} (kernel.yama.ptrace_scope?): {exc}")
    return found


def cluster_processes(cluster: Cluster) -> dict[int, str]:
    """Every live process of the cluster: pid -> the name of the process whose session it is
    in (Celery pool processes, API server workers, task supervisors and runners...)."""
    found = {}
    for name, pid in recorded_pids(cluster).items():
        for member in session_members(pid) or [pid]:
            found[member] = name
    return found


def run_state(cluster: Cluster, label: str) -> str | None:
    dag_id, run_id, _ = cluster.runs[label]
    rows = cluster.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
    return rows[0][0] if rows else None


def wait_for_run(cluster: Cluster, label: str, timeout: float = RUN_TIMEOUT) -> str:
    """The run's final state, read from the database every few seconds (not the API: an
    encrypted outcome XCom must not matter here)."""
    deadline = time.monotonic() + timeout
    state = None
    for look in range(1_000_000):
        if time.monotonic() > deadline:
            break
        if look % 10 == 0:
            cluster.check_alive()  # `cluster.sh status`: every process still runs
        state = run_state(cluster, label)
        if state in ("success", "failed"):
            return state
        time.sleep(3)
    raise AssertionError(f"{label} still {state} after {timeout:.0f}s:\n{cluster.log_tail('scheduler')}")


def workers_that_ran(cluster: Cluster, ti_ids: list[str]) -> dict[str, set[str]]:
    """Task instance try id -> the workers whose log shows they started it."""
    started: dict[str, set[str]] = {ti_id: set() for ti_id in ti_ids}
    for log in sorted((home(cluster) / "log").glob("worker-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "Executing workload in Celery" not in line:
                continue
            for ti_id in ti_ids:
                if ti_id in line:
                    started[ti_id].add(log.stem)
    return started


def worker_host() -> str:
    """The name a worker of this machine records as `task_instance.hostname` (Airflow's
    `[core] hostname_callable`, the default in the cluster)."""
    from airflow.utils.net import get_hostname

    return str(get_hostname())


def describe(ti: dict[str, Any]) -> str:
    index = f"[{ti['map_index']}]" if ti["map_index"] >= 0 else ""
    return f"{ti['task_id']}{index} try {ti['try_number']}"


# -- the runs ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triggered(cluster: Cluster) -> dict[str, str]:
    """The three workflows triggered at once: label -> why it could not be triggered ('' when
    it was). vault.rotate needs the `secrets.` scope, without which it is not loaded."""
    problems = {}
    for label in ("vault.rotate", "vault.routed", "vault.plain"):
        try:
            cluster.trigger(label, {}, label=label)
            problems[label] = ""
        except ApiError as exc:
            problems[label] = f"{exc}; import errors: {cluster.import_errors()}"
    return problems


def finished(cluster: Cluster, triggered: dict[str, str], label: str) -> str:
    if triggered[label]:
        pytest.fail(f"{label} could not be triggered: {triggered[label]}")
    return wait_for_run(cluster, label)


def assert_ran_on(cluster: Cluster, label: str, worker: str | None, queue: str) -> list[dict[str, Any]]:
    """Every try of the run's task instances ran on `queue`, each on `worker` (or, None,
    on any worker but the confidential one); the tries."""
    found = cluster.tries(label)
    assert found, f"{label}: no task instances"
    ran = [ti for ti in found if ti["hostname"]]  # set when a worker starts the try
    assert {ti["task_id"] for ti in ran} >= {"attune_outcome"}, found
    wrong_queue = [f"{describe(ti)}: {ti['queue']}" for ti in found if ti["queue"] != queue]
    assert not wrong_queue, f"{label}: task instances not on queue {queue}: {wrong_queue}"
    machine = worker_host()
    assert {ti["hostname"] for ti in ran} == {machine}, [(describe(ti), ti["hostname"]) for ti in ran]
    workers = workers_that_ran(cluster, [ti["id"] for ti in ran])
    for ti in ran:
        who = workers[ti["id"]]
        assert len(who) == 1, f"{label}: {describe(ti)} started by {sorted(who) or 'no worker log'}"
        if worker is None:
            assert who != {CONFIDENTIAL_WORKER}, f"{label}: {describe(ti)} ran on {CONFIDENTIAL_WORKER}"
        else:
            assert who == {worker}, f"{label}: {describe(ti)} ran on {sorted(who)}, not {worker}"
    print(f"{label}: {len(ran)} task instance tries, on {sorted(set().union(*workers.values()))}")
    return ran


# -- the tests --------------------------------------------------------------------------------


def test_the_confidential_worker_consumes_its_queue_alone(cluster: Cluster) -> None:
    """`airflow celery list-workers`: wc@<host> consumes attune-confidential only, no shared
    worker consumes it; `status` lists the confidential worker."""
    workers = int(cluster.env.get("ATTUNE_CLUSTER_WORKERS", "2"))
    command = f'set -a; . "{home(cluster)}/env"; exec airflow celery list-workers -o json'
    deadline = time.monotonic() + LIST_WORKERS_TIMEOUT
    queues: dict[str, set[str]] = {}
    while time.monotonic() < deadline:  # a busy worker may miss the 1 s inspect window: ask again
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
        try:
            found = json.loads(done.stdout or "[]")
        except ValueError:
            found = []
        queues = {entry["worker_name"]: set(entry["queues"]) for entry in found}
        if len(queues) >= workers + 1:
            break
        time.sleep(3)
    confidential = {name: q for name, q in queues.items() if name.startswith("wc@")}
    shared = {name: q for name, q in queues.items() if not name.startswith("wc@")}
    assert len(confidential) == 1 and len(shared) == workers, queues
    assert list(confidential.values()) == [{CONFIDENTIAL_QUEUE}], queues
    for name, consumed in shared.items():
        assert CONFIDENTIAL_QUEUE not in consumed and DEFAULT_QUEUE in consumed, (name, consumed)
    status = cluster.cluster("status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr[-2000:]
    line = next(row for row in status.stdout.splitlines() if row.startswith(CONFIDENTIAL_WORKER))
    assert "running" in line and CONFIDENTIAL_QUEUE in line, status.stdout


def test_every_process_has_the_confidential_queue_setting(cluster: Cluster) -> None:
    setting = f"AIRFLOW__ATTUNE__CONFIDENTIAL_QUEUE={CONFIDENTIAL_QUEUE}".encode()
    pids = {name: pid for name, pid in recorded_pids(cluster).items() if name != "redis"}
    assert {"api-server", "scheduler", "dag-processor", "triggerer", CONFIDENTIAL_WORKER} <= set(pids), pids
    for name, pid in pids.items():
        held = memory_holds(pid, [setting])
        assert held is not None, f"{name} (pid {pid}) is not running"
        assert held == {setting}, f"{name} (pid {pid}) has no {setting.decode()} in its environment"


def test_a_confidential_run_runs_only_on_the_confidential_worker(
    cluster: Cluster, triggered: dict[str, str]
) -> None:
    """vault.routed: its probe needs the secret in its environment, so the run succeeds only
    where the confidential worker runs it; every try of every task instance (parallel
    members, with_items, the subworkflow's tasks, attune_outcome) on that queue and worker."""
    assert finished(cluster, triggered, "vault.routed") == "success", cluster.log_tail(CONFIDENTIAL_WORKER)
    ran = assert_ran_on(cluster, "vault.routed", CONFIDENTIAL_WORKER, CONFIDENTIAL_QUEUE)
    kinds = {ti["task_id"] for ti in ran}
    assert {"probe", "both.left", "both.right", "fan", "attune_outcome"} <= kinds, kinds
    assert any(ti["map_index"] >= 0 for ti in ran), "no with_items task instance"
    assert any(task_id.startswith("call.") for task_id in kinds), kinds
    dag = cluster.request("GET", "/api/v2/dags/vault.routed")
    assert "confidential" in {tag["name"] for tag in dag["tags"]}, dag["tags"]


def test_a_run_reading_its_declared_secret_runs_on_the_confidential_worker(
    cluster: Cluster, triggered: dict[str, str]
) -> None:
    """vault.rotate (`secrets.API_KEY`, given only to the confidential worker) succeeds, and
    every try of its task instances ran on the confidential queue and worker."""
    assert finished(cluster, triggered, "vault.rotate") == "success", cluster.log_tail(CONFIDENTIAL_WORKER)
    ran = assert_ran_on(cluster, "vault.rotate", CONFIDENTIAL_WORKER, CONFIDENTIAL_QUEUE)
    assert {ti["task_id"] for ti in ran} == {"first", "second", "attune_outcome"}, ran


def test_a_plain_run_never_runs_on_the_confidential_worker(
    cluster: Cluster, triggered: dict[str, str]
) -> None:
    """vault.plain: its probe needs the secret to be absent; every try on the default queue
    and a shared worker."""
    assert finished(cluster, triggered, "vault.plain") == "success", cluster.log_tail("worker-1")
    ran = assert_ran_on(cluster, "vault.plain", None, DEFAULT_QUEUE)
    assert sum(ti["task_id"] == "fan" and ti["map_index"] >= 0 for ti in ran) == 6, ran


def _holders(cluster: Cluster, needle: bytes) -> tuple[dict[str, list[int]], int]:
    """Name -> the processes of that cluster session whose memory holds `needle`; how many
    processes were read."""
    holders: dict[str, list[int]] = {}
    checked = 0
    for pid, name in cluster_processes(cluster).items():
        held = memory_holds(pid, [needle])
        if held is None:  # ended meanwhile (a task's process)
            continue
        checked += 1
        if held:
            holders.setdefault(name, []).append(pid)
    return holders, checked


def test_only_the_confidential_worker_has_the_secret_in_its_environment(cluster: Cluster) -> None:
    """The environment entry NAME=<secret> is in the confidential worker (and the processes
    it started) alone: in no process of any other cluster session (scheduler, DAG
    processor, triggerer, API server and its workers, the shared workers and their pools,
    the cluster's Redis), nor in the cluster's env file."""
    pids = recorded_pids(cluster)
    assert {"api-server", "scheduler", "dag-processor", "triggerer", "worker-1", CONFIDENTIAL_WORKER} <= set(
        pids
    ), pids
    entry = f"{SECRET_VARIABLE}={SECRET}".encode()
    assert memory_holds(pids[CONFIDENTIAL_WORKER], [entry]) == {entry}, "the confidential worker lacks it"
    holders, checked = _holders(cluster, f"{SECRET_VARIABLE}=".encode())
    print(f"environment: {checked} processes of {len(pids)} sessions read; {SECRET_VARIABLE} in {holders}")
    assert set(holders) == {CONFIDENTIAL_WORKER}, f"processes with {SECRET_VARIABLE}: {holders}"
    assert SECRET not in (home(cluster) / "env").read_text(), "the secret is in the cluster's env file"


def test_no_other_process_holds_the_secret_value(cluster: Cluster, confidential_runs_over: list[str]) -> None:
    """After the confidential runs, the secret's value is in the memory of no process but the
    confidential worker's (none received it: not through the API server, the scheduler or
    the broker)."""
    holders, checked = _holders(cluster, SECRET.encode())
    print(f"secret value: {checked} processes read; held by {holders}")
    assert set(holders) == {CONFIDENTIAL_WORKER}, f"processes holding the secret's value: {holders}"


def _database_hits(cluster: Cluster, needles: list[str]) -> dict[str, list[str]]:
    """Needle -> the tables of the cluster's database with a row whose text (bytea columns
    as hex, so also their hex form) contains it."""
    connection = cluster.connect()
    hits: dict[str, list[str]] = {needle: [] for needle in needles}
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT table_schema, table_name FROM information_schema.tables "
                "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
            tables = cursor.fetchall()
            for schema, table in tables:
                for needle in needles:
                    cursor.execute(
                        f'SELECT count(*) FROM "{schema}"."{table}" AS t '
                        "WHERE strpos(t::text, %s) > 0 OR strpos(t::text, %s) > 0",
                        (needle, needle.encode().hex()),
                    )
                    if cursor.fetchone()[0]:
                        hits[needle].append(table)
    finally:
        connection.close()
    return hits


@pytest.fixture(scope="module")
def confidential_runs_over(cluster: Cluster, triggered: dict[str, str]) -> list[str]:
    """Waits for the confidential runs that could be triggered; their labels."""
    labels = [label for label in ("vault.rotate", "vault.routed") if not triggered[label]]
    for label in labels:
        wait_for_run(cluster, label)
    return labels


def test_the_secret_is_nowhere_in_the_database(cluster: Cluster, confidential_runs_over: list[str]) -> None:
    assert "vault.rotate" in confidential_runs_over, "vault.rotate did not run (see its test)"
    hits = _database_hits(cluster, [SECRET])[SECRET]
    assert not hits, f"the secret is stored in clear in table(s) {hits}"


def test_no_result_of_a_confidential_run_is_in_the_database_in_clear(
    cluster: Cluster, confidential_runs_over: list[str]
) -> None:
    """The run-time markers of vault.rotate and vault.routed: in no table (xcom,
    rendered_task_instance_fields, or any other)."""
    needles = [MARKER] if "vault.rotate" in confidential_runs_over else []
    needles += [ROUTED_MARKER] if "vault.routed" in confidential_runs_over else []
    wait_for_run(cluster, "vault.plain")
    found = _database_hits(cluster, [*needles, PLAIN_RESULT])
    assert "xcom" in found.pop(PLAIN_RESULT), "the scan misses a plain run's result in the xcom table"
    hits = {needle: tables for needle, tables in found.items() if tables}
    assert not hits, f"confidential results stored in clear: {hits}"
    assert confidential_runs_over == ["vault.rotate", "vault.routed"], "a confidential run did not run"


def test_no_log_holds_the_secret_or_a_confidential_result(
    cluster: Cluster, confidential_runs_over: list[str]
) -> None:
    """Every file under the cluster's home: the processes' logs (log/), the task and DAG
    processor logs (airflow/logs/), the env file, the parse cache."""
    needles = [SECRET, MARKER, ROUTED_MARKER]
    hits: dict[str, list[str]] = {needle: [] for needle in needles}
    root = home(cluster)
    for label in confidential_runs_over:  # the scan covers the runs' task logs
        assert list((root / "airflow" / "logs").glob(f"dag_id={label}/**/*.log")), f"no task log of {label}"
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        for needle in needles:
            if needle.encode() in data:
                hits[needle].append(str(path.relative_to(root)))
    found = {needle: paths for needle, paths in hits.items() if paths}
    assert not found, f"in clear in files of {root}: {found}"
    assert confidential_runs_over == ["vault.rotate", "vault.routed"], "a confidential run did not run"
