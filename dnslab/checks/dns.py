"""The first checks: resolution, authority, delegation, serials, recursion."""
from __future__ import annotations

from typing import Literal

import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
from pydantic import Field

from ..names import zone_name as _zone
from .base import Check, ask
from .result import Evidence


def _rdata(reply, qname: str, qtype: str) -> list[str]:
    """Data of the answer records of ``qtype`` (following CNAMEs to their end)."""
    want = dns.rdatatype.from_text(qtype)
    return sorted(rr.to_text() for rrset in reply.answer if rrset.rdtype == want for rr in rrset)


class Resolves(Check):
    """A name resolves through a resolver to the expected data."""

    check_type = "resolves"
    check: Literal["resolves"]
    name: str
    type: str = "A"
    expect: list[str] = Field(default_factory=list, description="expected data, any order; empty: any data")
    via: str | None = Field(default=None, description="resolver node (default: the client's resolver)")

    def resolver(self, lab) -> str:
        client = lab.nodes.get(self.source or lab.default_vantage())
        return self.via or (client.resolver if client and client.resolver else lab.by_role("resolver")[0].name)

    def targets(self, lab):
        return [self.resolver(lab)] if lab.by_role("resolver") or self.via else []

    def run(self, inst):
        via = self.resolver(inst.plan)
        reply, ev = ask(inst, via, self.name, self.type, source=self.source, rd=True)
        p = {"name": self.name, "type": self.type, "via": via}
        if reply is None:
            return self.result(False, "timeout", [ev], error=ev.error, **p)
        if reply.rcode() != dns.rcode.NOERROR:
            return self.result(False, "rcode", [ev], rcode=dns.rcode.to_text(reply.rcode()), **p)
        got = _rdata(reply, self.name, self.type)
        if not got:
            return self.result(False, "no_answer", [ev], **p)
        expected = sorted(_canon_rdata(self.type, e) for e in self.expect) if self.expect else got
        if got != expected:
            return self.result(False, "wrong_answer", [ev], got=", ".join(got), expected=", ".join(expected), **p)
        return self.result(True, "pass", [ev], got=", ".join(got), **p)


class Authoritative(Check):
    """Servers of a zone answer its SOA with the AA flag (over TCP with ``tcp: true``)."""

    check_type = "authoritative"
    check: Literal["authoritative"]
    zone: str
    server: str | None = Field(default=None, description="one node (default: every server of the zone)")
    tcp: bool = Field(default=False, description="ask over TCP (RFC 7766: every server must answer over it)")

    def targets(self, lab):
        return [self.server] if self.server else list(lab.zones[_zone(self.zone)].servers)

    def run(self, inst):
        zone = _zone(self.zone)
        servers = self.targets(inst.plan)
        evidence = []
        for s in servers:
            reply, ev = ask(inst, s, zone, "SOA", source=self.source, tcp=self.tcp)
            evidence.append(ev)
            if reply is None:
                return self.result(False, "timeout", evidence, server=s, zone=zone, error=ev.error,
                                   over=" (TCP)" if self.tcp else "")
            if not (reply.flags & dns.flags.AA and reply.rcode() == dns.rcode.NOERROR):
                return self.result(False, "not_aa", evidence, server=s, zone=zone,
                                   rcode=dns.rcode.to_text(reply.rcode()))
        return self.result(True, "pass", evidence, server=", ".join(servers), zone=zone)


class Delegation(Check):
    """The parent's NS and glue for a zone match what the zone itself serves."""

    check_type = "delegation"
    check: Literal["delegation"]
    zone: str

    def targets(self, lab):
        zplan = lab.zones[_zone(self.zone)]
        return list(zplan.servers) + (list(lab.zones[zplan.parent].servers) if zplan.parent else [])

    def run(self, inst):
        zone = _zone(self.zone)
        zplan = inst.plan.zones[zone]
        if zplan.parent is None:
            return self.result(False, "no_parent", [], zone=zone)
        evidence = []
        parent_ns: set[str] = set()
        glue: dict[str, set[str]] = {}
        for s in inst.plan.zones[zplan.parent].servers:
            reply, ev = ask(inst, s, zone, "NS", source=self.source)
            evidence.append(ev)
            if reply is None:
                return self.result(False, "timeout", evidence, server=s, error=ev.error)
            for rrset in reply.authority + reply.answer:
                if rrset.rdtype == dns.rdatatype.NS and rrset.name == dns.name.from_text(zone):
                    parent_ns |= {rr.target.to_text().lower() for rr in rrset}
            for rrset in reply.additional:
                if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    glue.setdefault(rrset.name.to_text().lower(), set()).update(rr.to_text() for rr in rrset)
        child_ns: set[str] = set()
        for s in zplan.servers:
            reply, ev = ask(inst, s, zone, "NS", source=self.source)
            evidence.append(ev)
            if reply is None:
                return self.result(False, "timeout", evidence, server=s, error=ev.error)
            child_ns |= {rr.target.to_text().lower() for rrset in reply.answer
                         if rrset.rdtype == dns.rdatatype.NS for rr in rrset}
        p = {"zone": zone, "parent": zplan.parent}
        if parent_ns != child_ns:
            return self.result(False, "ns_mismatch", evidence, parent_ns=", ".join(sorted(parent_ns)) or "nothing",
                               child_ns=", ".join(sorted(child_ns)) or "nothing", **p)
        for host in sorted(parent_ns):
            if not dns.name.from_text(host).is_subdomain(dns.name.from_text(zone)):
                if host in glue:  # sibling glue: a resolver may use it, so it must be right too
                    actual = set(_addresses_of(inst, host))
                    if actual and glue[host] != actual:
                        return self.result(False, "glue_mismatch", evidence, host=host,
                                           parent_glue=", ".join(sorted(glue[host])),
                                           child_addr=", ".join(sorted(actual)), **p)
                continue
            actual = set()
            for s in zplan.servers:
                for qtype in ("A", "AAAA"):
                    reply, ev = ask(inst, s, host, qtype, source=self.source)
                    evidence.append(ev)
                    if reply is not None:
                        actual |= set(_rdata(reply, host, qtype))
            if glue.get(host, set()) != actual:
                return self.result(False, "glue_mismatch", evidence, host=host,
                                   parent_glue=", ".join(sorted(glue.get(host, set()))) or "missing",
                                   child_addr=", ".join(sorted(actual)) or "nowhere", **p)
        for host in sorted(child_ns):
            addresses = [a for a in _addresses_of(inst, host)]
            for a in addresses[:1]:
                reply, ev = ask(inst, a, zone, "SOA", source=self.source)
                evidence.append(ev)
                if reply is None or not reply.flags & dns.flags.AA:
                    return self.result(False, "lame", evidence, host=host, **p)
        return self.result(True, "pass", evidence, ns=", ".join(sorted(child_ns)), **p)


class Serials(Check):
    """Every server of a zone serves the same SOA serial."""

    check_type = "serials"
    check: Literal["serials"]
    zone: str

    def targets(self, lab):
        return list(lab.zones[_zone(self.zone)].servers)

    def run(self, inst):
        zone = _zone(self.zone)
        serials: dict[str, int] = {}
        evidence = []
        for s in inst.plan.zones[zone].servers:
            reply, ev = ask(inst, s, zone, "SOA", source=self.source)
            evidence.append(ev)
            soa = [rr for rrset in (reply.answer if reply else []) if rrset.rdtype == dns.rdatatype.SOA for rr in rrset]
            if not soa:
                return self.result(False, "timeout", evidence, server=s, zone=zone, error=ev.error or ev.rcode)
            serials[s] = soa[0].serial
        if len(set(serials.values())) > 1:
            return self.result(False, "differ", evidence, zone=zone,
                               serials=", ".join(f"{k}={v}" for k, v in serials.items()))
        return self.result(True, "pass", evidence, zone=zone, count=len(serials),
                           serial=next(iter(serials.values())))


class Transfer(Check):
    """Who may copy a zone: an AXFR of ``zone`` at ``server``, asked from the vantage point
    (``from``), signed with the zone's TSIG key if ``key``; ``expect`` refused (no record given
    away) or allowed (the whole zone, SOA to SOA)."""

    check_type = "transfer"
    check: Literal["transfer"]
    zone: str
    server: str
    key: bool = Field(default=False, description="sign the request with the zone's TSIG key")
    expect: Literal["refused", "allowed"] = "refused"

    def targets(self, lab):
        return [self.server]

    def run(self, inst):
        from .. import dnsquery
        from ..kinds.base import served
        zone, source = _zone(self.zone), self.source or inst.default_vantage()
        p = {"zone": zone, "server": self.server, "source": source, "signed": " (TSIG)" if self.key else ""}
        key = None
        if self.key:
            name = next((s.key for s in served(inst.node(self.server), inst.plan) if s.name == zone), None)
            if name is None:
                return self.result(False, "no_key", [], **p)
            key = (name, inst.state.data.get("tsig", {}).get(name, ""))
        address = inst.address_of(self.server)
        records, ended = dnsquery.transfer(inst.sockets(source), address, zone, key)
        ev = Evidence(self.server, f"{zone} IN AXFR +tcp{' +tsig' if key else ''}", source,
                      rcode=ended if ended.isupper() else "", answer=[f"{records} records received"],
                      error="" if ended.isupper() or ended == "complete" else ended)
        allowed = ended == "complete"
        if allowed == (self.expect == "allowed"):
            return self.result(True, "pass_" + self.expect, [ev], records=records, how=ended, **p)
        return self.result(False, "leaked" if allowed else "refused", [ev], records=records, how=ended, **p)


class Recursion(Check):
    """A server does (open) or does not (closed) recurse for a client."""

    check_type = "recursion"
    check: Literal["recursion"]
    server: str
    expect: Literal["open", "closed"]
    name: str | None = Field(default=None, description="name to ask (default: a lab zone the server does not serve)")

    def targets(self, lab):
        return [self.server]

    def run(self, inst):
        node = inst.plan.nodes.get(self.server)
        served = set(node.zones) if node else set()
        name = self.name or next((z for z in inst.plan.zones if z not in served and z != "."), ".")
        reply, ev = ask(inst, self.server, name, "SOA", source=self.source, rd=True)
        if reply is None:
            return self.result(False, "timeout", [ev], server=self.server, error=ev.error)
        is_open = bool(reply.flags & dns.flags.RA) and reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)
        actual = "open" if is_open else "closed"
        return self.result(actual == self.expect, "pass" if actual == self.expect else "wrong", [ev],
                           server=self.server, actual=actual, expected=self.expect)


def _canon_rdata(qtype: str, text: str) -> str:
    """``2001:DB8::0080`` and ``2001:db8::80`` compare equal; names are taken as absolute."""
    try:
        return dns.rdata.from_text("IN", qtype, text, origin=dns.name.root, relativize=False).to_text()
    except (dns.exception.DNSException, ValueError):
        return text


def _addresses_of(inst, host: str) -> list[str]:
    for node in inst.plan.nodes.values():
        if node.hostname == host:
            return node.addresses
    return []


CHECKS = (Resolves, Authoritative, Delegation, Serials, Recursion, Transfer)
