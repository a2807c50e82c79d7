"""The bearer token of an http source: its Airflow connection's password.

Looked up through the Task SDK (the DAG processor's parse and tasks reach connections
through their supervisor, from any secrets backend Airflow is configured with), else
through Airflow core's lookup (the command line, where there is no supervisor). The
token is returned to the HTTP client only: never logged, never in a message.
"""

from __future__ import annotations

from attune_provider.exceptions import AttuneError


def bearer_token(conn_id: str) -> str | None:
    """The password of connection `conn_id` (None when it has none)."""
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id).password or None
    except Exception:  # noqa: BLE001 - no supervisor here (the CLI): ask Airflow core
        pass
    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id).password or None
    except Exception as exc:  # noqa: BLE001 - the reason is the connection, whatever raised
        raise AttuneError(f"connection '{conn_id}' not found ({type(exc).__name__})") from None
