"""DNSSEC checks: how a validating resolver judges a name, and the chain of trust itself, level
by level from the lab root's key, as a validator would walk it (with dnspython)."""
from __future__ import annotations

import time
from typing import Literal

import dns.dnssec
import dns.exception
import dns.flags
import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
from pydantic import Field

from .. import dnssec
from ..names import zone_name as _zone
from .base import Check, ask
from .dns import Resolves


class Validates(Check):
    """A name, asked through a resolver with DNSSEC, is validated as expected: ``secure`` (the
    AD flag), ``insecure`` (an answer without AD: unsigned, or no chain of trust to it) or
    ``bogus`` (SERVFAIL, with the Extended DNS Error the resolver gives, if any)."""

    check_type = "validates"
    check: Literal["validates"]
    name: str
    type: str = "A"
    expect: Literal["secure", "insecure", "bogus"] = "secure"
    via: str | None = Field(default=None, description="resolver node (default: the client's resolver)")

    resolver = Resolves.resolver
    targets = Resolves.targets

    def run(self, inst):
        via = self.resolver(inst.plan)
        reply, ev = ask(inst, via, self.name, self.type, source=self.source, rd=True, dnssec=True)
        p = {"name": self.name, "type": self.type, "via": via, "expected": self.expect}
        if reply is None:
            return self.result(False, "timeout", [ev], error=ev.error, **p)
        actual = verdict(reply)
        ede = "".join(f", EDE {e}" for e in ev.ede)
        if actual == self.expect:
            return self.result(True, "pass", [ev], actual=actual, ede=ede, **p)
        return self.result(False, "bogus" if actual == "bogus" else "wrong", [ev], actual=actual, ede=ede, **p)


def verdict(reply) -> str:
    """How a validating resolver judged an answer: secure, insecure or bogus."""
    if reply.rcode() == dns.rcode.SERVFAIL:
        return "bogus"
    return "secure" if reply.flags & dns.flags.AD else "insecure"


class Chain(Check):
    """The chain of trust down to a signed zone, level by level from the lab root: the parent's
    DS (the root's: the trust anchor) matches a DNSKEY of the zone, that key signs the zone's
    DNSKEY set, which signs its SOA; no signature is valid for less time than the TTL of what it
    signs; every signature seen is valid for ``min_days`` more days. Each zone is asked at its primary (or only server), over TCP, with DNSSEC records."""

    check_type = "chain"
    check: Literal["chain"]
    zone: str
    min_days: float = Field(default=0, ge=0, description="days every signature must stay valid")

    def targets(self, lab):
        return [lab.zones[z].loader for z in _path(lab, _zone(self.zone))]

    def run(self, inst):
        lab, target = inst.plan, _zone(self.zone)
        anchor = lab.trust_anchor
        evidence, levels, expiry = [], [], []
        for z in _path(lab, target):
            zplan = lab.zones[z]
            p = {"zone": z, "target": target}
            if zplan.parent is None:
                if anchor is None:
                    return self.result(False, "no_anchor", evidence, **p)
                ds_set = [anchor.ds()]
            else:
                reply, ev = ask(inst, lab.zones[zplan.parent].loader, z, "DS", source=self.source, dnssec=True,
                                tcp=True)
                evidence.append(ev)
                if reply is None:
                    return self.result(False, "timeout", evidence, server=ev.server, error=ev.error, **p)
                ds_set = [rr for rrset in reply.answer if rrset.rdtype == dns.rdatatype.DS for rr in rrset]
                if not ds_set:
                    return self.result(False, "no_ds", evidence, parent=zplan.parent, **p)
            name = dns.name.from_text(z)
            reply, ev = ask(inst, zplan.loader, z, "DNSKEY", source=self.source, dnssec=True, tcp=True)
            evidence.append(ev)
            if reply is None:
                return self.result(False, "timeout", evidence, server=ev.server, error=ev.error, **p)
            keys, key_sigs = _rrset(reply, name, dns.rdatatype.DNSKEY)
            if keys is None:
                return self.result(False, "no_dnskey", evidence, server=zplan.loader, **p)
            tags = {dns.dnssec.key_id(k): k for k in keys}
            vouched = [t for t, k in tags.items() for ds in ds_set if dnssec.vouches(name, k, ds)]
            ds_tags = ", ".join(sorted({str(ds.key_tag) for ds in ds_set}))
            if not vouched:
                return self.result(False, "ds_mismatch", evidence, ds=ds_tags, keys=_tags(tags), **p)
            try:  # signed by a key the DS vouches for
                if key_sigs is None:
                    raise dns.dnssec.ValidationFailure("no RRSIG")
                dns.dnssec.validate(keys, key_sigs, {name: dns.rdataset.from_rdata_list(
                    keys.ttl, [tags[t] for t in vouched])})
            except dns.dnssec.ValidationFailure as exc:
                return self.result(False, "bad_dnskey_sig", evidence, keys=_tags(tags), error=str(exc), **p)
            reply, ev = ask(inst, zplan.loader, z, "SOA", source=self.source, dnssec=True, tcp=True)
            evidence.append(ev)
            soa, soa_sigs = _rrset(reply, name, dns.rdatatype.SOA) if reply is not None else (None, None)
            try:
                if soa is None or soa_sigs is None:
                    raise dns.dnssec.ValidationFailure("no signed SOA")
                dns.dnssec.validate(soa, soa_sigs, {name: keys})
            except dns.dnssec.ValidationFailure as exc:
                return self.result(False, "bad_soa_sig", evidence, keys=_tags(tags), error=str(exc), **p)
            for rrset, sigs in ((keys, key_sigs), (soa, soa_sigs)):
                validity = min(s.expiration - s.inception for s in sigs)
                if rrset.ttl > validity:  # RFC 6781 4.4.2: a cached copy would outlive its signature
                    return self.result(False, "ttl_outlives", evidence, rtype=dns.rdatatype.to_text(rrset.rdtype),
                                       ttl=rrset.ttl, validity=_span(validity), **p)
            expiry.append((min(s.expiration for s in (*key_sigs, *soa_sigs)), z))
            levels.append(f"{z} (DS {ds_tags}, keys {_tags(tags)})" if zplan.parent else
                          f"{z} (anchor {ds_tags}, keys {_tags(tags)})")
        first, where = min(expiry)
        days = round((first - time.time()) / 86400, 1)
        if days < self.min_days:
            return self.result(False, "expiring", evidence, zone=where, target=target, days=days,
                               min_days=self.min_days)
        return self.result(True, "pass", evidence, target=target, chain=" -> ".join(levels), days=days,
                           valid=_span(first - time.time()))


class DsSync(Check):
    """The parent publishes the DS set the zone asks for in its CDS (RFC 7344): a KSK rollover is
    not stalled waiting for the parent. A zone that publishes no CDS asks for nothing: it passes."""

    check_type = "ds_sync"
    check: Literal["ds_sync"]
    zone: str

    def targets(self, lab):
        zplan = lab.zones[_zone(self.zone)]
        return [zplan.loader] + ([lab.zones[zplan.parent].loader] if zplan.parent else [])

    def run(self, inst):
        zone = _zone(self.zone)
        zplan = inst.plan.zones[zone]
        p = {"zone": zone, "parent": zplan.parent or "."}
        if zplan.parent is None:
            return self.result(False, "no_parent", [], **p)
        got = {}
        evidence = []
        for what, server in (("CDS", zplan.loader), ("DS", inst.plan.zones[zplan.parent].loader)):
            reply, ev = ask(inst, server, zone, what, source=self.source, dnssec=True, tcp=True)
            evidence.append(ev)
            if reply is None:
                return self.result(False, "timeout", evidence, server=server, error=ev.error, **p)
            got[what] = sorted(rr.to_text() for rrset in reply.answer
                               if rrset.rdtype == dns.rdatatype.from_text(what) for rr in rrset)
        cds, ds = got["CDS"], got["DS"]
        asked = [] if cds and all(c.split()[1] == "0" for c in cds) else cds  # CDS 0 0 0 00: remove the DS
        tags = {k: ", ".join(sorted({r.split()[0] for r in v})) or "none" for k, v in (("cds", asked), ("ds", ds))}
        if not cds:
            return self.result(True, "no_cds", evidence, ds=tags["ds"], **p)
        if asked == ds:
            return self.result(True, "pass", evidence, ds=tags["ds"], **p)
        return self.result(False, "waiting", evidence, cds=tags["cds"], ds=tags["ds"], **p)


class Rolled(Check):
    """A rollover of a zone's KSK or ZSK is over: its signer serves exactly one key of that role,
    and it is not the one the lab made for the instance at ``up``."""

    check_type = "rolled"
    check: Literal["rolled"]
    zone: str
    role: Literal["ksk", "zsk"]

    def targets(self, lab):
        return [lab.zones[_zone(self.zone)].loader]

    def run(self, inst):
        zone = _zone(self.zone)
        zplan = inst.plan.zones[zone]
        p = {"zone": zone, "role": self.role.upper()}
        reply, ev = ask(inst, zplan.loader, zone, "DNSKEY", source=self.source, dnssec=True, tcp=True)
        if reply is None:
            return self.result(False, "timeout", [ev], server=zplan.loader, error=ev.error, **p)
        sep = self.role == "ksk"
        served = sorted(dns.dnssec.key_id(k) for rrset in reply.answer if rrset.rdtype == dns.rdatatype.DNSKEY
                        for k in rrset if bool(k.flags & 1) == sep)
        original = {k.tag for k in zplan.keys if k.role == self.role}
        tags = ", ".join(map(str, served)) or "none"
        if set(served) & original:
            key = "under_way" if len(served) > 1 else "original"
            return self.result(False, key, [ev], keys=tags, original=", ".join(map(str, sorted(original))), **p)
        if len(served) != 1:
            return self.result(False, "under_way", [ev], keys=tags, original="", **p)
        return self.result(True, "pass", [ev], keys=tags, **p)


def _span(seconds: float) -> str:
    """A duration as people read it: ``14d 0h``, ``3h 20m``, ``52s``."""
    s = max(0, int(seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def _path(lab, zone: str) -> list[str]:
    """The lab's zones from the root down to ``zone``."""
    out = [zone]
    while lab.zones[out[-1]].parent is not None:
        out.append(lab.zones[out[-1]].parent)
    return out[::-1]


def _rrset(reply, name, rdtype):
    """The ``rdtype`` RRset at ``name`` in the answer and its RRSIGs (None, None if absent)."""
    rrset = next((r for r in reply.answer if r.name == name and r.rdtype == rdtype), None)
    sigs = next((r for r in reply.answer if r.name == name and r.rdtype == dns.rdatatype.RRSIG
                 and r.covers == rdtype), None)
    return (rrset, sigs) if rrset is not None else (None, None)


def _tags(tags: dict) -> str:
    return ", ".join(f"{t}{' KSK' if k.flags & 1 else ''}" for t, k in sorted(tags.items()))


CHECKS = (Validates, Chain, DsSync, Rolled)
