"""An anycast site failing, and the time until every vantage point is answered by another site.

A site is the DNS server that holds the anycast address and the BIRD router that originates its
prefix. It fails in one of four ways (:data:`HOW`); meanwhile each vantage point asks the anycast
address who answers (its NSID) every ``interval`` seconds, from its own namespace, so
the outage is measured as the vantage points see it, not read from the routers.
"""
from __future__ import annotations

import select
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dns.exception
import dns.message

from . import dnsquery, kinds
from .checks.anycast import nsid_of, nsid_query, service_address
from .errors import InputError

if TYPE_CHECKING:
    from .lab import Instance

HOW = {"daemon": "the site's DNS daemon stops",
       "freeze": "the site's router freezes (BIRD stopped by SIGSTOP: its sessions go silent)",
       "drop": "the site's router drops every packet on its links (live links gone silent)",
       "cut": "the cables between the site's router and its peers are cut (the carrier goes at both ends)"}


SETTINGS = {"default": "BIRD's timers: hold 240 s, keepalive 80 s",
            "tuned": "hold 3 s, keepalive 1 s",
            "bfd": "hold 3 s, keepalive 1 s, BFD 100 ms x 3",
            "bfd+health": "hold 3 s, keepalive 1 s, BFD 100 ms x 3, and a health check that withdraws a site "
                          "whose DNS daemon stops answering"}


def variant(lab_dir: Path, setting: str, dest: Path) -> Path:
    """A copy of the lab in ``dest`` with every router's BGP as ``setting`` (a key of
    :data:`SETTINGS`) says; the lab file is rewritten (its comments go)."""
    import yaml
    if setting not in SETTINGS:
        raise InputError(f"unknown setting {setting!r} (known: {', '.join(SETTINGS)})")
    shutil.copytree(lab_dir, dest, ignore=shutil.ignore_patterns("exercise*", "*.ipynb"))
    data = yaml.safe_load((dest / "lab.yaml").read_text())
    for node in data["nodes"].values():
        bgp = node.get("bgp")
        if bgp is None or setting == "default":
            continue
        bgp.update(hold=3, keepalive=1)
        if setting.startswith("bfd"):
            bgp["bfd"] = {"interval": 100, "multiplier": 3}
        for a in bgp.get("announce", []) if setting == "bfd+health" else []:
            a["health"] = True
    (dest / "lab.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


@dataclass(frozen=True)
class Site:
    server: str                 # the DNS server holding the anycast address
    router: str                 # the BIRD router originating its prefix
    uplinks: tuple[tuple[str, str], ...]  # (node, network) of every attachment to the networks toward its peers


@dataclass
class Outage:
    """What the vantage points saw: when each was answered by another site, and how many of its
    questions went unanswered in between."""

    how: str
    site: str
    seconds: float | None                     # until the last vantage point moved (None: not within budget)
    moved: dict[str, tuple[str, float] | None] = field(default_factory=dict)  # vantage -> (new site, seconds)
    lost: dict[str, int] = field(default_factory=dict)                        # vantage -> unanswered questions
    before: dict[str, str | None] = field(default_factory=dict)               # vantage -> its site before


def site(inst: Instance, server: str) -> Site:
    """The site of anycast server ``server``: it and the router originating a prefix routed to it.

    :raises InputError: ``server`` holds no anycast address, or no router announces it
    """
    node = inst.node(server)
    if not node.anycast:
        raise InputError(f"node {server} holds no anycast address: not a site")
    for r in inst.plan.nodes.values():
        if r.bgp and any(a.node == server for a in r.bgp.announce):
            peers = [inst.plan.nodes[p.node] for p in r.bgp.peers]
            nets = {i.network for i in r.interfaces if any(j.network == i.network for p in peers for j in p.interfaces)}
            uplinks = tuple((n.name, i.network) for n in inst.plan.nodes.values() for i in n.interfaces
                            if i.network in nets)
            return Site(server, r.name, uplinks)
    raise InputError(f"no router of the lab announces a prefix routed to {server}")


def fail(inst: Instance, s: Site, how: str) -> None:
    """Make site ``s`` fail ``how`` (a key of :data:`HOW`)."""
    _act(inst, s, how, broken=True)


def repair(inst: Instance, s: Site, how: str) -> None:
    """Undo :func:`fail`."""
    _act(inst, s, how, broken=False)


def _act(inst: Instance, s: Site, how: str, broken: bool) -> None:
    if how not in HOW:
        raise InputError(f"unknown failure {how!r} (known: {', '.join(HOW)})")
    d = inst.backend.node_path(inst.state, s.router)
    if how == "daemon":
        node = inst.node(s.server)
        if broken:
            inst.backend.stop_daemon(inst.state, s.server, kinds.KINDS[node.kind].stop(
                node, inst.backend.node_path(inst.state, s.server)))
        else:
            inst.start(s.server)
    elif how == "freeze":
        inst.exec(s.router, ["sh", "-c", f'kill -{"STOP" if broken else "CONT"} "$(cat {d}/bird.pid)"'],
                  capture=True, timeout=10)
    elif how == "drop":
        inst.backend.block(inst.state, s.router, ("all",) if broken else ())
    else:
        inst.backend.set_links(inst.state, s.uplinks, up=not broken)


def measure(inst: Instance, server: str, how: str, *, address: str | None = None,
            vantages: list[str] | None = None, budget: float = 10.0, interval: float = 0.01,
            repair_after: bool = True) -> Outage:
    """Fail ``server``'s site ``how`` and time, from the moment the failure is in place, until
    every vantage point (default: every resolver and client) is answered at ``address`` (default:
    the root's anycast address) by another site; at most ``budget`` seconds. The site is
    repaired afterwards (unless ``repair_after`` is false), and the catchments are back as they were
    before it returns."""
    from .lab import wait_settled
    s = site(inst, server)
    wait_settled([inst], timeout=60)  # sessions (and BFD) up again after an earlier failure
    address = address or service_address(inst.plan)
    vantages = vantages or [n.name for n in inst.plan.nodes.values() if n.role in ("resolver", "client")]
    socks = {v: inst.sockets(v)(dnsquery.family_of(address), socket.SOCK_DGRAM) for v in vantages}
    for sock in socks.values():
        sock.setblocking(False)
        sock.connect((address, 53))
    try:
        before = _watch(socks, lambda seen: all(seen.values()), 5.0, interval)[0]
        if not all(before.values()):
            raise InputError(f"{address} does not answer {', '.join(v for v, x in before.items() if not x)} "
                             "before the failure")
        fail(inst, s, how)
        start = time.monotonic()
        try:
            seen, lost, when = _watch(socks, lambda seen: all(x and x != server for x in seen.values()), budget,
                                      interval, start)
        finally:
            if repair_after:
                repair(inst, s, how)
        moved = {v: (seen[v], when[v]) if seen[v] and seen[v] != server else None for v in vantages}
        done = all(moved.values())
        out = Outage(how, server, max(t for _, t in moved.values()) if done else None, moved, lost, dict(before))
        if repair_after:  # until each vantage point is back at the site it had (sessions take seconds)
            _watch(socks, lambda seen: seen == before, 60.0, interval)
        return out
    finally:
        for sock in socks.values():
            sock.close()


def _watch(socks: dict[str, socket.socket], done, budget: float, interval: float, start: float | None = None):
    """Ask for the NSID from every vantage point every ``interval`` until ``done(latest site per
    vantage)`` or ``budget`` seconds: (latest, unanswered counts, when each last changed site)."""
    start = start or time.monotonic()
    latest: dict[str, str | None] = {v: None for v in socks}
    lost = {v: 0 for v in socks}
    when = {v: 0.0 for v in socks}
    pending: dict[str, int] = {}
    while time.monotonic() - start < budget:
        for v, sock in socks.items():
            if v in pending:
                lost[v] += 1
            q = nsid_query()
            pending[v] = q.id
            try:
                sock.send(q.to_wire())
            except OSError:
                pass
        end = time.monotonic() + interval
        while (left := end - time.monotonic()) > 0:
            ready = select.select(list(socks.values()), [], [], left)[0]
            for v, sock in socks.items():
                if sock not in ready:
                    continue
                try:
                    reply = dns.message.from_wire(sock.recv(4096))
                except (OSError, dns.exception.DNSException):
                    continue
                if pending.get(v) != reply.id:
                    continue
                del pending[v]
                name = nsid_of(reply)
                if name != latest[v]:
                    latest[v], when[v] = name, time.monotonic() - start
        if done(latest):
            break
    return latest, lost, when
