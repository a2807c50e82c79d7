"""Airflow DAG file that holds no DAG: the problems of the Attune packs, as its import error.

Install it beside attune_dags.py. Airflow hides every DAG of a file that has an import
error, so the workflows' problems (FILE:LINE:COL each) are reported from this file, and
the DAGs of the valid workflows in attune_dags.py stay listed and runnable.
"""

from attune_provider.dag_factory.factory import errors_for_airflow

globals().update(errors_for_airflow())
