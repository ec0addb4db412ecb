"""Reading what a trainee can write, as root, without being redirected.

A trainee may swap any name in her own directories for a symlink, a FIFO or a huge file
at any moment. Root never follows a path there: it opens files through ``openat2`` with
``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV`` from a
directory it trusts (a symlink at any component fails), non-blocking (a FIFO never
stalls it), checks the result is a regular file, and reads a bounded number of bytes.
On kernels without ``openat2`` (before 5.6) each component is opened with ``O_NOFOLLOW``.
"""
from __future__ import annotations

import ctypes
import errno
import os
import platform
import stat
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437, "armv7l": 437, "ppc64le": 437, "s390x": 437, "riscv64": 437}
RESOLVE = 0x01 | 0x02 | 0x04 | 0x08  # NO_XDEV | NO_MAGICLINKS | NO_SYMLINKS | BENEATH


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dirfd: int, rel: str, flags: int, mode: int) -> int:
    nr = _SYS_OPENAT2.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, "openat2")
    how = _OpenHow(flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0, RESOLVE)
    fd = _libc.syscall(nr, dirfd, os.fsencode(rel), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}: {rel}")
    return fd


def _walk_open(dirfd: int, rel: str, flags: int, mode: int) -> int:
    """The fallback: ``O_NOFOLLOW`` at every component, never leaving ``dirfd``'s tree."""
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise OSError(errno.EXDEV, f"not beneath: {rel}")
    fd = os.dup(dirfd)
    try:
        for part in parts[:-1]:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nxt
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=fd)
    finally:
        os.close(fd)


def open_beneath(root: str | Path, rel: str, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of ``root/rel`` that no symlink, ``..`` or mount crossing below ``root``
    can redirect. ``root`` itself must be a directory the caller trusts.

    :raises OSError: ELOOP/EXDEV when something tried to redirect the open, or as open(2)
    """
    dirfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            return _openat2(dirfd, rel, flags, mode)
        except OSError as exc:
            if exc.errno != errno.ENOSYS:
                raise
            return _walk_open(dirfd, rel, flags, mode)
    finally:
        os.close(dirfd)


def open_regular(root: str | Path, rel: str) -> int:
    """A read descriptor of a regular file beneath ``root`` (never a FIFO, device or socket)."""
    fd = open_beneath(root, rel, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, f"not a regular file: {rel}")
    return fd


def read_bytes(root: str | Path, rel: str, limit: int, tail: bool = False) -> bytes:
    """At most ``limit`` bytes of a regular file beneath ``root``: its start, or with ``tail`` its end."""
    fd = open_regular(root, rel)
    try:
        size = os.fstat(fd).st_size
        if tail and size > limit:
            os.lseek(fd, size - limit, os.SEEK_SET)
        chunks, left = [], limit
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def tail_lines(root: str | Path, rel: str, lines: int = 12, limit: int = 64 << 10) -> list[str]:
    """The last ``lines`` lines of a log beneath ``root``; [] when it cannot be read safely."""
    try:
        data = read_bytes(root, rel, limit, tail=True)
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def tail(path: Path, lines: int = 12) -> str:
    """The last lines of a log, indented, for a message ("  (no log)" when it cannot be read);
    read beneath its own directory, as any log in a trainee's area must be."""
    got = tail_lines(path.parent, path.name, lines)
    return "\n".join("  " + ln for ln in got) if got else "  (no log)"
