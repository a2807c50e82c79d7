"""Local stand-ins for a deployment database, and a tiny local service to health-check.

create_deployment_record starts a small HTTP service on 127.0.0.1 (a detached process
that stops by itself after a few minutes) standing in for the deployed application: its
/health answers 200, or 503 when the app name ends in "-sick".
"""

import hashlib
import socket
import subprocess
import sys
import textwrap

SERVICE = textwrap.dedent(
    """
    import sys, threading
    from http.server import BaseHTTPRequestHandler, HTTPServer
    sick = sys.argv[2].endswith("-sick")
    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            status = 503 if sick or self.path != "/health" else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"sick" if status != 200 else b"ok")
        def log_message(self, *args):
            pass
    server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Health)
    threading.Timer(float(sys.argv[3]), server.shutdown).start()
    server.serve_forever()
    """
)


def _start_service(app_name: str, lifetime: float = 300.0) -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(port), app_name, str(lifetime)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return port


def run(**params):
    if "status" in params:  # update_deployment_status
        return {"deployment_id": params["deployment_id"], "status": params["status"]}
    if "rollback" in params:  # cleanup_resources
        return {"deployment_id": params.get("deployment_id"), "cleaned": True, "rolled_back": params["rollback"]}
    key = f"{params['app_name']}-{params['version']}-{params['environment']}"
    deployment_id = "dep-" + hashlib.sha1(key.encode()).hexdigest()[:8]
    port = _start_service(params["app_name"])
    return {"id": deployment_id, "health_url": f"http://127.0.0.1:{port}/health"}
