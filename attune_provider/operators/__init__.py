"""Run time, inside Airflow tasks: the operators the compiler builds DAGs from."""
