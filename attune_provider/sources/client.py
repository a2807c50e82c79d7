"""GET from a pack registry, retried with backoff, bounded in bytes and in time.

A fetch runs inside the DAG processor's parse of the DAG file, which Airflow kills after
`dagbag_import_timeout`: every request and every retry fits in one deadline that the
caller sets. Connection errors, timeouts, 5xx and 429 (waiting what Retry-After asks when
the deadline allows) are retried with exponential backoff and jitter (tenacity); any
other 4xx fails at once. The bearer token is sent, never logged nor put in a message.
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from typing import Any

import requests
import tenacity
import urllib3

from attune_provider.exceptions import AttuneError

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 5.0  # seconds per request (connect and each read), at most
MAX_ATTEMPTS = 4  # per request: a registry still failing after ~4 s of backoff is down for this parse
_CHUNK = 64 * 1024


class FetchError(AttuneError):
    """A request that failed; `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_error(url: str, response: requests.Response) -> FetchError:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code == 429:
        return FetchError(f"{url}: {status}", retryable=True, retry_after=_retry_after(response))
    if response.status_code >= 500:
        return FetchError(f"{url}: {status}", retryable=True)
    hint = " (check the source's connection and its token)" if response.status_code in (401, 403) else ""
    return FetchError(f"{url}: {status}{hint}")


class _Wait(tenacity.wait.wait_base):
    """Exponential backoff with jitter, or what a 429's Retry-After asks for if longer."""

    def __init__(self) -> None:
        self.backoff = tenacity.wait_exponential_jitter(multiplier=0.5, max=4.0, jitter=0.5)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self.backoff(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, FetchError) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


class RegistryClient:
    """GETs below one registry, all done by `deadline` (a `time.monotonic()` value)."""

    def __init__(self, token: str | None, deadline: float) -> None:
        self.deadline = deadline
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "attune-airflow"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.attempts = 0

    def close(self) -> None:
        self.session.close()

    def get(self, url: str, limit: int) -> bytes:
        """The body of `url` (at most `limit` bytes), retrying what may pass."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, FetchError) and e.retryable),
            wait=_Wait(),
            stop=tenacity.stop_after_attempt(MAX_ATTEMPTS)
            | tenacity.stop_before_delay(max(0.0, self.deadline - time.monotonic())),
            reraise=True,
            before_sleep=lambda state: log.info(
                "Attune source: retrying %s after %s", url, state.outcome.exception() if state.outcome else ""
            ),
        )
        result: bytes = retrying(self._get_once, url, limit)
        return result

    def _get_once(self, url: str, limit: int) -> bytes:
        self.attempts += 1
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"{url}: out of time for this parse")
        try:
            with self.session.get(url, stream=True, timeout=min(REQUEST_TIMEOUT, remaining)) as response:
                if response.status_code != 200:
                    raise _status_error(url, response)
                return _read_bounded(url, response, limit, self.deadline)
        except requests.Timeout:
            raise FetchError(f"{url}: timed out", retryable=True) from None
        except requests.ConnectionError as exc:
            raise FetchError(f"{url}: cannot connect ({_reason(exc)})", retryable=True) from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.exceptions.ContentDecodingError,
            urllib3.exceptions.ProtocolError,
            urllib3.exceptions.DecodeError,
        ) as exc:
            raise FetchError(f"{url}: connection broken mid-body ({_reason(exc)})", retryable=True) from None
        except urllib3.exceptions.ReadTimeoutError:
            raise FetchError(f"{url}: timed out", retryable=True) from None
        except requests.RequestException as exc:
            raise FetchError(f"{url}: {_reason(exc)}") from None


def _read_bounded(url: str, response: requests.Response, limit: int, deadline: float) -> bytes:
    """The body, at most `limit` bytes, all read by `deadline` (a registry trickling bytes
    never gets past the parse's budget: the socket timeout bounds one read only)."""
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise FetchError(f"{url}: {declared} bytes, more than the {limit} bytes allowed")
    body = bytearray()
    while True:
        chunk = response.raw.read1(_CHUNK, decode_content=True)  # what has arrived, at most _CHUNK
        if not chunk:
            return bytes(body)
        body.extend(chunk)
        if len(body) > limit:
            raise FetchError(f"{url}: more than the {limit} bytes allowed")
        if time.monotonic() > deadline:
            raise FetchError(f"{url}: too slow: {len(body)} bytes read when this parse's time ran out")


def _reason(exc: Any) -> str:
    """The root cause of a requests error (`[Errno 111] Connection refused`, a DNS failure),
    without the adapter's wrapping; at most 200 characters, never cut inside a word."""
    cause = exc
    for _ in range(10):  # requests -> urllib3 MaxRetryError -> NewConnectionError -> OSError
        inner = getattr(cause, "reason", None)
        if not isinstance(inner, BaseException) and cause.args and isinstance(cause.args[0], BaseException):
            inner = cause.args[0]
        if not isinstance(inner, BaseException) or inner is cause:
            break
        cause = inner
    text = " ".join(str(cause).split())
    errno = re.search(r"\[Errno -?\d+\] [^'\")(]+", text)
    if errno:
        return errno.group(0).strip()
    if len(text) > 200:
        text = text[:200].rsplit(" ", 1)[0] + " ..."
    return text or type(exc).__name__
