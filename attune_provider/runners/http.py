"""`http-request` (`core.http`) through apache-airflow-providers-http's `HttpHook`.

Two ways to say where the request goes:

- `url`: a full URL, requested as it is by a hook with no Airflow Connection (no auth,
  headers or options besides the parameters).

Both go through `HttpHook.run` (auth types, extra options and SRV failover of the
Connection come with it). A string `body` of a GET is sent as Airflow's HTTP hook sends a
GET's data: as query parameters.
- `http_conn_id` (default `http_default`) + `endpoint`: the hook resolves the Connection
  (host, schema, port, login/password as basic auth, extra headers and options such as
  `verify` or `timeout`) and joins its base URL with the endpoint.

Giving `url` together with `http_conn_id` or `endpoint` is an error. `method` defaults to
GET, `headers` are sent as strings, `body` is sent as JSON when it is not a string (and as
it is when it is), `timeout` is seconds for the connection and for each read.

The result is `{status_code, headers, body}`; `body` is the parsed JSON when the response
says it is JSON (`application/json` or `+json`) and parses, else the text. A status of
400 or more is the failure `HTTPError` that keeps the result; a request that gets no
response fails with the requests exception's class name (`ConnectionError`,
`ReadTimeout`, `ConnectTimeout`, ...), and a missing Connection with
`AirflowNotFoundException`.
"""

from __future__ import annotations

import logging
from typing import Any

from attune_provider.runners.base import ActionFailed, Invocation, error_of

log = logging.getLogger(__name__)

DEFAULT_CONN_ID = "http_default"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def response_body(response: Any) -> Any:
    """The parsed JSON of a JSON response, else its text."""
    if _is_json(response.headers.get("Content-Type", "")) and response.content:
        try:
            return response.json()
        except ValueError:
            log.warning("the response says it is JSON but does not parse; keeping it as text")
    return response.text


def _headers(given: Any) -> dict[str, str]:
    if not given:
        return {}
    return {str(key): str(value) for key, value in dict(given).items()}


class HttpRunner:
    def __init__(self) -> None:
        self._session: Any = None

    def run(self, invocation: Invocation) -> Any:
        params = invocation.params
        method = str(params.get("method") or "GET").upper()
        url = params.get("url")
        if url and (params.get("http_conn_id") or params.get("endpoint")):
            raise ActionFailed(
                {"type": "ConfigurationError", "message": "give either 'url' or 'http_conn_id' + 'endpoint'"}
            )
        try:
            response = self._send(method, url, params, invocation.quiet)
            result = {
                "status_code": response.status_code,
                "headers": dict(response.headers),
                "body": response_body(response),
            }
        except Exception as exc:  # noqa: BLE001 - no response: connection, timeout, missing Connection
            raise ActionFailed(error_of(exc)) from exc
        finally:
            self.kill()
        shown = "(URL not logged: the workflow is confidential)" if invocation.quiet else response.url
        log.info("%s %s -> %s %s", method, shown, response.status_code, response.reason)
        if response.status_code >= 400:
            message = f"{method} {response.url} returned {response.status_code} {response.reason}".rstrip()
            raise ActionFailed({"type": "HTTPError", "message": message}, result)
        return result

    def _send(self, method: str, url: str | None, params: dict[str, Any], quiet: bool) -> Any:
        """The request through `HttpHook.run`: the Connection's auth type, extra headers and
        options (`verify`, `proxies`, SRV failover...) as any Airflow HTTP task gets them."""
        from airflow.providers.http.hooks.http import HttpHook
        from airflow.sdk import Connection

        runner = self

        class _Hook(HttpHook):
            """Keeps the session it opens, so that `kill()` can close it mid-request; for a
            full `url`, a blank Connection and the URL as it is."""

            def get_conn(self, *args: Any, **kwargs: Any) -> Any:
                runner._session = super().get_conn(*args, **kwargs)
                return runner._session

            @classmethod
            def get_connection(cls, conn_id: str | None) -> Any:
                if conn_id is None:
                    return Connection(conn_id="attune_url", conn_type="http")
                return super().get_connection(conn_id)

            def url_from_endpoint(self, endpoint: str | None) -> str:
                return str(endpoint) if url else super().url_from_endpoint(endpoint)

        conn_id = None if url else (params.get("http_conn_id") or DEFAULT_CONN_ID)
        hook = _Hook(method=method, http_conn_id=conn_id)  # type: ignore[arg-type]
        endpoint = str(url) if url else params.get("endpoint")
        options: dict[str, Any] = {"check_response": False}  # a status >= 400 is checked above
        if params.get("timeout") is not None:
            options["timeout"] = float(params["timeout"])
        body = params.get("body")
        kwargs: dict[str, Any] = {}
        if isinstance(body, (str, bytes)):
            kwargs["data"] = body
        elif body is not None:
            kwargs["json"] = body
        shown = "(URL not logged: the workflow is confidential)" if quiet else (url or endpoint or "/")
        log.info("%s %s", method, shown)
        return hook.run(
            endpoint=endpoint, headers=_headers(params.get("headers")), extra_options=options, **kwargs
        )

    def kill(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()
