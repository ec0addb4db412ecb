"""What both backends share: an instance's network namespaces, its bridges, veths and addresses,
its nodes' files, traffic blocked inside a node, and tearing all of it down.

Per instance, one namespace ``dnslab-<instance>`` holds the bridges, so nothing of a lab
lives in the host namespace; each node is a namespace ``dnslab-<instance>-<node>`` (made
here, or a container's, attached by name) with one veth per network, created straight into
it (host-side names ``dl`` + a short hash). Links and addresses are made by one ``ip -batch``
per namespace. With a trainee, the namespaces made here belong to a user namespace she owns
(:mod:`dnslab.userns`), and the files are written with her rights.
"""
from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import EnvError
from ..procs import start_time, terminate
from ..state import State
from .base import BackendError
from .nsutil import netns_inode, pids_in, shared_netns_dir

if TYPE_CHECKING:  # plan (pydantic) only where used: `down` needs none of it
    from ..nodespec import NodeSpec
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


def ip_batches(batches: Sequence[tuple[Sequence[str], str]], what: str) -> None:
    """Run ``ip <args> -batch -`` for each (args, commands) at once; all errors raised together."""
    procs = [(subprocess.Popen(["ip", *args, "-batch", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, cwd="/"), cmds) for args, cmds in batches]
    errors = []
    for p, cmds in procs:
        _, err = p.communicate(cmds)
        if p.returncode:
            errors.append(err.strip())
    if errors:
        raise BackendError(f"{what} failed: " + "; ".join(errors))


def claim(state: State, lab: LabPlan) -> list[str]:
    """Record the instance's namespaces (bridges first, then nodes) before any is made."""
    names = [bridge_ns(state.name)] + [node_ns(state.name, n) for n in lab.nodes]
    existing = [n for n in names if (NETNS_DIR / n).exists()]
    if existing:
        raise BackendError(f"network namespace {existing[0]} already exists; `dnslab gc` removes what a crashed "
                           "run left")
    for n in names:
        state.intend("netns", n)
    return names


def make_namespaces(state: State, names: Sequence[str], owned: bool) -> None:
    """Create network namespaces, inside the trainee's own user namespace when ``owned``."""
    if not owned:
        ip_batches([((), "".join(f"netns add {n}\n" for n in names))], "creating namespaces")
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


def link(state: State, lab: LabPlan) -> None:
    """The instance's bridges, one veth per node interface, addresses, anycast addresses on
    loopbacks, default and static routes, forwarding in routers (the namespaces exist)."""
    inst = state.name
    br = [f"link add br-{net} type bridge\nlink set br-{net} up\n" for net in lab.networks]
    for node in lab.nodes.values():
        for iface in node.interfaces:
            veth = link_name(inst, node.name, iface.network)
            br.append(f"link add {veth} type veth peer name {iface.ifname} netns {node_ns(inst, node.name)}\n"
                      f"link set {veth} master br-{iface.network} up\n")
    ip_batches([(("-n", bridge_ns(inst)), "".join(br))], "creating bridges and links")
    batches = []
    for node in lab.nodes.values():
        cmds = ["link set lo up\n"]
        for iface in node.interfaces:
            if iface.ipv4:
                cmds.append(f"addr add {iface.ipv4} dev {iface.ifname}\n")
            if iface.ipv6:
                # link-local too without duplicate detection: usable at once (neighbour discovery
                # and BIRD's IPv6 sessions need one; a tentative one held routed IPv6 back ~1 s)
                local = ipaddress.ip_address("fe80::") + (int(iface.ipv6.ip) & (2**64 - 1))
                cmds.append(f"addr add {iface.ipv6} dev {iface.ifname} nodad\n"
                            f"link set {iface.ifname} addrgenmode none\n"
                            f"addr add {local}/64 dev {iface.ifname} nodad\n")
            cmds.append(f"link set {iface.ifname} up\n")
        # IPv6 ones without duplicate detection too: tentative until the kernel's work queue gets to
        # them, which on a loaded host came after a daemon's bind (EADDRNOTAVAIL)
        cmds += [f"addr add {a}/128 dev lo nodad\n" if ":" in a else f"addr add {a}/32 dev lo\n"
                 for a in node.anycast]
        cmds += [f"route add {'::/0' if ':' in a else '0.0.0.0/0'} via {a}\n" for a in node.gateway]
        cmds += [f"route add {prefix} via {hop}\n" for prefix, hop in node.routes]
        batches.append((("-n", node_ns(inst, node.name)), "".join(cmds)))
    ip_batches(batches, "configuring node addresses")
    routers = [node_ns(inst, n.name) for n in lab.nodes.values() if n.forwards]
    procs = [subprocess.Popen(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
                               "net.ipv6.conf.all.forwarding=1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, cwd="/") for ns in routers]
    errors = [err.strip() for p in procs for _, err in [p.communicate()] if p.returncode]
    if errors:
        raise BackendError("turning forwarding on in the routers failed: " + "; ".join(errors))


def write_files(state: State, specs: dict[str, NodeSpec]) -> None:
    """Every node's files (:func:`node_files`) and resolv.conf (:func:`resolv_confs`)."""
    node_files(state, specs)
    resolv_confs(state, specs)


def node_files(state: State, specs: dict[str, NodeSpec]) -> None:
    """Every node's files, written with the rights of the lab's trainee (root's without one)."""
    from ..confine import unpack_as
    files: dict[str, str] = {f"nodes/{node}/{sub}": "" for node in specs for sub in ("", "zones/")}
    files.update({f"nodes/{node}/{rel}": content for node, spec in specs.items() for rel, content in spec.files.items()})
    files.update({f"nodes/{node}/daemon.log": "" for node, spec in specs.items() if spec.argv})
    unpack_as(state.owner, state.work_dir, files)


def resolv_confs(state: State, specs: dict[str, NodeSpec]) -> None:
    """The resolv.conf of the nodes that have one (``ip netns exec`` shows it in the node)."""
    for node, spec in specs.items():
        if spec.resolv_conf is not None:
            etc = ETC_NETNS / node_ns(state.name, node)
            state.intend("etc", str(etc))
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "resolv.conf").write_text(spec.resolv_conf)


def block(state: State, node: str, rules: Sequence[str]) -> None:
    """Drop traffic inside a node (a fault): a ``dnslab_fault`` nftables table in its namespace,
    dropping what ``rules`` name (tcp/53, udp/53, fragments, udp/53>1232) in and out, or a share of
    the NXDOMAIN answers that leave (udp/53~90: nine in ten, at random); no rules:
    the table goes, and the node's traffic flows again."""
    nft = shutil.which("nft", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if nft is None:
        raise EnvError("faults that block traffic need nft: apt-get install nftables")
    ns = node_ns(state.name, node)
    if not rules:
        res = subprocess.run(["ip", "netns", "exec", ns, nft, "delete", "table", "inet", "dnslab_fault"],
                             capture_output=True, text=True, cwd="/")
        if res.returncode != 0 and "No such file" not in res.stderr:
            raise BackendError(f"opening {ns} again failed: {res.stderr.strip()}")
        return
    lines, out_only, forward = [], [], ""
    for rule in rules:
        if rule == "all":  # silent links: nothing in, out or through but the node's own loopback
            lines += ['meta iifname != "lo" meta oifname != "lo" drop']
            forward = "  chain forward {\n    type filter hook forward priority 0;\n    drop\n  }\n"
            continue
        if rule == "fragments":
            lines += ["ip frag-off & 0x3fff != 0 drop", "exthdr frag exists drop"]
            continue
        proto, rest = rule.split("/", 1)
        port, _, percent = rest.partition("~")
        if percent:  # a far server's lossy path, for the answers a cache poisoner races: NXDOMAIN (rcode 3)
            out_only.append(f"{proto} sport {port} @th,92,4 3 numgen random mod 100 < {percent} drop")
            continue
        port, _, size = port.partition(">")
        length = f" meta length > {size}" if size else ""
        lines += [f"{proto} dport {port}{length} drop", f"{proto} sport {port}{length} drop"]
    body, out = "".join(f"    {ln}\n" for ln in lines), "".join(f"    {ln}\n" for ln in lines + out_only)
    ruleset = (f"table inet dnslab_fault {{\n  chain input {{\n    type filter hook input priority 0;\n{body}  }}\n"
               f"  chain output {{\n    type filter hook output priority 0;\n{out}  }}\n{forward}}}\n")
    res = subprocess.run(["ip", "netns", "exec", ns, nft, "-f", "-"], input=ruleset, capture_output=True, text=True,
                         cwd="/")
    if res.returncode != 0:
        raise BackendError(f"blocking {', '.join(rules)} in {ns} failed: {res.stderr.strip()}")


KERNEL_PORTS = (32768, 60999)  # Linux's default range of source ports, in every new namespace


def port_range(state: State, node: str, ports: tuple[int, int] | None) -> None:
    """Give the node's outgoing connections source ports from ``ports`` (first, last) only (a
    fault: a resolver that leaves its query ports to the kernel asks from those), or, with None,
    from the kernel's default range again. The range belongs to the node's network namespace."""
    first, last = ports or KERNEL_PORTS
    ns = node_ns(state.name, node)
    res = subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w",
                          f"net.ipv4.ip_local_port_range={first} {last}"], capture_output=True, text=True, cwd="/")
    if res.returncode != 0:
        raise BackendError(f"setting the source ports of {ns} failed: {res.stderr.strip()}")


def set_links(state: State, links: Sequence[tuple[str, str]], up: bool) -> None:
    """Cut (node, network) attachments at the bridge, or mend them: the node's end loses its
    carrier, as when a cable is pulled, and the node sees its link go down."""
    ip_batches([(("-n", bridge_ns(state.name)), "".join(f"link set {link_name(state.name, n, net)} "
                                                        f"{'up' if up else 'down'}\n" for n, net in links))],
               "setting links")


def destroy(states: Sequence[State]) -> None:
    """Stop every process in the instances' namespaces (and their recorded daemons), delete the
    namespaces and /etc/netns dirs."""
    namespaces = [n for s in states for n in s.resources("netns")]
    _stop_processes(states, namespaces)
    _delete(namespaces)
    for s in states:
        for etc in s.resources("etc"):
            if etc.startswith(str(ETC_NETNS) + "/" + PREFIX):
                shutil.rmtree(etc, ignore_errors=True)


def leftovers(claimed: set[str]) -> list[str]:
    """Namespaces and /etc/netns dirs of ours that no instance claims."""
    found = [n.name for n in NETNS_DIR.glob(PREFIX + "*") if n.name not in claimed]
    found += [str(p) for p in ETC_NETNS.glob(PREFIX + "*") if str(p) not in claimed]
    return sorted(found)


def remove_leftovers(names: Sequence[str]) -> None:
    namespaces = [n for n in names if "/" not in n]
    _stop_processes([], namespaces)
    _delete(namespaces)
    for n in names:
        if n.startswith(str(ETC_NETNS) + "/" + PREFIX):
            shutil.rmtree(n, ignore_errors=True)


def _delete(namespaces: Sequence[str]) -> None:
    present = [n for n in namespaces if (NETNS_DIR / n).exists()]
    if present:
        ip_batches([(("-force",), "".join(f"netns del {n}\n" for n in present))], "deleting namespaces")


def _stop_processes(states: Sequence[State], namespaces: Sequence[str], grace: float = 2.0) -> None:
    """SIGTERM every process of ours (recorded PIDs and anything inside our namespaces), then SIGKILL."""
    inodes = {i for i in (netns_inode(str(NETNS_DIR / n)) for n in namespaces) if i}
    pids = set(pids_in(inodes)) if inodes else set()
    for s in states:
        for rec in s.data["nodes"].values():
            if "pid" in rec and start_time(rec["pid"]) == rec.get("start"):
                pids.add(rec["pid"])
    terminate(pids, grace)
