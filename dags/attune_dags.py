"""Airflow DAG file: one DAG per valid Attune workflow on the packs path.

Packs are found in ATTUNE_PACKS_PATH / [attune] packs_path (":"-separated), else ./packs.
Broken workflows are left out; their problems are the import error of attune_errors.py,
the DAG file to install beside this one.
"""

from attune_provider.dag_factory.factory import dags_for_airflow

globals().update(dags_for_airflow())
