"""What a trainee has, for the tests that act as one: her JupyterLab's HTTP API (kernels, terminals,
contents) through her forwarded port and token. Nothing here uses root's view of the machine.
"""
from __future__ import annotations

import base64
from http.client import HTTPException
import json
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request


_UNVERIFIED = ssl.create_default_context()
_UNVERIFIED.check_hostname, _UNVERIFIED.verify_mode = False, ssl.CERT_NONE  # a test class's own certificate


def http(url: str, method: str = "GET", body: dict | None = None, timeout: float = 30,
         headers: dict[str, str] | None = None, opener=None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={**({"Content-Type": "application/json"} if body is not None else {}),
                                          **(headers or {})})
    try:
        with (opener.open(req, timeout=timeout) if opener else
              urllib.request.urlopen(req, timeout=timeout, context=_UNVERIFIED)) as r:
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
        return http(f"{self.base}{path}", method, body, timeout, headers={"Authorization": f"token {self.token}"})

    def websocket(self, path: str, timeout: float):
        import websocket
        scheme = "wss" if self.base.startswith("https") else "ws"
        return websocket.create_connection(f"{scheme}://{self.base.split('//')[1]}{path}", timeout=timeout,
                                           header=[f"Authorization: token {self.token}"],
                                           sslopt={"cert_reqs": 0})


    # -- kernels
    def execute(self, code: str, timeout: float = 120, keep: bool = False) -> tuple[str, list[str]]:
        """Run ``code`` in a new kernel of hers (shut down after, unless ``keep``); returns
        (stdout text, error tracebacks)."""
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
                replied = idle = False  # shell's reply and iopub's idle: either may come first
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline and not (replied and idle):
                    reply = json.loads(ws.recv())
                    if reply.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                        continue
                    kind = reply["msg_type"]
                    if kind == "stream":
                        out.append(reply["content"]["text"])
                    elif kind == "error":
                        errors.append("\n".join(reply["content"]["traceback"]))
                    elif kind == "execute_reply":
                        replied = True
                    elif kind == "status" and reply["content"].get("execution_state") == "idle":
                        idle = True
            finally:
                ws.close()
        finally:
            if not keep:
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


class HubTrainee(Trainee):
    """A trainee of a class with a hub: she logs in with her user name and password (the login
    form, as her browser does), and works through her server behind the hub with an API token
    she makes herself (as /hub/token lets her)."""

    def __init__(self, hub: str, user: str, password: str) -> None:
        import http.cookiejar
        self.hub, self.user = hub.rstrip("/"), user
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar),
                                                  urllib.request.HTTPSHandler(context=_UNVERIFIED))
        self.status, _ = self.login(password)
        self.base = f"{self.hub}/user/{user}"
        self.token = self.make_token() if self.status == 200 else ""

    def xsrf(self) -> str:
        return next((c.value for c in self.jar if c.name == "_xsrf"), "")

    def login(self, password: str) -> tuple[int, str]:
        """Post the login form; returns (status, the URL it ended on)."""
        http(f"{self.hub}/hub/login", opener=self.opener)
        form = urllib.parse.urlencode({"username": self.user, "password": password, "_xsrf": self.xsrf()}).encode()
        req = urllib.request.Request(f"{self.hub}/hub/login?next=", data=form)
        try:
            with self.opener.open(req, timeout=30) as r:
                return r.status, r.geturl()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.geturl()

    def hub_api(self, path: str, method: str = "GET", body: dict | None = None) -> tuple[int, bytes]:
        """The hub's REST API with her login cookie (as the hub's own pages use it)."""
        return http(f"{self.hub}/hub/api{path}", method, body, headers={"X-XSRFToken": self.xsrf()},
                    opener=self.opener)

    def make_token(self) -> str:
        status, body = self.hub_api(f"/users/{self.user}/tokens", "POST", {"note": "tests"})
        assert status == 201, (status, body)
        return json.loads(body)["token"]

    def wait_server(self, timeout: float = 60) -> float:
        """Until her server answers through the hub (started at login); returns the seconds waited."""
        t0, seen = time.monotonic(), None
        while time.monotonic() - t0 < timeout:
            status, body = self.hub_api(f"/users/{self.user}")
            user = json.loads(body) if status == 200 else {}
            api = self.api("/api/status") if user.get("server") else None
            if api and api[0] == 200:
                return time.monotonic() - t0
            seen = (status, {k: user.get(k) for k in ("server", "pending", "last_activity")},
                    api and (api[0], api[1][:300]))
            time.sleep(0.1)
        raise AssertionError(f"the server of {self.user} did not come up in {timeout:.0f}s; last seen "
                             f"(hub status, her record, her server's answer): {seen}")
