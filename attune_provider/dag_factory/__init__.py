"""Compile time: packs on disk -> loaded catalog -> validated -> Airflow DAGs (factory.py)."""
