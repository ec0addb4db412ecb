"""What runs inside a class's JupyterHub (as the hub's unprivileged user): the authenticator
that checks the logins of the class, and the spawner that asks the class helper
(:mod:`dnslab.classd`, root) to start a trainee's confined server inside her own lab.

The hub never starts, stops or sees a trainee's process itself: it asks, over the helper's
socket, for the closed list of operations the helper offers (spawn, poll, stop), naming the
hub user; the helper decides which lab that is. The server's environment (the hub's OAuth
client and API token for it) travels in the request, never on a command line.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

from jupyterhub.auth import Authenticator
from jupyterhub.spawner import Spawner
from traitlets import Integer, Unicode

from . import lineserver
from .hub import password_matches

HUB_API_PORT = 8081  # where a trainee's server finds the hub's API: 127.0.0.1 inside her own client node


def landing(handler) -> str:
    """Where a login lands: the instructor on the class's live view, a trainee ("") on her
    server, started on the way."""
    from .hub import ADMIN, VIEW
    user = handler.current_user
    return f"{handler.base_url}services/{VIEW}/" if user is not None and user.name == ADMIN else ""


class ClassAuthenticator(Authenticator):
    """The class's logins: a user name of the roster output and its password (scrypt hashes in a
    file root wrote for the hub). Nobody is the hub's admin: the instructor's powers are a role
    (:data:`dnslab.hub.INSTRUCTOR_SCOPES`)."""

    logins_file = Unicode(config=True, help="JSON {user: scrypt hash}, root's, readable by the hub")

    def _logins(self) -> dict[str, str]:
        try:
            return json.loads(Path(self.logins_file).read_text())
        except (OSError, ValueError):
            self.log.error("cannot read the class's logins from %s", self.logins_file)
            return {}

    async def authenticate(self, handler, data):
        name, password = (data or {}).get("username", ""), (data or {}).get("password", "")
        stored = self._logins().get(name)
        if not stored or not isinstance(password, str) or len(password) > 256:
            return None
        if not await asyncio.to_thread(password_matches, password, stored):
            return None
        return {"name": name, "admin": False}


class LabSpawner(Spawner):
    """A trainee's server, started by the class helper in her client node, as her."""

    helper_socket = Unicode(config=True, help="the class helper's Unix socket")
    forward_port = Integer(0, help="the host port of her server's forwarder (127.0.0.1), once started")

    async def _ask(self, op: str, **kw) -> dict:
        try:
            reply = await asyncio.to_thread(lineserver.call, Path(self.helper_socket),
                                            {"op": op, "user": self.user.name, **kw}, 120.0)
        except (OSError, TimeoutError, lineserver.Unreachable) as exc:
            raise RuntimeError(f"the class helper did not answer {op}: {exc}") from None
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "refused"))
        return reply

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        api = f"http://127.0.0.1:{HUB_API_PORT}/hub/api"  # the hub's API as her node sees it
        env["JUPYTERHUB_API_URL"] = api
        env["JUPYTERHUB_ACTIVITY_URL"] = f"{api}/users/{self.user.name}/activity"
        # her server listens on a Unix socket; jupyter_server takes a socket only with its default port
        env["JUPYTERHUB_SERVICE_URL"] = "http://127.0.0.1:8888/"
        return {k: v for k, v in env.items() if k.startswith("JUPYTERHUB_")}

    async def start(self):
        reply = await self._ask("spawn", env=self.get_env())
        self.forward_port = reply["port"]
        return f"http://127.0.0.1:{self.forward_port}"

    async def poll(self):
        if not self.forward_port:
            return 0
        try:
            reply = await self._ask("poll")
        except RuntimeError:
            return 1
        return None if reply["running"] else 0

    async def stop(self, now: bool = False):
        await self._ask("stop")
        self.forward_port = 0

    def get_state(self) -> dict:
        state = super().get_state()
        if self.forward_port:
            state["forward_port"] = self.forward_port
        return state

    def load_state(self, state: dict) -> None:
        super().load_state(state)
        self.forward_port = state.get("forward_port", 0)

    def clear_state(self) -> None:
        super().clear_state()
        self.forward_port = 0
