"""What runs inside Airflow tasks: the Attune task operator, the outcome task, runners."""
