"""Checks of the root's distribution: a router's BFD sessions, a resolver's local root, and which
site of an anycast service answers each vantage point: the answering server names itself in the
EDNS NSID option (RFC 5001), which BIND, Knot, NSD and Unbound all send with their
node's name in a lab (``dig +nsid``; CHAOS ``id.server`` says the same, but BIND answers only a
few CHAOS questions a second), so a catchment is read from the live routing, never the lab file."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import dns.edns
import dns.exception
import dns.flags
import dns.message

from .. import dnsquery, kinds
from ..kinds import bird
from .base import Check
from .result import Evidence

if TYPE_CHECKING:
    from ..lab import Instance
    from ..plan import LabPlan


def service_address(lab: LabPlan) -> str | None:
    """The lab root's first anycast address (an address some nodes share), None if it has none."""
    return next((a for n in lab.nodes.values() if "." in n.zones for a in n.anycast), None)


def nsid_query() -> dns.message.Message:
    """The root's SOA, without recursion, asking for the server's NSID."""
    q = dns.message.make_query(".", "SOA", use_edns=0, options=[dns.edns.NSIDOption(b"")])
    q.flags &= ~dns.flags.RD
    return q


def nsid_of(reply: dns.message.Message) -> str | None:
    """The NSID a reply carries, as text (None: none)."""
    return next((o.nsid.decode(errors="replace") for o in reply.options if isinstance(o, dns.edns.NSIDOption)), None)


def site_of(inst: Instance, address: str, source: str) -> tuple[str | None, Evidence]:
    """The node that answers ``address`` from ``source`` (its NSID), None if none does."""
    text = ". IN SOA +norec +nsid"
    try:
        reply = dnsquery.query(inst.sockets(source), address, nsid_query(), timeout=1.0)
    except (dns.exception.DNSException, OSError) as exc:
        return None, Evidence.of(address, text, source, None, error=str(exc) or type(exc).__name__)
    return nsid_of(reply), Evidence.of(address, text, source, reply)


def catchments(inst: Instance, address: str | None = None) -> dict[str, str | None]:
    """The site each resolver and client reaches at ``address`` (default: the root's)."""
    address = address or service_address(inst.plan)
    return {n.name: site_of(inst, address, n.name)[0] for n in inst.plan.nodes.values()
            if n.role in ("resolver", "client")}


class Catchment(Check):
    """The vantage point (``from``) reaches the anycast ``address`` (default: the lab root's) at
    the ``site`` node."""

    check_type = "catchment"
    check: Literal["catchment"]
    site: str
    address: str | None = None

    def targets(self, lab):
        return []  # routed: any vantage point with a gateway reaches it

    def run(self, inst):
        source = self.source or inst.default_vantage()
        address = self.address or service_address(inst.plan)
        got, ev = site_of(inst, address, source)
        p = {"source": source, "address": address, "site": self.site}
        if got is None:
            return self.result(False, "timeout", [ev], error=ev.error or "no NSID in the answer", **p)
        return self.result(got == self.site, "pass" if got == self.site else "other", [ev], got=got, **p)


class Bfd(Check):
    """``router`` has its BGP sessions with ``peer`` established, each watched by a BFD session
    that is up: a silent failure of the link is seen in a fraction of a second."""

    check_type = "bfd"
    check: Literal["bfd"]
    router: str
    peer: str

    def run(self, inst):
        node = inst.node(self.router)
        control = kinds.KINDS[node.kind].control(node, inst.backend.node_path(inst.state, self.router))
        peer = next((p for p in (node.bgp.peers if node.bgp else ()) if p.node == self.peer), None)
        p = {"router": self.router, "peer": self.peer}
        if control is None or peer is None:
            return self.result(False, "no_session", [], **p)
        res = inst.exec(self.router, [*control, "show", "bfd", "sessions"], capture=True, timeout=10)
        text = res.stdout if res.returncode == 0 else ""
        up = [a for a in peer.addresses if any(line.split()[:1] == [a] and " Up " in line for line in text.splitlines())]
        bgp = inst.exec(self.router, [*control, "show", "protocols"], capture=True, timeout=10).stdout or ""
        names = {bird.proto(peer.node, a): a for a in peer.addresses}
        established = {names[f[0]] for line in bgp.splitlines() if (f := line.split()) and f[0] in names
                       and "Established" in line}
        ev = [Evidence(self.router, "birdc show bfd sessions", self.router, answer=text.strip().splitlines()[-6:],
                       error=(res.stderr or "").strip())]
        down = [a for a in peer.addresses if a not in up or a not in established]
        if down:
            return self.result(False, "down", ev, addresses=", ".join(down), **p)
        return self.result(True, "pass", ev, addresses=", ".join(up), **p)


class LocalRoot(Check):
    """``resolver`` answers from its own copy of the root zone (RFC 8806), loaded and in use."""

    check_type = "local_root"
    check: Literal["local_root"]
    resolver: str

    def run(self, inst):
        node = inst.node(self.resolver)
        kind = kinds.KINDS[node.kind]
        argv = kind.local_zone(node, inst.backend.node_path(inst.state, self.resolver), ".")
        if argv is None:
            return self.result(False, "unsupported", [], resolver=self.resolver, kind=node.kind)
        res = inst.exec(self.resolver, argv, capture=True, timeout=10)
        out = res.stdout if res.returncode == 0 else ""
        ev = [Evidence(self.resolver, " ".join(argv[:1] + argv[3:]), self.resolver, answer=out.strip().splitlines()[:6],
                       error=(res.stderr or "").strip())]
        held = kind.holds_zone(out, ".")
        return self.result(held, "pass" if held else "missing", ev, resolver=self.resolver)


CHECKS = (Catchment, Bfd, LocalRoot)
