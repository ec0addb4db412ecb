"""A trainee's lab as her own: a user namespace she owns, holding every network namespace of her lab.

``python -I -m dnslab.userns UID GID USERNS_FILE NETNS_FILE...`` (root, stdlib only) makes a user
namespace whose owner is UID and whose only mapping is ``0 -> UID``/``0 -> GID``, then, inside
it, one network namespace per NETNS_FILE; each is bind-mounted at its file (as ``ip netns add``
does under ``/run/netns``, which the caller has made a shared mount: :func:`dnslab.backends.nsutil.
shared_netns_dir`), the user namespace at USERNS_FILE.

What that gives the trainee (uid UID), and nothing more:
- every capability *over her lab's namespaces* (the kernel grants the owner of a user
  namespace all capabilities in it): her daemons bind port 53, her tools capture packets,
  add routes, send raw packets, but only in her lab's networks, which have no link to the
  host or to any other lab;
- she enters any node of her lab herself: ``nsenter --user=USERNS_FILE --net=NETNS_FILE``
  (uid 0 inside, her own uid outside: files she makes there are hers);
- nothing over the host: the host's namespaces, files and processes belong to the initial
  user namespace, where she has no capability; her uid maps to nothing else.

The namespace is made by a child that takes the trainee's effective uid while keeping its
capabilities (``SECBIT_NO_SETUID_FIXUP``), since the owner of a user namespace is the
effective uid of its creator; the parent, still root, writes the maps and the bind mounts.
"""
from __future__ import annotations

import ctypes
import errno
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP = 28, 1 << 2
MS_BIND = 4096


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, flags: int) -> None:
    _check(_libc.mount(src.encode() if src else None, target.encode(), None, flags, None), f"mount {target}")


def _bind(src: str, target: str) -> None:
    fd = os.open(target, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0)
    os.close(fd)
    _mount(src, target, MS_BIND)


def make(uid: int, gid: int, userns_file: str, netns_files: list[str]) -> None:
    """Create the user namespace and its network namespaces (see the module docstring)."""
    to_child_r, to_child_w = os.pipe()
    to_parent_r, to_parent_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: becomes the owner, then makes namespaces when told
        code = 1
        try:
            os.close(to_child_w)
            os.close(to_parent_r)
            _check(_libc.prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP, 0, 0, 0), "keep capabilities")
            os.setgroups([])
            os.setresgid(gid, gid, 0)
            os.setresuid(uid, uid, 0)
            _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
            os.write(to_parent_w, b"u")
            for _ in netns_files:
                if os.read(to_child_r, 1) != b"g":
                    break
                _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
                os.write(to_parent_w, b"n")
            else:
                os.read(to_child_r, 1)  # stay alive until the parent has mounted the last one (then EOF)
                code = 0
        except OSError as exc:
            os.write(2, f"dnslab.userns: {exc}\n".encode())
        os._exit(code)
    os.close(to_child_r)
    os.close(to_parent_w)
    try:
        if os.read(to_parent_r, 1) != b"u":
            raise OSError(errno.EPERM, "the namespace maker could not make a user namespace")
        with open(f"/proc/{pid}/uid_map", "w") as f:
            f.write(f"0 {uid} 1\n")
        with open(f"/proc/{pid}/gid_map", "w") as f:
            f.write(f"0 {gid} 1\n")
        _bind(f"/proc/{pid}/ns/user", userns_file)
        for target in netns_files:
            os.write(to_child_w, b"g")
            if os.read(to_parent_r, 1) != b"n":
                raise OSError(errno.EPERM, "the namespace maker could not make a network namespace")
            _bind(f"/proc/{pid}/ns/net", target)
    finally:
        os.close(to_child_w)
        _, status = os.waitpid(pid, 0)
    if status != 0:
        raise OSError(errno.EPERM, "the namespace maker failed")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: python -I -m dnslab.userns UID GID USERNS_FILE [NETNS_FILE...]", file=sys.stderr)
        return 2
    try:
        make(int(argv[0]), int(argv[1]), argv[2], argv[3:])
    except (OSError, ValueError) as exc:
        print(f"dnslab.userns: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
