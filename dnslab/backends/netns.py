"""The default backend: Linux network namespaces, veth pairs and bridges; no daemon needed.

Each node is a network namespace made here (:mod:`dnslab.backends.wiring`); its daemon runs
in the foreground from the node's dir, entered with ``nsenter``. In a trainee's lab the
namespaces belong to a user namespace she owns, and the daemons run as her (root inside it).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import EnvError
from ..procs import start_time
from ..state import State
from . import bounded, wiring
from .base import BackendError
from .nsutil import netns_inode, pids_in, socket_in
from .wiring import NETNS_DIR, bridge_ns, link_name, node_ns

if TYPE_CHECKING:
    from ..nodespec import NodeSpec
    from ..plan import LabPlan

__all__ = ["NETNS_DIR", "NetnsBackend", "bridge_ns", "link_name", "node_ns"]


class NetnsBackend:
    name = "netns"
    trainee_userns = True

    def preflight(self, lab: LabPlan, programs: dict[str, str]) -> None:
        if os.geteuid() != 0:
            raise EnvError("the netns backend needs root (CAP_NET_ADMIN): run it with sudo")
        needed = {"ip": "iproute2", "nsenter": "util-linux", **programs}
        missing = {exe: pkg for exe, pkg in needed.items() if shutil.which(exe) is None}  # nsenter uses this PATH
        if missing:
            raise EnvError("missing programs: " + ", ".join(sorted(missing)) +
                           f"; install them with: apt-get install {' '.join(sorted(set(missing.values())))}")

    def node_path(self, state: State, node: str) -> str:
        return str(state.node_dir(node))

    def create(self, state: State, lab: LabPlan, specs: dict[str, NodeSpec]) -> None:
        names = wiring.claim(state, lab)
        with ThreadPoolExecutor(max_workers=1) as pool:  # the files written while the namespaces are wired
            files = pool.submit(wiring.node_files, state, specs)
            wiring.make_namespaces(state, names, owned=state.owner is not None)
            wiring.link(state, lab)
            files.result()
        wiring.resolv_confs(state, specs)
        for node, spec in specs.items():
            if spec.argv is not None:
                self.start_daemon(state, node, spec.argv)

    def _userns(self, state: State) -> list[str]:
        return [f"--user={state.userns_file}"] if state.owner else []

    def start_daemon(self, state: State, node: str, argv: Sequence[str]) -> None:
        """Start a node's daemon inside its namespace: as the lab's trainee (root inside the
        trainee's user namespace) in the trainee's cgroup, or as root for a lab without one.
        Its output goes to ``daemon.log`` in the node dir, opened with the daemon's own rights."""
        from ..confine import join
        ns = NETNS_DIR / node_ns(state.name, node)
        run = ["/bin/sh", "-c", 'cd "$1" || exit 1; shift; exec "$@" >>daemon.log 2>&1', "sh", str(state.node_dir(node))]
        proc = subprocess.Popen([*join(state, "lab"), "nsenter", *self._userns(state), f"--net={ns}", "--", *run,
                                 *argv], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd="/", start_new_session=True)
        state.data["nodes"].setdefault(node, {}).update(pid=proc.pid, start=start_time(proc.pid))
        state.save()

    def stop_daemon(self, state: State, node: str, stop: Sequence[str]) -> None:
        """Stop a node's daemon with its control tool (``stop``), and wait until it is gone."""
        self.exec(state, node, stop, capture=True, timeout=30)
        rec = state.data["nodes"].get(node, {})
        deadline = time.monotonic() + 5
        while "pid" in rec and start_time(rec["pid"]) == rec.get("start") and time.monotonic() < deadline:
            time.sleep(0.02)

    def block(self, state: State, node: str, rules: Sequence[str]) -> None:
        wiring.block(state, node, rules)

    def port_range(self, state: State, node: str, ports: tuple[int, int] | None) -> None:
        wiring.port_range(state, node, ports)

    def set_links(self, state: State, links: Sequence[tuple[str, str]], up: bool) -> None:
        wiring.set_links(state, links, up)

    def running(self, state: State, node: str) -> bool:
        rec = state.data["nodes"].get(node, {})
        if "pid" not in rec:
            return (NETNS_DIR / node_ns(state.name, node)).exists()
        if start_time(rec["pid"]) == rec.get("start"):
            return True
        # a trainee may restart her own daemon: then some process of hers runs in the node
        inode = netns_inode(str(NETNS_DIR / node_ns(state.name, node))) if state.owner else None
        return bool(inode and pids_in({inode}))

    def socket(self, state: State, node: str, family: int, type: int) -> socket.socket:
        path = NETNS_DIR / node_ns(state.name, node)
        if not path.exists():
            raise BackendError(f"node {node} of instance {state.name} has no network namespace")
        return socket_in(str(path), family, type)

    def enter(self, state: State, node: str) -> list[str]:
        """The argv prefix that runs a command as the lab's owner in ``node`` (a mount namespace
        of its own with the node's resolv.conf, as ``ip netns exec`` makes), from the node's dir."""
        ns = node_ns(state.name, node)
        if not (NETNS_DIR / ns).exists():
            raise BackendError(f"node {node} of instance {state.name} has no network namespace")
        user = ["nsenter", *self._userns(state), "--"] if state.owner else []
        return ["ip", "netns", "exec", ns, *user, "/bin/sh", "-c", 'cd "$1" 2>/dev/null; shift; exec "$@"', "sh",
                str(state.node_dir(node))]

    def exec(self, state: State, node: str, argv: Sequence[str], *,
             capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        from ..confine import join
        full = [*join(state, "session"), *self.enter(state, node), *argv]
        if capture:
            return bounded.run(full, f"node {node}: `{' '.join(argv)}`", timeout)
        return subprocess.run(full, timeout=timeout, cwd="/")

    def log_path(self, state: State, node: str) -> Path:
        return state.node_dir(node) / "daemon.log"

    def destroy(self, states: Sequence[State]) -> None:
        wiring.destroy(states)

    def leftovers(self, claimed: set[str]) -> list[str]:
        return wiring.leftovers(claimed)

    def remove_leftovers(self, names: Sequence[str]) -> None:
        wiring.remove_leftovers(names)
