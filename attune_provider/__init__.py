"""Attune for Airflow: compile declarative workflow packs (YAML) into Apache Airflow DAGs.

Importing this package is cheap: Airflow is only imported by the modules that build or
run DAGs (the compiler and the operators), never by the loader or the validator.
"""

from __future__ import annotations

__version__ = "0.5.0"
