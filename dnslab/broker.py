"""The root-side helper of one instance: what a trainee's code may ask that truly needs root.

A trainee drives her own lab herself (her daemons, files and namespaces are hers); what she
cannot do is judge it the way the grader does: checks ask from any node of the lab, through
sockets opened inside each node's namespace, which takes root. So the broker offers a closed
list of read-only operations, nothing else:

- ``{"op": "check", "name": "www-via-unbound"}`` (``name`` optional: every check;
  ``lang`` optional): ``{"ok": true, "results": [CheckResult.to_dict(), ...]}``, the very
  verdicts the grader will see;
- ``{"op": "status"}``: the instance's nodes, processes and whether they answer;
- only where the trainee cannot enter her nodes herself (the docker backend: containers are
  reached through the engine, which takes root): ``{"op": "exec", "node": N, "argv": [...],
  "seconds": s}`` runs a command on one of *her* nodes *with her rights* (at most
  ``EXEC_ARGS`` arguments, ``EXEC_TIMEOUT`` seconds, ``EXEC_OUTPUT`` bytes of output back), and
  ``{"op": "reload", "node": N}`` runs the node's reload commands the same way and waits until
  it answers. On the netns backend both are refused: she does them herself.

``python -I -m dnslab.broker <instance>`` (isolated: no path of anyone else's on its
``sys.path``, working directory ``/``) listens on ``/run/dnslab/<instance>/control.sock``
(mode 0660, group of the instance's trainee, in root's run dir) and serves one JSON request
per line, one JSON reply per line, at most ``MAX_CLIENTS`` at once, each line at most
``MAX_LINE`` bytes. Only root and the instance's trainee (SO_PEERCRED) are served. It runs in
the trainee's cgroup, so flooding it costs only her own budget. It exits by itself when its
socket disappears; ``down`` and ``gc`` stop it by its recorded PID.
Clients: :func:`call` (the trainee API, the grader); :func:`ensure` starts it.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from . import procs, safeio
from .errors import LabError
from .state import State, run_root

SOCKET_NAME = "control.sock"
MAX_LINE = 64 * 1024
EXEC_ARGS, EXEC_TIMEOUT, EXEC_OUTPUT = 64, 120.0, 1 << 20
MAX_CLIENTS = 16
IDLE_TIMEOUT = 120.0


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
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise BrokerError(f"the lab helper of instance {instance} is not running ({path} does not answer); "
                              "ask your instructor to restart it (dnslab up ... --jupyter starts it)") from None
        except PermissionError:
            raise BrokerError(f"instance {instance} is not yours: permission denied on {path}") from None
        try:
            s.sendall((json.dumps({"op": op, **kw}) + "\n").encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at once: its reply may still be there to read
        buf = b""
        while not buf.endswith(b"\n"):
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        raise BrokerError(f"the lab helper of instance {instance} did not reply to {op!r} in {timeout:.0f}s") from None
    finally:
        s.close()
    if not buf:
        raise BrokerError(f"the lab helper of instance {instance} closed the connection (refused?)")
    return json.loads(buf)


def ensure(state: State, timeout: float = 10.0) -> int:
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
            if sock.exists() and call(state.name, "status", timeout=2.0).get("ok"):
                return proc.pid
        except (BrokerError, OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise BrokerError(f"the broker of {state.name} did not answer in {timeout:.0f}s: {safeio.tail(log_path(state))}")
        time.sleep(0.02)



# ---------------------------------------------------------------- server side

class Broker:
    def __init__(self, instance: str, sock_path: Path) -> None:
        self.instance = instance
        self.sock_path = sock_path
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.node_locks: dict[str, threading.Lock] = {}
        self.locks_lock = threading.Lock()

    # --- who may ask
    def allowed_uids(self) -> set[int]:
        from . import accounts
        t = accounts.find(self.instance)
        return {0} | ({t.uid} if t else set())

    def listen(self) -> socket.socket:
        from . import accounts
        try:
            self.sock_path.unlink()
        except FileNotFoundError:
            pass
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            srv.bind(str(self.sock_path))
        finally:
            os.umask(old)
        t = accounts.find(self.instance)
        os.chown(self.sock_path, 0, t.gid if t else 0)
        os.chmod(self.sock_path, 0o660 if t else 0o600)
        srv.listen(MAX_CLIENTS)
        self.inode = os.stat(self.sock_path).st_ino
        return srv

    def watchdog(self) -> None:
        """Exit once the instance is gone (its run dir or our socket removed or replaced)."""
        while True:
            time.sleep(1.0)
            try:
                if os.stat(self.sock_path).st_ino != self.inode:
                    os._exit(0)
            except OSError:
                os._exit(0)

    def serve(self) -> None:
        srv = self.listen()
        threading.Thread(target=self.watchdog, daemon=True).start()
        print(f"broker of {self.instance} listening on {self.sock_path} (pid {os.getpid()})", flush=True)
        while True:
            conn, _ = srv.accept()
            if not self.slots.acquire(blocking=False):
                self._send(conn, {"ok": False, "error": "too many requests at once; try again"})
                conn.close()
                continue
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _send(conn: socket.socket, reply: dict) -> None:
        try:
            conn.sendall((json.dumps(reply, default=str) + "\n").encode())
        except OSError:
            pass

    def handle(self, conn: socket.socket) -> None:
        try:
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                struct.calcsize("3i")))
            if uid not in self.allowed_uids():
                conn.settimeout(2.0)
                try:
                    conn.recv(MAX_LINE)  # take the request, so the refusal is read, not a broken pipe
                except OSError:
                    pass
                self._send(conn, {"ok": False, "error": f"uid {uid} may not use the lab helper of {self.instance}"})
                return
            conn.settimeout(IDLE_TIMEOUT)
            f = conn.makefile("rb")
            while True:
                line = f.readline(MAX_LINE + 1)
                if not line:
                    return
                if len(line) > MAX_LINE:
                    self._send(conn, {"ok": False, "error": "request too long"})
                    return
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    self._send(conn, {"ok": False, "error": f"bad request (one JSON object per line): {exc}"})
                    continue
                self._send(conn, self.dispatch(req, uid))
        except OSError:
            pass
        finally:
            conn.close()
            self.slots.release()

    def dispatch(self, req: dict, uid: int) -> dict:
        op = req.get("op")
        handler = {"check": self.op_check, "status": self.op_status, "exec": self.op_exec,
                   "reload": self.op_reload}.get(op)
        if handler is None:
            return {"ok": False, "error": f"unknown op {op!r} (check, status, exec, reload)"}
        try:
            return handler(req)
        except LabError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # never a traceback to the trainee; keep it in our log
            import traceback
            traceback.print_exc()
            return {"ok": False, "error": f"internal error of the lab helper: {type(exc).__name__}: {exc}"}

    def open_instance(self):
        from .lab import Instance
        return Instance.open(self.instance)

    # --- operations
    def op_status(self, req: dict) -> dict:
        inst = self.open_instance()
        return {"ok": True, "instance": inst.name, "lab": inst.state.data.get("lab"),
                "phase": inst.state.data.get("phase"), "nodes": [vars(n) for n in inst.status()]}

    def op_check(self, req: dict) -> dict:
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

    def op_exec(self, req: dict) -> dict:
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

    def op_reload(self, req: dict) -> dict:
        inst, node = self._her_node(req)
        inst.reload(node)
        return {"ok": True, "node": node}

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
