"""One Airflow home per test session, set up before anything imports Airflow."""

from __future__ import annotations

import base64
import os
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="attune-airflow-home-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "False"
# a deployment's airflow.cfg has a Fernet key; confidential runs refuse to run without one
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", base64.urlsafe_b64encode(os.urandom(32)).decode())
# Airflow freezes its DAGs folder when first imported: make it the provider's DAG file
# (what `attune-airflow run` uses), whichever test module imports Airflow first.
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(
    Path(__file__).resolve().parent.parent / "attune_provider" / "airflow_dags"
)
os.environ.pop("ATTUNE_PACKS_PATH", None)
os.environ.pop("AIRFLOW__ATTUNE__PACKS_PATH", None)
os.environ.pop("ATTUNE_SOURCES", None)  # workflow sources: only the tests about them set one
os.environ.pop("AIRFLOW__ATTUNE__SOURCES", None)
os.environ["ATTUNE_SOURCES_DIR"] = str(_HOME / "attune_sources")

REPO = Path(__file__).resolve().parent.parent
