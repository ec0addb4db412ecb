"""Pre-start the trainees' servers of a class in the background: a JupyterHub service.

Run by the class's hub as its user (``python -m dnslab.prestart``), with a role that may only
list users and start their servers. Once the hub is up the class is already usable (a login
starts her server if it is not running yet); meanwhile this asks the hub to start every
trainee's server, :data:`AT_ONCE` at a time so that the machine stays responsive, so that a
login finds hers running and reaches a kernel in a second or two. On a small machine it steps
aside while a login's server is starting. It then idles; a server the
idle-culler stops later starts again on her next login.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

AT_ONCE = max(1, (os.cpu_count() or 1) // 2)
READY_TIMEOUT = 120.0


def api(path: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(os.environ["JUPYTERHUB_API_URL"].rstrip("/") + path, method=method,
                                 headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
            return r.status, json.loads(body) if body else {}
    except urllib.error.HTTPError as exc:
        return exc.code, {}


IN_FLIGHT: set[str] = set()   # the servers this pre-start asked for and waits on


def wait_for_logins() -> None:
    """While a server that a login asked for is starting, wait: someone is waiting for it
    (bounded: a spawn that never ends does not stop the pre-start)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        status, users = api("/users")
        if status != 200 or not any(u.get("pending") == "spawn" and u.get("name") not in IN_FLIGHT for u in users):
            return
        time.sleep(0.2)


def start(user: str) -> str:
    """Ask for her server, once no login is waiting for one, and wait until it is ready (or
    started by her login meanwhile)."""
    wait_for_logins()
    IN_FLIGHT.add(user)
    try:
        return _start(user)
    finally:
        IN_FLIGHT.discard(user)


def _start(user: str) -> str:
    status, _ = api(f"/users/{user}/server", "POST")
    if status not in (201, 202, 400):  # 400: running or pending already
        return f"{user}: {status}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        status, info = api(f"/users/{user}")
        server = (info.get("servers") or {}).get("", {})
        if status == 200 and server.get("ready"):
            return f"{user}: ready"
        if status == 200 and not server:
            return f"{user}: did not start"
        time.sleep(0.5)
    return f"{user}: not ready in {READY_TIMEOUT:.0f}s"


def main() -> int:
    trainees = sys.argv[1:]
    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        for line in pool.map(start, trainees):
            print(line, flush=True)
    while True:  # a managed service that exits is reported as a failure by the hub
        time.sleep(3600)


if __name__ == "__main__":
    sys.exit(main())
