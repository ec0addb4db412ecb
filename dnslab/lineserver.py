"""A root-side helper's socket: one JSON request per line, one JSON reply per line, over a
Unix socket, only for the uids it names (SO_PEERCRED, never a path or a claim in the request).

Subclasses (:class:`dnslab.broker.Broker`, :class:`dnslab.classd.ClassHelper`) name who may
ask (:meth:`LineServer.allowed_uids`) and a closed list of operations
(:meth:`LineServer.operations`); everything else is shared: the socket's mode and group, at
most ``MAX_CLIENTS`` at once, lines of at most ``MAX_LINE`` bytes, an idle timeout, errors
as replies (never a traceback to the caller), and exiting once the socket is removed or
replaced. :func:`call` is the client side.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from .errors import LabError

MAX_LINE = 64 * 1024
MAX_CLIENTS = 16
IDLE_TIMEOUT = 120.0


class Unreachable(LabError):
    """Nothing answers on the socket, or it refused this caller."""

    exit_code = 3


def call(path: Path, request: dict, timeout: float = 30.0) -> dict:
    """Send one request and return the reply.

    :raises FileNotFoundError, ConnectionRefusedError, PermissionError: from connecting
    :raises TimeoutError: no full reply in ``timeout`` seconds
    :raises Unreachable: the connection closed without a reply
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(str(path))
        try:
            s.sendall((json.dumps(request) + "\n").encode())
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
        raise TimeoutError(f"no reply to {request.get('op')!r} in {timeout:.0f}s") from None
    finally:
        s.close()
    if not buf:
        raise Unreachable(f"{path} closed the connection without a reply")
    return json.loads(buf)


class LineServer:
    """Serve :meth:`operations` on ``sock_path`` (mode 0660, group ``gid``) to :meth:`allowed_uids`."""

    name = "helper"

    def __init__(self, sock_path: Path) -> None:
        self.sock_path = sock_path
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.inode = 0

    # --- what a subclass says
    def allowed_uids(self) -> set[int]:
        return {0}

    def socket_group(self) -> int | None:
        """The group that may connect (None: root only)."""
        return None

    def operations(self) -> dict[str, Callable[[dict, int], dict]]:
        return {}

    # --- the socket
    def listen(self) -> socket.socket:
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
        gid = self.socket_group()
        os.chown(self.sock_path, 0, gid if gid is not None else 0)
        os.chmod(self.sock_path, 0o660 if gid is not None else 0o600)
        srv.listen(MAX_CLIENTS)
        self.inode = os.stat(self.sock_path).st_ino
        return srv

    def watchdog(self) -> None:
        """Exit once our socket is removed or replaced (its owner is gone)."""
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
        print(f"{self.name} listening on {self.sock_path} (pid {os.getpid()})", flush=True)
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
            _, uid, _ = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                            struct.calcsize("3i")))
            if uid not in self.allowed_uids():
                conn.settimeout(2.0)
                try:
                    conn.recv(MAX_LINE)  # take the request, so the refusal is read, not a broken pipe
                except OSError:
                    pass
                self._send(conn, {"ok": False, "error": f"uid {uid} may not use the {self.name}"})
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
        ops = self.operations()
        handler = ops.get(req.get("op"))
        if handler is None:
            return {"ok": False, "error": f"unknown op {req.get('op')!r} ({', '.join(ops)})"}
        try:
            return handler(req, uid)
        except LabError as exc:
            return {"ok": False, "error": str(exc)}
        except Exception as exc:  # never a traceback to the caller; keep it in our log
            traceback.print_exc()
            return {"ok": False, "error": f"internal error of the {self.name}: {type(exc).__name__}: {exc}"}
