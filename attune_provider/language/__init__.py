"""The Attune language, without Airflow: sources, models, routing, templates, the plan."""
