"""The small API a notebook uses: ``lab = dnslab.attach()``.

A trainee's kernel runs inside their own lab, on the client node, as their own unprivileged
user. From there it can query any server of the lab (plain sockets: the kernel *is* in the
lab), run commands on its own node, read and write its lab's zone files, and ask the
instance's broker (a root-side helper that serves only this lab) to reload a daemon or run
a check. Run as root (an instructor, the tests), the same API goes straight to the engine.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import dns.message

from . import dnsquery
from .errors import LabError


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
        self._zones: dict[str, dict] = view["zones"]
        self.nodes: dict[str, NodeInfo] = {
            name: NodeInfo(name, n["kind"], n["role"], tuple(n["addresses"]), n["hostname"] and n["hostname"].rstrip("."),
                           tuple(n["zones"]))
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

    def exec(self, cmd: str | Sequence[str], node: str | None = None, timeout: float = 30) -> str:
        """Run a command on your client node (or, as root, on any node); returns its output."""
        node = node or self.client
        argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
        if self._instance:
            res = self._instance.exec(node, argv, capture=True, timeout=timeout)
        elif node == self.client:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        else:
            raise _shown(LabProblem(f"you can run commands on your own node {self.client!r} only; "
                                    f"ask {node} over DNS instead: lab.dig(..., at={node!r})"))
        out = res.stdout if isinstance(res.stdout, str) else (res.stdout or b"").decode(errors="replace")
        err = res.stderr if isinstance(res.stderr, str) else (res.stderr or b"").decode(errors="replace")
        if res.returncode != 0:
            raise _shown(LabProblem(f"`{' '.join(argv)}` on {node} exited with {res.returncode}: {err.strip()}"))
        return out

    # -- zone files -------------------------------------------------------------------
    def zone_file(self, node: str, zone: str) -> Path:
        """Where ``node`` keeps its copy of ``zone``."""
        info = self._node(node)
        name = _zone_name(zone)
        if name not in info.zones:
            raise _shown(LabProblem(f"node {node} does not serve zone {zone} (it serves: {' '.join(info.zones) or 'none'})"))
        return self._dir / "nodes" / node / "zones" / self._zones[name]["file"]

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
        origin = _zone_name(zone)
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

    def reload(self, node: str) -> None:
        """Make ``node``'s daemon reload its configuration and zones (a resolver also empties its cache)."""
        self._node(node)
        if self._instance:
            try:
                self._instance.reload(node)
            except LabError as exc:
                raise _shown(LabProblem(str(exc))) from None
            return
        self._broker("reload", node=node)

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

    def _broker(self, op: str, **kw) -> dict:
        from . import broker
        try:
            reply = broker.call(self.name, op, **kw)
        except LabError as exc:
            raise _shown(LabProblem(str(exc))) from None
        if not reply.get("ok"):
            raise _shown(LabProblem(reply.get("error", f"{op} failed")))
        return reply


def _zone_name(zone: str) -> str:
    """``test`` -> ``test.``: the rule of :func:`dnslab.topology.zone_name`, without importing
    pydantic (and its half second) into every trainee's kernel."""
    name = zone.strip().lower().rstrip(".")
    return name + "." if name else "."


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
