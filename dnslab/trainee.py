"""The small API a notebook uses: ``lab = dnslab.attach()``.

A trainee's kernel runs inside their own lab, on the client node, as their own unprivileged
user, and the lab is theirs: its daemons run as them, inside a user namespace they own. From
the kernel they query any server (plain sockets: the kernel *is* in the lab), run commands on
any node (``nsenter`` into the node, as root of their own lab and nothing more), read and
write zone and daemon config files, reload or restart daemons with their own control tools
(rndc, knotc, nsd-control, unbound-control). Only the checks go through the instance's
broker, the root-side helper that judges the lab as the grader does. Run as root (an
instructor, the tests), the same API goes straight to the engine. ``dnslab-node NODE``
opens a shell on a node from a terminal.

Errors are :class:`LabProblem`: one message a trainee can act on, shown without a traceback.
"""
from __future__ import annotations

import ipaddress
import json
import os
import re
import shlex
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import dns.message

from . import dnsquery
from .errors import LabError
from .names import zone_name


class LabProblem(Exception):
    """Something the trainee can fix; the message says what."""


@dataclass(frozen=True)
class NodeInfo:
    """One node of the lab as a trainee sees it."""

    name: str
    kind: str
    role: str
    addresses: tuple[str, ...]
    hostname: str | None
    zones: tuple[str, ...]
    anycast: tuple[str, ...] = ()  # service addresses it shares with other nodes

    @property
    def address(self) -> str:
        return self.addresses[0]


def attach(instance: str | None = None) -> Lab:
    """The lab this kernel runs in (``$DNSLAB_INSTANCE``), or the named instance (root only)."""
    name = instance or os.environ.get("DNSLAB_INSTANCE")
    if not name:
        from .state import all_states
        running = [s.name for s in all_states()]
        if len(running) != 1:
            raise _shown(LabProblem("this kernel is not attached to a lab: start it from your lab's JupyterLab, "
                                    f"or name the instance: dnslab.attach('NAME') (running: {', '.join(running) or 'none'})"))
        name = running[0]
    try:
        return Lab(name)
    except LabError as exc:
        raise _shown(LabProblem(str(exc))) from None


class Lab:
    """A live lab instance, seen from its client node."""

    def __init__(self, instance: str) -> None:
        from .state import run_root
        self.name = instance
        self._dir = run_root() / instance
        try:
            view = json.loads((self._dir / "nodes.json").read_text())
        except FileNotFoundError:
            raise LabProblem(f"no lab instance {instance!r} here (is it up? dnslab status)") from None
        except PermissionError:
            raise LabProblem(f"lab instance {instance!r} is not yours") from None
        self.privileged = os.geteuid() == 0
        if self.privileged:
            from .lab import Instance
            self._instance = Instance.open(instance)
        else:
            self._instance = None
        self._view = view
        self._zones: dict[str, dict] = view["zones"]
        self.nodes: dict[str, NodeInfo] = {
            name: NodeInfo(name, n["kind"], n["role"], tuple(n["addresses"]), n["hostname"] and n["hostname"].rstrip("."),
                           tuple(n["zones"]), tuple(n.get("anycast", ())))
            for name, n in view["nodes"].items()}
        clients = [name for name, n in view["nodes"].items() if n["role"] == "client"]
        self.client = clients[0] if clients else next(iter(self.nodes))
        self.resolver = view["nodes"][self.client]["resolver"]

    def __repr__(self) -> str:
        return f"<dnslab lab {self.name!r}: {len(self.nodes)} nodes, you are on {self.client!r}>"

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {n.name} | {n.kind} | {n.role} | {n.hostname or ''} | {', '.join(n.addresses)} "
                         f"| {' '.join(n.zones)} |" for n in self.nodes.values())
        return (f"**lab {self.name}** (you are on `{self.client}`)\n\n| node | kind | role | hostname | addresses"
                f" | zones |\n|---|---|---|---|---|---|\n{rows}")

    # -- asking -----------------------------------------------------------------------
    def address(self, node_or_address: str) -> str:
        """A node's first address (a name of this lab's nodes or hostnames), or an address as given."""
        if node_or_address in self.nodes:
            return self.nodes[node_or_address].address
        for n in self.nodes.values():
            if n.hostname and n.hostname == node_or_address.rstrip(".").lower():
                return n.address
        try:
            ipaddress.ip_address(node_or_address)
        except ValueError:
            raise _shown(LabProblem(f"{node_or_address!r} is neither a node of this lab "
                                    f"({', '.join(self.nodes)}) nor an IP address")) from None
        return node_or_address

    def dig(self, name: str, type: str = "A", *, at: str | None = None, rd: bool = True,
            dnssec: bool = False, tcp: bool = False, timeout: float = 2.0) -> dns.message.Message:
        """Ask ``at`` (a node, a hostname or an address; default: your resolver) about ``name``/``type``.

        Returns the dnspython message: ``.answer``, ``.authority``, ``.additional``, ``.flags``.
        Set ``rd=False`` to ask a server as a resolver would, without recursion.
        """
        server = self.address(at or self.resolver or self.client)
        try:
            q = dnsquery.make_query(name, type, rd=rd, dnssec=dnssec)
        except Exception as exc:  # dnspython says what is wrong with the name or type
            raise _shown(LabProblem(f"cannot ask {name!r} {type!r}: {exc}")) from None
        try:
            if self._instance:
                return dnsquery.query(self._instance.sockets(self.client), server, q, timeout=timeout, tcp=tcp)
            return dnsquery.query(socket.socket, server, q, timeout=timeout, tcp=tcp)
        except Exception as exc:  # timeouts, refused connections: the lab's state, for the trainee to read
            raise _shown(LabProblem(f"no answer from {at or server} ({server}) for {name} {type}: "
                                    f"{exc or type(exc).__name__}")) from None

    def site(self, node: str | None = None, at: str | None = None) -> str | None:
        """The anycast site (its server node) that answers ``node`` (default: your client) at
        address ``at`` (default: the root's anycast address): the NSID it sends (``dig +nsid``);
        None if nothing answers."""
        address = at or next((a for n in self.nodes.values() if "." in n.zones for a in n.anycast), None)
        if address is None:
            raise _shown(LabProblem("this lab has no anycast root: name the address (at=...)"))
        try:
            out = self.exec(["dig", "+nsid", "+norec", "+time=1", "+tries=1", f"@{address}", ".", "SOA"],
                            node=node, timeout=10)
        except LabProblem:
            return None
        m = re.search(r'NSID: [0-9a-f ]+\("([^"]*)"\)', out)
        return m.group(1) if m else None

    def catchment(self, at: str | None = None) -> dict[str, str | None]:
        """The site each resolver and client of the lab reaches at ``at`` (default: the root's
        anycast address), from the node itself."""
        return {n.name: self.site(n.name, at) for n in self.nodes.values() if n.role in ("resolver", "client")}

    def control(self, node: str, *args: str, timeout: float = 30) -> str:
        """Run ``node``'s control tool with its own config (``rndc``, ``knotc``, ``nsd-control``,
        ``unbound-control``) with ``args``, on the node; returns its output. For instance
        ``lab.control("sld-bind", "dnssec", "-status", "bind.test")``."""
        info = self._view["nodes"][self._node(node).name]
        if not info.get("control"):
            raise _shown(LabProblem(f"node {node} ({info['kind']}) has no control tool"))
        return self.exec([*info["control"], *args], node=node, timeout=timeout)

    def submit_ds(self, zone: str, *records: str) -> list[str]:
        """Submit DS records for ``zone`` to the registry of its parent, as through a registrar's
        form (``"TAG ALG DIGEST-TYPE DIGEST"`` or a whole DS line each): a DS that is malformed,
        has the wrong digest or matches no key-signing key of the zone is refused, with the
        reason. Returns what was published in the parent."""
        from . import registry
        name = zone_name(zone)
        try:
            if self._instance:
                return self._instance.submit_ds(name, records)
            for node, info in self._view["nodes"].items():
                if info["kind"] != "registry":
                    continue
                config = json.loads(Path(info["dir"], "registry.json").read_text())
                for reg in config["registries"]:
                    if name in reg["children"]:
                        return registry.submit(reg, name, records)
        except registry.Refused as exc:
            raise _shown(LabProblem(f"the registry refused: {exc}")) from None
        except LabError as exc:
            raise _shown(LabProblem(str(exc))) from None
        raise _shown(LabProblem(f"no registry in this lab manages the DS of {name}"))

    def dnsviz(self, name: str, via: str | None = None, fmt: str = "png"):
        """The chain of trust of ``name`` as a picture (dnsviz, probing through your resolver or
        ``via``, against your lab root's key), shown in the notebook."""
        from IPython.display import SVG, Image

        from . import dnsviz
        from .errors import InputError
        try:
            if self._instance:
                data = self._instance.dnsviz(name, via, fmt)
            else:
                if not self._view.get("trust_anchor"):
                    raise InputError("this lab has no signed root: no trust anchor to draw a chain of trust from")
                argv = dnsviz.command(self._view["trust_anchor"], self.address(via or self.resolver), name, fmt)
                data = dnsviz.decode(self.exec(argv, timeout=120))
        except LabError as exc:
            raise _shown(LabProblem(str(exc))) from None
        return Image(data=data, format="png") if fmt == "png" else SVG(data=data)

    def exec(self, cmd: str | Sequence[str], node: str | None = None, timeout: float = 30) -> str:
        """Run a command on a node of your lab (default: your client node); returns its output.
        On a server node it runs as that node's root (of your lab only), from the node's dir."""
        node = node or self.client
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        self._node(node)
        if not self._instance and node != self.client and not self._view.get("userns"):
            # a node she cannot enter herself (docker): the broker runs it there, with her rights
            reply = self._broker("exec", node=node, argv=argv, seconds=timeout, timeout=timeout + 10)
            if reply["rc"] != 0:
                raise _shown(LabProblem(f"`{' '.join(argv)}` on {node} exited with {reply['rc']}: {reply['output'].strip()}"))
            return reply["output"]
        try:
            if self._instance:
                res = self._instance.exec(node, argv, capture=True, timeout=timeout)
            else:
                res = subprocess.run(argv if node == self.client else self.enter_argv(node) + argv,
                                     capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise _shown(LabProblem(f"`{' '.join(argv)}` on {node} did not end within {timeout:.0f}s")) from None
        except FileNotFoundError:
            raise _shown(LabProblem(f"no program {argv[0]!r} on {node}")) from None
        out = res.stdout if isinstance(res.stdout, str) else (res.stdout or b"").decode(errors="replace")
        err = res.stderr if isinstance(res.stderr, str) else (res.stderr or b"").decode(errors="replace")
        if res.returncode != 0:
            raise _shown(LabProblem(f"`{' '.join(argv)}` on {node} exited with {res.returncode}: "
                                    f"{(err or out).strip()}"))
        return out

    def enter_argv(self, node: str) -> list[str]:
        """The command prefix that enters ``node`` of your lab (uid 0 there, your own uid outside)."""
        info = self._view["nodes"][self._node(node).name]
        if not self._view.get("userns"):
            raise _shown(LabProblem(f"this lab runs on the {self._view.get('backend', '?')} backend: a shell on "
                                    f"your own node {self.client!r} only; on {node}, one command at a time: "
                                    f"lab.exec(..., node={node!r})"))
        return ["nsenter", f"--user={self._view['userns']}", f"--net={info['netns']}", "--",
                "/bin/sh", "-c", 'cd "$1" 2>/dev/null; shift; exec "$@"', "sh", info["dir"]]

    def reload(self, node: str, wait: float = 5.0) -> None:
        """Make ``node``'s daemon reread its config and zones with its own control tool (a resolver
        also drops its cache); returns once it answers again, serving the serials of its zone files."""
        info = self._view["nodes"][self._node(node).name]
        if not info["reload"]:
            raise _shown(LabProblem(f"node {node} ({info['kind']}) runs no daemon to reload"))
        if self._instance:
            try:
                self._instance.reload(node, wait)
            except LabError as exc:
                raise _shown(LabProblem(str(exc))) from None
            return
        before = {zone: self._serial(node, zone) for zone in self.nodes[node].zones
                  if self._zones[zone].get("resigned") and self._zones[zone].get("signer") == node}
        if not self._view.get("userns"):  # nodes she cannot enter herself (docker): the broker, with her rights
            self._broker("reload", node=node)
        else:
            for argv in info["reload"]:
                self.exec(argv, node=node)
        self._wait_serving(node, wait, before)

    def capture(self, node: str, packets: int = 1000, seconds: float = 10, filter: str = "") -> bytes:
        """What crosses ``node``'s interfaces until ``packets`` are seen or ``seconds`` have passed,
        as a pcap file's bytes (save it and open it in Wireshark, or read it with dpkt or scapy).
        Capturing takes root in the node's namespace, so the lab's helper does it."""
        name = self._node(node).name
        if self._instance:
            return self._instance.capture(name, packets, seconds, filter).pcap
        import base64
        reply = self._broker("capture", node=name, packets=packets, seconds=seconds, filter=filter,
                             timeout=seconds + 15)
        return base64.b64decode(reply["pcap"])

    def unblock(self, node: str) -> None:
        """Open ``node``'s firewall: let through what a fault blocks there (DNS over TCP, ...).
        The node's namespace is not hers to change, so the lab's helper does it."""
        name = self._node(node).name
        if self._instance:
            self._instance.unblock(name)
        else:
            self._broker("unblock", node=name)

    def restart(self, node: str, wait: float = 5.0) -> None:
        """Stop ``node``'s daemon and start it again (after a change its reload does not take)."""
        info = self._view["nodes"][self._node(node).name]
        if not info["argv"]:
            raise _shown(LabProblem(f"node {node} ({info['kind']}) runs no daemon"))
        if self._instance or not self._view.get("userns"):
            raise _shown(LabProblem("restart runs in a trainee's own lab, from its notebook or terminal"))
        try:
            self.exec(info["stop"], node=node)
        except LabProblem:
            pass  # already stopped
        deadline = time.monotonic() + wait
        while self._silent(node) is None and time.monotonic() < deadline:  # the old one is gone
            time.sleep(0.05)
        run = ["/bin/sh", "-c", 'exec "$@" >>daemon.log 2>&1', "sh", *info["argv"]]
        subprocess.Popen(self.enter_argv(node) + run, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
        self._wait_serving(node, wait)

    def _silent(self, node: str) -> str | None:
        """What ``node`` does not answer yet (asked from your client): the first of its zones it
        gives no authoritative answer for, "." for a resolver that does not answer; None when
        it answers all (a node that serves no DNS, a router: at once)."""
        n = self.nodes[node]
        if n.role not in ("authoritative", "resolver"):
            return None
        for name in n.zones or (".",):
            try:
                reply = dnsquery.query(socket.socket, n.address, dnsquery.make_query(
                    name, "SOA" if n.zones else "NS"), timeout=0.3)
            except Exception:
                return name
            if n.zones and not reply.flags & 0x0400:  # AA
                return name
        return None

    def _serial(self, server: str, zone: str) -> int | None:
        return dnsquery.serial_of(socket.socket, self.nodes[server].address, zone)

    def _wait_serving(self, node: str, wait: float, before: dict[str, int | None] | None = None) -> None:
        """Until ``node`` answers and serves the serial of each zone file it loads, and so do its
        secondaries when it is a zone's primary (asked from your client); a zone it signs
        itself: a serial other than the one it served ``before`` (see :func:`dnsquery.wait_loaded`)."""
        deadline = time.monotonic() + wait
        while (silent := self._silent(node)) is not None:
            if time.monotonic() > deadline:
                what = f"no authoritative answer for {silent}" if self.nodes[node].zones else "no answer"
                raise _shown(LabProblem(f"node {node} gave {what} within {wait:.0f}s{self._log_of(node)}"))
            time.sleep(0.05)
        loaded = []
        for zone in self.nodes[node].zones:
            z = self._zones[zone]
            serial = dnsquery.serial_in(self.read_zone(node, zone)) if z.get("primary") in (None, node) else None
            if serial is not None:
                loaded.append(dnsquery.Loaded(zone, serial, bool(z.get("resigned")), tuple(z.get("secondaries", []))))
        left, wanted = dnsquery.wait_loaded(self._serial, node, loaded, deadline, before=before)
        if left:
            server = next(iter(left))[0]
            raise _shown(LabProblem(dnsquery.serial_late(left, wanted, node, wait) + self._log_of(server)))

    def _log_of(self, node: str) -> str:
        try:
            return "; its log ends with:\n" + self.exec(["tail", "-n", "12", "daemon.log"], node=node)
        except LabProblem:
            return ""

    # -- zone files -------------------------------------------------------------------
    def node_dir(self, node: str) -> Path:
        """Where ``node`` keeps its files: its daemon's config, zones, keys and log (yours)."""
        return Path(self._view["nodes"][self._node(node).name]["dir"])

    def zone_file(self, node: str, zone: str) -> Path:
        """Where ``node`` keeps its copy of ``zone``."""
        info = self._node(node)
        name = zone_name(zone)
        if name not in info.zones:
            raise _shown(LabProblem(f"node {node} does not serve zone {zone} (it serves: {' '.join(info.zones) or 'none'})"))
        return self.node_dir(node) / "zones" / self._zones[name]["file"]

    def read_zone(self, node: str, zone: str) -> str:
        """The zone file text as ``node`` serves it."""
        try:
            return self.zone_file(node, zone).read_text()
        except PermissionError:
            raise _shown(LabProblem(f"you may not read {node}'s zone files")) from None

    def write_zone(self, node: str, zone: str, text: str) -> None:
        """Replace ``node``'s zone file with ``text`` after ``named-checkzone`` accepts it.

        The daemon keeps serving the old zone until :meth:`reload`; remember the SOA serial.
        """
        path = self.zone_file(node, zone)
        origin = zone_name(zone)
        with tempfile.NamedTemporaryFile("w", suffix=".zone") as tmp:
            tmp.write(text)
            tmp.flush()
            res = subprocess.run(["named-checkzone", "-i", "local", origin, tmp.name],
                                 capture_output=True, text=True)
        if res.returncode != 0:
            msgs = [re.sub(r"^.*?\.zone:", "line ", ln) for ln in (res.stdout + res.stderr).splitlines()
                    if ln.strip() and "loaded serial" not in ln]
            raise _shown(LabProblem(f"zone {origin} not written, named-checkzone refuses it:\n  " + "\n  ".join(msgs)))
        try:
            path.write_text(text)
        except PermissionError:
            raise _shown(LabProblem(f"you may not write {node}'s zone files")) from None

    # -- checks -----------------------------------------------------------------------
    def check(self, name: str):
        """Run one of the lab's checks (``checks.yaml``) on your live lab: a CheckResult."""
        from .checks import CheckResult, Evidence
        if self._instance:
            from . import checks
            try:
                return checks.run(self._instance, only=name)[0]
            except LabError as exc:
                raise _shown(LabProblem(str(exc))) from None
        data = self._broker("check", name=name)["results"][0]
        data.pop("message", None)
        evidence = [Evidence(**e) for e in data.pop("evidence", [])]
        return CheckResult(**data, evidence=evidence)

    def _node(self, node: str) -> NodeInfo:
        try:
            return self.nodes[node]
        except KeyError:
            raise _shown(LabProblem(f"no node {node!r} in this lab (nodes: {', '.join(self.nodes)})")) from None

    def _broker(self, op: str, timeout: float = 30.0, **kw) -> dict:
        from . import broker
        try:
            reply = broker.call(self.name, op, timeout=timeout, **kw)
        except LabError as exc:
            raise _shown(LabProblem(str(exc))) from None
        if not reply.get("ok"):
            raise _shown(LabProblem(reply.get("error", f"{op} failed")))
        return reply


def _shown(exc: LabProblem) -> LabProblem:
    """In IPython, show a LabProblem as its message alone (no traceback from inside dnslab)."""
    try:
        ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    except NameError:
        return exc
    if not getattr(ip, "_dnslab_handler", False):
        def handler(shell, etype, value, tb, tb_offset=None):
            print(f"LabProblem: {value}")
            return None
        ip.set_custom_exc((LabProblem,), handler)
        ip._dnslab_handler = True
    return exc


def node_shell(argv: list[str] | None = None) -> int:
    """``dnslab-node NODE [COMMAND...]``: a shell (or a command) on a node of your own lab."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: dnslab-node NODE [COMMAND...]   a shell (or a command) on a node of your lab")
        return 0 if args else 2
    try:
        lab = Lab(os.environ.get("DNSLAB_INSTANCE", ""))
        prefix = lab.enter_argv(args[0])
    except LabProblem as exc:
        print(f"dnslab-node: {exc}", file=sys.stderr)
        return 2
    rc = f"{lab._view['nodes'][args[0]]['dir']}/shell.rc"
    command = args[1:] or (["bash", "--rcfile", rc, "-i"] if os.path.exists(rc) else ["bash", "-i"])
    os.execvp(prefix[0], prefix + command)
