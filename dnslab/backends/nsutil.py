"""Entering a network namespace from Python: one thread, one socket, then back.

``setns(2)`` on a network namespace affects only the calling thread, and a socket
stays in the namespace it was made in; so a probe can open a socket inside any lab
node and use it from anywhere, without spawning a process.
"""
from __future__ import annotations

import ctypes
import errno
import os
import socket

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(netns: str, family: int, type: int) -> socket.socket:
    """A socket created inside the network namespace at path ``netns``."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(netns, os.O_RDONLY)
        try:
            _setns(target)
            try:
                return socket.socket(family, type)
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)


def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def pids_in(inodes: set[int]) -> list[int]:
    """Every process whose network namespace is one of ``inodes``."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if os.stat(f"/proc/{entry.name}/ns/net").st_ino in inodes:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


_MS_BIND, _MS_REC, _MS_SHARED = 4096, 16384, 1 << 20


def _mount(src: str | None, target: str, flags: int) -> None:
    if _libc.mount(src.encode() if src else None, target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def shared_netns_dir(path: str = "/run/netns") -> None:
    """Make ``path`` a shared mount, as ``ip netns add`` does the first time, so that namespace
    mounts made there show in every mount namespace. Call it under a lock (a concurrent
    ``ip netns add`` does the same; both are idempotent once done)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    try:
        _mount(None, path, _MS_SHARED | _MS_REC)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
            raise
        _mount(path, path, _MS_BIND | _MS_REC)
        _mount(None, path, _MS_SHARED | _MS_REC)
