"""The root-side helper of a class's hub: what the hub may ask that takes root.

``python -I -m dnslab.classd <class>`` (isolated, cwd ``/``) listens on
``/run/dnslab/class.<class>/classd.sock`` (0660, the hub user's group) and serves, to root
and the hub's user only (SO_PEERCRED), one JSON request per line (:mod:`dnslab.lineserver`):

- ``{"op": "spawn", "user": U, "env": {...}}``: start trainee U's server in her lab (U is an
  instance of this class with a trainee; ``env`` only ``JUPYTERHUB_*`` variables, bounded),
  with its forwarder and her way to the hub's API; replies ``{"ok": true, "port": P}``, the
  loopback port the hub's proxy reaches her server on;
- ``{"op": "poll", "user": U}``: ``{"ok": true, "running": bool}``;
- ``{"op": "stop", "user": U}``: stop her server (her lab and files stay);
- ``{"op": "ping"}``.

Everything it starts for a trainee runs as her (:func:`dnslab.jupyter.start_server`) or as
the hub's user (:func:`dnslab.hub.start_relay`), and is recorded in her instance's state, so
``down`` stops it with her lab. It exits when its socket is removed (the class is gone).
"""
from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading

from . import hub, lineserver, procs
from .errors import LabError

SERVER_PROCS = ("jupyter", "forward", "hubapi")
ENV_NAME = re.compile(r"^JUPYTERHUB_[A-Z0-9_]{1,64}$")
ENV_COUNT, ENV_VALUE = 64, 4096


class ClassHelper(lineserver.LineServer):
    def __init__(self, klass: str) -> None:
        super().__init__(hub.class_dir(klass) / "classd.sock")
        self.klass = klass
        self.name = f"class helper of {klass}"
        self.uid, self.gid = hub.hub_ids()
        self.locks: dict[str, threading.Lock] = {}
        self.locks_lock = threading.Lock()

    def allowed_uids(self) -> set[int]:
        return {0, self.uid}

    def socket_group(self) -> int | None:
        return self.gid

    def operations(self):
        return {"ping": lambda req, uid: {"ok": True}, "spawn": self.op_spawn, "poll": self.op_poll,
                "stop": self.op_stop}

    def _instance(self, req: dict):
        """The class's instance named by ``user``, and the lock that serialises its server's changes."""
        from .lab import Instance
        from .state import INSTANCE
        user = req.get("user")
        st = hub.open_class(self.klass)
        if not (isinstance(user, str) and INSTANCE.match(user) and st and user in st.data["hub"]["users"]):
            raise LabError(f"no trainee {user!r} in class {self.klass}")
        inst = Instance.open(user)
        if inst.state.data.get("meta", {}).get("class") != self.klass or inst.state.owner is None:
            raise LabError(f"instance {user} is not a trainee's lab of class {self.klass}")
        with self.locks_lock:
            lock = self.locks.setdefault(user, threading.Lock())
        return inst, lock

    def op_spawn(self, req: dict, uid: int) -> dict:
        from . import jupyter
        env = req.get("env")
        if not (isinstance(env, dict) and len(env) <= ENV_COUNT
                and all(isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str) and len(v) <= ENV_VALUE
                        and "\0" not in v for k, v in env.items())):
            raise LabError(f"env: at most {ENV_COUNT} JUPYTERHUB_* variables of at most {ENV_VALUE} characters")
        inst, lock = self._instance(req)
        with lock:
            _stop_server(inst.state)
            jupyter.assign_ports([inst.state], hub.SERVER_PORTS, "127.0.0.1")
            try:
                hub.start_relay(inst, self.klass)
                jupyter.start_server(inst, hub_env=env)
            except BaseException:
                _stop_server(inst.state)
                raise
            return {"ok": True, "port": inst.state.data["jupyter"]["port"]}

    def op_poll(self, req: dict, uid: int) -> dict:
        inst, _ = self._instance(req)
        return {"ok": True, "running": all(procs.recorded_alive(inst.state, k) for k in ("jupyter", "forward"))}

    def op_stop(self, req: dict, uid: int) -> dict:
        inst, lock = self._instance(req)
        with lock:
            _stop_server(inst.state)
        return {"ok": True}


def _stop_server(state) -> None:
    """Stop a trainee's server, its forwarder and her way to the hub (by recorded PID)."""
    procs.stop_keys(state, SERVER_PROCS)
    state.data.pop("jupyter", None)
    state.save()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dnslab.classd", description=__doc__.splitlines()[0])
    ap.add_argument("klass", metavar="class")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("dnslab.classd: must run as root", file=sys.stderr)
        return 3
    if hub.open_class(args.klass) is None:
        print(f"dnslab.classd: class {args.klass} has no hub", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ClassHelper(args.klass).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
