"""The default backend: Linux network namespaces, veth pairs and bridges; no daemon needed.

Per instance, one namespace ``dnslab-<instance>`` holds the bridges, so nothing of a
lab lives in the host namespace; each node is a namespace ``dnslab-<instance>-<node>``
with one veth per network, created straight into it. Links and addresses are made by
one ``ip -batch`` per namespace. Daemons run in the foreground from the node's run dir.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import EnvError
from ..procs import start_time, terminate
from ..state import State
from .base import BackendError
from .nsutil import netns_inode, pids_in, shared_netns_dir, socket_in

if TYPE_CHECKING:  # kinds (jinja2) and plan (pydantic) only where used: `down` needs neither
    from .. import kinds
    from ..plan import LabPlan

PREFIX = "dnslab-"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")


def bridge_ns(instance: str) -> str:
    return f"{PREFIX}{instance}"


def node_ns(instance: str, node: str) -> str:
    return f"{PREFIX}{instance}-{node}"


def link_name(instance: str, node: str, network: str) -> str:
    """Host-side veth name: ``dl`` + a short hash, within the 15-byte limit."""
    return "dl" + hashlib.sha1(f"{instance}/{node}/{network}".encode()).hexdigest()[:12]


def _ip(args: Sequence[str], batch: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(["ip", *args, *(["-batch", "-"] if batch is not None else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(procs: list[tuple[subprocess.Popen, str | None]], what: str) -> None:
    errors = []
    for p, batch in procs:
        _, err = p.communicate(batch)
        if p.returncode:
            errors.append(err.strip())
    if errors:
        raise BackendError(f"{what} failed: " + "; ".join(errors))


class NetnsBackend:
    name = "netns"
    trainee_userns = True

    def preflight(self, lab: LabPlan) -> None:
        from .. import kinds
        if os.geteuid() != 0:
            raise EnvError("the netns backend needs root (CAP_NET_ADMIN): run it with sudo")
        missing = {}
        for tool, pkg in {"ip": "iproute2", "nsenter": "util-linux"}.items():
            if shutil.which(tool) is None:
                missing[tool] = pkg
        for node in lab.nodes.values():
            for exe, pkg in kinds.KINDS[node.kind].binaries.items():
                if shutil.which(exe) is None:  # nsenter execs it through this same PATH
                    missing[exe] = pkg
        if missing:
            raise EnvError("missing programs: " + ", ".join(sorted(missing)) +
                           f"; install them with: apt-get install {' '.join(sorted(set(missing.values())))}")

    def node_path(self, state: State, node: str) -> str:
        return str(state.node_dir(node))

    def create(self, state: State, lab: LabPlan, specs: dict[str, kinds.NodeSpec]) -> None:
        self.wire(state, lab, specs)
        self.write_files(state, specs)
        for node, spec in specs.items():
            self.start(state, node, spec)

    def make_namespaces(self, state: State, lab: LabPlan, specs: dict[str, kinds.NodeSpec], names: list[str]) -> None:
        """Create the instance's network namespaces (the bridges' first, then one per node), inside
        the trainee's own user namespace when the lab has a trainee (:mod:`dnslab.userns`)."""
        if state.owner is None or not self.trainee_userns:
            _finish([(_ip([], ""), "".join(f"netns add {n}\n" for n in names))], "creating namespaces")
            return
        state.intend("mount", str(state.userns_file))
        from ..accounts import lock_file
        from ..state import run_root
        with lock_file(run_root() / ".netns.lock"):
            shared_netns_dir(str(NETNS_DIR))
        uid, gid = state.owner
        res = subprocess.run([sys.executable, "-I", "-m", "dnslab.userns", str(uid), str(gid), str(state.userns_file),
                              *(str(NETNS_DIR / n) for n in names)], capture_output=True, text=True, cwd="/",
                             stdin=subprocess.DEVNULL, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        if res.returncode != 0:
            raise BackendError(f"creating the trainee's namespaces failed: {res.stderr.strip()}")

    def wire(self, state: State, lab: LabPlan, specs: dict[str, kinds.NodeSpec]) -> None:
        """Namespaces, the instance's bridges, one veth per node interface, addresses."""
        inst = state.name
        names = [bridge_ns(inst)] + [node_ns(inst, n) for n in lab.nodes]
        existing = [n for n in names if (NETNS_DIR / n).exists()]
        if existing:
            raise BackendError(f"network namespace {existing[0]} already exists; "
                               "`dnslab gc` removes what a crashed run left")
        for n in names:
            state.intend("netns", n)
        self.make_namespaces(state, lab, specs, names)
        br = [f"link add br-{net} type bridge\nlink set br-{net} up\n" for net in lab.networks]
        for node in lab.nodes.values():
            for iface in node.interfaces:
                veth = link_name(inst, node.name, iface.network)
                br.append(f"link add {veth} type veth peer name {iface.ifname} netns {node_ns(inst, node.name)}\n"
                          f"link set {veth} master br-{iface.network} up\n")
        _finish([(_ip(["-n", bridge_ns(inst)], ""), "".join(br))], "creating bridges and links")
        procs = []
        for node in lab.nodes.values():
            cmds = ["link set lo up\n"]
            for iface in node.interfaces:
                if iface.ipv4:
                    cmds.append(f"addr add {iface.ipv4} dev {iface.ifname}\n")
                if iface.ipv6:
                    cmds.append(f"addr add {iface.ipv6} dev {iface.ifname} nodad\n")
                cmds.append(f"link set {iface.ifname} up\n")
            procs.append((_ip(["-n", node_ns(inst, node.name)], ""), "".join(cmds)))
        _finish(procs, "configuring node addresses")

    def write_files(self, state: State, specs: dict[str, kinds.NodeSpec]) -> None:
        """Every node's files, written with the rights of the lab's trainee (root's without one)."""
        from ..confine import unpack_as
        files: dict[str, str] = {f"nodes/{node}/": "" for node in specs}
        files.update({f"nodes/{node}/{rel}": content for node, spec in specs.items() for rel, content in spec.files.items()})
        files.update({f"nodes/{node}/daemon.log": "" for node, spec in specs.items() if spec.argv})
        unpack_as(state.owner, state.work_dir, files)
        for node, spec in specs.items():
            if spec.resolv_conf is not None:
                etc = ETC_NETNS / node_ns(state.name, node)
                state.intend("etc", str(etc))
                etc.mkdir(parents=True, exist_ok=True)
                (etc / "resolv.conf").write_text(spec.resolv_conf)

    def enter(self, state: State, node: str) -> list[str]:
        """The argv prefix that runs a command as the lab's owner in ``node`` (a mount namespace
        of its own with the node's resolv.conf, as ``ip netns exec`` makes), from the node's dir."""
        ns = node_ns(state.name, node)
        if not (NETNS_DIR / ns).exists():
            raise BackendError(f"node {node} of instance {state.name} has no network namespace")
        user = ["nsenter", f"--user={state.userns_file}", "--"] if state.owner and self.trainee_userns else []
        return ["ip", "netns", "exec", ns, *user, "/bin/sh", "-c", 'cd "$1" 2>/dev/null; shift; exec "$@"', "sh",
                str(state.node_dir(node))]

    def start(self, state: State, node: str, spec: kinds.NodeSpec) -> None:
        """Start a node's daemon inside its namespace: as the lab's trainee (root inside the
        trainee's user namespace) in the trainee's cgroup, or as root for a lab without one.
        Its output goes to ``daemon.log`` in the node dir, opened with the daemon's own rights."""
        from ..confine import join
        record = state.data["nodes"].setdefault(node, {})
        if spec.argv is None:
            return
        ns = NETNS_DIR / node_ns(state.name, node)
        user = [f"--user={state.userns_file}"] if state.owner and self.trainee_userns else []
        run = ["/bin/sh", "-c", 'cd "$1" || exit 1; shift; exec "$@" >>daemon.log 2>&1', "sh", str(state.node_dir(node))]
        proc = subprocess.Popen([*join(state, "lab"), "nsenter", *user, f"--net={ns}", "--", *run, *spec.argv],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                cwd="/", start_new_session=True)
        record.update(pid=proc.pid, start=start_time(proc.pid))
        state.save()

    def running(self, state: State, node: str) -> bool:
        rec = state.data["nodes"].get(node, {})
        if "pid" not in rec:
            return (NETNS_DIR / node_ns(state.name, node)).exists()
        if start_time(rec["pid"]) == rec.get("start"):
            return True
        # a trainee may restart her own daemon: then some process of hers runs in the node
        inode = netns_inode(str(NETNS_DIR / node_ns(state.name, node))) if state.owner and self.trainee_userns else None
        return bool(inode and pids_in({inode}))

    def socket(self, state: State, node: str, family: int, type: int) -> socket.socket:
        path = NETNS_DIR / node_ns(state.name, node)
        if not path.exists():
            raise BackendError(f"node {node} of instance {state.name} has no network namespace")
        return socket_in(str(path), family, type)

    def exec(self, state: State, node: str, argv: Sequence[str], *,
             capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        from ..confine import join
        return subprocess.run([*join(state, "session"), *self.enter(state, node), *argv], capture_output=capture,
                              text=capture, timeout=timeout, cwd="/")

    def log_path(self, state: State, node: str) -> Path:
        return state.node_dir(node) / "daemon.log"

    def destroy(self, states: Sequence[State]) -> None:
        namespaces = [n for s in states for n in s.resources("netns")]
        _stop_processes(states, namespaces)
        present = [n for n in namespaces if (NETNS_DIR / n).exists()]
        if present:
            _finish([(_ip(["-force"], ""), "".join(f"netns del {n}\n" for n in present))], "deleting namespaces")
        for s in states:
            for etc in s.resources("etc"):
                if etc.startswith(str(ETC_NETNS) + "/" + PREFIX):
                    shutil.rmtree(etc, ignore_errors=True)

    def leftovers(self, claimed: set[str]) -> list[str]:
        found = [n.name for n in NETNS_DIR.glob(PREFIX + "*") if n.name not in claimed]
        found += [str(p) for p in ETC_NETNS.glob(PREFIX + "*") if str(p) not in claimed]
        return sorted(found)

    def remove_leftovers(self, names: Sequence[str]) -> None:
        namespaces = [n for n in names if "/" not in n]
        _stop_processes([], namespaces)
        present = [n for n in namespaces if (NETNS_DIR / n).exists()]
        if present:
            _finish([(_ip(["-force"], ""), "".join(f"netns del {n}\n" for n in present))], "deleting namespaces")
        for n in names:
            if n.startswith(str(ETC_NETNS) + "/" + PREFIX):
                shutil.rmtree(n, ignore_errors=True)


def _stop_processes(states: Sequence[State], namespaces: Sequence[str], grace: float = 2.0) -> None:
    """SIGTERM every process of ours (recorded PIDs and anything inside our namespaces), then SIGKILL."""
    inodes = {i for i in (netns_inode(str(NETNS_DIR / n)) for n in namespaces) if i}
    pids = set(pids_in(inodes)) if inodes else set()
    for s in states:
        for rec in s.data["nodes"].values():
            if "pid" in rec and start_time(rec["pid"]) == rec.get("start"):
                pids.add(rec["pid"])
    terminate(pids, grace)


