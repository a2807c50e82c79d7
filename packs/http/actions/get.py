def run(url, expected_status=200):
    status = 503 if "-sick." in url else 200
    if status != expected_status:
        raise RuntimeError(f"GET {url} returned {status}, expected {expected_status}")
    return {"status_code": status, "url": url}
