"""One Airflow home per test session, set up before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="attune-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
os.environ.pop("ATTUNE_PACKS_PATH", None)
os.environ.pop("AIRFLOW__ATTUNE__PACKS_PATH", None)

REPO = Path(__file__).resolve().parent.parent
