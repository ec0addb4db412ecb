"""From a validated lab file to a plan: every address, name server name, NS record,
glue record and root hint derived, every cross-field rule checked, all before
anything touches the kernel. Plain data, buildable and testable without root.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import dns.name

from . import dnssec, kinds, rpz, zones
from .errors import InputProblems, Problem
from .names import suggest, zone_name

if TYPE_CHECKING:  # the lab file's schema: loaded by load() and derive(), not by a plan made before
    from . import faults as _faults
    from . import topology, vary, yamlsrc


LAB_TIMERS_MAX_TTL = 60  # a zone signed with lab timers: rollovers wait for TTLs of seconds


@dataclass(frozen=True)
class InterfacePlan:
    network: str
    ifname: str
    ipv4: ipaddress.IPv4Interface | None
    ipv6: ipaddress.IPv6Interface | None

    @property
    def addresses(self) -> list[str]:
        return [str(a.ip) for a in (self.ipv4, self.ipv6) if a is not None]


@dataclass(frozen=True)
class PeerPlan:
    """A BGP session as one router sees it: the other router, its AS and addresses, our policy."""

    node: str
    asn: int
    addresses: tuple[str, ...]        # the peer's addresses on networks both share (IPv4 first)
    local_pref: int | None = None
    prepend: int = 0
    med: int | None = None


@dataclass(frozen=True)
class AnnouncePlan:
    prefix: str
    via: str                           # the node's address the prefix is routed to
    node: str                          # that node
    health: bool = False
    active: bool = True


@dataclass(frozen=True)
class BgpPlan:
    asn: int
    peers: tuple[PeerPlan, ...]
    announce: tuple[AnnouncePlan, ...]
    hold: int
    keepalive: int
    bfd: tuple[int, int] | None        # (interval ms, multiplier)
    transit: bool = True               # passes on what it learned


@dataclass(frozen=True)
class NodePlan:
    name: str
    kind: str
    role: str
    interfaces: tuple[InterfacePlan, ...]
    zones: tuple[str, ...] = ()
    hostname: str | None = None
    resolver: str | None = None
    options: tuple[str, ...] = ()     # lines a fault adds to the daemon's main options
    stop: bool = False                # a fault stops its daemon once the lab is up
    block: tuple[str, ...] = ()       # traffic a fault drops inside the node (tcp/53, fragments, ...)
    ports: tuple[int, int] | None = None  # a fault's: the only source ports its kernel gives out (first, last)
    validate: bool = True             # a resolver validates DNSSEC (when the lab root is signed)
    rrl: int | None = None            # answers a second per client network (0: off; None: the kind's default)
    clients: tuple[str, ...] = ()     # a resolver's: the nodes it answers (none: every node of the lab)
    open: bool = False                # a resolver's: answers anyone (a fault)
    policy: tuple[str, ...] | None = None  # a resolver's response policy zone records (None: no RPZ)
    anycast: tuple[str, ...] = ()     # service addresses on its loopback, maybe shared with other nodes
    gateway: tuple[str, ...] = ()     # its router's addresses (IPv4, IPv6) its default routes go through
    routes: tuple[tuple[str, str], ...] = ()  # static routes: (prefix, next hop address)
    forwards: bool = False            # a router: forwards packets between its networks
    bgp: BgpPlan | None = None        # a router's BGP
    local_root: bool = False          # a resolver's: its own copy of the root zone (RFC 8806)

    @property
    def listen(self) -> list[str]:
        """Where its daemon answers: its own addresses, then its anycast ones."""
        return self.addresses + list(self.anycast)

    def networks(self) -> set[tuple[str, int]]:
        """(network, IP version) pairs the node has an address on."""
        return {(i.network, v) for i in self.interfaces for v, a in ((4, i.ipv4), (6, i.ipv6)) if a is not None}

    def hop(self, other: NodePlan, version: int) -> str | None:
        """``other``'s first IPv``version`` address on a network this node shares (None: none)."""
        return next((a for a in self.reachable(other) if (":" in a) == (version == 6)), None)

    def reachable(self, other: NodePlan) -> list[str]:
        """``other``'s addresses on a network and family this node also has an address on."""
        mine = self.networks()
        return [str(a.ip) for i in other.interfaces for v, a in ((4, i.ipv4), (6, i.ipv6))
                if a is not None and (i.network, v) in mine]

    @property
    def addresses(self) -> list[str]:
        """All addresses, IPv4 first."""
        v4 = [str(i.ipv4.ip) for i in self.interfaces if i.ipv4]
        v6 = [str(i.ipv6.ip) for i in self.interfaces if i.ipv6]
        return v4 + v6

    @property
    def address(self) -> str:
        """The address to reach the node at (its first IPv4, else IPv6)."""
        return self.addresses[0]


@dataclass(frozen=True)
class NetworkPlan:
    name: str
    ipv4: ipaddress.IPv4Network | None
    ipv6: ipaddress.IPv6Network | None


@dataclass(frozen=True)
class LabPlan:
    """A lab ready to be built: what each backend and kind reads."""

    name: str
    description: str
    directory: Path
    networks: dict[str, NetworkPlan]
    nodes: dict[str, NodePlan]
    zones: dict[str, zones.ZonePlan]
    root_hints: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    warnings: tuple[Problem, ...] = ()   # what a registry would refuse at delegation, and the like
    values: dict[str, str] = field(default_factory=dict)  # this instance's drawn values (lab.yaml vary:)

    def servers_of(self, zone: str) -> list[NodePlan]:
        return [self.nodes[n] for n in self.zones[zone].servers]

    def zone_of(self, name: str) -> str | None:
        """The zone whose servers resolution reaches for ``name``: the closest zone at or above it
        that is delegated (or the root)."""
        return zones.closest_zone(zone_name(name), [z for z, p in self.zones.items() if p.parent or z == "."])

    def data_of(self, owner: str, rtype: str) -> set[str]:
        """The data of the ``owner``/``rtype`` records this instance's zones serve (as text), as
        resolution finds them: a zone nobody delegates is left out."""
        zone = self.zone_of(owner)
        return zones.data_of(self.zones[zone], owner, rtype) if zone else set()

    def names_in(self, zone: str) -> list[str]:
        """The owner names of ``zone``'s records, sorted (none for a zone not in the lab)."""
        plan = self.zones.get(zone)
        return sorted(zones.record_types(zone, plan.text)) if plan else []

    @property
    def trust_anchor(self) -> dnssec.Key | None:
        """The lab root's KSK, which every lab resolver trusts; None if the root is unsigned."""
        root = self.zones.get(".")
        return next((k for k in root.keys if k.role == "ksk"), None) if root else None

    @property
    def keys(self) -> dict[str, list[dnssec.Key]]:
        """The keys of every signed zone."""
        return {z: list(p.keys) for z, p in self.zones.items() if p.keys}

    def by_role(self, role: str) -> list[NodePlan]:
        return [n for n in self.nodes.values() if n.role == role]

    def default_vantage(self) -> str:
        """Where queries come from unless said otherwise: the (first) client, or the first node."""
        clients = self.by_role("client")
        return clients[0].name if clients else next(iter(self.nodes))


def load(path: Path, faults: Sequence[str] = (), seed: int | None = None,
         keys: dict[str, list[dnssec.Key]] | None = None, validated: bool = False) -> LabPlan:
    """Load ``lab.yaml`` (or its folder), with the named faults (``faults/<name>.yaml``), the
    values an instance of ``seed`` draws (:mod:`dnslab.vary`) and an instance's DNSSEC ``keys``
    (left out: fresh ones), and derive the plan; raises :class:`InputProblems`. ``validated``: the
    folder passed :func:`dnslab.labfolder.validate` as it is now, so when nothing is drawn per
    instance and at most one fault is named (each fault was validated alone) its zones differ from
    the validated ones only by this instance's keys, and are not given to named-checkzone again."""
    from . import faults as _faults
    from . import topology, vary
    path = path / "lab.yaml" if path.is_dir() else path
    topo, src = topology.load(path)
    values = vary.draw(topo.vary, seed)
    edits = _faults.collect(path.parent, faults, {zone_name(z) for z in topo.zones}, set(topo.nodes),
                            values)
    return derive(topo, src, edits, values, keys, check_zones=not (validated and not topo.vary and len(faults) <= 1))


def derive(topo: topology.Topology, src: yamlsrc.Source, edits: _faults.Applied | None = None,
           values: vary.Values | None = None, keys: dict[str, list[dnssec.Key]] | None = None,
           check_zones: bool = True) -> LabPlan:
    from . import faults as _faults
    from . import vary
    edits = edits or _faults.Applied()
    values = values if values is not None else vary.draw(topo.vary, None)
    problems: list[Problem] = []

    def bad(loc: tuple, msg: str) -> None:
        problems.append(Problem(src.where(loc), f"{_dotted(loc)}: {msg}"))

    roles = _roles(topo, bad)
    nodes_ifaces = _addresses(topo, bad)
    for name, v in topo.vary.items():
        for net_name, net in topo.networks.items():
            if v.address is not None and any(p is not None and p.version == v.address.version and p.overlaps(v.address)
                                             for p in (net.ipv4, net.ipv6)):
                bad(("vary", name, "address"), f"{v.address} overlaps network {net_name}: a drawn address could be "
                                               "a node's; take it from another lab range")
    zone_names = {zone_name(z): z for z in topo.zones}
    if len(zone_names) != len(topo.zones):
        bad(("zones",), "a zone is listed twice (names are compared without case and trailing dot)")
    served: dict[str, list[str]] = {z: [] for z in zone_names}
    for name, node in topo.nodes.items():
        for i, z in enumerate(node.zones):
            if zone_name(z) not in served:
                bad(("nodes", name, "zones", i), f"zone {zone_name(z)} is not defined under zones"
                    + suggest(zone_name(z), set(served)))
            else:
                served[zone_name(z)].append(name)
        if node.zones and name in roles and roles[name] != "authoritative":  # unknown kind: reported
            bad(("nodes", name, "zones"), f"a {roles.get(name)} does not serve zones; set role: authoritative")
        if roles.get(name) == "authoritative" and not node.zones:
            bad(("nodes", name), "an authoritative server needs zones: [...] to serve")
    for z, original in zone_names.items():
        if not served[z]:
            parent = zones.parent_of(z, zone_names)
            how = f"delegated from {parent}" if parent else "defined"
            bad(("zones", original), f"zone {z} is {how} but served by no node: add it to a node's zones")

    for z, original in zone_names.items():
        zone = topo.zones[original]
        if zone.primary is not None and zone.primary not in served[z]:
            bad(("zones", original, "primary"), f"the primary of {z} must be one of its servers "
                                                f"({', '.join(served[z]) or 'none'})" + suggest(
                                                    zone.primary, set(served[z])))
        elif zone.primary is not None and len(served[z]) < 2:
            bad(("zones", original, "primary"), f"{z} has no other server to be a secondary: add it to another "
                                                "node's zones, or drop primary")
        if zone.dnssec and zone.primary is None and len(served[z]) > 1:
            bad(("zones", original, "dnssec"), f"{z} is signed and served by {len(served[z])} nodes: name the one "
                                               "that signs it as primary (the others transfer the signed zone)")
        if zone.dnssec and zone.dnssec.timers == "lab" and zone.ttl > LAB_TIMERS_MAX_TTL:
            bad(("zones", original, "ttl"), f"{z} is signed with lab timers: its TTL must be at most "
                                            f"{LAB_TIMERS_MAX_TTL} s (a rollover waits for TTLs to pass), not {zone.ttl}")
        if zone.registry is not None:
            _registry_rules(z, original, zone, served[z], topo, roles, bad)
        signer = zone.primary or (served[z][0] if served[z] else None)
        if zone.dnssec and zone.dnssec.zonemd and signer in topo.nodes and topo.nodes[signer].kind != "knot":
            bad(("zones", original, "dnssec", "zonemd"), f"{z} is signed on {signer} ({topo.nodes[signer].kind}), "
                                                         "which makes no ZONEMD: make a knot node its signer")
        if zone.tsig and zone.primary is None:
            bad(("zones", original, "tsig"), "tsig signs zone transfers: give the zone a primary first")

    hostnames: dict[str, str] = {}
    for name, node in topo.nodes.items():
        if roles.get(name) == "authoritative" and node.zones:
            first = zone_name(node.zones[0])
            hostnames[name] = zone_name(node.hostname or f"{name}.{first.rstrip('.')}")
            other = next((n for n in hostnames if n != name and hostnames[n] == hostnames[name]), None)
            if other is not None and (not node.anycast or set(node.anycast) != set(topo.nodes[other].anycast)):
                bad(("nodes", name, "hostname"), f"{hostnames[name]} is already the name of {other}: one name "
                                                 "server name is several nodes' only when they share its "
                                                 "addresses (the same anycast: list on each)")
            home = zones.closest_zone(hostnames[name], zone_names)
            if home is None:
                bad(("nodes", name, "hostname") if node.hostname else ("nodes", name),
                    f"name server name {hostnames[name]} is in no zone of the lab, so nothing can resolve its "
                    f"address: use a name inside one of the lab's zones ({', '.join(sorted(zone_names))})")
    resolvers = [n for n in topo.nodes if roles.get(n) == "resolver"]
    if resolvers and "." not in served:
        for n in resolvers:
            bad(("nodes", n), "a resolver needs a root to start from: no node serves the root zone '.'")
    client_resolver: dict[str, str] = {}
    for name, node in topo.nodes.items():
        if node.resolver is not None and name in roles and roles[name] != "client":
            bad(("nodes", name, "resolver"), "only a client uses a resolver")
        elif roles.get(name) == "client":
            target = node.resolver or (resolvers[0] if resolvers else None)
            if target is None or (target in topo.nodes and target not in roles):
                if len(roles) == len(topo.nodes):  # else a node of unknown kind or role was reported
                    bad(("nodes", name), "a client needs a resolver node in the lab")
            elif roles.get(target) != "resolver":
                bad(("nodes", name, "resolver"), f"{target!r} is not a resolver node of this lab"
                    + suggest(target, set(resolvers)))
            else:
                client_resolver[name] = target
    if problems:
        raise InputProblems(problems)

    nodes = {}
    for name, node in topo.nodes.items():
        edit = edits.nodes.get(name, _faults.NodeEdit())
        nodes[name] = NodePlan(
            name=name, kind=node.kind, role=roles[name], interfaces=nodes_ifaces[name],
            zones=tuple(zone_name(z) for z in node.zones), hostname=hostnames.get(name),
            resolver=client_resolver.get(name), options=tuple(edit.options), stop=edit.stop,
            block=tuple(edit.block) + ((f"udp/53~{node.loss}",) if node.loss else ()),
            ports=_faults.port_range(edit.ports) if edit.ports else None, validate=edit.validate_,
            rrl=node.rrl if edit.rrl else 0, clients=tuple(node.clients or ()), open=edit.open,
            policy=_policy(node.policy, edit.policy))
    for name, node in topo.nodes.items():
        if node.clients is not None and roles.get(name) != "resolver":
            bad(("nodes", name, "clients"), f"{name} is not a resolver: only a resolver has clients")
        for i, c in enumerate(node.clients or ()):
            if c not in topo.nodes:
                bad(("nodes", name, "clients", i), f"no node {c!r} in the lab" + suggest(c, set(topo.nodes)))
        if node.policy is not None and roles.get(name) != "resolver":
            bad(("nodes", name, "policy"), f"{name} is not a resolver: a response policy is a resolver's")
        elif node.policy is not None and "policy" not in kinds.KINDS[node.kind].resolver_extras:
            bad(("nodes", name, "policy"), f"{name} runs {node.kind}: dnslab gives response policy zones to "
                f"{_extras('policy')} resolvers only")
        for i, record in enumerate(node.policy or ()):
            why = rpz.record_problem(record)
            if why:
                bad(("nodes", name, "policy", i), why)
        if node.rrl is not None and roles.get(name) != "authoritative":
            bad(("nodes", name, "rrl"), f"{name} is not an authoritative server: response rate limiting is theirs")
    for name, node in nodes.items():  # what faults set (the lab file's own was told above, at its line)
        by_fault = name in edits.nodes and edits.nodes[name].policy is not None
        if by_fault and node.role != "resolver":
            problems.append(Problem(f"fault on node {name}", f"nodes.{name}.policy: {name} is not a resolver "
                                                             f"({node.role}): a response policy is a resolver's"))
        elif by_fault and "policy" not in kinds.KINDS[node.kind].resolver_extras:
            problems.append(Problem(f"fault on node {name}", f"nodes.{name}.policy: {name} runs {node.kind}: dnslab "
                                                             f"gives response policy zones to {_extras('policy')} "
                                                             "resolvers only"))
        if node.open and node.role != "resolver":
            problems.append(Problem(f"fault on node {name}", f"nodes.{name}.open: {name} is not a resolver "
                                                             f"({node.role}): only a resolver answers clients"))
        if not node.validate and node.role != "resolver":
            problems.append(Problem(f"fault on node {name}", f"nodes.{name}.validate: {name} is not a resolver "
                                                             f"({node.role}): only a resolver validates"))
    nodes = _routing(topo, nodes, bad)
    _reachability(nodes, served, bad)
    for z, original in zone_names.items():
        reg = topo.zones[original].registry
        if reg is not None and reg.node in nodes:
            loader = topo.zones[original].primary or served[z][0]
            children = [c for c in zone_names if zones.parent_of(c, zone_names) == z]
            for target in [loader, *(s for c in children for s in served[c])]:
                if not nodes[reg.node].reachable(nodes[target]):
                    bad(("zones", original, "registry", "node"), f"registry {reg.node} shares no network (and IP "
                                                                 f"family) with {target}, which it must reach")
                    break
    for z, original in zone_names.items():
        policy = topo.zones[original].dnssec
        for host in sorted({hostnames[n] for n in served[z] if n in hostnames}) if policy and policy.signal else ():
            home = zones.closest_zone(host, zone_names)
            loc = ("zones", original, "dnssec", "signal")
            if home == z or dns.name.from_text(host).is_subdomain(dns.name.from_text(z)):
                bad(loc, f"RFC 9615 signals live in the zones of the name servers, outside {z}: {host} is inside it "
                         "(in-bailiwick), so nothing signed could vouch for the signal; give it a name server named "
                         "in another signed zone")
            elif topo.zones[zone_names[home]].dnssec is None:
                bad(loc, f"the signal of {z} would be in {home} (its name server {host}), which is not signed: a "
                         f"registry could not validate it; sign {home} too")
    for z, (_, place) in edits.signed.items():
        signer = topo.zones[zone_names[z]].primary or served[z][0]
        if topo.zones[zone_names[z]].dnssec is None:
            problems.append(Problem(place, f"signed: {z} is not signed in the lab (add dnssec: to the zone)"))
        elif kinds.KINDS[nodes[signer].kind].resigns:
            problems.append(Problem(place, f"signed: {z} is signed by its daemon on {signer} "
                                           f"({nodes[signer].kind}); only an offline signer (an nsd primary, "
                                           "dnssec-signzone) can be made to sign it wrong"))
    if problems:
        raise InputProblems(problems)
    addrs = {hostnames[n]: tuple(nodes[n].anycast or nodes[n].addresses) for n in hostnames}
    zone_plans = zones.render_all(
        {z: topo.zones[orig] for z, orig in zone_names.items()}, served, hostnames,
        addrs, src, directory=src.path.parent, edits=edits, owners={h: n for n, h in hostnames.items()},
        values=values, keys=_keys_for(topo, zone_names, keys), check=check_zones)
    problems += zones.glue_problems(zone_plans)
    problems += [Problem(src.where(("zones", zone_names[z], "ttl")), f"zones.{zone_names[z]}: {msg}")
                 for z, msg in zones.ttl_problems(zone_plans) if topo.zones[zone_names[z]].dnssec
                 and topo.zones[zone_names[z]].dnssec.timers == "lab"]
    if problems:
        raise InputProblems(problems)
    root_hints = tuple(dict.fromkeys((hostnames[n], addrs[hostnames[n]]) for n in served.get(".", [])))
    networks = {n: NetworkPlan(n, net.ipv4, net.ipv6) for n, net in topo.networks.items()}
    return LabPlan(topo.name, topo.description, src.path.parent, networks, nodes, zone_plans, root_hints,
                   tuple(zones.delegation_warnings(zone_plans, addrs)), values)


def _extras(extra: str) -> str:
    """The kinds of resolver that can do ``extra``, for a message."""
    return " and ".join(sorted(k for k, kind in kinds.KINDS.items() if extra in kind.resolver_extras))


def _policy(lab: list[str] | None, fault: list[str] | None) -> tuple[str, ...] | None:
    """A resolver's policy records: a fault's replace the lab's (a fault's that the lab has none of
    makes an empty policy zone, for the trainee to fill)."""
    chosen = fault if fault is not None else lab
    return tuple(chosen) if chosen is not None else None


def _registry_rules(z: str, original: str, zone: topology.Zone, servers: list[str], topo: topology.Topology,
                    roles: dict[str, str], bad) -> None:
    """A registry is a registry node, and the zone's primary takes dynamic updates (Knot)."""
    node = zone.registry.node
    loc = ("zones", original, "registry", "node")
    if node not in topo.nodes:
        bad(loc, f"no node {node!r} in the lab" + suggest(node, set(topo.nodes)))
    elif roles.get(node) not in (None, "registry"):
        bad(loc, f"{node} is a {topo.nodes[node].kind} node: a registry runs on a node of kind registry")
    loader = zone.primary or (servers[0] if len(servers) == 1 else None)
    if loader is None and servers:
        bad(("zones", original, "registry"), f"the registry updates {z} on its primary: name one (primary:)")
    elif loader is not None and topo.nodes[loader].kind != "knot":
        bad(("zones", original, "registry"), f"the registry updates {z} by dynamic update on its primary "
                                             f"{loader}, a {topo.nodes[loader].kind} node: make a knot node the "
                                             "primary (BIND takes updates only in zones not edited as files)")


def _keys_for(topo: topology.Topology, zone_names: dict[str, str],
              keys: dict[str, list[dnssec.Key]] | None) -> dict[str, list[dnssec.Key]]:
    """The instance's keys of each signed zone; a zone without (a plan not made by ``up``, or a
    zone the lab signs since): fresh ones."""
    out = {}
    for z, orig in zone_names.items():
        policy = topo.zones[orig].dnssec
        if policy is None:
            continue
        have = (keys or {}).get(z)
        algorithm = dnssec.ALGORITHMS[policy.algorithm]
        out[z] = have if have and all(k.algorithm == algorithm for k in have) else dnssec.make(z, algorithm)
    return out


def _routing(topo: topology.Topology, nodes: dict[str, NodePlan], bad) -> dict[str, NodePlan]:
    """Each node's anycast addresses, default gateway and (a router's) BGP, checked: a gateway is
    a router on a network the node shares, peers list each other, a prefix goes to a neighbour."""
    import dataclasses
    prefixes = [(n, p) for n, net in topo.networks.items() for p in (net.ipv4, net.ipv6) if p is not None]
    def router(name: str, via: str, loc: tuple) -> NodePlan | None:
        """The router node that ``name``'s ``via`` names (another node), or None with the problem
        told at ``loc``."""
        found = nodes.get(via)
        if found is None:
            bad(loc, f"no node {via!r} in the lab" + suggest(via, set(nodes)))
        elif found.role != "router" or found.name == name:
            bad(loc, f"{via} is not a router (kind bird) of this lab")
        else:
            return found
        return None

    out = {}
    for name, node in topo.nodes.items():
        plan = nodes[name]
        for i, a in enumerate(node.anycast):
            inside = next((n for n, p in prefixes if p.version == a.version and a in p), None)
            if inside is not None:
                bad(("nodes", name, "anycast", i), f"{a} is inside network {inside}: an anycast address lives on "
                                                   "loopbacks, outside every network's prefix")
        gateway: tuple[str, ...] = ()
        if node.gateway is not None and (gw := router(name, node.gateway, ("nodes", name, "gateway"))):
            gateway = tuple(a for a in (plan.hop(gw, 4), plan.hop(gw, 6)) if a)
            if not gateway:
                bad(("nodes", name, "gateway"), f"{name} shares no network with its gateway {node.gateway}")
        routes = []
        for i, r in enumerate(node.routes):
            loc = ("nodes", name, "routes", i, "via")
            via = router(name, r.via, loc)
            hop = plan.hop(via, r.prefix.version) if via else None
            if via and not hop:
                bad(loc, f"{name} shares no IPv{r.prefix.version} network with {r.via}")
            elif hop:
                routes.append((str(r.prefix), hop))
        if node.bgp is not None and plan.role != "router":
            bad(("nodes", name, "bgp"), f"{name} runs {node.kind}: BGP is a router's (kind bird)")
        if node.local_root:
            loc = ("nodes", name, "local_root")
            root = next((z for k, z in topo.zones.items() if zone_name(k) == "."), None)
            if plan.role != "resolver":
                bad(loc, f"{name} is not a resolver: a local copy of the root is a resolver's")
            elif "local_root" not in kinds.KINDS[node.kind].resolver_extras:
                bad(loc, f"{name} runs {node.kind}: dnslab keeps a local root on {_extras('local_root')} resolvers "
                         "only")
            elif root is None or root.transfers != "any":
                bad(loc, "the root's servers give their zone to nobody: set transfers: any on zone . (as root "
                         "servers do for resolvers that keep a local root)")
            elif root.dnssec is None:
                bad(loc, "a local root is verified with DNSSEC: sign the root (dnssec: under zone .)")
        out[name] = dataclasses.replace(plan, anycast=tuple(str(a) for a in node.anycast), gateway=gateway,
                                        local_root=node.local_root, routes=tuple(routes),
                                        forwards=plan.role == "router",
                                        bgp=_bgp(name, node.bgp, plan, topo, nodes, bad) if node.bgp else None)
    return out


def _bgp(name: str, bgp: topology.Bgp, plan: NodePlan, topo: topology.Topology, nodes: dict[str, NodePlan],
         bad) -> BgpPlan:
    peers = []
    for peer, policy in bgp.peers.items():
        loc = ("nodes", name, "bgp", "peers", peer)
        other = topo.nodes.get(peer)
        if other is None or peer == name:
            bad(loc, f"no other node {peer!r} in the lab" + suggest(peer, set(topo.nodes) - {name}))
        elif other.bgp is None:
            bad(loc, f"{peer} speaks no BGP (give it bgp:, on a bird node)")
        elif name not in other.bgp.peers:
            bad(loc, f"{peer} does not list {name} among its peers: a session needs both ends")
        elif not plan.reachable(nodes[peer]):
            bad(loc, f"{name} shares no network with {peer}")
        else:
            peers.append(PeerPlan(peer, other.bgp.asn, tuple(plan.reachable(nodes[peer])), policy.local_pref,
                                  policy.prepend, policy.med))
    announce = []
    for i, a in enumerate(bgp.announce):
        loc = ("nodes", name, "bgp", "announce", i, "via")
        via = nodes.get(a.via)
        hop = plan.hop(via, a.prefix.version) if via else None
        if via is None:
            bad(loc, f"no node {a.via!r} in the lab" + suggest(a.via, set(nodes)))
        elif not hop:
            bad(loc, f"{name} shares no IPv{a.prefix.version} network with {a.via}")
        elif a.health and via.role not in ("authoritative", "resolver"):
            bad(("nodes", name, "bgp", "announce", i, "health"), f"{a.via} runs no DNS server ({via.kind}): a "
                                                                 "health check asks the node's DNS daemon")
        else:
            announce.append(AnnouncePlan(str(a.prefix), hop, a.via, a.health, a.active))
    if not any(i.ipv4 for i in plan.interfaces):
        bad(("nodes", name, "bgp"), f"{name} has no IPv4 address to be its BGP router ID")
    bfd = (bgp.bfd.interval, bgp.bfd.multiplier) if bgp.bfd else None
    return BgpPlan(bgp.asn, tuple(peers), tuple(announce), bgp.hold, bgp.keepalive or bgp.hold // 3, bfd,
                   bgp.transit)


def _reachability(nodes: dict[str, NodePlan], served: dict[str, list[str]], bad) -> None:
    """Every resolver reaches a root server, every client its resolver, every secondary its
    primary: on a network and IP family both have an address on, or through its gateway."""
    roots = [nodes[n] for n in served.get(".", [])]
    for node in nodes.values():
        routed = node.gateway or any(ipaddress.ip_address(a) in ipaddress.ip_network(p) for r in roots
                                     for a in r.listen for p, _ in node.routes)
        if node.role == "resolver" and roots and not routed and not any(node.reachable(r) for r in roots):
            bad(("nodes", node.name), f"resolver {node.name} shares no network (and IP family) with a root server "
                                      f"({', '.join(r.name for r in roots)}): it could not resolve anything")
        if node.role == "client" and node.resolver and not node.reachable(nodes[node.resolver]):
            bad(("nodes", node.name, "resolver"), f"client {node.name} shares no network (and IP family) with its "
                                                  f"resolver {node.resolver}")


def _roles(topo: topology.Topology, bad) -> dict[str, str]:
    roles = {}
    for name, node in topo.nodes.items():
        kind = kinds.KINDS.get(node.kind)
        if kind is None:
            bad(("nodes", name, "kind"), f"unknown kind {node.kind!r}" + suggest(node.kind, set(kinds.KINDS))
                + f" (known: {', '.join(sorted(kinds.KINDS))})")
            continue
        role = node.role or (kind.roles[0] if len(kind.roles) == 1 or not node.zones else "authoritative")
        if node.role is None and len(kind.roles) > 1 and not node.zones:
            bad(("nodes", name), f"a {node.kind} node needs role: one of {', '.join(kind.roles)}")
            continue
        if role not in kind.roles:
            bad(("nodes", name, "role"), f"{node.kind} cannot be {role} (it can be: {', '.join(kind.roles)})")
            continue
        roles[name] = role
    return roles


def _addresses(topo: topology.Topology, bad) -> dict[str, tuple[InterfacePlan, ...]]:
    """Explicit addresses are checked first; the others get the next free host address.

    The last host address of each prefix is kept free for a backend's gateway.
    """
    from . import topology
    attach: dict[str, dict[str, topology.Interface]] = {}
    for name, node in topo.nodes.items():
        if node.interfaces is None:
            if len(topo.networks) != 1:
                bad(("nodes", name), f"the lab has several networks: say which this node attaches to, under "
                                     f"interfaces ({', '.join(topo.networks)})")
                attach[name] = {}
                continue
            attach[name] = {next(iter(topo.networks)): topology.Interface()}
        else:
            attach[name] = dict(node.interfaces)
            for net in node.interfaces:
                if net not in topo.networks:
                    bad(("nodes", name, "interfaces", net), f"no network {net!r} in the lab's networks"
                        + suggest(net, set(topo.networks)))
    taken: dict[tuple[str, int], dict[str, str]] = {}
    for name, ifaces in attach.items():
        for net_name, iface in ifaces.items():
            net = topo.networks.get(net_name)
            for version, addr in ((4, iface.ipv4), (6, iface.ipv6)):
                if addr is None or net is None:
                    continue
                prefix = net.ipv4 if version == 4 else net.ipv6
                loc = ("nodes", name, "interfaces", net_name, f"ipv{version}")
                if prefix is None:
                    bad(loc, f"network {net_name} has no IPv{version} prefix")
                elif addr not in prefix or addr in (prefix.network_address, prefix.broadcast_address):
                    bad(loc, f"{addr} is not a host address of network {net_name} ({prefix})")
                elif str(addr) in taken.setdefault((net_name, version), {}):
                    bad(loc, f"{addr} is already used by node {taken[(net_name, version)][str(addr)]}")
                else:
                    taken[(net_name, version)][str(addr)] = name
    out: dict[str, tuple[InterfacePlan, ...]] = {}
    cursor: dict[tuple[str, int], int] = {}
    for name, ifaces in attach.items():
        plans, short = [], False
        for idx, (net_name, iface) in enumerate(ifaces.items()):
            net = topo.networks.get(net_name)
            if net is None:
                continue
            got: dict[int, object] = {}
            for version, addr, prefix in ((4, iface.ipv4, net.ipv4), (6, iface.ipv6, net.ipv6)):
                if prefix is None:
                    got[version] = None
                    continue
                if addr is None:
                    addr = _next_free(prefix, taken.setdefault((net_name, version), {}), cursor, (net_name, version))
                    if addr is None:
                        bad(("networks", net_name), f"no free IPv{version} address left in {prefix}")
                        got[version], short = None, True
                        continue
                    taken[(net_name, version)][str(addr)] = name
                got[version] = ipaddress.ip_interface(f"{addr}/{prefix.prefixlen}")
            plans.append(InterfacePlan(net_name, f"eth{idx}", got[4], got[6]))  # type: ignore[arg-type]
        if (not any(p.ipv4 or p.ipv6 for p in plans) and not short and all(n in topo.networks for n in ifaces)
                and (ifaces or topo.nodes[name].interfaces is not None)):  # else already reported
            bad(("nodes", name), "the node has no address: attach it to a network with an ipv4 or ipv6 prefix")
        out[name] = tuple(plans)
    return out


def _next_free(prefix, taken: dict[str, str], cursor: dict, key) -> object | None:
    last = min(prefix.num_addresses - 2, 2**16)  # the network, last host and all-ones addresses stay free
    i = cursor.get(key, 1)
    while i < last:
        addr = prefix.network_address + i
        i += 1
        if str(addr) not in taken:
            cursor[key] = i
            return addr
    return None


def _dotted(loc: tuple) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
