"""Packs -> validated model -> Airflow DAGs: source, spec, loader, validator, graph, compiler."""
