"""One control group per trainee: memory, processes and CPU weight, on cgroup v2 or v1.

``<hierarchy>/dnslab/<instance>`` carries the trainee's limits; every process that acts for
the trainee sits in one of its leaves (``lab``: the lab's daemons; ``session``: JupyterLab,
kernels, terminals, the forwarder; ``broker``: the root helper; ``grade``: a notebook being
graded, killed whole when its grading ends). Hitting a limit ends that trainee's work
(the kernel's OOM killer picks inside the group, ``fork`` fails), never anyone else's.

cgroup v2 (Debian 12, Ubuntu): one unified hierarchy, controllers enabled down the path.
cgroup v1: the ``memory``, ``pids`` and ``cpu`` hierarchies, each with the same tree. A
process joins a leaf by writing its own PID to the leaf's ``cgroup.procs`` files before it
execs (:meth:`Group.join_prefix`). Where neither is usable, :func:`driver` says what stays
unbounded and groups do nothing.
"""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TOP = "dnslab"
LEAVES = ("lab", "session", "broker", "grade")
MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Limits:
    """What one trainee may use; ``None`` leaves a resource unbounded."""

    memory: int | None = 1536 << 20       # bytes: daemons, JupyterLab, kernels, their tmpfs pages
    pids: int | None = 512                # tasks (threads count)
    cpu_weight: int = 100                 # relative, 1-10000; every trainee the same by default


@dataclass(frozen=True)
class Driver:
    """The usable cgroup hierarchies: ``version`` 2 (``mounts["unified"]``), 1 (a mount per
    controller) or 0 (none; ``problem`` says why)."""

    version: int
    mounts: dict[str, Path]
    problem: str = ""

    def bounded(self) -> list[str]:
        return sorted(self.mounts) if self.version == 1 else (["memory", "pids", "cpu"] if self.version == 2 else [])


def _mountinfo() -> list[tuple[Path, str, set[str]]]:
    """(mount point, fs type, super options) of every cgroup mount."""
    found = []
    for line in Path(MOUNTINFO).read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
            found.append((Path(fields[4].replace("\\040", " ")), rfields[0], set(rfields[2].split(","))))
    return found


@lru_cache(maxsize=1)
def driver() -> Driver:
    mounts = _mountinfo()
    for point, fstype, _ in mounts:
        if fstype == "cgroup2":
            try:
                ctrls = set((point / "cgroup.controllers").read_text().split())
            except OSError:
                continue
            if {"memory", "pids"} <= ctrls:
                return Driver(2, {"unified": point})
    v1 = {}
    for point, fstype, opts in mounts:
        if fstype == "cgroup":
            for ctrl in ("memory", "pids", "cpu"):
                if ctrl in opts and ctrl not in v1:
                    v1[ctrl] = point
    if {"memory", "pids"} <= set(v1):
        return Driver(1, v1)
    return Driver(0, {}, "no cgroup hierarchy with the memory and pids controllers is mounted "
                         "(cgroup v2 with them enabled, or cgroup v1 memory and pids)")


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class Group:
    """The cgroup of one trainee (instance), in every usable hierarchy."""

    def __init__(self, instance: str, drv: Driver | None = None) -> None:
        self.instance = instance
        self.drv = drv or driver()

    def dirs(self, leaf: str | None = None) -> list[Path]:
        """The group's directory (or one leaf's) in each hierarchy."""
        return [m / TOP / self.instance / (leaf or "") for m in self.drv.mounts.values()]

    def create(self, limits: Limits) -> None:
        """Make the group and its leaves with ``limits`` (idempotent)."""
        if self.drv.version == 2:
            root = self.drv.mounts["unified"]
            avail = set((root / "cgroup.controllers").read_text().split()) & {"memory", "pids", "cpu"}
            enable = " ".join(f"+{c}" for c in sorted(avail))
            for d in (root, root / TOP, root / TOP / self.instance):
                d.mkdir(exist_ok=True)
                if enable and not avail <= set((d / "cgroup.subtree_control").read_text().split()):
                    _write(d / "cgroup.subtree_control", enable)
            g = root / TOP / self.instance
            if "memory" in avail:
                _write(g / "memory.max", str(limits.memory) if limits.memory else "max")
                if (g / "memory.swap.max").exists():  # no escape into swap
                    _write(g / "memory.swap.max", "0")
            _write(g / "pids.max", str(limits.pids) if limits.pids else "max")
            if "cpu" in avail:
                _write(g / "cpu.weight", str(limits.cpu_weight))
        elif self.drv.version == 1:
            for ctrl, mount in self.drv.mounts.items():
                g = mount / TOP / self.instance
                g.mkdir(parents=True, exist_ok=True)
                if ctrl == "memory":
                    limit = str(limits.memory) if limits.memory else "-1"
                    _write(g / "memory.limit_in_bytes", limit)
                    if (g / "memory.memsw.limit_in_bytes").exists():  # no escape into swap
                        _write(g / "memory.memsw.limit_in_bytes", limit)
                elif ctrl == "pids":
                    _write(g / "pids.max", str(limits.pids) if limits.pids else "max")
                elif ctrl == "cpu":
                    _write(g / "cpu.shares", str(max(2, limits.cpu_weight * 1024 // 100)))
        for leaf in LEAVES:
            for d in self.dirs(leaf):
                d.mkdir(exist_ok=True)

    def join_prefix(self, leaf: str) -> list[str]:
        """An argv prefix that moves the command into ``leaf`` before it runs (its PID is kept by
        ``exec``, so everything it forks is counted there too)."""
        files = [str(d / "cgroup.procs") for d in self.dirs(leaf)]
        if not files:
            return []
        script = "".join(f'echo $$ > "{f}" || exit 125; ' for f in files) + 'exec "$@"'
        return ["/bin/sh", "-c", script, "sh"]

    def pids(self, leaf: str | None = None) -> set[int]:
        """Every process in the group (or a leaf), leaves included."""
        found: set[int] = set()
        for top in self.dirs(leaf):
            for d, _, _ in os.walk(top):
                try:
                    found |= {int(p) for p in Path(d, "cgroup.procs").read_text().split()}
                except (OSError, ValueError):
                    continue
        return found

    def kill(self, leaf: str | None = None, timeout: float = 5.0) -> bool:
        """SIGKILL every process in the group (or leaf) until it is empty; returns whether it is."""
        if self.drv.version == 2:
            for d in self.dirs(leaf):
                try:
                    _write(d / "cgroup.kill", "1")
                except OSError:
                    pass
        deadline = time.monotonic() + timeout
        while True:
            pids = self.pids(leaf)
            if not pids:
                return True
            if time.monotonic() > deadline:
                return False
            for pid in pids:  # v1 (or a kernel before cgroup.kill): one by one, again until empty
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left, then remove the leaves and the group."""
        self.kill()
        for top in self.dirs():
            for d in [top / leaf for leaf in LEAVES] + [top]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:  # a leaf made by someone else (docker's container groups): deepest first
                    for sub, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                        try:
                            os.rmdir(sub)
                        except OSError:
                            pass

    def usage(self) -> dict[str, int]:
        """Memory in use (bytes) and tasks, as the kernel counts them for the group."""
        out = {}
        for name, files in (("memory", ("memory.current", "memory.usage_in_bytes")), ("pids", ("pids.current",))):
            for top in self.dirs():
                for f in files:
                    try:
                        out[name] = int((top / f).read_text())
                    except (OSError, ValueError):
                        continue
        return out


def leftovers(claimed: set[str]) -> list[str]:
    """Groups of instances no state claims (``gc``)."""
    drv = driver()
    names = set()
    for mount in drv.mounts.values():
        top = mount / TOP
        if top.is_dir():
            names |= {d.name for d in top.iterdir() if d.is_dir()}
    return sorted(n for n in names if n not in claimed)
