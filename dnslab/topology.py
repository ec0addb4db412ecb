"""The lab file schema: ``labs/<name>/lab.yaml`` parsed strictly into typed objects.

An unknown field is an error, and every error carries the place it was found
(``lab.yaml:14:5 nodes.tld.kind: ...``). Cross-field rules (a zone served by nobody,
a resolver with no root) live in :mod:`dnslab.plan`, which derives the rest.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import yamlsrc
from .errors import InputProblems, Problem
from .names import suggest, zone_name

NAME = r"^[a-z][a-z0-9-]{0,23}$"
LAB_RANGES = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15", "2001:db8::/32"))


def in_lab_ranges(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """True when a prefix lies inside the documentation/benchmark ranges labs may use."""
    return any(net.version == r.version and net.subnet_of(r) for r in LAB_RANGES)


_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def _dns_name(name: str) -> str:
    """A zone or host name written in a lab file: letters, digits, '-' and '_' labels."""
    canon = zone_name(name)
    if canon != "." and (len(canon) > 254 or not all(_LABEL.match(lb) for lb in canon[:-1].split("."))):
        raise ValueError(f"{name!r} is not a DNS name (dot-separated labels of letters, digits, "
                         "'-' and '_', at most 63 characters each)")
    return name


DnsName = Annotated[str, AfterValidator(_dns_name)]


def _lab_prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not in_lab_ranges(net):
        raise ValueError(f"{net} is outside the lab ranges ({', '.join(str(r) for r in LAB_RANGES)})")
    return net


LabPrefix = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, AfterValidator(_lab_prefix)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Network(Strict):
    """One layer-2 segment (a bridge) with its IPv4 and IPv6 prefixes."""

    ipv4: ipaddress.IPv4Network | None = Field(
        default=ipaddress.IPv4Network("198.51.100.0/24"), description="IPv4 prefix of the segment")
    ipv6: ipaddress.IPv6Network | None = Field(
        default=ipaddress.IPv6Network("2001:db8:5100::/64"), description="IPv6 prefix of the segment")

    @field_validator("ipv4", "ipv6")
    @classmethod
    def _lab_range(cls, net: Any) -> Any:
        return net if net is None else _lab_prefix(net)


class Interface(Strict):
    """A node's attachment to a network; addresses left out are assigned in order."""

    ipv4: ipaddress.IPv4Address | None = None
    ipv6: ipaddress.IPv6Address | None = None


class Route(Strict):
    """A static route: traffic for ``prefix`` goes through ``via``, a router on a shared network."""

    prefix: LabPrefix
    via: str = Field(description="the router node the prefix is reached through")


class Peer(Strict):
    """A BGP session with another router of the lab, and the policy applied to what it learns."""

    local_pref: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(
        default=None, description="local preference of the routes learned from this peer (BIRD's default: 100; "
                                  "higher wins, before AS-path length)")
    prepend: Annotated[int, Field(ge=0, le=8)] = Field(
        default=0, description="times our AS number is added again to the AS path of what we announce to this "
                               "peer (a longer path: the peer prefers another way)")
    med: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(
        default=None, description="multi-exit discriminator sent with what we announce to this peer")


class Announce(Strict):
    """A prefix the router originates in BGP, routed to the node that serves it (an anycast site)."""

    prefix: LabPrefix
    via: str = Field(description="the node the prefix is routed to (on a network both share)")
    active: bool = Field(default=True, description="false: configured but not announced (a site being built) "
                                                   "until `birdc enable announce<N>` on the router")
    health: bool = Field(default=False, description="withdraw the prefix while that node's DNS daemon does not "
                                                    "answer (asked every 0.05 s; 3 misses withdraw, 3 answers "
                                                    "announce again)")


class Bfd(Strict):
    """Bidirectional Forwarding Detection on every BGP session of the router."""

    interval: Annotated[int, Field(ge=10, le=10_000)] = Field(default=100, description="milliseconds between packets")
    multiplier: Annotated[int, Field(ge=2, le=255)] = Field(default=3, description="packets missed before down")


class Bgp(Strict):
    """A BIRD router: its AS, its sessions (to routers on a network it shares), what it originates."""

    asn: Annotated[int, Field(ge=1, le=4_294_967_294)] = Field(description="its AS number (64512-65534: private)")
    peers: dict[str, Peer] = Field(default_factory=dict, description="routers it has a BGP session with (node "
                                                                     "names; their AS from their own bgp.asn)")
    announce: list[Announce] = Field(default_factory=list, description="prefixes it originates")
    transit: bool = Field(default=True, description="false: it announces only its own networks and prefixes, never "
                                                    "what it learned from a peer (an anycast site is no transit)")
    hold: Annotated[int, Field(ge=3, le=65_535)] = Field(default=240, description="hold time, seconds (BIRD's "
                                                                                   "default 240)")
    keepalive: Annotated[int, Field(ge=1, le=21_845)] | None = Field(
        default=None, description="keepalive time, seconds (default: a third of hold)")
    bfd: Bfd | None = Field(default=None, description="BFD on every session: a silent failure seen in "
                                                      "interval x multiplier ms")

    @model_validator(mode="after")
    def _timers(self) -> Bgp:
        if self.keepalive is not None and self.keepalive * 3 > self.hold:
            raise ValueError(f"keepalive {self.keepalive} must be at most a third of hold {self.hold}")
        return self


class Node(Strict):
    """One machine of the lab, running one kind of software."""

    kind: str = Field(description="bind9, unbound, knot, nsd, bird, client, registry or attacker (see `dnslab kinds`)")
    role: Literal["authoritative", "resolver", "client", "registry", "attacker", "router"] | None = Field(
        default=None, description="what the node does, when its kind can do more than one thing")
    zones: list[DnsName] = Field(default_factory=list, description="zones this node serves as authoritative")
    hostname: DnsName | None = Field(
        default=None, description="its name server name (default: <node>.<first zone>)")
    resolver: str | None = Field(default=None, description="for a client: the resolver node it uses")
    clients: list[str] | None = Field(default=None, description="for a resolver: the nodes it answers (default: "
                                                                "every node of the lab); others are refused")
    policy: Annotated[list[str], Field(max_length=10_000)] | None = Field(
        default=None, description="for a resolver: its response policy zone (RPZ, a DNS firewall), records "
                                  "relative to it: 'bad.test CNAME .' answers NXDOMAIN for bad.test, "
                                  "'*.bad.test CNAME .' for the names below; kept in the node's policy.rpz")
    interfaces: dict[str, Interface] | None = Field(
        default=None, description="networks it attaches to; default: the lab's only network")
    rrl: Annotated[int, Field(ge=1, le=10_000)] | None = Field(
        default=None, description="response rate limiting on an authoritative server: the same answer to one "
                                  "client network (IPv4 /24) at most this many times a second; of the rest, one "
                                  "in two goes out truncated (slip 2), so a real client asks again over TCP")
    anycast: Annotated[list[ipaddress.IPv4Address | ipaddress.IPv6Address], Field(max_length=8)] = Field(
        default_factory=list, description="service addresses on its loopback, which other nodes may share (anycast); "
                                          "its daemon answers on them, and they are its name server addresses")
    local_root: bool = Field(default=False, description="a resolver keeps its own copy of the root zone (RFC "
                                                        "8806), transferred from the root servers' addresses and "
                                                        "verified (DNSSEC, and ZONEMD when the root has one): it "
                                                        "resolves on with every root server down")
    gateway: str | None = Field(default=None, description="the router node its traffic beyond its own networks goes "
                                                          "through (its default route, IPv4 and IPv6)")
    routes: Annotated[list[Route], Field(max_length=64)] = Field(
        default_factory=list, description="static routes: [{prefix: 198.51.100.0/24, via: <router>}]")
    bgp: Bgp | None = Field(default=None, description="a router's BGP (kind bird)")
    loss: Annotated[int, Field(ge=0, le=95)] = Field(
        default=0, description="percent of its NXDOMAIN answers over UDP lost on the way out, at random: a "
                               "far server, slow to answer the names a cache poisoner asks (emulated so: this "
                               "kernel has no netem to delay packets)")

    @field_validator("anycast")
    @classmethod
    def _anycast_range(cls, addrs: list) -> list:
        for a in addrs:
            if not any(a in r for r in LAB_RANGES):
                raise ValueError(f"{a} is outside the lab ranges ({', '.join(str(r) for r in LAB_RANGES)})")
        if len(set(addrs)) != len(addrs):
            raise ValueError("an address is listed twice")
        return addrs


class Nsec3(Strict):
    """Hashed denial of existence (RFC 5155); RFC 9276 advises 0 iterations and no salt."""

    iterations: Annotated[int, Field(ge=0, le=500)] = Field(default=0, description="extra hash iterations")
    salt_length: Annotated[int, Field(ge=0, le=32)] = Field(default=0, description="salt bytes (drawn per instance)")
    opt_out: bool = Field(default=False, description="unsigned delegations are left out of the chain")


class Dnssec(Strict):
    """How a zone is signed: by its primary (or its only server), with keys dnslab makes per
    instance; the parent gets the DS, every lab resolver trusts the lab root's key."""

    algorithm: Literal["RSASHA256", "ECDSAP256SHA256", "ECDSAP384SHA384", "ED25519"] = Field(
        default="ECDSAP256SHA256", description="DNSSEC algorithm of both keys (KSK and ZSK)")
    nsec3: Nsec3 | None = Field(default=None, description="NSEC3 instead of NSEC")
    timers: Literal["standard", "lab"] = Field(
        default="standard", description="lab: TTLs and margins of seconds, so that key rollovers finish within a "
                                        "minute (zone TTLs of 60 s at most); standard: the signer's defaults")
    ds: bool = Field(default=True, description="the parent publishes the zone's DS from the start; false: not "
                                               "until its registry bootstraps it from the CDS (or a DS by hand)")
    zonemd: bool = Field(default=False, description="a ZONEMD record (RFC 8976): the digest of the whole zone, "
                                                    "signed, which a copy of it (a local root) is checked against "
                                                    "(signer: knot)")
    signal: bool = Field(default=False, description="RFC 9615: the zone's CDS also at _dsboot.<zone>._signal.<name "
                                                    "server> in the signed zones of its name servers, so that a "
                                                    "registry can bootstrap its DS at once, authenticated")


class Registry(Strict):
    """The zone's registry: a node of kind ``registry`` that scans the children's CDS (RFC 7344,
    8078) and takes DS records submitted by hand, and puts them in this zone by dynamic update
    signed with a key of its own (TSIG)."""

    node: str = Field(description="the registry node (kind: registry)")
    interval: Annotated[float, Field(ge=0.5, le=60)] = Field(default=2, description="seconds between scans")
    stable: Annotated[int, Field(ge=1, le=20)] = Field(default=3, description="scans a CDS set must stay the same")
    bootstrap: Literal["delay", "authenticated"] = Field(
        default="delay", description="a child not yet secure: delay: its DS after the stable scans (RFC 8078 "
                                     "accept after delay), or at once with RFC 9615 signals; authenticated: only "
                                     "with RFC 9615 signals")


class Zone(Strict):
    """A zone's content: a zone file beside lab.yaml, or a short record list; and how its
    servers get it: each loads its own copy, or, with ``primary``, the others are secondaries
    that transfer it from that node (AXFR/IXFR after NOTIFY, signed with TSIG if ``tsig``).

    NS records at the apex, delegations to child zones of the lab and their glue are
    derived from which node serves which zone; a lab author writes neither.
    """

    file: str | None = Field(default=None, description="zone file, relative to lab.yaml, inside its folder")
    records: list[str] = Field(default_factory=list, description="records in zone-file syntax", max_length=10_000)
    ttl: Annotated[int, Field(ge=0, le=2**31 - 1)] = 3600
    serial: Annotated[int, Field(ge=0, le=2**32 - 1)] = 1
    primary: str | None = Field(default=None, description="node that loads the zone; its other servers transfer it")
    tsig: bool = Field(default=False, description="with a primary: transfers and NOTIFY signed with a key of the "
                                                  "zone's own (TSIG); the key opens transfers from any address")
    dnssec: Dnssec | None = Field(default=None, description="signed: the signer's policy (see Dnssec)")
    registry: Registry | None = Field(default=None, description="DS records of its children managed by a registry")
    transfers: Literal["any"] | None = Field(
        default=None, description="any: each server gives the zone to anyone who asks (AXFR), as root servers do "
                                  "for resolvers that keep a local copy (RFC 8806)")
    delegated: bool = Field(default=True, description="false: its parent does not delegate it, so only who is told "
                                                      "where (a forged referral) reaches it: an attacker's zone")


class Vary(Strict):
    """How one value is drawn: exactly one of ``address``, ``word``, ``number``, ``choice``."""

    address: ipaddress.IPv4Network | ipaddress.IPv6Network | None = Field(
        default=None, description="a host address of this prefix (lab ranges only; no lab network's)")
    word: Annotated[int, Field(ge=4, le=24)] | None = Field(
        default=None, description="a pronounceable word of this many letters")
    number: tuple[int, int] | None = Field(default=None, description="an integer from..to, both included")
    choice: Annotated[list[str], Field(min_length=1, max_length=1000)] | None = Field(
        default=None, description="one of these strings")

    @model_validator(mode="after")
    def _one(self) -> Vary:
        given = [k for k in ("address", "word", "number", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of address, word, number, choice")
        if self.address is not None:
            if not in_lab_ranges(self.address):
                raise ValueError(f"{self.address} is outside the lab ranges")
            if self.address.num_addresses < 4:
                raise ValueError(f"{self.address} leaves no host address to draw")
        if self.number is not None and self.number[0] > self.number[1]:
            raise ValueError("number: from must not be above to")
        if self.choice is not None and any(not c or len(c) > 255 or any(ch in c for ch in "\n\r{}") for c in self.choice):
            raise ValueError("choice: one-line strings of 1 to 255 characters, without braces")
        return self


class Topology(Strict):
    """The whole lab file."""

    name: Annotated[str, Field(pattern=NAME)]
    description: str = ""
    networks: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9]{0,11}$")], Network] = Field(
        default_factory=lambda: {"lan": Network()}, min_length=1)
    nodes: Annotated[dict[Annotated[str, Field(pattern=NAME)], Node], Field(min_length=1)]
    zones: dict[DnsName, Zone] = Field(default_factory=dict)
    vary: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")], Vary] = Field(
        default_factory=dict, description="values drawn per instance, used as {{ name }} in zone records and "
                                          "files, fault records and checks")


def load(path: Path) -> tuple[Topology, yamlsrc.Source]:
    """Read and validate a lab file; :class:`InputProblems` lists every problem with its place."""
    src = yamlsrc.load(path)
    if not isinstance(src.data, dict):
        raise InputProblems([Problem(src.where(()), "a lab file is a mapping with name, nodes, zones")])
    try:
        return Topology.model_validate(src.data), src
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src, Topology)) from None


def schema_problems(exc: ValidationError, src: yamlsrc.Source, model: type[BaseModel] | None = None) -> list[Problem]:
    """Turn pydantic errors into problems naming ``file:line:col`` and the field path, with a
    suggestion for a near-miss (an unknown field or tag close to a known one of ``model``)."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not _is_internal(p))
        path = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field" + suggest(str(loc[-1]), field_names(model) if model else set())
        elif err["type"] == "union_tag_invalid":
            tag, known = err["ctx"]["tag"], re.findall(r"'([^']+)'", err["ctx"]["expected_tags"])
            msg = f"unknown {err['ctx']['discriminator'].strip(chr(39))} {tag!r}" + suggest(tag, set(known)) + \
                f" (known: {', '.join(known)})"
        problems.append(Problem(src.where(loc), f"{path}: {msg}" if path else msg))
    return problems


def field_names(model: type[BaseModel]) -> set[str]:
    """Every field name (and alias) of ``model`` and of the models it contains."""
    import typing
    seen, names, todo = set(), set(), [model]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        for name, f in m.model_fields.items():
            names |= {name} | ({f.alias} if f.alias else set())
            stack = [f.annotation]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and issubclass(t, BaseModel):
                    todo.append(t)
                stack += list(typing.get_args(t))
    return names


def _is_internal(part: Any) -> bool:
    return isinstance(part, str) and (part.startswith("function-") or re.fullmatch(r"\[key\]", part) is not None)
