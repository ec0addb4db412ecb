"""The root-side helper of one instance: what a trainee's code may ask that truly needs root.

A trainee drives her own lab herself (her daemons, files and namespaces are hers); what she
cannot do is judge it the way the grader does: checks ask from any node of the lab, through
sockets opened inside each node's namespace, which takes root. So the broker offers a closed
list of operations, nothing else:

- ``{"op": "check", "name": "www-via-unbound"}`` (``name`` optional: every check;
  ``lang`` optional): ``{"ok": true, "results": [CheckResult.to_dict(), ...]}``, the very
  verdicts the grader will see;
- ``{"op": "status"}``: the instance's nodes, processes and whether they answer;
- only where the trainee cannot enter her nodes herself (the docker backend: containers are
  reached through the engine, which takes root): ``{"op": "exec", "node": N, "argv": [...],
  "seconds": s}`` runs a command on one of *her* nodes *with her rights* (at most
  ``EXEC_ARGS`` arguments, ``EXEC_TIMEOUT`` seconds, ``EXEC_OUTPUT`` bytes of output back), and
  ``{"op": "reload", "node": N}`` runs the node's reload commands the same way and waits until
  it answers. On the netns backend both are refused: she does them herself;
- ``{"op": "unblock", "node": N}``: her node's firewall opened again (what a fault blocks in
  its namespace: the namespace is root's on both backends), ``{"ok": true, "was_blocked": b}``;
- ``{"op": "capture", "node": N, "packets": n, "seconds": s, "filter": "udp port 53"}``: what
  crosses her node's interfaces, as a pcap (base64), bounded (:mod:`dnslab.capture`: tcpdump
  writes raw packets and dissects none with root's rights).

``python -I -m dnslab.broker <instance>`` (isolated: no path of anyone else's on its
``sys.path``, working directory ``/``) listens on ``/run/dnslab/<instance>/control.sock``
(mode 0660, group of the instance's trainee, in root's run dir) and serves one JSON request
per line, one JSON reply per line (:mod:`dnslab.lineserver`). Only root and the instance's
trainee (SO_PEERCRED) are served. It runs in
the trainee's cgroup, so flooding it costs only her own budget. It exits by itself when its
socket disappears; ``down`` and ``gc`` stop it by its recorded PID.
Clients: :func:`call` (the trainee API, the grader); :func:`ensure` starts it.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from . import lineserver, procs, safeio
from .errors import LabError
from .state import State, run_root

SOCKET_NAME = "control.sock"
EXEC_ARGS, EXEC_TIMEOUT, EXEC_OUTPUT = 64, 120.0, 1 << 20


class BrokerError(LabError):
    """The instance's helper cannot be reached (not running, refused)."""

    exit_code = 3


def socket_path(instance: str) -> Path:
    return run_root() / instance / SOCKET_NAME


def log_path(state: State) -> Path:
    return state.dir / "broker.log"


# ---------------------------------------------------------------- client side

def call(instance: str | None, op: str, timeout: float = 30.0, **kw: Any) -> dict:
    """Send one request to an instance's broker and return its reply (``{"ok": ..., ...}``).

    ``instance`` None means ``$DNSLAB_INSTANCE`` (set in every trainee process).

    :raises BrokerError: no broker for that instance, or it refused this user
    """
    instance = instance or os.environ.get("DNSLAB_INSTANCE")
    if not instance:
        raise BrokerError("which instance? (DNSLAB_INSTANCE is not set)")
    path = socket_path(instance)
    try:
        return lineserver.call(path, {"op": op, **kw}, timeout=timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        raise BrokerError(f"the lab helper of instance {instance} is not running ({path} does not answer); "
                          "ask your instructor to restart it (dnslab up ... --jupyter starts it)") from None
    except PermissionError:
        raise BrokerError(f"instance {instance} is not yours: permission denied on {path}") from None
    except TimeoutError:
        raise BrokerError(f"the lab helper of instance {instance} did not reply to {op!r} in {timeout:.0f}s") from None
    except lineserver.Unreachable:
        raise BrokerError(f"the lab helper of instance {instance} closed the connection (refused?)") from None


def ensure(state: State, timeout: float = 30.0) -> int:
    """Start the instance's broker unless it runs; returns its PID once it answers ``status``.

    :raises BrokerError: it exited or did not answer (with its log's tail)
    """
    from . import confine
    if procs.recorded_alive(state, "broker") and socket_path(state.name).exists():
        return state.data["procs"]["broker"]["pid"]
    sock = socket_path(state.name)
    proc = procs.spawn(state, "broker", [*confine.join(state, "broker"), sys.executable, "-I", "-m", "dnslab.broker",
                                           state.name, "--socket", str(sock)], log_path(state), cwd="/",
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                              **{k: v for k, v in os.environ.items() if k in ("DNSLAB_RUN", "DNSLAB_LABS")}})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BrokerError(f"the broker of {state.name} exited ({proc.returncode}): {safeio.tail(log_path(state))}")
        try:
            if sock.exists() and call(state.name, "status", timeout=5.0).get("ok"):
                return proc.pid
        except (BrokerError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise BrokerError(f"the broker of {state.name} did not answer in {timeout:.0f}s: {safeio.tail(log_path(state))}")
        time.sleep(0.02)


# ---------------------------------------------------------------- server side

class Broker(lineserver.LineServer):
    def __init__(self, instance: str, sock_path: Path) -> None:
        super().__init__(sock_path)
        self.instance = instance
        self.name = f"lab helper of {instance}"

    def allowed_uids(self) -> set[int]:
        from . import accounts
        t = accounts.find(self.instance)
        return {0} | ({t.uid} if t else set())

    def socket_group(self) -> int | None:
        from . import accounts
        t = accounts.find(self.instance)
        return t.gid if t else None

    def operations(self):
        return {"check": self.op_check, "status": self.op_status, "exec": self.op_exec, "reload": self.op_reload,
                "unblock": self.op_unblock, "capture": self.op_capture}

    def open_instance(self):
        from .lab import Instance
        return Instance.open(self.instance)

    # --- operations
    def op_status(self, req: dict, uid: int) -> dict:
        inst = self.open_instance()
        return {"ok": True, "instance": inst.name, "lab": inst.state.data.get("lab"),
                "phase": inst.state.data.get("phase"), "nodes": [vars(n) for n in inst.status()]}

    def op_check(self, req: dict, uid: int) -> dict:
        from . import checks
        name = req.get("name")
        if name is not None and not isinstance(name, str):
            return {"ok": False, "error": "name must be a check id"}
        lang = req.get("lang") if isinstance(req.get("lang"), str) else "en"
        results = checks.run(self.open_instance(), only=name)
        return {"ok": True, "results": [r.to_dict(lang) for r in results]}

    def _her_node(self, req: dict):
        """The instance, if its trainee cannot reach its nodes herself, and the node asked for."""
        inst = self.open_instance()
        if inst.state.owner is None or inst.state.userns_file.exists():
            raise LabError("run it yourself: your lab's nodes are yours to enter (dnslab-node NODE)")
        node = req.get("node")
        if not isinstance(node, str):
            raise LabError("which node?")
        inst.node(node)
        return inst, node

    def op_exec(self, req: dict, uid: int) -> dict:
        inst, node = self._her_node(req)
        argv, timeout = req.get("argv"), req.get("seconds", 30)
        if not (isinstance(argv, list) and 0 < len(argv) <= EXEC_ARGS
                and all(isinstance(a, str) and 0 < len(a) <= 4096 and "\0" not in a for a in argv)):
            raise LabError(f"argv: a list of 1 to {EXEC_ARGS} strings")
        if not isinstance(timeout, (int, float)) or not 0 < timeout <= EXEC_TIMEOUT:
            raise LabError(f"seconds: 0 to {EXEC_TIMEOUT:.0f}")
        # runs on her node with her rights (the backend's exec for a lab with a trainee); bounded there
        bounded = ["timeout", "-s", "KILL", str(timeout), "sh", "-c",
                   f'out=$("$@" 2>&1); rc=$?; printf "%s\\n" "$out" | head -c {EXEC_OUTPUT}; exit $rc', "sh", *argv]
        res = inst.exec(node, bounded, capture=True, timeout=timeout + 5)
        return {"ok": True, "rc": res.returncode, "output": res.stdout}

    def op_reload(self, req: dict, uid: int) -> dict:
        inst, node = self._her_node(req)
        inst.reload(node)
        return {"ok": True, "node": node}


    def op_unblock(self, req: dict, uid: int) -> dict:
        inst, node = self.open_instance(), req.get("node")
        if not isinstance(node, str):
            raise LabError("which node?")
        return {"ok": True, "node": node, "was_blocked": inst.unblock(node)}


    def op_capture(self, req: dict, uid: int) -> dict:
        import base64

        from . import capture
        inst, node = self.open_instance(), req.get("node")
        packets, seconds, bpf = req.get("packets", 1000), req.get("seconds", 10), req.get("filter", "")
        if not (isinstance(node, str) and isinstance(packets, int) and isinstance(seconds, (int, float))
                and isinstance(bpf, str)):
            raise LabError("node (a name), packets (a number), seconds (a number), filter (text)")
        got = inst.capture(node, packets, seconds, bpf, capture.TRAINEE_BYTES)
        return {"ok": True, "pcap": base64.b64encode(got.pcap).decode(), "packets": got.packets,
                "seconds": got.seconds, "truncated": got.truncated}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dnslab.broker", description=__doc__.splitlines()[0])
    ap.add_argument("instance")
    ap.add_argument("--socket", help="default: /run/dnslab/<instance>/control.sock")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("dnslab.broker: must run as root", file=sys.stderr)
        return 3
    State.open(args.instance)  # exists?
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Broker(args.instance, Path(args.socket) if args.socket else socket_path(args.instance)).serve()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"dnslab.broker: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
