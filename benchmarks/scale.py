"""`python -m benchmarks.scale [--n 1000 5000 10000] [--quick]`: Attune at scale in the DAG processor.

For each N it writes the workload of benchmarks/generate.py (Attune packs and hand-written
DAG files) and the Attune DAG folder of `attune-airflow init-dags DIR --parts K`, and
measures, in fresh processes importing a snapshot of attune_provider taken at the start:

1. the full parse: `airflow dag-processor --num-runs 1` in a fresh AIRFLOW_HOME (SQLite),
   from process start to exit, less the same for an empty DAG folder; the metadata
   database must then hold N active DAGs and no import error, and no file may have been
   killed by `dag_file_processor_timeout` (warm cache, then cold: an empty cache);
2. memory: the peak RSS of the whole folder in one DagBag (benchmarks/child.py `load`) at
   the base N and at N, the growth per 1,000 workflows against hand-written files; the
   DAG processor's and its parsing processes' peak RSS (sampled);
3. `[dag_processor] parsing_processes` 2 against 1 (warm cache), at one N;
4. the task-time parse of one DAG (benchmarks/child.py `parse`), cold and warm cache, and
   its growth from the base N;
5. one workflow's YAML edited: the DagBag time of its DAG file against the same file
   unchanged, and, in a DAG processor left running, the time until the serialized DAG in
   the database shows the edit (at the smallest N).

`--quick`: N = 1000, one sample, targets 1, 2, 4 and 5a only. Prints a table of figures and
ratios of this run; exits 1 when a target is missed, 2 when the benchmark could not run.
Results also go to benchmarks/out/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks import generate, run
from benchmarks.run import BenchmarkError

OUT = run.OUT
BIN = Path(sys.executable).parent
WARM_PARSE = 30.0  # s: full parse, warm cache
COLD_PARSE = 60.0  # s: full parse, empty cache
RSS_GROWTH = 1.2  # x hand-written: RSS growth per workflow
SPREAD = 0.65  # parsing_processes=2 over parsing_processes=1
TASK_WARM = 1.0  # x hand-written: task-time parse, warm cache
TASK_COLD = 1.3  # x hand-written: task-time parse, empty cache
TASK_FLAT = 1.3  # growth of the task-time parse from the base N, over hand-written's
PER_PART = 1000  # workflows per DAG file part by default
POLL = 0.25  # s between looks at the metadata database
EDIT_FROM = '"a1 {{ pack.ref }}'  # the task input an edit changes (benchmarks/generate.py)


def say(message: str) -> None:
    """Progress, on stderr (the table goes to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the DAG processor, watched ------------------------------------------------------------


class StatsListener:
    """The StatsD metrics a DAG processor sends: `dag_processing.last_duration.<bundle>.<file>`
    is each file's parse (fork to result), the only place the duration of a file holding no
    DAG (attune_errors.py) is reported besides the log."""

    PREFIX = "airflow.dag_processing.last_duration.dags-folder."

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.durations: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            for line in data.decode(errors="replace").splitlines():
                name, _, rest = line.partition(":")
                if name.startswith(self.PREFIX):
                    value = float(rest.split("|", 1)[0])
                    self.durations.setdefault(name[len(self.PREFIX) :], []).append(value)

    def close(self) -> None:
        time.sleep(0.3)  # the last datagrams
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _hwm_mb(pid: int) -> float:
    """A process's peak RSS so far (VmHWM), 0 when it is gone."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


class RssMonitor:
    """Peak RSS of a DAG processor (the manager) and of the parsing processes it forks, read
    every 0.2 s: growth in a parsing process's last 0.2 s can escape it. A parsing process
    is forked from the manager, so its RSS includes the pages it shares with it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def children(self) -> list[int]:
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(self.pid).children(recursive=True)]
        return []

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for pid in [self.pid, *self.children()]:
                self.peaks[pid] = max(self.peaks.get(pid, 0.0), _hwm_mb(pid))

    def close(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        parsers = [mb for pid, mb in self.peaks.items() if pid != self.pid and mb]
        return {
            "manager_peak_mb": self.peaks.get(self.pid, 0.0),
            "parser_peak_mb": max(parsers, default=0.0),
            "parsers": len(parsers),
        }


STARTED: dict[int, subprocess.Popen[bytes]] = {}  # DAG processors running, by pid


def stop(proc: subprocess.Popen[bytes], stragglers: list[int]) -> None:
    """Stop a DAG processor we started (its process group: it and its parsing processes),
    then any of its parsing processes that outlived it, by pid."""
    for sig, grace in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    for pid in stragglers:
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    STARTED.pop(proc.pid, None)


def stop_all() -> None:
    for proc in list(STARTED.values()):
        stop(proc, [])


@dataclass
class Handle:
    """A running DAG processor and what watches it."""

    proc: subprocess.Popen[bytes]
    home: Path
    log: Path
    started: float
    stats: StatsListener
    monitor: RssMonitor
    memory: dict[str, float] = field(default_factory=dict)  # filled in when stopped

    @property
    def db(self) -> Path:
        return self.home / "airflow.db"

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        """Seconds from the processor's start until `check()` holds."""
        deadline = time.perf_counter() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise BenchmarkError(f"the DAG processor exited ({self.proc.returncode}) before {what}")
            if time.perf_counter() > deadline:
                raise BenchmarkError(f"no {what} within {timeout:.0f} s: see {self.log}")
            time.sleep(POLL)
        return time.perf_counter() - self.started


@dataclass
class Bench:
    """Where things are, the settings, and every sample taken so far."""

    work: Path
    interval: int
    timeout: int
    counter: int = 0
    samples: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    logs_kept: list[str] = field(default_factory=list)

    @property
    def snapshot(self) -> Path:
        """The provider's code as it was at the start (see `take_snapshot`)."""
        return self.work / "src"

    @property
    def template(self) -> Path:
        return self.work / "template"

    def add(self, n: int, key: str, value: Any, shown: str) -> None:
        self.samples.setdefault(str(n), {}).setdefault(key, []).append(value)
        say(f"N={n} {key}: {shown}")

    def fresh(self, name: str) -> Path:
        self.counter += 1
        path = self.work / f"{self.counter:04d}-{name}"
        shutil.rmtree(path, ignore_errors=True)
        return path

    def env(self, home: Path) -> dict[str, str]:
        """benchmarks/run.py's (fresh AIRFLOW_HOME, SQLite, no examples, import timeout 30 s),
        importing the snapshot of the provider."""
        env = run._base_env(home)
        env["PYTHONPATH"] = str(self.snapshot)
        return env

    def child(self, args: list[str], env: dict[str, str]) -> Any:
        """benchmarks/child.py in a fresh interpreter (as benchmarks/run.py runs it, but from
        the snapshot); its JSON result."""
        stem = self.fresh(f"child-{args[0]}")
        result, log = stem.with_suffix(".json"), self.work / "logs" / f"{stem.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "benchmarks.child", *args, "--json", str(result)]
        with open(log, "w", encoding="utf-8") as out:
            done = subprocess.run(
                command,
                cwd=self.snapshot,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
            )
        if done.returncode != 0 or not result.exists():
            raise BenchmarkError(f"benchmarks.child {args[0]} failed (exit {done.returncode}): see {log}")
        data = json.loads(result.read_text(encoding="utf-8"))
        result.unlink()
        log.unlink()
        return data


def take_snapshot(bench: Bench, commit: str | None) -> None:
    """A copy of attune_provider and benchmarks/child.py that every process of the run
    imports (PYTHONPATH comes before the editable install's finder): those of `commit`
    (`git archive`), or with None the working copy's files as they are. The working copy is
    shared with someone editing it: a half-made edit can break a parse, and any edit
    changes the parse cache's key (its code version) halfway through the run."""
    paths = ["attune_provider", "benchmarks/__init__.py", "benchmarks/child.py"]
    bench.snapshot.mkdir(parents=True)
    if commit is None:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(run.REPO / paths[0], bench.snapshot / paths[0], ignore=ignore)
        (bench.snapshot / "benchmarks").mkdir()
        for path in paths[1:]:
            shutil.copy2(run.REPO / path, bench.snapshot / path)
    else:
        archive = subprocess.run(
            ["git", "archive", commit, *paths], cwd=run.REPO, capture_output=True, check=True
        )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(bench.snapshot, filter="data")
    # An installed provider has its bytecode: without it, every process would compile.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(bench.snapshot)], check=True)


def migrated_template(bench: Bench) -> None:
    """One migrated SQLite database, copied into every fresh AIRFLOW_HOME."""
    bench.template.mkdir(parents=True, exist_ok=True)
    bench.child(["migrate"], bench.env(bench.template))


def processor_env(
    bench: Bench, home: Path, folder: Path, attune: Attune | None, processes: int
) -> dict[str, str]:
    env = bench.env(home)
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(folder),
        AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES=str(processes),
        AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL=str(bench.interval),
        AIRFLOW__METRICS__STATSD_ON="True",
        AIRFLOW__METRICS__STATSD_HOST="127.0.0.1",
    )
    if attune is not None:
        env.update(ATTUNE_PACKS_PATH=str(attune.packs), ATTUNE_CACHE_DIR=str(attune.cache))
    return env


@dataclass
class Attune:
    """An Attune DAG folder and the packs and cache it is parsed with."""

    folder: Path
    packs: Path
    cache: Path


@contextlib.contextmanager
def processor(
    bench: Bench, label: str, folder: Path, attune: Attune | None, processes: int, once: bool
) -> Iterator[Handle]:
    """`airflow dag-processor` in a fresh AIRFLOW_HOME, stopped on the way out whatever happens."""
    home = bench.fresh(f"home-{label}")
    home.mkdir(parents=True)
    shutil.copy2(bench.template / "airflow.db", home / "airflow.db")
    stats = StatsListener()
    env = processor_env(bench, home, folder, attune, processes)
    env["AIRFLOW__METRICS__STATSD_PORT"] = str(stats.port)
    log = bench.work / "logs" / f"{home.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [str(BIN / "airflow"), "dag-processor", *(["--num-runs", "1"] if once else [])]
    with open(log, "wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            command, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    STARTED[proc.pid] = proc
    handle = Handle(proc, home, log, started, stats, RssMonitor(proc.pid))
    try:
        yield handle
    finally:
        stop(proc, handle.monitor.children())
        handle.memory = handle.monitor.close()
        stats.close()


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Read the metadata database of a DAG processor (running or not)."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as conn:
        return list(conn.execute(sql, args))


def parsed(db: Path) -> dict[str, Any]:
    """What the metadata database holds after a parse: active DAGs, import errors, and the
    per-file parse durations Airflow stores (DagModel.last_parse_duration)."""
    errors = {name: _gist(text) for name, text in query(db, "select filename, stacktrace from import_error")}
    files = query(
        db, "select relative_fileloc, max(last_parse_duration) from dag where not is_stale group by 1"
    )
    return {
        "dags": query(db, "select count(*) from dag where not is_stale")[0][0],
        "import_errors": errors,
        "stored_seconds": {name: seconds for name, seconds in files},
    }


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Timeout)\b")


def _short(error: str) -> str:
    """An error line for the table: no exception class, no directories."""
    return re.sub(r"/\S*/", "", error.split(": ", 1)[-1])


def _gist(stacktrace: str | None) -> str:
    """An import error in a line: its exception's line (Airflow's import timeout puts links to
    its docs after it), else the last line."""
    lines = [line.strip() for line in (stacktrace or "").strip().splitlines()] or [""]
    return next((line for line in reversed(lines) if EXCEPTION_LINE.match(line)), lines[-1])[:300]


TIMED_OUT = re.compile(r"Processor for .*?rel_path=\w*Path\('([^']+)'\).*?exceeding the timeout")


def timeouts(log: Path) -> list[str]:
    """The files the DAG processor killed for running over dag_file_processor_timeout: Airflow
    records no import error for them, their DAGs are just missing."""
    text = log.read_text(encoding="utf-8", errors="replace")
    found = [m.group(1) for m in TIMED_OUT.finditer(text)]
    return found or ["?"] * text.count("exceeding the timeout")


def parse_once(
    bench: Bench, label: str, folder: Path, attune: Attune | None, processes: int
) -> tuple[dict[str, Any], dict[str, str]]:
    """The full parse: `airflow dag-processor --num-runs 1`, process start to exit; and
    which file defines each DAG."""
    with processor(bench, label, folder, attune, processes, once=True) as handle:
        try:
            code = handle.proc.wait(bench.timeout)
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{label}: the DAG processor ran over {bench.timeout} s: see {handle.log}")
        seconds = time.perf_counter() - handle.started
    if code != 0:
        raise BenchmarkError(f"{label}: the DAG processor exited {code}: see {handle.log}")
    result = {"wall": seconds, **handle.memory, **parsed(handle.db), "timeouts": timeouts(handle.log)}
    result["load_average"] = os.getloadavg()[0]  # the other work on the machine meanwhile
    result["file_seconds"] = {name: values[-1] for name, values in handle.stats.durations.items()}
    files = dict(query(handle.db, "select dag_id, relative_fileloc from dag where not is_stale"))
    _keep_log(bench, handle, bool(result["import_errors"] or result["timeouts"]))
    shutil.rmtree(handle.home, ignore_errors=True)
    return result, files


def _keep_log(bench: Bench, handle: Handle, keep: bool) -> None:
    """A run's logs (the processor's, and its parsing processes' from AIRFLOW_HOME/logs) are
    kept in benchmarks/out/scale-logs/ only when something is off."""
    if keep:
        kept = bench.work.parent / "scale-logs" / handle.home.name
        kept.mkdir(parents=True, exist_ok=True)
        shutil.move(handle.log, kept / "dag-processor.log")
        for log in (handle.home / "logs" / "dag_processor").rglob("*.log"):
            if "latest" not in log.parts:
                shutil.copy2(log, kept / log.name)
        bench.logs_kept.append(str(kept))
    else:
        handle.log.unlink(missing_ok=True)


# --- the workload ------------------------------------------------------------------------------


@dataclass
class Workload:
    """N generated workflows: Attune packs and their DAG folders, hand-written DAG files."""

    n: int
    root: Path
    parts: int
    files: dict[str, str] = field(default_factory=dict)  # dag_id -> its DAG file, from a parse

    @property
    def packs(self) -> Path:
        return self.root / "attune" / "packs"

    @property
    def hand(self) -> Path:
        return generate.dags_folder(self.root / "handwritten")

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    def folder(self, parts: int) -> Path:
        return self.root / f"dags-{parts}"

    def attune(self, cache: Path | None = None, parts: int | None = None) -> Attune:
        return Attune(self.folder(parts or self.parts), self.packs, cache or self.cache)

    def workflow_file(self, dag_id: str) -> Path:
        pack, name = dag_id.split(".", 1)
        return self.packs / pack / "workflows" / f"{name}.yaml"


PART_OF = """\
import sys
from attune_provider.dag_factory.parts import Part
pack, name, total = sys.argv[1], sys.argv[2], int(sys.argv[3])
print(next(i for i in range(1, total + 1) if Part(i, total).holds(pack, "workflows", name + ".yaml")))
"""


def part_file(bench: Bench, w: Workload, dag_id: str) -> Path:
    """The DAG file that defines `dag_id`: as a DAG processor found it, else as the
    provider's parts code says (a part killed by the timeout defines no DAG)."""
    if dag_id not in w.files and w.parts == 1:
        w.files[dag_id] = "attune_dags.py"
    if dag_id not in w.files:
        pack, name = dag_id.split(".", 1)
        command = [sys.executable, "-c", PART_OF, pack, name, str(w.parts)]
        env = bench.env(bench.work / "airflow-home")
        done = subprocess.run(command, cwd=bench.snapshot, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchmarkError(f"which part holds {dag_id}? {done.stderr.strip()[-300:]}")
        w.files[dag_id] = f"attune_dags_{done.stdout.strip()}_of_{w.parts}.py"
    return w.folder(w.parts) / w.files[dag_id]


def init_dags(bench: Bench, folder: Path, parts: int) -> None:
    """The Attune DAG folder as a user installs it."""
    command = [str(BIN / "attune-airflow"), "init-dags", str(folder)]
    command += ["--parts", str(parts)] if parts > 1 else []
    done = subprocess.run(command, capture_output=True, text=True, env=bench.env(bench.work / "airflow-home"))
    if done.returncode != 0:
        raise BenchmarkError(f"{' '.join(command[1:])} failed: {(done.stderr or done.stdout).strip()[-500:]}")


def make_workload(bench: Bench, n: int, parts: int, single: bool) -> Workload:
    root = bench.work / f"n{n}"
    generate.generate(root, n, ("attune", "handwritten"))
    workload = Workload(n, root, parts)
    init_dags(bench, workload.folder(parts), parts)
    if single and parts != 1:
        init_dags(bench, workload.folder(1), 1)
    return workload


@contextlib.contextmanager
def edited(workload: Workload, dag_id: str, tag: str) -> Iterator[str]:
    """One workflow's YAML with one task's message changed; put back on the way out."""
    path = workload.workflow_file(dag_id)
    original = path.read_text(encoding="utf-8")
    token = f"a1 edited-{tag}"
    if EDIT_FROM not in original:
        raise BenchmarkError(f"{path} has no {EDIT_FROM!r} to edit")
    path.write_text(original.replace(EDIT_FROM, f'"{token} {{{{ pack.ref }}}}'), encoding="utf-8")
    try:
        yield token
    finally:
        path.write_text(original, encoding="utf-8")


# --- the measurements ----------------------------------------------------------------------------


def _rotated(items: list[Any], by: int) -> list[Any]:
    by %= len(items)
    return items[by:] + items[:by]


def _full_parse_shown(result: dict[str, Any]) -> str:
    longest = max(result["file_seconds"].items(), key=lambda kv: kv[1], default=("-", 0.0))
    timed_out = f", {len(result['timeouts'])} killed by the timeout" if result["timeouts"] else ""
    return (
        f"{result['seconds']:.1f} s (wall {result['wall']:.1f} s), {result['dags']} DAGs,"
        f" {len(result['import_errors'])} import errors{timed_out}; longest file {longest[0]}"
        f" {longest[1]:.1f} s; peak RSS parser {result['parser_peak_mb']:.0f} MB,"
        f" manager {result['manager_peak_mb']:.0f} MB; load average {result['load_average']:.1f}"
    )


def processor_sample(
    bench: Bench, w: Workload, key: str, folder: Path, attune: Attune | None, processes: int, row_n: int = 0
) -> dict[str, Any]:
    """One full parse, less the empty folder's run measured for the table's N (`row_n`)."""
    row_n = row_n or w.n
    result, files = parse_once(bench, f"{key}-n{w.n}", folder, attune, processes)
    if attune is not None and attune.folder == w.folder(w.parts):
        w.files.update(files)
    result["seconds"] = result["wall"] - statistics.median(bench.samples[str(row_n)]["empty"])
    result["n"] = w.n
    bench.add(row_n, key, result, _full_parse_shown(result) + f" (N={w.n})")
    return result


def measure_processor(bench: Bench, w: Workload, spread: bool) -> None:
    """Targets 1 and 3: the empty folder's run, the cold parse (it warms the cache), then
    warm parses with 2 and (when `spread`) 1 parsing processes."""
    empty = bench.fresh("empty")
    empty.mkdir(parents=True)
    seconds = parse_once(bench, "empty", empty, None, 2)[0]["wall"]
    bench.add(w.n, "empty", seconds, f"{seconds:.1f} s (empty DAG folder)")
    attune = w.attune()
    processor_sample(bench, w, "cold", attune.folder, attune, 2)
    for processes in [2, 1] if spread else [2]:
        processor_sample(bench, w, f"warm{processes}", attune.folder, attune, processes)


def measure_references(bench: Bench, w: Workload, base: Workload) -> None:
    """For context, not targets: the single-file Attune folder (parts=1), warm, and the
    hand-written files of the base N through the same DAG processor (a process per file:
    minutes at N = 1,000)."""
    single = w.attune(parts=1)
    data = bench.child(["load", str(single.folder)], _attune_env(bench, single))
    bench.add(w.n, "single_load", data, f"DagBag {data['seconds']:.1f} s, {data['peak_rss_mb']:.0f} MB")
    processor_sample(bench, w, "single", single.folder, single, 2)
    processor_sample(bench, base, "hand", base.hand, None, 2, row_n=w.n)


def _attune_env(bench: Bench, attune: Attune) -> dict[str, str]:
    env = bench.env(bench.work / "airflow-home")
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(attune.folder),
        ATTUNE_PACKS_PATH=str(attune.packs),
        ATTUNE_CACHE_DIR=str(attune.cache),
    )
    return env


def _hand_env(bench: Bench, w: Workload) -> dict[str, str]:
    env = bench.env(bench.work / "airflow-home")
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(w.hand)
    return env


def _load(bench: Bench, variant: str, w: Workload) -> dict[str, Any]:
    """DagBag of the whole folder in a fresh interpreter (Attune: warm cache)."""
    if variant == "attune":
        attune = w.attune()
        folder, env = attune.folder, _attune_env(bench, attune)
    else:
        folder, env = w.hand, _hand_env(bench, w)
    data: dict[str, Any] = bench.child(["load", str(folder)], env)
    errors = "; ".join(_gist(text) for text in data["import_errors"].values())[:500]
    if data["dags"] != w.n:
        raise BenchmarkError(f"{variant}: DagBag loaded {data['dags']} of {w.n} DAGs: {errors}")
    data.pop("file_seconds")
    data["import_errors"] = errors  # shown: the errors file (no DAG) can time out
    return data


def measure_memory(bench: Bench, w: Workload, base: Workload, rounds: int) -> None:
    """Target 2: peak RSS of the folder in one DagBag, at the base N and at N, the two
    variants and the two sizes taking turns (a slope per round)."""
    for round_ in range(rounds):
        for variant in _rotated(["handwritten", "attune"], round_):
            for workload, key in ((base, f"rss_base_{variant}"), (w, f"rss_{variant}")):
                data = _load(bench, variant, workload)
                shown = f"{data['peak_rss_mb']:.0f} MB peak, {data['seconds']:.1f} s (N={workload.n})"
                bench.add(w.n, key, data, shown)


def _fastest_parse(bench: Bench, file: Path, dag_id: str, env: dict[str, str], cold: Path | None) -> float:
    """benchmarks/child.py `parse`: the fastest of run.PARSE_TRIES runs (interference only
    adds time); with `cold`, that cache directory is emptied before each."""
    fastest = float("inf")
    for _ in range(run.PARSE_TRIES):
        if cold is not None:
            shutil.rmtree(cold, ignore_errors=True)
        data = bench.child(["parse", str(file), dag_id], env)
        if not data["found"] or data["import_errors"]:
            raise BenchmarkError(f"task-time parse of {file} gave no {dag_id}: {data['import_errors']}")
        fastest = min(fastest, float(data["seconds"]))
    return fastest


def measure_parses(bench: Bench, w: Workload, rounds: int, key_n: int) -> None:
    """Target 4: the parse a worker does to run one task of the workflow in the middle;
    Attune with an empty cache, then warm from that (a cache of its own)."""
    names = generate.Names(w.n // 2)
    suffix = "" if key_n == w.n else "_base"
    for round_ in range(rounds):
        for variant in _rotated(["handwritten", "attune"], round_):
            if variant == "handwritten":
                file = w.hand / f"{names.name}.py"
                seconds = _fastest_parse(bench, file, names.dag_id, _hand_env(bench, w), None)
                bench.add(key_n, f"parse_hand{suffix}", seconds, f"{seconds * 1000:.0f} ms (N={w.n})")
                continue
            attune = w.attune(cache=bench.fresh("parse-cache"))
            env, file = _attune_env(bench, attune), part_file(bench, w, names.dag_id)
            for key, cold in (("parse_cold", attune.cache), ("parse_warm", None)):
                seconds = _fastest_parse(bench, file, names.dag_id, env, cold)
                bench.add(key_n, f"{key}{suffix}", seconds, f"{seconds * 1000:.0f} ms ({file.name}, N={w.n})")
            shutil.rmtree(attune.cache, ignore_errors=True)


def _file_time(bench: Bench, attune: Attune, file: Path) -> float:
    data = bench.child(["load", str(file)], _attune_env(bench, attune))
    if not data["dags"] or data["import_errors"]:
        raise BenchmarkError(f"DagBag of {file} gave {data['dags']} DAGs: {data['import_errors']}")
    return float(sum(data["file_seconds"].values()))


def measure_file_edit(bench: Bench, w: Workload, rounds: int) -> None:
    """Target 5a: the DagBag time of the DAG file holding a workflow just edited, against the
    same file unchanged, both with the cache warm from the processor's parses."""
    dag_id = generate.Names(w.n // 3).dag_id
    file = part_file(bench, w, dag_id)
    for round_ in range(rounds):
        seconds = _file_time(bench, w.attune(), file)
        bench.add(w.n, "file_unchanged", seconds, f"{seconds:.2f} s ({file.name})")
        with edited(w, dag_id, f"file{round_}"):
            seconds = _file_time(bench, w.attune(), file)
        bench.add(w.n, "file_edited", seconds, f"{seconds:.2f} s ({file.name}, {dag_id} edited)")


def _serialized(db: Path, dag_id: str) -> str:
    with contextlib.suppress(sqlite3.Error):
        sql = "select data from serialized_dag where dag_id = ? order by last_updated desc limit 1"
        rows = query(db, sql, dag_id)
        data = rows[0][0] if rows else None
        return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
    return ""


def _all_active(db: Path, n: int) -> bool:
    with contextlib.suppress(sqlite3.Error):
        return int(query(db, "select count(*) from dag where not is_stale")[0][0]) >= n
    return False


def measure_edit_latency(bench: Bench, w: Workload) -> None:
    """Target 5b: a DAG processor left running (warm cache); once every DAG is in the
    database, one workflow is edited: how long until its serialized DAG shows the edit."""
    dag_id = generate.Names(w.n // 3).dag_id
    attune = w.attune()
    with processor(bench, f"edit-n{w.n}", attune.folder, attune, 2, once=False) as handle:
        full = handle.wait_for(lambda: _all_active(handle.db, w.n), bench.timeout, f"{w.n} active DAGs")
        with edited(w, dag_id, "latency") as token:
            start = time.perf_counter()
            what = f"the edit of {dag_id}"
            handle.wait_for(lambda: token in _serialized(handle.db, dag_id), bench.timeout, what)
            latency = time.perf_counter() - start
        sql = "select relative_fileloc, last_parse_duration from dag where dag_id = ?"
        file, parse = query(handle.db, sql, dag_id)[0]
    _keep_log(bench, handle, bool(timeouts(handle.log)))
    shutil.rmtree(handle.home, ignore_errors=True)
    result = {"seconds": latency, "first_full": full, "file": file, "file_parse": parse}
    shown = f"{latency:.1f} s (min_file_process_interval={bench.interval} s; {file} parses in {parse:.1f} s;"
    bench.add(w.n, "edit_latency", result, f"{shown} every DAG in the DB {full:.1f} s after start)")


# --- the table ------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table."""

    name: str
    n: str
    attune: str
    reference: str
    ratio: float | None
    target: str
    ok: bool | None  # None: information, no target


def _values(samples: dict[str, list[Any]], key: str, field_: str | None = None) -> list[float]:
    return [float(v[field_] if field_ else v) for v in samples.get(key, [])]


def _med(values: list[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} MB"


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _paired(ours: list[float], theirs: list[float]) -> float | None:
    """Median of the ratios of samples of the same round."""
    return _med([a / b for a, b in zip(ours, theirs, strict=False) if b])


def _complete(n: int, results: list[dict[str, Any]]) -> bool:
    return all(r["dags"] == n and not r["import_errors"] and not r["timeouts"] for r in results)


def _outcome(n: int, result: dict[str, Any]) -> str:
    killed = f", {len(result['timeouts'])} files killed (timeout)" if result["timeouts"] else ""
    return f"{result['dags']}/{n} DAGs, {len(result['import_errors'])} import errors{killed}"


def full_parse_rows(n: int, s: dict[str, list[Any]]) -> list[Row]:
    rows = []
    for key, limit, label in (("warm2", WARM_PARSE, "warm cache"), ("cold", COLD_PARSE, "empty cache")):
        results = s.get(key, [])
        if not results:
            continue
        value = _med(_values(s, key, "seconds"))
        shown = f"wall {_s(_med(_values(s, key, 'wall')))}, empty {_s(_med(_values(s, 'empty')))}"
        ok = _at_most(value, limit)
        rows.append(
            Row(
                f"1. full parse, DAG processor ({label})",
                str(n),
                _s(value),
                shown,
                None,
                f"<= {limit:.0f} s",
                ok,
            )
        )
        dags = "; ".join(_outcome(n, r) for r in results)
        errors = "; ".join({f"{k}: {_short(v)}" for r in results for k, v in r["import_errors"].items()})
        errors += " ".join(f"killed: {', '.join(r['timeouts'])}" for r in results if r["timeouts"])
        rows.append(
            Row(
                f"   every DAG active, no import error ({label})",
                str(n),
                dags,
                (errors or "-")[:100],
                None,
                "all",
                _complete(n, results),
            )
        )
    return rows


def _longest(results: list[dict[str, Any]]) -> str:
    """The longest file's parse, and the sum over files (CPU the parsing processes took,
    roughly, where the machine is not oversubscribed)."""
    if not results:
        return "-"
    files = results[-1]["file_seconds"]
    name, seconds = max(files.items(), key=lambda kv: kv[1], default=("-", 0.0))
    return f"{name} {seconds:.1f} s (all files {sum(files.values()):.0f} s)"


def processor_info_rows(n: int, s: dict[str, list[Any]]) -> list[Row]:
    rows = [
        Row(
            "   longest file (statsd last_duration, warm)",
            str(n),
            _longest(s.get("warm2", [])),
            _longest(s.get("cold", [])) + " cold",
            None,
            "",
            None,
        )
    ]
    for key, label in (
        ("single", "single DAG file (parts=1), warm"),
        ("hand", "hand-written files of the base N"),
    ):
        if s.get(key):
            value = _med(_values(s, key, "seconds"))
            rows.append(
                Row(
                    f"   reference: {label}",
                    str(n),
                    "-",
                    f"{_s(value)}; {_outcome(s[key][-1]['n'], s[key][-1])}",
                    None,
                    "(information)",
                    None,
                )
            )
    return rows


def _slopes(s: dict[str, list[Any]], variant: str, n: int, base: int) -> list[float]:
    """MB per 1,000 workflows, per round."""
    high, low = _values(s, f"rss_{variant}", "peak_rss_mb"), _values(s, f"rss_base_{variant}", "peak_rss_mb")
    return [(h - lo) / (n - base) * 1000 for h, lo in zip(high, low, strict=False)]


def memory_rows(n: int, s: dict[str, list[Any]], base: int) -> list[Row]:
    if not s.get("rss_attune"):
        return []
    ours, theirs = _slopes(s, "attune", n, base), _slopes(s, "handwritten", n, base)
    ratio = _paired(ours, theirs)
    peak = _mb(_med(_values(s, "rss_attune", "peak_rss_mb")))
    errors = _gist(next((d["import_errors"] for d in s["rss_attune"] if d["import_errors"]), ""))
    peak += f" ({_short(errors)})" if errors else ""
    hand_peak = _mb(_med(_values(s, "rss_handwritten", "peak_rss_mb")))
    rows = [
        Row(
            f"2. RSS growth per 1,000 workflows (N={base}->{n})",
            str(n),
            f"{_med(ours):.0f} MB",
            f"{_med(theirs):.0f} MB hand",
            ratio,
            f"<= {RSS_GROWTH}x hand",
            _at_most(ratio, RSS_GROWTH),
        ),
        Row(
            "   DagBag of the whole folder, peak RSS",
            str(n),
            peak,
            f"{hand_peak} hand",
            None,
            "(information)",
            None,
        ),
    ]
    if s.get("warm2"):
        parser = _mb(_med(_values(s, "warm2", "parser_peak_mb")))
        manager = _mb(_med(_values(s, "warm2", "manager_peak_mb")))
        rows.append(
            Row(
                "   DAG processor peak RSS: parsing process",
                str(n),
                parser,
                f"manager {manager}",
                None,
                "(information)",
                None,
            )
        )
    return rows


def spread_rows(n: int, s: dict[str, list[Any]]) -> list[Row]:
    if not s.get("warm1"):
        return []
    two, one = _values(s, "warm2", "seconds"), _values(s, "warm1", "seconds")
    ratio = _paired(two, one)
    return [
        Row(
            "3. full parse, parsing_processes 2 vs 1 (warm)",
            str(n),
            _s(_med(two)),
            f"{_s(_med(one))} with 1",
            ratio,
            f"<= {SPREAD}x",
            _at_most(ratio, SPREAD),
        )
    ]


def parse_rows(n: int, s: dict[str, list[Any]], base: int | None) -> list[Row]:
    rows = []
    hand = _values(s, "parse_hand")
    for key, limit, label in (
        ("parse_warm", TASK_WARM, "warm cache"),
        ("parse_cold", TASK_COLD, "empty cache"),
    ):
        ours = _values(s, key)
        if not ours:
            continue
        ratio = _paired(ours, hand)
        rows.append(
            Row(
                f"4. task-time parse of one DAG ({label})",
                str(n),
                _s(_med(ours)),
                f"{_s(_med(hand))} hand",
                ratio,
                f"<= {limit}x hand",
                _at_most(ratio, limit),
            )
        )
        growth = _paired(ours, _values(s, f"{key}_base"))
        hand_growth = _paired(hand, _values(s, "parse_hand_base"))
        flat = None if growth is None or not hand_growth else growth / hand_growth
        if flat is not None:
            shown = f"{growth:.2f}x (hand {hand_growth:.2f}x)"
            rows.append(
                Row(
                    f"   growth N={base}->{n} ({label}), over hand's",
                    str(n),
                    shown,
                    "",
                    flat,
                    f"<= {TASK_FLAT}x",
                    _at_most(flat, TASK_FLAT),
                )
            )
    return rows


def edit_rows(n: int, s: dict[str, list[Any]], interval: int) -> list[Row]:
    rows = []
    edited_, unchanged = _values(s, "file_edited"), _values(s, "file_unchanged")
    if edited_:
        ratio = _paired(edited_, unchanged)
        rows.append(
            Row(
                "5. DagBag of the DAG file, one workflow edited",
                str(n),
                _s(_med(edited_)),
                f"{_s(_med(unchanged))} unchanged",
                ratio,
                "(information)",
                None,
            )
        )
    if s.get("edit_latency"):
        latency = _med(_values(s, "edit_latency", "seconds"))
        file = s["edit_latency"][-1]
        shown = f"interval {interval} s; {file['file']} {file['file_parse']:.1f} s"
        rows.append(
            Row(
                "5. edit -> serialized DAG in the DB (running)",
                str(n),
                _s(latency),
                shown,
                None,
                "(information)",
                None,
            )
        )
    return rows


def evaluate(samples: dict[str, dict[str, list[Any]]], ns: list[int], base: int, interval: int) -> list[Row]:
    rows: list[Row] = []
    for n in ns:
        s = samples.get(str(n), {})
        flat_base = base if s.get("parse_warm_base") else None
        rows += full_parse_rows(n, s) + processor_info_rows(n, s) + memory_rows(n, s, base)
        rows += spread_rows(n, s) + parse_rows(n, s, flat_base) + edit_rows(n, s, interval)
    return rows


HEADERS = ("measurement", "N", "Attune", "reference", "ratio", "target", "")


def _cells(row: Row) -> list[str]:
    verdict = {True: "ok", False: "MISSED", None: ""}[row.ok]
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
    return [row.name, row.n, row.attune, row.reference, ratio, row.target, verdict]


def _machine_lines(info: dict[str, Any]) -> list[str]:
    loads = [
        "/".join(f"{v:.1f}" for v in info.get(k) or []) for k in ("load_average_start", "load_average_end")
    ]
    return [
        f"machine: {info.get('cpu')}, {info.get('cores')} cores, {info.get('memory')};"
        f" {info.get('platform')}",
        f"load average {loads[0]} -> {loads[1]}; {info.get('minutes')} min; commit {info.get('commit')}"
        f" ({info.get('measured')}; working copy {'dirty' if info.get('dirty') else 'clean'});"
        f" parts {info.get('parts')};"
        f" {info.get('rounds')} rounds of task-time parses and edits at N <= {PER_PART}, 1 above",
        *([f"note: {info['note']}"] if info.get("note") else []),
    ]


def text_table(rows: list[Row], info: dict[str, Any]) -> str:
    table = [list(HEADERS), *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(["", *lines, "", *_machine_lines(info)])


def markdown(rows: list[Row], info: dict[str, Any]) -> str:
    lines = ["| " + " | ".join([*HEADERS[:-1], "result"]) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join([*lines, "", *(f"- {line}" for line in _machine_lines(info)), ""])


# --- putting it together ------------------------------------------------------------------------


def source_stamp(root: Path) -> str:
    """A digest of the provider's code under `root`."""
    digest = hashlib.sha256()
    for path in sorted((root / "attune_provider").rglob("*.py")):
        digest.update(f"{path.relative_to(root)}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=run.REPO, capture_output=True, text=True)
    return done.stdout.strip()


def default_parts(n: int) -> int:
    return max(2, math.ceil(n / PER_PART))


def measure_n(bench: Bench, args: argparse.Namespace, n: int, base: Workload) -> None:
    """Every measurement at one N; memory at the smallest and largest N only, and in a full
    run the costly ones at one N: parsing_processes=1 at `--spread-n`, the references and
    the running processor at the smallest."""
    first, last, full = n == min(args.n), n == max(args.n), not args.quick
    rounds = args.rounds if n <= PER_PART else 1
    w = make_workload(bench, n, args.parts or default_parts(n), single=first and full)
    measure_processor(bench, w, spread=n == args.spread_n)
    if first and full:
        measure_references(bench, w, base)
    if first or last:
        measure_memory(bench, w, base, 1)
    measure_parses(bench, w, rounds, n)
    if full:
        measure_parses(bench, base, rounds, n)
    measure_file_edit(bench, w, rounds)
    if first and full:
        measure_edit_latency(bench, w)
    shutil.rmtree(w.root, ignore_errors=True)


def base_workload(bench: Bench, args: argparse.Namespace) -> Workload:
    """The small N of the slopes; one DAG processor run (not measured) warms its cache and
    says which file defines each DAG."""
    base = make_workload(bench, args.base, args.parts or default_parts(args.base), single=False)
    result, base.files = parse_once(bench, f"base-n{base.n}", base.folder(base.parts), base.attune(), 2)
    if result["dags"] != base.n:
        say(f"the DAG processor found {result['dags']} of the base's {base.n} DAGs")
    return base


def measure(args: argparse.Namespace, bench: Bench) -> dict[str, Any]:
    info = run.machine()
    info.update(commit=_git("rev-parse", "--short", "HEAD"), rounds=args.rounds, interval=args.interval)
    info["base"] = args.base
    info["dirty"] = bool(_git("status", "--short", "attune_provider"))
    started = time.time()
    say(f"cores {info['cores']}, load average {info['load_average_start']}")
    take_snapshot(bench, None if args.working_copy else info["commit"])
    info["measured"] = "working copy" if args.working_copy else "git archive"
    migrated_template(bench)
    base = base_workload(bench, args)
    info["parts"] = {n: args.parts or default_parts(n) for n in args.n}
    for n in args.n:
        measure_n(bench, args, n, base)
    if args.working_copy and source_stamp(run.REPO) != source_stamp(bench.snapshot):
        info["note"] = "attune_provider changed in the working copy during the run (measured: its start)"
    if not args.working_copy and _git("rev-parse", "--short", "HEAD") != info["commit"]:
        info["note"] = f"new commits during the run (measured: {info['commit']})"
    info["load_average_end"] = os.getloadavg()
    info["minutes"] = round((time.time() - started) / 60, 1)
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scale", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    parser.add_argument("--n", type=int, nargs="+", help="workflow counts (default 1000 5000 10000)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="N = 1000, 1 round; no parsing_processes=1 run, no references, no running processor",
    )
    parser.add_argument("--parts", type=int, help=f"DAG file parts (default max(2, ceil(N/{PER_PART})))")
    parser.add_argument("--rounds", type=int, help="samples at N <= 1000 (default 2; quick: 1); 1 above")
    parser.add_argument("--base", type=int, default=100, help="the small N of memory slope and parse growth")
    parser.add_argument("--interval", type=int, default=5, help="[dag_processor] min_file_process_interval")
    parser.add_argument(
        "--spread-n", type=int, help="the N of the parsing_processes=1 run (default: the middle N)"
    )
    parser.add_argument("--timeout", type=int, default=1800, help="seconds allowed for one process")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--from-json", type=Path, help="print the table of an earlier run's scale.json")
    parser.add_argument(
        "--working-copy", action="store_true", help="measure attune_provider as it is, not as committed"
    )
    args = parser.parse_args(argv)
    args.n = sorted(set(args.n or ([1000] if args.quick else [1000, 5000, 10000])))
    args.rounds = args.rounds or (1 if args.quick else 2)
    if args.spread_n is None and not args.quick:
        args.spread_n = args.n[len(args.n) // 2]
    if args.base >= min(args.n):
        parser.error("--base must be below every N")
    return args


def _terminate(signum: int, frame: Any) -> None:
    say(f"stopping: {signal.Signals(signum).name} received")
    raise KeyboardInterrupt


def report(args: argparse.Namespace, bench: Bench, info: dict[str, Any], write: bool = True) -> int:
    rows = evaluate(bench.samples, args.n, args.base, args.interval)
    print(text_table(rows, info))
    results = {"machine": info, "samples": bench.samples, "rows": [asdict(r) for r in rows]}
    results["logs"] = bench.logs_kept
    if write:
        (args.out / "scale.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
        (args.out / "scale.md").write_text(markdown(rows, info), encoding="utf-8")
    missed = [r for r in rows if r.ok is False]
    print(f"{len(missed)} target(s) missed" if missed else "every target met")
    if bench.logs_kept:
        print("DAG processor logs kept: " + ", ".join(bench.logs_kept))
    return 1 if missed else 0


def from_json(args: argparse.Namespace) -> int:
    """The table of an earlier run, evaluated by this code."""
    earlier = json.loads(args.from_json.read_text(encoding="utf-8"))
    info = earlier["machine"]
    args.n = sorted(int(n) for n in earlier["samples"])
    args.base, args.interval = info.get("base", args.base), info.get("interval", args.interval)
    bench = Bench(args.out, args.interval, args.timeout, samples=earlier["samples"])
    bench.logs_kept = earlier.get("logs", [])
    return report(args, bench, info, write=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        return from_json(args)
    signal.signal(signal.SIGTERM, _terminate)
    work = args.out / "scale-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(work, args.interval, args.timeout)
    status = 2
    try:
        status = report(args, bench, measure(args, bench))
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        failed = {"error": str(exc), "samples": bench.samples, "logs": bench.logs_kept}
        (args.out / "scale.json").write_text(json.dumps(failed, indent=1, default=str), encoding="utf-8")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        stop_all()
        if not args.keep:
            _clean(work, logs=status == 2)
    return status


def _clean(work: Path, logs: bool) -> None:
    """Remove the work directory; after a failure, all but its logs."""
    if not logs:
        shutil.rmtree(work, ignore_errors=True)
        return
    for path in work.iterdir():
        if path.name != "logs":
            shutil.rmtree(path, ignore_errors=True)
    say(f"logs left in {work / 'logs'}")


if __name__ == "__main__":
    sys.exit(main())
