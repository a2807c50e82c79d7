"""Airflow DAG file: one DAG per valid Attune workflow on the packs path.

Packs are found in ATTUNE_PACKS_PATH / [attune] packs_path (":"-separated), else ./packs.
Broken workflows are left out and reported as this file's import error.
"""

from attune_provider.dag_factory.factory import dags_for_airflow

globals().update(dags_for_airflow())
