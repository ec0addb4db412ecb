"""What a resolver holds and how it asks: its cache against what the lab's zones serve
(poisoned or clean), and the defences against forged answers its queries carry, seen where
they arrive (random source ports, 0x20, DNS cookies)."""
from __future__ import annotations

import random
import string
import threading
import time
from typing import Iterator, Literal

import dns.edns
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
from pydantic import Field

from .base import Check
from .dns import _canon_rdata, _zone
from .result import Evidence

WATCHED = {"A", "AAAA", "NS", "CNAME", "DNAME", "MX"}  # what a poisoner plants (signatures and proofs aside)


UNCHECKED, BOGUS, SECURE = "0", "1", {"3", "5"}  # Unbound's security status of an RRset: insecure, secure


def cached(dump: str) -> Iterator[tuple[str, str, str]]:
    """(owner, TYPE, data) of each record a resolver would serve from its cache dump (Unbound's
    dump_cache, BIND's dumpdb): zone-file lines, the class optional, an owner left blank
    repeating the last one. Left out: empty RRsets (cached negative answers), what Unbound found
    bogus (kept only to answer SERVFAIL), and, when Unbound validates (some RRset in the dump is
    secure or insecure), what it has not validated yet: it validates that before serving it."""
    status: dict[int, str] = {}  # line number of each Unbound RRset header -> its security
    lines = dump.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(";rrset"):  # ";rrset[ nsec_apex] TTL COUNT SIGS TRUST SECURITY"
            head = [f for f in line.split() if f != "nsec_apex"]
            status[i] = head[5] if len(head) > 5 else UNCHECKED
    validating = any(s in SECURE for s in status.values())
    owner, served = None, True
    for i, line in enumerate(lines):
        if i in status:
            served = status[i] != BOGUS and not (validating and status[i] == UNCHECKED)
        text = line.split(";", 1)[0]
        if not text.strip() or text.startswith(("$", "START_", "END_", "msg ", "EOF")):
            continue
        fields = text.split()
        if not line[0].isspace():
            owner, fields = fields[0], fields[1:]
        if not fields or not fields[0].isdigit():  # a record has its TTL (Unbound's message entries do not)
            continue
        fields = fields[1:]
        if fields and fields[0].upper() in ("IN", "CH", "HS"):
            fields = fields[1:]
        if owner is not None and len(fields) >= 2 and served and fields[1:] != ["\\#", "0"]:
            yield owner.lower(), fields[0].upper(), " ".join(fields[1:])


class Cache(Check):
    """A resolver's cache, read from the resolver itself (unbound-control dump_cache, rndc dumpdb):
    ``clean`` when every address, name server, alias and mail exchanger it holds at or below
    ``zone`` is one the lab's zones serve, ``poisoned`` when it holds one they do not. A resolver
    that cannot list its cache (Knot Resolver) says instead which zone cut it holds for each name
    of ``zone`` (and the zone itself): one the lab's zones do not delegate is planted."""

    check_type = "cache"
    check: Literal["cache"]
    resolver: str
    zone: str
    expect: Literal["clean", "poisoned"] = "clean"

    def run(self, inst):
        from .. import kinds
        zone, node = _zone(self.zone), inst.node(self.resolver)
        p = {"resolver": self.resolver, "zone": zone}
        kind, d = kinds.KINDS[node.kind], inst.backend.node_path(inst.state, node.name)
        dump = kind.dump_cache(node, d)
        argv = dump or kind.zone_cuts(node, d, [zone, *(n for n in inst.plan.names_in(zone)
                                                        if n != zone and not n.startswith("*"))])
        if argv is None:
            return self.result(False, "no_dump", [], kind=node.kind, **p)
        res = inst.exec(self.resolver, argv, capture=True, timeout=30)
        ev = Evidence(self.resolver, "cache dump" if dump else "zone cuts", self.resolver)
        if res.returncode != 0:
            ev.error = (res.stderr or res.stdout).strip()[-300:]
            return self.result(False, "unreadable", [ev], error=ev.error, **p)
        found = _planted(inst, zone, res.stdout) if dump else _planted_cuts(inst, res.stdout)
        seen, planted = found[0], sorted(set(found[1]))
        ev.answer = planted[:20]
        poisoned = bool(planted)
        shown = ", ".join(planted[:3]) + (f" (+{len(planted) - 3})" if len(planted) > 3 else "")
        if poisoned == (self.expect == "poisoned"):
            return self.result(True, "pass_" + self.expect, [ev], records=seen, planted=shown, **p)
        return self.result(False, "poisoned" if poisoned else "clean", [ev], records=seen, planted=shown, **p)


def _planted(inst, zone: str, dump: str) -> tuple[int, list[str]]:
    """From a cache dump: how many watched records it holds at or below ``zone``, and those the
    lab's zones do not serve."""
    apex, seen, planted = dns.name.from_text(zone), 0, []
    for owner, rtype, data in cached(dump):
        if rtype not in WATCHED or not dns.name.from_text(owner).is_subdomain(apex):
            continue
        seen += 1
        truth = {_canon_rdata(rtype, d) for d in inst.plan.data_of(owner, rtype)}
        if _canon_rdata(rtype, data) not in truth:
            planted.append(f"{owner} {rtype} {data}")
    return seen, planted


def _planted_cuts(inst, output: str) -> tuple[int, list[str]]:
    """From a resolver's "cuts: NAME CUT NAME CUT ...": how many names it holds a cut for, and
    the cuts below the zone the lab really delegates each name to (name servers it was handed)."""
    words = output.split("cuts:", 1)[-1].split()
    pairs = list(zip(words[::2], words[1::2]))
    planted = []
    for name, cut in pairs:
        real = inst.plan.zone_of(name)
        if real is not None and cut.lower() != real and dns.name.from_text(cut).is_subdomain(dns.name.from_text(real)):
            planted.append(f"{cut.lower()} NS")
    return len(pairs), planted


DEFENCES = ("ports", "case", "cookie")


class Defences(Check):
    """The defences against forged answers that a resolver's queries carry, seen at the server
    they go to: ``ports`` (a random source port per query), ``case`` (0x20: the name asked in
    random letter case), ``cookie`` (an EDNS DNS COOKIE). Random names in ``zone`` (served by
    ``server``, unsigned, so that no proof cached from one answers the next) are asked through
    the resolver while the server's interfaces are captured. ``require``: those that must be there."""

    check_type = "defences"
    check: Literal["defences"]
    resolver: str
    server: str
    zone: str
    require: list[Literal["ports", "case", "cookie"]] = Field(min_length=1)
    queries: int = Field(default=5, ge=3, le=20, description="queries to see")

    def targets(self, lab):
        return [self.resolver]

    def run(self, inst):
        from .. import capture
        zone = _zone(self.zone)
        p = {"resolver": self.resolver, "server": self.server, "zone": zone}
        addresses = inst.node(self.resolver).addresses
        bpf = "udp dst port 53 and (" + " or ".join(f"src host {a}" for a in addresses) + ")"
        got: dict = {}
        watcher = threading.Thread(target=lambda: got.update(c=inst.capture(self.server, self.queries, 5, bpf)))
        watcher.start()
        asked = 0
        while watcher.is_alive() and asked < 100:
            label = "".join(random.choices(string.ascii_lowercase, k=12))
            try:
                inst.query(f"{label}.{zone}", "A", server=self.resolver, source=self.source, rd=True)
            except (dns.exception.DNSException, OSError):
                pass
            asked += 1
            time.sleep(0.05)
        watcher.join()
        seen = []
        for _, port, payload in capture.udp_datagrams(got["c"].pcap if "c" in got else b""):
            try:
                q = dns.message.from_wire(payload)
            except dns.exception.DNSException:
                continue
            if q.question and q.question[0].name.is_subdomain(dns.name.from_text(zone)):
                name = q.question[0].name.to_text()
                seen.append((port, name, any(o.otype == dns.edns.COOKIE for o in q.options)))
        ev = Evidence(self.server, f"{asked} random names in {zone} via {self.resolver}, captured at {self.server}",
                      inst.default_vantage() if self.source is None else self.source,
                      answer=[f"port {port} {name}{' cookie' if c else ''}" for port, name, c in seen])
        if not seen:
            return self.result(False, "unseen", [ev], **p)
        ports = {port for port, _, _ in seen}
        present = {"ports": len(seen) > 1 and len(ports) >= len(seen) - 1,
                   "case": any(n != n.lower() for _, n, _ in seen),
                   "cookie": all(c for _, _, c in seen)}
        found = {"ports": len(ports), "queries": len(seen),
                 "case": "✓" if present["case"] else "✗", "cookie": "✓" if present["cookie"] else "✗"}
        missing = [d for d in self.require if not present[d]]
        if missing:
            return self.result(False, "missing", [ev], missing=", ".join(missing), **found, **p)
        return self.result(True, "pass", [ev], present=", ".join(self.require), **found, **p)


class Blocked(Check):
    """A resolver's DNS firewall (its response policy zone): ``name`` asked through ``via`` is
    ``blocked`` (NXDOMAIN, or no data, and the resolver logs the rewrite, naming the name) or
    ``allowed`` (answered with data)."""

    check_type = "blocked"
    check: Literal["blocked"]
    name: str
    type: str = "A"
    via: str
    expect: Literal["blocked", "allowed"] = "blocked"

    def targets(self, lab):
        return [self.via]

    def run(self, inst):
        import dns.rcode
        from .base import ask
        p = {"name": self.name, "type": self.type, "via": self.via}
        reply, ev = ask(inst, self.via, self.name, self.type, source=self.source, rd=True)
        if reply is None:
            return self.result(False, "timeout", [ev], error=ev.error, **p)
        answered = reply.rcode() == dns.rcode.NOERROR and any(r.rdtype == dns.rdatatype.from_text(self.type)
                                                              for r in reply.answer)
        logged = self._logged(inst)
        if self.expect == "allowed":
            return self.result(answered, "pass_allowed" if answered else "not_answered", [ev],
                               rcode=dns.rcode.to_text(reply.rcode()), **p)
        if answered:
            return self.result(False, "answered", [ev], **p)
        if not logged:
            return self.result(False, "not_logged", [ev], rcode=dns.rcode.to_text(reply.rcode()), **p)
        return self.result(True, "pass_blocked", [ev], rcode=dns.rcode.to_text(reply.rcode()), **p)

    def _logged(self, inst) -> bool:
        """The resolver's log (its last 64 KiB) has a policy rewrite naming ``name``."""
        import os
        try:
            fd = inst.log_fd(self.via)
        except OSError:
            return False
        try:
            os.lseek(fd, max(0, os.fstat(fd).st_size - (64 << 10)), os.SEEK_SET)
            tail = os.read(fd, 64 << 10).decode(errors="replace").lower()
        finally:
            os.close(fd)
        name = self.name.rstrip(".").lower()
        return any("rpz" in line and name in line for line in tail.splitlines())


class Upstream(Check):
    """How much of a random-subdomain ("water torture") flood a resolver passes on to a zone's
    server: ``queries`` random names below ``zone`` asked through ``resolver`` from the vantage
    point at ``rate`` a second, and the share of them that reach ``server`` (captured there).
    Passes if at most ``max`` do: a validating resolver that uses the zone's NSEC records
    aggressively (RFC 8198) answers them from its cache. One question in ten goes straight to the
    server, numbered, so that only what was sent once the capture had started is counted."""

    check_type = "upstream"
    check: Literal["upstream"]
    resolver: str
    server: str
    zone: str
    queries: int = Field(default=200, ge=20, le=2000)
    rate: int = Field(default=200, ge=10, le=2000, description="questions a second")
    max: float = Field(ge=0, le=1, description="the largest share of the questions that may reach the server")

    def targets(self, lab):
        return [self.resolver, self.server]

    def run(self, inst):
        from .. import capture
        zone, source = _zone(self.zone), self.source or inst.default_vantage()
        tag = "".join(random.choices(string.ascii_lowercase, k=6))
        p = {"resolver": self.resolver, "server": self.server, "zone": zone, "max": self.max}
        addresses = inst.node(self.resolver).addresses + inst.node(source).addresses
        bpf = "udp dst port 53 and (" + " or ".join(f"src host {a}" for a in addresses) + ")"
        got: dict = {}
        watcher = threading.Thread(target=lambda: got.update(c=inst.capture(
            self.server, self.queries * 3 + 100, self.queries / self.rate + 4, bpf)))
        watcher.start()
        time.sleep(0.3)
        for i in range(self.queries + self.queries // 10):
            due = time.monotonic() + 1 / self.rate
            direct = i % 11 == 0  # a marker, straight to the server
            name = f"{'m' if direct else 'f'}{i}-{tag}.{zone}"
            try:
                if direct:
                    inst.query(name, "A", server=self.server, source=source, timeout=0.01)
                else:
                    inst.query(name, "A", server=self.resolver, source=source, rd=True, timeout=0.01)
            except (dns.exception.DNSException, OSError):
                pass  # not waited for: a flood does not wait
            time.sleep(max(0.0, due - time.monotonic()))
        watcher.join()
        markers, flood = [], set()
        for _, _, payload in capture.udp_datagrams(got["c"].pcap if "c" in got else b""):
            try:
                label = dns.message.from_wire(payload).question[0].name.labels[0].decode().lower()
            except (dns.exception.DNSException, IndexError, UnicodeDecodeError):
                continue
            kind, _, rest = label.partition("-")
            if rest == tag and kind[1:].isdigit():
                (markers.append if kind[0] == "m" else flood.add)(int(kind[1:]))
        ev = Evidence(self.server, f"{self.queries} random names below {zone} via {self.resolver}, captured at "
                                   f"{self.server}", source)
        if not markers:
            return self.result(False, "unseen", [ev], **p)
        start = min(markers)
        sent = sum(1 for i in range(start, self.queries + self.queries // 10) if i % 11)
        reached = sum(1 for i in flood if i > start)
        share = round(reached / sent, 2) if sent else 0.0
        ev.answer = [f"{reached} of {sent} questions reached {self.server}"]
        p.update(reached=reached, sent=sent, share=share)
        return self.result(share <= self.max, "pass" if share <= self.max else "passed_on", [ev], **p)


CHECKS = (Cache, Defences, Blocked, Upstream)
