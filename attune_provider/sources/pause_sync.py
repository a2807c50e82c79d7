"""A source's `status: paused` applied to DAGs that exist already (docs/sources.md).

A new DAG takes its pause state from `is_paused_upon_creation` (compiler.py). Airflow
never applies that to a DAG it knows, and a DAG file's parse may not touch Airflow's
database (the DAG processor blocks it), so a change of status is applied the way any
tool pauses a DAG: `PATCH /api/v2/dags/{dag_id}` on Airflow's REST API, as the user of
the connection `[attune] api_conn_id` (default `attune_airflow_api`: host = the API
server's URL, login and password; or a password alone, used as a bearer token).

Only a change is written (or a status seen first as paused): a user who pauses or
unpauses a DAG by hand is not overruled on every parse. What was applied is recorded in
the source store (`paused-dags.json`); a change of status that could not be applied is
tried again on every parse and reported as a warning. A status seen first is recorded
as it is (a DAG created now takes it from `is_paused_upon_creation`); when it is paused
and cannot be applied, that is only logged (the API server may still be starting).
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from collections.abc import Callable, Mapping

import requests

from attune_provider.exceptions import AttuneError
from attune_provider.language.source import Location, Problem, Severity
from attune_provider.settings import airflow_option
from attune_provider.sources.connections import ConnectionInfo, connection
from attune_provider.sources.store import Store

log = logging.getLogger(__name__)
MARKS_FILE = "paused-dags.json"
DEFAULT_API_CONN_ID = "attune_airflow_api"
TIMEOUT = 5.0


def api_conn_id() -> str:
    value = airflow_option("api_conn_id")
    return value.strip() if value and value.strip() else DEFAULT_API_CONN_ID


def changes(wanted: Mapping[str, bool], applied: Mapping[str, bool]) -> dict[str, bool]:
    """What to write: a status that changed, or one seen for the first time as paused."""
    return {dag_id: paused for dag_id, paused in wanted.items() if applied.get(dag_id, False) != paused}


class AirflowApi:
    """Pauses and unpauses DAGs through Airflow's REST API."""

    def __init__(self, info: ConnectionInfo) -> None:
        self.base = info.base_url()
        self.session = requests.Session()
        token = self._token(info) if info.login else info.password
        if not token:
            raise AttuneError("the connection has neither login and password nor a token")
        self.session.headers["Authorization"] = f"Bearer {token}"

    def _token(self, info: ConnectionInfo) -> str:
        body = {"username": info.login, "password": info.password}
        response = requests.post(f"{self.base}/auth/token", json=body, timeout=TIMEOUT)
        if response.status_code not in (200, 201):
            raise AttuneError(f"{self.base}/auth/token: HTTP {response.status_code}")
        return str(response.json()["access_token"])

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Applied, or nothing to apply (no such DAG yet: its creation will be paused)."""
        url = f"{self.base}/api/v2/dags/{urllib.parse.quote(dag_id, safe='')}"
        response = self.session.patch(url, json={"is_paused": paused}, timeout=TIMEOUT)
        if response.status_code not in (200, 404):
            raise AttuneError(f"PATCH {url}: HTTP {response.status_code}")


def sync_paused(
    wanted: Mapping[str, bool], store: Store, api: Callable[[], AirflowApi] | None = None
) -> list[Problem]:
    """Apply the changed pause states; the warnings of what could not be applied.

    A state seen for the first time is recorded even when it could not be applied: the
    DAG being created takes it from `is_paused_upon_creation`, so a later change of status
    is a change from it (and is applied, or reported)."""
    applied = _read_marks(store)
    todo = changes(wanted, applied)
    done: dict[str, bool] = {}
    problems: list[Problem] = []
    try:
        if todo:
            client = api() if api is not None else AirflowApi(connection(api_conn_id()))
            for dag_id, paused in sorted(todo.items()):
                client.set_paused(dag_id, paused)
                done[dag_id] = paused
            log.info("Attune applied its sources' pause states: %s", done)
    except (AttuneError, requests.RequestException, KeyError, ValueError) as exc:
        log.warning("Attune could not apply its sources' pause states %s: %s", todo, exc)
        left = {d: p for d, p in sorted(todo.items()) if d not in done and d in applied}
        if left:  # changes of status: reported until applied
            names = ", ".join(f"{d} ({'pause' if p else 'unpause'})" for d, p in left.items())
            message = (
                f"could not apply the sources' pause states to existing DAGs: {names}: {exc} "
                f"(the connection '{api_conn_id()}' names Airflow's REST API: docs/sources.md)"
            )
            problems.append(Problem(Location(str(store.root / MARKS_FILE)), message, Severity.WARNING))
    marks = {**applied, **{d: p for d, p in wanted.items() if d not in applied}, **done}
    if marks != applied:
        store.write_json(store.root / MARKS_FILE, dict(sorted(marks.items())))
    return problems


def _read_marks(store: Store) -> dict[str, bool]:
    try:
        data = json.loads((store.root / MARKS_FILE).read_text(encoding="utf-8"))
        return {str(k): bool(v) for k, v in data.items()} if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
