"""A real HTTP GET with the standard library, waiting up to ~5 s for the service to listen."""

import time
import urllib.error
import urllib.request


def _status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run(url, expected_status=200):
    for attempt in range(50):
        try:
            status = _status(url)
            break
        except (urllib.error.URLError, ConnectionError):
            if attempt == 49:
                raise
            time.sleep(0.1)
    if status != expected_status:
        raise RuntimeError(f"GET {url} returned {status}, expected {expected_status}")
    return {"status_code": status, "url": url}
