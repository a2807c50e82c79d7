"""The separate virtualenv holding dag-factory 1.1.0 beside the same Airflow pins.

dag-factory is only a point of comparison: it is installed from the package registry on
demand into `benchmarks/.venv-dagfactory` (git-ignored), never vendored, with
`requirements/lock.txt` as constraints so that Airflow and its dependencies are the very
versions the provider is measured with. When that cannot be done (no registry, no uv,
no pip), the benchmark skips the dag-factory column and says why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / "benchmarks" / ".venv-dagfactory"
REQUIREMENTS = (
    "dag-factory==1.1.0",
    "apache-airflow==3.3.2",
    "apache-airflow-providers-standard",
    "apache-airflow-providers-http",
)
CHECK = "import dagfactory, airflow; assert dagfactory.__version__ == '1.1.0', dagfactory.__version__"


@dataclass
class DagFactoryEnv:
    python: Path | None
    note: str


def _uv() -> str | None:
    local = REPO / ".venv" / "bin" / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def _run(command: list[str], log: Path) -> None:
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        subprocess.run(command, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=900)


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    done = subprocess.run([str(python), "-c", CHECK], capture_output=True, timeout=300)
    return done.returncode == 0


def _install(work: Path, log: Path) -> None:
    """Create the venv and install the pins: with uv when there is one, else with pip."""
    requirements = work / "dagfactory.in"
    requirements.write_text("\n".join(REQUIREMENTS) + "\n", encoding="utf-8")
    constraints = REPO / "requirements" / "lock.txt"
    python = VENV / "bin" / "python"
    uv = _uv()
    if uv is not None:
        lock = work / "dagfactory-lock.txt"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        _run(
            [uv, "pip", "compile", str(requirements), "-c", str(constraints), "-p", version, "-o", str(lock)],
            log,
        )
        _run([uv, "venv", "-q", "--python", sys.executable, str(VENV)], log)
        install = [uv, "pip", "install", "-q", "--compile-bytecode", "--python", str(python)]
        _run([*install, "-r", str(lock)], log)
        return
    _run([sys.executable, "-m", "venv", str(VENV)], log)
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements), "-c", str(constraints)], log)


def ensure(work: Path) -> DagFactoryEnv:
    """The venv's python, creating the venv when it is missing or broken."""
    python = VENV / "bin" / "python"
    if _works(python):
        return DagFactoryEnv(python, "dag-factory 1.1.0 in benchmarks/.venv-dagfactory")
    if os.environ.get("ATTUNE_BENCH_NO_INSTALL"):
        return DagFactoryEnv(None, "dag-factory skipped: ATTUNE_BENCH_NO_INSTALL is set")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "dagfactory-install.log"
    try:
        if VENV.exists():
            shutil.rmtree(VENV)
        _install(work, log)
    except (OSError, subprocess.SubprocessError) as exc:
        return DagFactoryEnv(None, f"dag-factory skipped: could not install it ({exc}; see {log})")
    if not _works(python):
        return DagFactoryEnv(None, f"dag-factory skipped: installed but not importable (see {log})")
    return DagFactoryEnv(python, "dag-factory 1.1.0 installed into benchmarks/.venv-dagfactory")
