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
- ``{"op": "status"}``: the class's last snapshot (:mod:`dnslab.classstatus`), which it
  refreshes every :data:`POLL_EVERY` seconds into ``status.json`` (``"fresh": true``: now);
- ``{"op": "break", "fault": F, "user": U or "*"}``: apply a fault of the lab to her lab, or to
  every lab of the class (the break-and-fix drill); replies the instances it broke;
- ``{"op": "reset", "user": U}``: her lab as it was first made (:func:`dnslab.lab.reset`);
- ``{"op": "ping"}``.

Everything it starts for a trainee runs as her (:func:`dnslab.jupyter.start_server`) or as
the hub's user (:func:`dnslab.hub.start_relay`), and is recorded in her instance's state, so
``down`` stops it with her lab. It exits when its socket is removed (the class is gone).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time

from . import classstatus, hub, lineserver, procs
from .errors import LabError

SERVER_PROCS = ("jupyter", "forward", "hubapi")
ENV_NAME = re.compile(r"^JUPYTERHUB_[A-Z0-9_]{1,64}$")
ENV_COUNT, ENV_VALUE = 64, 4096
POLL_EVERY = 10.0
READY_WAIT = 300.0   # a class of many comes up in well under this


class ClassHelper(lineserver.LineServer):
    def __init__(self, klass: str) -> None:
        super().__init__(hub.class_dir(klass) / "classd.sock")
        self.klass = klass
        self.name = f"class helper of {klass}"
        self.uid, self.gid = hub.hub_ids()
        self.locks: dict[str, threading.Lock] = {}
        self.locks_lock = threading.Lock()
        self.servers: dict[str, tuple[dict[str, str], int]] = {}  # user -> (hub env, port) of her server
        self.status: dict | None = classstatus.read(klass)
        self.refresh = threading.Event()

    def allowed_uids(self) -> set[int]:
        return {0, self.uid}

    def socket_group(self) -> int | None:
        return self.gid

    def operations(self):
        return {"ping": lambda req, uid: {"ok": True}, "spawn": self.op_spawn, "poll": self.op_poll,
                "stop": self.op_stop, "status": self.op_status, "break": self.op_break, "reset": self.op_reset}

    @contextlib.contextmanager
    def _locked(self, req: dict):
        """The class's instance named by ``user``, opened and held under the lock that serialises
        her server's changes: a poll during a reset waits for her lab and server to be back (the
        hub would otherwise see her server gone and forget it)."""
        from .lab import Instance
        from .state import INSTANCE
        user = req.get("user")
        st = hub.open_class(self.klass)
        if not (isinstance(user, str) and INSTANCE.match(user) and st and user in st.data["hub"]["users"]):
            raise LabError(f"no trainee {user!r} in class {self.klass}")
        with self.locks_lock:
            lock = self.locks.setdefault(user, threading.Lock())
        with lock:
            # while `up` makes her lab it writes its state: changes wait until it is ready
            deadline = time.monotonic() + READY_WAIT
            while True:
                try:
                    inst = Instance.open(user)
                    phase = inst.state.data.get("phase")
                except LabError:
                    inst, phase = None, "absent"
                if phase == "ready":
                    break
                making = phase in ("creating", "starting") or (phase == "absent" and st.owner_alive())
                if not making or time.monotonic() > deadline:
                    raise LabError(f"the lab of {user} is {phase}, not ready")
                time.sleep(0.1)
                st = hub.open_class(self.klass) or st
            if inst.state.data.get("meta", {}).get("class") != self.klass or inst.state.owner is None:
                raise LabError(f"instance {user} is not a trainee's lab of class {self.klass}")
            yield inst

    def op_spawn(self, req: dict, uid: int) -> dict:
        from . import jupyter
        env = req.get("env")
        if not (isinstance(env, dict) and len(env) <= ENV_COUNT
                and all(isinstance(k, str) and ENV_NAME.match(k) and isinstance(v, str) and len(v) <= ENV_VALUE
                        and "\0" not in v for k, v in env.items())):
            raise LabError(f"env: at most {ENV_COUNT} JUPYTERHUB_* variables of at most {ENV_VALUE} characters")
        with self._locked(req) as inst:
            _stop_server(inst.state)
            jupyter.assign_ports([inst.state], hub.SERVER_PORTS, "127.0.0.1")
            self._start(inst, env)
            return {"ok": True, "port": inst.state.data["jupyter"]["port"]}

    def _start(self, inst, env: dict[str, str]) -> None:
        """Her server on the port in her state, with the hub's environment for it (kept, so that
        a reset of her lab brings her server back where the hub's proxy expects it)."""
        from . import jupyter
        try:
            hub.start_relay(inst, self.klass)
            jupyter.start_server(inst, hub_env=env)
        except BaseException:
            _stop_server(inst.state)
            raise
        self.servers[inst.name] = (env, inst.state.data["jupyter"]["port"])

    def op_poll(self, req: dict, uid: int) -> dict:
        with self._locked(req) as inst:
            return {"ok": True, "running": all(procs.recorded_alive(inst.state, k) for k in ("jupyter", "forward"))}

    def op_stop(self, req: dict, uid: int) -> dict:
        with self._locked(req) as inst:
            _stop_server(inst.state)
            self.servers.pop(inst.name, None)
        return {"ok": True}


    def op_status(self, req: dict, uid: int) -> dict:
        if self.status is None or req.get("fresh") is True:
            self.poll()
        return {"ok": True, "status": self.status}

    def op_break(self, req: dict, uid: int) -> dict:
        from . import faults
        fault, user = req.get("fault"), req.get("user")
        users = hub.open_class(self.klass).data["hub"]["users"] if user == "*" else [user]
        broken, skipped = [], []
        for u in users:
            with self._locked({"user": u}) as inst:
                if fault not in faults.available(inst.state.lab_dir):
                    raise LabError(f"no fault {fault!r} in lab {inst.plan.name} "
                                   f"(faults: {', '.join(faults.available(inst.state.lab_dir)) or 'none'})")
                if fault in inst.state.data.get("faults", []):
                    skipped.append(u)
                    continue
                inst.break_with(fault)
            broken.append(u)
        self.refresh.set()
        return {"ok": True, "broken": broken, "already": skipped}

    def op_reset(self, req: dict, uid: int) -> dict:
        from . import lab
        from . import jupyter
        with self._locked(req) as inst:
            running = procs.recorded_alive(inst.state, "jupyter") and inst.name in self.servers
            inst = lab.reset(inst)
            if running:  # back on its port: the hub's proxy and her browser find it again
                env, port = self.servers[inst.name]
                with jupyter.ports_lock():
                    inst.state.data["jupyter"] = {"port": port, "bind": "127.0.0.1",
                                                  "sock": str(jupyter.sock_path(inst.state))}
                    inst.state.save()
                self._start(inst, env)
        self.refresh.set()
        return {"ok": True, "reset": inst.name, "server": running}

    def poll(self) -> None:
        """A fresh snapshot of the class, kept and written to ``status.json`` (0640, the hub's group)."""
        snap = classstatus.snapshot(self.klass, self.status)
        out = classstatus.path(self.klass)
        tmp = out.with_name(f".status.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        with os.fdopen(fd, "w") as f:
            json.dump(snap, f)
        os.chown(tmp, 0, self.gid)
        os.replace(tmp, out)
        self.status = snap

    def poll_forever(self) -> None:
        """Poll every :data:`POLL_EVERY` seconds, or sooner after a drill or reset; never more than
        a third of the time (a big class on a small machine polls less often)."""
        while True:
            t0 = time.monotonic()
            try:
                self.poll()
            except Exception as exc:  # a lab going away mid-poll; the next poll sees the class as it is
                print(f"status poll failed: {exc}", file=sys.stderr, flush=True)
            took = time.monotonic() - t0
            self.refresh.wait(max(POLL_EVERY - took, 2 * took))
            self.refresh.clear()


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
    helper = ClassHelper(args.klass)
    threading.Thread(target=helper.poll_forever, daemon=True, name="status").start()
    helper.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
