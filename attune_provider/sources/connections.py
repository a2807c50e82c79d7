"""Airflow connections the sources feature uses: an http source's bearer token, and the
Airflow REST API that applies a source's pause states (dag_factory/pause_sync.py).

Looked up first in `AIRFLOW_CONN_<ID>` (as Airflow's environment-variables backend, the
first it asks, would), then through the Task SDK (the DAG processor's parse and tasks
reach connections through their supervisor, from any secrets backend Airflow is
configured with), else through Airflow core's lookup (the command line).
Passwords are handed to the HTTP client only: never logged, never in a message.
"""

from __future__ import annotations

import json
import os
import urllib.parse
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


def _from_environment(conn_id: str) -> ConnectionInfo | None:
    """`AIRFLOW_CONN_<ID>` (JSON or URI) read as Airflow reads it, without importing Airflow:
    the command line stays fast and its standard output free of Airflow's logging."""
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw or not raw.strip():
        return None
    if raw.lstrip().startswith("{"):
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        port = data.get("port")
        return ConnectionInfo(
            str(data.get("host") or ""),
            int(port) if isinstance(port, int) or (isinstance(port, str) and port.isdigit()) else None,
            str(data.get("schema") or ""),
            str(data.get("login") or ""),
            str(data.get("password") or ""),
        )
    parts = urllib.parse.urlsplit(raw.strip())
    try:
        port = parts.port
    except ValueError:
        port = None
    host = urllib.parse.unquote(parts.hostname or "")
    schema = urllib.parse.unquote(parts.path.lstrip("/"))
    login = urllib.parse.unquote(parts.username or "")
    return ConnectionInfo(host, port, schema, login, urllib.parse.unquote(parts.password or ""))


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
    from_environment = _from_environment(conn_id)
    if from_environment is not None:
        return from_environment
    found = _lookup(conn_id)
    return ConnectionInfo(
        found.host or "", found.port, found.schema or "", found.login or "", found.password or ""
    )


def bearer_token(conn_id: str) -> str | None:
    """The password of connection `conn_id` (None when it has none)."""
    return connection(conn_id).password or None
