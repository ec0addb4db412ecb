"""What a trainee has, for the tests that act as one: her JupyterLab's HTTP API (kernels, terminals,
contents) through her forwarded port and token. Nothing here uses root's view of the machine.
"""
from __future__ import annotations

import base64
from http.client import HTTPException
import json
import time
import urllib.error
import urllib.parse
import urllib.request


def http(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"} if body is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError, HTTPException):  # refused, reset, closed
        return 0, b""


class Trainee:
    """A trainee at her browser: the URL she was given (with its token)."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.port = parts.port
        self.token = urllib.parse.parse_qs(parts.query)["token"][0]

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
        sep = "&" if "?" in path else "?"
        return http(f"{self.base}{path}{sep}token={self.token}", method, body, timeout)

    def websocket(self, path: str, timeout: float):
        import websocket
        return websocket.create_connection(f"ws://{self.base.split('//')[1]}{path}?token={self.token}", timeout=timeout)

    # -- kernels
    def execute(self, code: str, timeout: float = 120) -> tuple[str, list[str]]:
        """Run ``code`` in a new kernel of hers; returns (stdout text, error tracebacks)."""
        from jupyter_client.session import Session
        status, body = self.api("/api/kernels", "POST", {})
        assert status == 201, (status, body)
        kid = json.loads(body)["id"]
        try:
            ws = self.websocket(f"/api/kernels/{kid}/channels", timeout)
            try:
                msg = Session(username="trainee").msg("execute_request", {
                    "code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True})
                msg["channel"] = "shell"
                ws.send(json.dumps(msg, default=str))
                out, errors = [], []
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    reply = json.loads(ws.recv())
                    if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                        continue
                    kind = reply["msg_type"]
                    if kind == "stream":
                        out.append(reply["content"]["text"])
                    elif kind == "error":
                        errors.append("\n".join(reply["content"]["traceback"]))
                    elif kind == "execute_reply":
                        break
            finally:
                ws.close()
        finally:
            self.api(f"/api/kernels/{kid}", "DELETE")
        return "".join(out), errors

    def run(self, code: str, timeout: float = 120) -> dict:
        """Run ``code`` that prints ``RESULT`` + JSON; returns that JSON."""
        text, errors = self.execute(code, timeout)
        assert not errors and "RESULT" in text, f"kernel output:\n{text}\nerrors:\n{''.join(errors)}"
        return json.loads(text.split("RESULT", 1)[1])

    # -- terminals
    def terminal(self, command: str, timeout: float = 60) -> str:
        """Type ``command`` in a new terminal of hers; returns what it printed (until it ends)."""
        status, body = self.api("/api/terminals", "POST", {})
        assert status == 200, (status, body)
        name = json.loads(body)["name"]
        try:
            ws = self.websocket(f"/terminals/websocket/{name}", timeout)
            try:
                ws.send(json.dumps(["stdin", f"{command}; echo DONE$((6*7))\r"]))
                text, deadline = "", time.monotonic() + timeout
                while "DONE42" not in text and time.monotonic() < deadline:
                    msg = json.loads(ws.recv())
                    if msg[0] == "stdout":
                        text += msg[1]
            finally:
                ws.close()
        finally:
            self.api(f"/api/terminals/{name}", "DELETE")
        return text.split("DONE42")[0]

    # -- files
    def put(self, path: str, data: bytes | str) -> int:
        """Save a file in her home through the contents API (as her browser does)."""
        raw = data.encode() if isinstance(data, str) else data
        status, _ = self.api(f"/api/contents/{urllib.parse.quote(path)}", "PUT",
                             {"type": "file", "format": "base64", "content": base64.b64encode(raw).decode()})
        return status

    def get(self, path: str) -> tuple[int, bytes]:
        status, body = self.api(f"/api/contents/{urllib.parse.quote(path)}?content=1&format=base64&type=file")
        if status != 200:
            return status, body
        return status, base64.b64decode(json.loads(body)["content"])
