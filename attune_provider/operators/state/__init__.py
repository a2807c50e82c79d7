"""What tasks share through Airflow: the outcome XCom protocol, the template scope, secrets."""
