"""A registry's DS automation for a parent zone of the lab: the scanner of the children's CDS
(RFC 7344, RFC 8078) and the check of a DS submitted by hand, as through a registrar's form.

Both end in the same place: the parent's DS RRset for the child replaced by a dynamic update
(RFC 2136) signed with the registry's TSIG key, sent to the parent's primary, which signs it.
The scanner's policy, modelled on ccTLD scanners with their waits compressed to seconds: every
name server of the child is asked over TCP and must serve the same CDS set, which must match
keys of the child's DNSKEY set and stay unchanged over ``stable`` scans; a child whose current DS
vouches for one of its keys must have its CDS signed under that chain (a child not yet secure,
or broken, is bootstrapped at once if every name server signals the same CDS, validated, at
``_dsboot.<child>._signal.<name server>`` (RFC 9615 authenticated bootstrapping, checked through a
validating resolver of the lab), else after the stable scans alone: "accept after delay", RFC 8078
3.3, unless the registry's policy is ``authenticated``); CDS ``0 0 0 00`` asks for the DS to be removed.

This module runs as a plain script on the lab's registry node (``python3 registry.py
registry.json``; Debian's python3 with dnspython, nothing of dnslab's), and is imported by the
trainee API for ``submit_ds``. It only asks the addresses its configuration lists.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
from typing import Callable, Iterable

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

SocketFactory = Callable[[int, int], socket.socket]
DIGESTS = {2: "SHA256", 4: "SHA384"}  # what a registry accepts (RFC 8624: SHA-1 must not be used)


class Refused(Exception):
    """A DS (or CDS) set the registry does not publish; the message says why."""


def ask(server: str, name: str, rdtype: str, sockets: SocketFactory | None = None,
        timeout: float = 2.0, rd: bool = False) -> dns.message.Message:
    """One query over TCP with DNSSEC records, from a socket of ``sockets`` (default: this node's)."""
    q = dns.message.make_query(name, rdtype, want_dnssec=True, use_edns=0)
    if not rd:
        q.flags &= ~dns.flags.RD
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    sock = (sockets or socket.socket)(fam, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        sock.setblocking(False)
        return dns.query.tcp(q, server, timeout=timeout, sock=sock)
    finally:
        sock.close()


def _rrset(reply: dns.message.Message, name: dns.name.Name, rdtype: int):
    rrset = next((r for r in reply.answer if r.name == name and r.rdtype == rdtype), None)
    sigs = next((r for r in reply.answer if r.name == name and r.rdtype == dns.rdatatype.RRSIG
                 and r.covers == rdtype), None)
    return rrset, sigs


def parse_ds(zone: str, texts: Iterable[str]) -> list[dns.rdata.Rdata]:
    """DS records as a registrar's form takes them: ``TAG ALG DIGEST-TYPE HEX``, or a whole DS
    record line (owner, TTL and class are checked, then dropped)."""
    out = []
    for text in texts:
        parts = text.split()
        if "DS" in (p.upper() for p in parts):
            at = [p.upper() for p in parts].index("DS")
            owner = parts[0] if at > 0 and not parts[0].isdigit() else zone
            if dns.name.from_text(owner) != dns.name.from_text(zone):
                raise Refused(f"{text!r} is a DS of {owner}, not of {zone}")
            parts = parts[at + 1:]
        try:
            out.append(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, " ".join(parts)))
        except (dns.exception.DNSException, ValueError) as exc:
            raise Refused(f"{text!r} is not a DS record (key tag, algorithm, digest type, digest in hex): "
                          f"{exc}") from None
    if not out:
        raise Refused("no DS record given")
    return out


def check_ds(zone: str, ds_set: list[dns.rdata.Rdata], dnskeys) -> None:
    """Refuse a DS set that a registry must not publish: an unsupported digest type, a digest of
    the wrong length, or a DS that matches no KSK of the child's DNSKEY set (``dnskeys``)."""
    name = dns.name.from_text(zone)
    if dnskeys is None:
        raise Refused(f"{zone} serves no DNSKEY set: sign it before asking for a DS")
    for ds in ds_set:
        label = f"DS {ds.key_tag} {ds.algorithm} {ds.digest_type}"
        if ds.digest_type not in DIGESTS:
            raise Refused(f"{label}: digest type {ds.digest_type} is not accepted (2 = SHA-256, 4 = SHA-384)")
        want = 32 if ds.digest_type == 2 else 48
        if len(ds.digest) != want:
            raise Refused(f"{label}: a {DIGESTS[ds.digest_type]} digest has {want} bytes, this one {len(ds.digest)}")
        keys = [k for k in dnskeys if dns.dnssec.key_id(k) == ds.key_tag and k.algorithm == ds.algorithm]
        if not keys:
            tags = ", ".join(sorted(str(dns.dnssec.key_id(k)) for k in dnskeys))
            raise Refused(f"{label}: {zone} has no key with tag {ds.key_tag} and algorithm {ds.algorithm} "
                          f"(its keys: {tags})")
        if not all(k.flags & 0x0001 for k in keys):
            raise Refused(f"{label}: key {ds.key_tag} of {zone} is not a key-signing key (SEP flag)")
        if not any(dns.dnssec.make_ds(name, k, DIGESTS[ds.digest_type]) == ds for k in keys):
            raise Refused(f"{label}: the digest is not that of key {ds.key_tag} of {zone} (wrong digest)")


def child_view(zone: str, servers: list[str], sockets: SocketFactory | None = None) -> tuple:
    """(DNSKEY set, its RRSIGs, CDS set, its RRSIGs) of the child as every one of ``servers``
    serves it over TCP (None where absent); :class:`Refused` if they disagree or one does not answer."""
    name = dns.name.from_text(zone)
    seen = []
    for server in servers:
        try:
            keys, key_sigs = _rrset(ask(server, zone, "DNSKEY", sockets), name, dns.rdatatype.DNSKEY)
            cds, cds_sigs = _rrset(ask(server, zone, "CDS", sockets), name, dns.rdatatype.CDS)
        except (dns.exception.DNSException, OSError) as exc:
            raise Refused(f"name server {server} of {zone} did not answer over TCP: {exc or type(exc).__name__}")
        seen.append((server, keys, key_sigs, cds, cds_sigs))
    texts = {(frozenset(r.to_text() for r in s[1] or ()), frozenset(r.to_text() for r in s[3] or ())) for s in seen}
    if len(texts) > 1:
        raise Refused(f"the name servers of {zone} ({', '.join(servers)}) serve different DNSKEY or CDS sets")
    return seen[0][1:]


def parent_ds(parent_server: str, zone: str, sockets: SocketFactory | None = None) -> list[dns.rdata.Rdata]:
    reply = ask(parent_server, zone, "DS", sockets)
    rrset, _ = _rrset(reply, dns.name.from_text(zone), dns.rdatatype.DS)
    return list(rrset or ())


def update_parent(primary: str, parent: str, zone: str, ds_set: list[dns.rdata.Rdata], key_name: str, secret: str,
                  sockets: SocketFactory | None = None, ttl: int = 60) -> None:
    """Replace the DS RRset of ``zone`` in ``parent`` on its primary (an empty set: remove it),
    by a dynamic update signed with the registry's TSIG key."""
    upd = dns.update.UpdateMessage(parent, keyring=dns.tsig.Key(key_name, secret, "hmac-sha256"))
    upd.delete(zone, dns.rdatatype.DS)
    for ds in ds_set:
        upd.add(zone, ttl, ds)
    fam = socket.AF_INET6 if ":" in primary else socket.AF_INET
    sock = (sockets or socket.socket)(fam, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect((primary, 53))
        sock.setblocking(False)
        reply = dns.query.tcp(upd, primary, timeout=5, sock=sock)
    finally:
        sock.close()
    if reply.rcode() != dns.rcode.NOERROR:
        raise Refused(f"the primary of {parent} ({primary}) refused the update: {dns.rcode.to_text(reply.rcode())}")


def submit(config: dict, zone: str, texts: Iterable[str], sockets: SocketFactory | None = None) -> list[str]:
    """A DS submitted by hand for child ``zone``: checked against the child's DNSKEY set as its
    name servers serve it, then published. Returns the DS records published, as text."""
    zone = dns.name.from_text(zone).to_text()
    child = config["children"].get(zone)
    if child is None:
        raise Refused(f"{zone} is not a child of {config['parent']} (children: {', '.join(config['children'])})")
    ds_set = parse_ds(zone, texts)
    keys = child_view(zone, child["servers"], sockets)[0]
    check_ds(zone, ds_set, keys)
    update_parent(config["primary"], config["parent"], zone, ds_set, config["key"], config["secret"], sockets,
                  ttl=config.get("ds_ttl", 60))
    return [ds.to_text() for ds in ds_set]


class Scanner:
    """The CDS scanner of one parent zone (its configuration: see :func:`main`)."""

    def __init__(self, config: dict, sockets: SocketFactory | None = None) -> None:
        self.config, self.sockets = config, sockets
        self.status: dict[str, dict] = {z: {"state": "waiting", "stable": 0} for z in config["children"]}
        self.last: dict[str, frozenset] = {}

    def scan(self) -> None:
        for zone, child in self.config["children"].items():
            st = self.status[zone]
            st["scanned"] = time.time()
            try:
                st.update(self._scan(zone, child))
            except Refused as exc:
                st.update(state="refused", reason=str(exc), stable=0)
                self.last.pop(zone, None)
            except (dns.exception.DNSException, OSError) as exc:
                st.update(state="error", reason=str(exc) or type(exc).__name__, stable=0)

    def _scan(self, zone: str, child: dict) -> dict:
        name = dns.name.from_text(zone)
        keys, key_sigs, cds, cds_sigs = child_view(zone, child["servers"], self.sockets)
        if cds is None:
            self.last.pop(zone, None)
            return {"state": "no CDS", "reason": "", "stable": 0, "cds": []}
        texts = frozenset(r.to_text() for r in cds)
        stable = self.status[zone]["stable"] + 1 if self.last.get(zone) == texts else 1
        self.last[zone] = texts
        out = {"cds": sorted(texts), "stable": stable, "reason": ""}
        delete = all(r.algorithm == 0 for r in cds)
        wanted = [] if delete else [dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.DS, r.to_text()) for r in cds]
        if not delete:
            check_ds(zone, wanted, keys)
        current = parent_ds(self.config["primary"], zone, self.sockets)
        vouched = [k for k in keys or () for ds in current
                   if ds.digest_type in DIGESTS and dns.dnssec.make_ds(name, k, DIGESTS[ds.digest_type]) == ds]
        if vouched:  # a secure child: its CDS must be signed under the chain its current DS starts
            try:
                vouched_set = dns.rdataset.from_rdata_list(keys.ttl, vouched)
                dns.dnssec.validate(keys, key_sigs, {name: vouched_set})
                dns.dnssec.validate(cds, cds_sigs, {name: keys})
            except (dns.dnssec.ValidationFailure, TypeError) as exc:
                raise Refused(f"the CDS of {zone} is not signed under the chain of its current DS: {exc}") from None
        if {d.to_text() for d in current} == {d.to_text() for d in wanted}:
            return {**out, "state": "in sync", "ds": [d.to_text() for d in current]}
        if not vouched and not delete:  # bootstrapping: RFC 9615 signals first
            why = self._unsignalled(zone, child, texts)
            if why is None:
                return {**out, **self._publish(zone, wanted), "state": "DS bootstrapped (RFC 9615)"}
            if self.config.get("bootstrap") == "authenticated":
                return {**out, "state": "waiting for an RFC 9615 signal", "reason": why}
        if stable < self.config["stable"]:
            return {**out, "state": f"seen {stable}/{self.config['stable']}" + ("" if vouched else " (bootstrap)")}
        return {**out, **self._publish(zone, wanted), "state": "DS removed" if delete else "DS updated"}

    def _publish(self, zone: str, ds_set: list[dns.rdata.Rdata]) -> dict:
        update_parent(self.config["primary"], self.config["parent"], zone, ds_set, self.config["key"],
                      self.config["secret"], self.sockets, ttl=self.config.get("ds_ttl", 60))
        return {"ds": [d.to_text() for d in ds_set], "updated": time.time()}

    def _unsignalled(self, zone: str, child: dict, cds: frozenset) -> str | None:
        """Why the child's CDS is not authenticated by RFC 9615 signals (None: it is): each of its
        name servers must publish the same CDS at ``_dsboot.<zone>._signal.<name server>``, which
        a validating resolver must find secure (AD)."""
        resolver = self.config.get("resolver")
        if not resolver or not child.get("nameservers"):
            return "no validating resolver to check RFC 9615 signals with"
        for ns in child["nameservers"]:
            name = f"_dsboot.{zone}_signal.{ns}"
            reply = ask(resolver, name, "CDS", self.sockets, rd=True)
            signal, _ = _rrset(reply, dns.name.from_text(name), dns.rdatatype.CDS)
            if signal is None:
                return f"no signal at {name} ({dns.rcode.to_text(reply.rcode())})"
            if not reply.flags & dns.flags.AD:
                return f"the signal at {name} is not validated (no AD flag from the resolver)"
            if frozenset(r.to_text() for r in signal) != cds:
                return f"the signal at {name} differs from the CDS of {zone}"
        return None


def main(argv: list[str]) -> int:
    """``registry.py CONFIG``: scan forever, every ``interval`` seconds, writing ``status`` (JSON).

    CONFIG is JSON: one or more registries ``[{parent, primary, key, secret, interval, stable,
    ds_ttl, children: {zone: {servers: [addresses]}}}]``, ``status``, the file to write, and
    ``pid``, where it writes its PID."""
    with open(argv[1]) as f:
        config = json.load(f)
    with open(config["pid"], "w") as f:  # how the node's stop command finds it
        f.write(f"{os.getpid()}\n")
    scanners = [Scanner(c) for c in config["registries"]]
    print(f"registry of {', '.join(c['parent'] for c in config['registries'])}: scanning every "
          f"{min(c['interval'] for c in config['registries'])}s", flush=True)
    while True:
        for s in scanners:
            before = {z: st.get("state") for z, st in s.status.items()}
            s.scan()
            for z, st in s.status.items():
                if st.get("state") != before[z] or st.get("state", "").startswith("DS "):
                    print(f"{z}: {st['state']}{(': ' + st['reason']) if st.get('reason') else ''}", flush=True)
        status = {"registries": [{"parent": s.config["parent"], "children": s.status} for s in scanners]}
        tmp = config["status"] + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f, indent=1)
        os.replace(tmp, config["status"])
        time.sleep(min(c["interval"] for c in config["registries"]))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
