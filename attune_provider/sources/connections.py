"""Airflow connections the sources feature uses: an http source's bearer token, and the
Airflow REST API that applies a source's pause states (dag_factory/pause_sync.py).

Looked up through the Task SDK (the DAG processor's parse and tasks reach connections
through their supervisor, from any secrets backend Airflow is configured with), else
through Airflow core's lookup (the command line, where there is no supervisor).
Passwords are handed to the HTTP client only: never logged, never in a message.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from attune_provider.exceptions import AttuneError


class ConnectionInfo(NamedTuple):
    host: str
    port: int | None
    schema: str
    login: str
    password: str

    def base_url(self) -> str:
        """`host` when it is a URL, else http(s)://host[:port] (schema `https` for TLS)."""
        host = self.host.rstrip("/")
        if "://" not in host:
            host = f"{'https' if self.schema == 'https' else 'http'}://{host}"
        return f"{host}:{self.port}" if self.port and host.count(":") < 2 else host


def _lookup(conn_id: str) -> Any:
    try:
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id)
    except Exception:  # noqa: BLE001 - no supervisor here (the CLI): ask Airflow core
        pass
    try:
        from airflow.models.connection import Connection

        return Connection.get_connection_from_secrets(conn_id)
    except Exception as exc:  # noqa: BLE001 - the reason is the connection, whatever raised
        raise AttuneError(f"connection '{conn_id}' not found ({type(exc).__name__})") from None


def connection(conn_id: str) -> ConnectionInfo:
    """Connection `conn_id`, or AttuneError naming it when there is none."""
    found = _lookup(conn_id)
    return ConnectionInfo(
        found.host or "", found.port, found.schema or "", found.login or "", found.password or ""
    )


def bearer_token(conn_id: str) -> str | None:
    """The password of connection `conn_id` (None when it has none)."""
    return connection(conn_id).password or None
