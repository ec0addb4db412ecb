"""DNS queries from inside a lab node, with dnspython over a socket the backend opened there."""
from __future__ import annotations

import ipaddress
import re
import select
import socket
import time
from dataclasses import dataclass
from typing import Callable, Hashable

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

SocketFactory = Callable[[int, int], socket.socket]


def family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def make_query(qname: str, qtype: str = "A", rdclass: str = "IN", *, rd: bool = True,
               dnssec: bool = False) -> dns.message.QueryMessage:
    q = dns.message.make_query(qname, dns.rdatatype.from_text(qtype), dns.rdataclass.from_text(rdclass),
                               want_dnssec=dnssec, use_edns=0)
    if not rd:
        q.flags &= ~dns.flags.RD
    return q


def query(sockets: SocketFactory, server: str, q: dns.message.Message, *, timeout: float = 2.0,
          tcp: bool = False) -> dns.message.Message:
    """Send ``q`` to ``server`` port 53 from the node behind ``sockets``; retries over TCP if truncated.

    A recursive query is sent again after each ``timeout``, up to three times, as a stub
    resolver does: a resolver may drop its reply to a query that took it long to resolve
    (Unbound's discard-timeout, 1.9 s) and answer the repeated one from its cache.
    """
    import dns.query  # (with ssl: not on the way to a lab's first answers, which wait_all awaits)
    fam = family_of(server)
    if not tcp:
        tries = 3 if q.flags & dns.flags.RD else 1
        for attempt in range(tries):
            sock = sockets(fam, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                reply = dns.query.udp(q, server, timeout=timeout, sock=sock, ignore_unexpected=True)
                break
            except dns.exception.Timeout:
                if attempt == tries - 1:
                    raise
            finally:
                sock.close()
        if not reply.flags & dns.flags.TC:
            return reply
    sock = sockets(fam, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        sock.setblocking(False)
        return dns.query.tcp(q, server, timeout=timeout, sock=sock)
    finally:
        sock.close()


@dataclass
class Probe:
    """One readiness probe in flight: a connected UDP socket and what counts as ready."""

    sock: socket.socket
    qname: str
    qtype: str
    rdclass: str
    authoritative: bool
    signed: bool = False
    ready_at: float | None = None


def _ready(p: Probe, reply: dns.message.Message) -> bool:
    if not p.authoritative:
        return True
    if reply.rcode() != dns.rcode.NOERROR or not reply.flags & dns.flags.AA:
        return False
    if p.signed and reply.flags & dns.flags.TC:
        return True  # too large for UDP, which an unsigned DNSKEY set never is
    return bool(reply.answer) and (not p.signed or any(r.rdtype == dns.rdatatype.RRSIG for r in reply.answer))


def wait_all(probes: dict[object, Probe], alive: Callable[[object], bool], deadline: float,
             nudge: Callable[[object], None] | None = None, nudge_after: float = 1.5,
             first: tuple[set, Callable[[], None]] | None = None) -> list[object]:
    """Query every pending probe until it answers as wanted; returns the keys still not ready.
    ``nudge`` is called for each key still pending ``nudge_after`` seconds in, and as often after
    (a secondary told to transfer its zone again). ``first``: (keys, callback): the callback runs
    once, as soon as those keys are ready.

    Raises nothing: a dead process is reported by ``alive`` returning False, and its key
    is returned at once, so the caller can name it with its log.
    """
    pending = dict(probes)
    dead: list[object] = []
    last_alive_check = 0.0
    next_nudge = time.monotonic() + nudge_after
    while pending and time.monotonic() < deadline:
        if nudge is not None and time.monotonic() > next_nudge:
            next_nudge = time.monotonic() + nudge_after
            for key in list(pending):
                nudge(key)
        for key, p in pending.items():
            try:
                p.sock.send(make_query(p.qname, p.qtype, p.rdclass, rd=False, dnssec=p.signed).to_wire())
            except OSError:
                pass
        end = time.monotonic() + 0.02
        while pending and (left := end - time.monotonic()) > 0:
            readable, _, _ = select.select([p.sock for p in pending.values()], [], [], left)
            if not readable:
                break
            for key, p in list(pending.items()):
                if p.sock not in readable:
                    continue
                try:
                    reply = dns.message.from_wire(p.sock.recv(65535))
                except (OSError, dns.exception.DNSException):
                    continue
                if _ready(p, reply):
                    p.ready_at = time.monotonic()
                    del pending[key]
        if first is not None and not first[0] & pending.keys():
            first[1]()
            first = None
        if time.monotonic() - last_alive_check > 0.1:
            last_alive_check = time.monotonic()
            dead = [k for k in pending if not alive(k)]
            if dead:
                return dead
    return list(pending)


_SOA_SERIAL = re.compile(r"\sSOA\s+\S+\s+\S+\s+\(?\s*(\d+)", re.I)


def serial_in(zone_text: str) -> int | None:
    """The SOA serial written in a zone file (the first SOA), None if there is none."""
    m = _SOA_SERIAL.search(zone_text)
    return int(m.group(1)) if m else None


def with_serial(zone_text: str, serial: int) -> str:
    """The zone text with the serial of its (first) SOA replaced."""
    m = _SOA_SERIAL.search(zone_text)
    return zone_text[:m.start(1)] + str(serial) + zone_text[m.end(1):] if m else zone_text


def serial_of(sockets: SocketFactory, server: str, zone: str, timeout: float = 0.3) -> int | None:
    """The SOA serial ``server`` serves for ``zone`` with authority, None if it does not (yet)."""
    try:
        reply = query(sockets, server, make_query(zone, "SOA", rd=False), timeout=timeout)
    except (dns.exception.DNSException, OSError):
        return None
    if reply.rcode() != dns.rcode.NOERROR or not reply.flags & dns.flags.AA:
        return None
    return next((rr.serial for rrset in reply.answer if rrset.rdtype == dns.rdatatype.SOA for rr in rrset), None)


def serial_late(left: dict[tuple[str, str], int | None], wanted: dict[tuple[str, str], int], node: str,
                wait: float) -> str:
    """What the first of ``left`` (from :func:`wait_serials`) serves, said for whoever reloaded ``node``."""
    (server, zone), got = next(iter(left.items()))
    serves = f"serves {zone} with serial {got}" if got is not None else f"gives no authoritative answer for {zone}"
    source = f"the zone file of {node}" if server == node else f"what {node} serves"
    return f"{server} {serves}, not serial {wanted[(server, zone)]} ({source}), {wait:.0f}s after the reload"


def wait_serials(serial_at: Callable[[str, str], int | None], wanted: dict[tuple[str, str], int],
                 deadline: float, nudge: Callable[[tuple[str, str]], None] | None = None,
                 nudge_after: float = 1.5, at_least: dict[tuple[str, str], int | None] | None = None
                 ) -> dict[tuple[str, str], int | None]:
    """Poll until each (server, zone) serves its wanted serial; returns those that do not, with
    what they serve. ``nudge`` as for :func:`wait_all`. A key of ``at_least`` is a signer that
    keeps a serial of its own (BIND, Knot: the file's is a floor for one, ignored by the other):
    it is done once it serves a serial other than the one it served before (the key's value),
    as it raises its serial when it loads a change, or after :data:`RESIGN_GRACE` seconds of
    serving the same one (nothing changed)."""
    at_least = at_least or {}
    pending = dict(wanted)
    seen: dict[tuple[str, str], int | None] = {}
    start = time.monotonic()
    next_nudge = start + nudge_after
    while pending:
        if nudge is not None and time.monotonic() > next_nudge:
            next_nudge = time.monotonic() + nudge_after
            for key in list(pending):
                nudge(key)
        for key in list(pending):
            got = seen[key] = serial_at(*key)
            if key in at_least:
                done = got is not None and (got != at_least[key] or time.monotonic() - start > RESIGN_GRACE)
            else:
                done = got == pending[key]
            if done:
                del pending[key]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return {k: seen.get(k) for k in pending}


@dataclass(frozen=True)
class Loaded:
    """A zone a node loads from its file, as :func:`wait_loaded` waits for it."""

    zone: str
    serial: int                     # the zone file's
    resigned: bool = False          # the node's daemon signs it, with a serial of its own
    secondaries: tuple[str, ...] = ()


RESIGN_GRACE = 1.0


def wait_loaded(serial_at: Callable[[str, str], int | None], node: str, loaded: list[Loaded], deadline: float,
                nudge: Callable[[tuple[str, str]], None] | None = None, before: dict[str, int | None] | None = None
                ) -> tuple[dict[tuple[str, str], int | None], dict[tuple[str, str], int]]:
    """Until ``node`` serves each zone of ``loaded`` with its file's serial (a re-signing signer:
    a serial other than the one it served ``before`` the reload, by zone; see
    :func:`wait_serials`), then its secondaries the serial it serves. Returns what is late (as
    :func:`wait_serials`) and what was wanted."""
    wanted = {(node, z.zone): z.serial for z in loaded}
    left = wait_serials(serial_at, wanted, deadline, nudge,
                        at_least={(node, z.zone): (before or {}).get(z.zone) for z in loaded if z.resigned})
    if left:
        return left, wanted
    wanted = {(s, z.zone): z.serial for z in loaded if not z.resigned for s in z.secondaries}
    left = wait_serials(serial_at, wanted, deadline, nudge)
    if left:
        return left, wanted
    return wait_synced(serial_at, [(node, z.zone, z.secondaries) for z in loaded if z.resigned and z.secondaries],
                       deadline, nudge)


def wait_synced(serial_at: Callable[[Hashable, str], int | None], zones: list[tuple[Hashable, str, tuple]],
                deadline: float, nudge: Callable[[tuple], None] | None = None,
                settle: float = RESIGN_GRACE) -> tuple[dict[tuple, int | None], dict[tuple, int]]:
    """Until every secondary serves the serial its primary serves, and the primaries have kept
    that serial for ``settle`` seconds: ``zones`` lists (primary, zone, secondaries) of zones
    whose primary signs them, and may raise its serial a few times as it does (BIND signs a new
    zone in steps). A server is whatever ``serial_at`` takes (a node name; (instance, node) for
    several instances at once)."""
    left: dict[tuple, int | None] = {}
    wanted: dict[tuple, int | None] = {}
    since = last = None  # since when every secondary has served its primary's serial, primaries unchanged
    next_nudge = time.monotonic() + 1.5
    while zones:
        now = {(p, zone): serial_at(p, zone) for p, zone, _ in zones}
        wanted = {(s, zone): now[(p, zone)] for p, zone, secs in zones for s in secs}
        left = {}
        for key, want in wanted.items():  # each secondary against its primary's serial of this round
            got = serial_at(*key)
            if got is None or got != want:
                left[key] = got
        t = time.monotonic()
        since = None if left else (since if now == last and since is not None else t)
        last = now
        if since is not None and t - since >= settle:
            return {}, wanted
        if t > deadline:
            break
        if left and nudge is not None and t > next_nudge:
            next_nudge = t + 1.5
            for key in left:
                nudge(key)
        time.sleep(0.05)
    return left, wanted


def transfer(sockets: SocketFactory, server: str, zone: str, key: tuple[str, str] | None = None,
             timeout: float = 3.0, limit: int = 100_000) -> tuple[int, str]:
    """An AXFR of ``zone`` at ``server`` over TCP, from the node behind ``sockets``, signed with
    ``key`` (name, secret: hmac-sha256) if given. Returns (records received, how it ended:
    ``complete``, an rcode such as ``REFUSED`` or ``NOTAUTH``, or the error), at most ``limit``
    records and ``timeout`` seconds."""
    import dns.query
    import dns.tsig
    origin = dns.name.from_text(zone)
    q = dns.message.make_query(origin, dns.rdatatype.AXFR)
    keyring = None
    if key:
        tsig = dns.tsig.Key(key[0], key[1], "hmac-sha256")
        keyring = {tsig.name: tsig}
        q.use_tsig(tsig)
    query = q.to_wire()
    records, soas, mac, ctx = 0, 0, q.mac if key else b"", None
    sock = sockets(family_of(server), socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((server, 53))
        sock.setblocking(False)
        expiration = time.time() + timeout
        dns.query.send_tcp(sock, query, expiration)
        first = True
        while soas < 2 and records <= limit:
            wire = _read(sock, int.from_bytes(_read(sock, 2, expiration), "big"), expiration)
            r = dns.message.from_wire(wire, keyring=keyring, request_mac=mac, xfr=True, origin=origin,
                                      tsig_ctx=ctx, multi=not first, one_rr_per_rrset=True)
            mac, ctx, first = r.mac, r.tsig_ctx, False
            if r.rcode() != dns.rcode.NOERROR:
                return records, dns.rcode.to_text(r.rcode())
            for rrset in r.answer:
                records += len(rrset)
                soas += rrset.rdtype == dns.rdatatype.SOA
            if not r.answer:
                return records, "empty answer"
        return records, "complete" if soas >= 2 else f"stopped after {limit} records"
    except (dns.exception.DNSException, OSError, EOFError) as exc:
        return records, str(exc) or type(exc).__name__
    finally:
        sock.close()


def _read(sock: socket.socket, n: int, expiration: float) -> bytes:
    """Exactly ``n`` bytes from a non-blocking stream socket, by ``expiration`` (time.time())."""
    buf = b""
    while len(buf) < n:
        left = expiration - time.time()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise dns.exception.Timeout()
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("the server closed the connection")
        buf += chunk
    return buf
