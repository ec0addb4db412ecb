"""The instance state file: intent written before each side effect.

One directory per instance under the run root (``/run/dnslab`` unless ``DNSLAB_RUN``
says otherwise) holds ``state.json``, a copy of the lab folder (root only: its faults are
the answers) and ``work/``, the lab's working area: each node's files, logs and sockets.
When the instance has a trainee, ``work/`` is a size-capped tmpfs of the trainee's own,
and everything in it is written and run with the trainee's rights; root reads from it
only through :mod:`dnslab.safeio`. ``down`` and ``gc`` read the state to remove exactly
what an instance made, even when the ``up`` that made it was killed half-way.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import InputError

INSTANCE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def run_root() -> Path:
    return Path(os.environ.get("DNSLAB_RUN", "/run/dnslab"))


def check_name(name: str) -> str:
    if not INSTANCE.match(name):
        raise InputError(f"instance name {name!r}: use 1-32 lower-case letters, digits and '-', "
                         "starting with a letter or digit")
    return name


class State:
    """A mutable record of one instance, saved atomically on every change."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.dir = directory
        self.data = data

    @property
    def name(self) -> str:
        return self.data["instance"]

    @property
    def lab_dir(self) -> Path:
        return self.dir / "lab"

    @property
    def work_dir(self) -> Path:
        """The lab's working area (the trainee's, when the instance has one)."""
        return self.dir / "work"

    def node_dir(self, node: str) -> Path:
        return self.work_dir / "nodes" / node

    @property
    def userns_file(self) -> Path:
        """The user namespace of a trainee's lab (a bind mount; see :mod:`dnslab.userns`)."""
        return self.dir / "userns"

    @property
    def owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the trainee whose lab this is: its daemons and files are theirs."""
        o = self.data.get("owner")
        return (o["uid"], o["gid"]) if o else None

    @classmethod
    def create(cls, instance: str, lab_dir: Path, backend: str) -> State:
        """Claim the instance directory (fails if the instance exists) and copy the lab into it."""
        root = run_root()
        root.mkdir(parents=True, exist_ok=True, mode=0o711)
        directory = root / instance
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            raise InputError(f"instance {instance!r} already exists: `dnslab down {instance}` first "
                             "(or `dnslab gc` if a crashed run left it)") from None
        state = cls(directory, {"instance": instance, "backend": backend, "phase": "creating",
                                "owner_pid": os.getpid(), "created": time.time(),
                                "lab": None, "resources": [], "nodes": {}})
        state.save()
        shutil.copytree(lab_dir, state.lab_dir, ignore=shutil.ignore_patterns(".*", "__pycache__"))
        os.chmod(state.lab_dir, 0o700)  # faults and checks: the instructor's, not the trainee's
        state.work_dir.mkdir(mode=0o755)
        return state

    @classmethod
    def open(cls, instance: str) -> State:
        directory = run_root() / check_name(instance)
        try:
            data = json.loads((directory / "state.json").read_text())
        except FileNotFoundError:
            known = ", ".join(s.name for s in all_states()) or "none"
            raise InputError(f"no instance {instance!r} (running instances: {known})") from None
        except json.JSONDecodeError:
            data = {"instance": instance, "backend": "netns", "phase": "broken",
                    "owner_pid": 0, "resources": [], "nodes": {}}
        return cls(directory, data)

    def save(self) -> None:
        tmp = self.dir / "state.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(tmp, self.dir / "state.json")

    def intend(self, kind: str, name: str) -> None:
        """Record a resource (namespace, file, container, ...) *before* creating it."""
        entry = [kind, name]
        if entry not in self.data["resources"]:
            self.data["resources"].append(entry)
        self.save()

    def resources(self, kind: str) -> list[str]:
        return [n for k, n in self.data["resources"] if k == kind]

    def set_phase(self, phase: str) -> None:
        self.data["phase"] = phase
        self.save()

    def owner_alive(self) -> bool:
        from .procs import start_time
        pid = self.data.get("owner_pid") or 0
        return pid > 0 and pid != os.getpid() and start_time(pid) is not None  # a killed, unreaped owner is dead

    def remove(self) -> None:
        """Delete the instance dir. It is first renamed to a dot-name no listing matches, so a
        concurrent ``gc`` never sees a half-deleted instance (and writes its state back)."""
        unmount_below(self.dir)  # never delete through a mount left behind (a trainee's tmpfs)
        gone = self.dir.with_name(f".removing-{self.dir.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(self.dir, gone)
        except FileNotFoundError:
            return
        except OSError:
            gone = self.dir
        shutil.rmtree(gone, ignore_errors=True)


def mounts_below(top: Path) -> list[Path]:
    """Mount points at or below ``top``, deepest first."""
    prefix = str(top).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == str(top) or point.startswith(prefix):
                found.append(Path(point))
    return sorted(set(found), key=lambda p: -len(p.parts))


def unmount_below(top: Path) -> None:
    """Detach every mount at or below ``top`` (lazily: nothing can hold it up)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for point in mounts_below(top):
        libc.umount2(os.fsencode(point), 2)  # MNT_DETACH


def all_states() -> list[State]:
    root = run_root()
    if not root.is_dir():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if d.is_dir() and INSTANCE.match(d.name):
            try:
                out.append(State.open(d.name) if (d / "state.json").exists()
                           else State(d, {"instance": d.name, "backend": "netns", "phase": "broken",
                                          "owner_pid": 0, "resources": [], "nodes": {}}))
            except InputError:  # removed meanwhile by a concurrent `down`
                continue
    return out
