"""Zone files: an author's records plus what dnslab derives (SOA, apex NS, delegations,
glue, name servers' addresses) and what faults change, checked by ``named-checkzone`` with
errors mapped back to the author's file or YAML line, or to the fault's.

Author NS records merge with the derived ones (a zone's servers are always its name
servers); an author's address for a name server that differs from the node's address is
refused (breaking one is a fault's job). Fault records replace the RRset of the same owner
and type; they are written among the derived records, with nothing that marks them. A fault
that replaces or removes an author's RRset makes the zone be written in canonical form.
"""
from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from . import dnssec
from .errors import EnvError, InputProblems, Problem
from .names import zone_name

if TYPE_CHECKING:  # the lab file's side: what render_all reads, not what a plan made before holds
    from . import faults, yamlsrc

MAX_ZONE_BYTES = 512 << 10  # a lab's zone is small; the check of one this size takes well under a second


@dataclass(frozen=True)
class Nsec3Plan:
    """NSEC3 parameters of a signed zone (the lab file's ``dnssec.nsec3``)."""

    iterations: int = 0
    salt_length: int = 0
    opt_out: bool = False


@dataclass(frozen=True)
class SigningPlan:
    """How a zone is signed (the lab file's ``dnssec:``, field for field)."""

    algorithm: str = "ECDSAP256SHA256"
    nsec3: Nsec3Plan | None = None
    timers: str = "standard"
    ds: bool = True
    zonemd: bool = False
    signal: bool = False


@dataclass(frozen=True)
class RegistryPlan:
    """The registry node managing a zone's children's DS (the lab file's ``registry:``)."""

    node: str
    interval: float = 2
    stable: int = 3
    bootstrap: str = "delay"


def _plain(cls: type, model, **nested: type):
    """The lab file's ``model`` (a schema object, or None) as ``cls``, the plan's dataclass of the
    same fields; ``nested``: the plan dataclass of each field that holds a schema object itself."""
    if model is None:
        return None
    return cls(**{f.name: _plain(nested[f.name], getattr(model, f.name)) if f.name in nested
                  else getattr(model, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class ZonePlan:
    name: str
    servers: tuple[str, ...]          # node names serving it
    nameservers: tuple[str, ...]      # their host names (apex NS), the primary first (SOA MNAME)
    parent: str | None
    text: str                          # the zone file every server loads (the primary's, with a primary)
    primary: str | None = None         # the node the others transfer it from (None: each loads its copy)
    tsig: bool = False                 # transfers and NOTIFY signed with a key of the zone's own
    dnssec: SigningPlan | None = None  # signed: the signer's policy (lab file)
    keys: tuple[dnssec.Key, ...] = ()  # signed: this instance's KSK and ZSK
    registry: RegistryPlan | None = None  # the registry node that manages its children's DS
    ttl: int = 3600                    # the zone's default TTL ($TTL)
    signing_fault: faults.SignedEdit | None = None  # what a fault makes the offline signer do wrong
    transfers: str | None = None       # a fault's: "any" (anyone may copy it), "address" (TSIG dropped)

    @property
    def loader(self) -> str:
        """The node that loads the zone from its file: its primary, or its first server."""
        return self.primary or self.servers[0]

    @property
    def signer(self) -> str | None:
        """The node that signs the zone: its primary, or its only server; None if unsigned."""
        return self.loader if self.dnssec else None

    @property
    def salt(self) -> str:
        """The NSEC3 salt as hex ("-": none), per instance."""
        return dnssec.salt(list(self.keys), self.dnssec.nsec3.salt_length if self.dnssec and self.dnssec.nsec3 else 0)

    @property
    def secondaries(self) -> tuple[str, ...]:
        return tuple(s for s in self.servers if self.primary and s != self.primary)

    @property
    def filename(self) -> str:
        return "root.zone" if self.name == "." else f"{self.name.rstrip('.')}.zone"


@dataclass
class _Source:
    text: str                 # the author's part, without our header
    places: list[str]         # places[i]: where line i+1 of text came from


def closest_zone(name: str, all_zones) -> str | None:
    """The deepest of ``all_zones`` that holds ``name`` (is it or an ancestor), None if none does."""
    n = dns.name.from_text(name)
    holders = [z for z in all_zones if n.is_subdomain(dns.name.from_text(z))]
    return max(holders, key=lambda z: len(dns.name.from_text(z)), default=None)


def parent_of(zone: str, all_zones) -> str | None:
    """The closest enclosing zone of ``zone`` among ``all_zones``."""
    name = dns.name.from_text(zone)
    best = None
    for other in all_zones:
        o = dns.name.from_text(other)
        if o != name and name.is_subdomain(o) and (best is None or o.is_subdomain(best)):
            best = o
    return best.to_text() if best is not None else None


def render_all(specs: dict, served: dict[str, list[str]], hostnames: dict[str, str],
               addrs: dict[str, tuple[str, ...]], src: yamlsrc.Source, directory: Path,
               edits: faults.Applied | None = None, owners: dict[str, str] | None = None,
               values: dict[str, str] | None = None,
               keys: dict[str, list[dnssec.Key]] | None = None, check: bool = True) -> dict[str, ZonePlan]:
    """Render and check every zone (without ``check``, not with named-checkzone); all problems are
    raised together.

    ``served`` maps a zone to the nodes serving it, ``hostnames`` a node to its name
    server name, ``addrs`` a name server name to its addresses, ``owners`` a name server name
    to its node; ``edits`` are the faults' changes; ``values`` fill the ``{{ name }}`` of author
    records and zone files; ``keys`` are the signed zones' keys (their DS go in the parent).
    """
    from . import faults
    keys = keys or {}
    edits = edits or faults.Applied()
    # the primary first (SOA MNAME); anycast sites sharing a name, that name once
    servers = {z: list(dict.fromkeys(hostnames[n] for n in sorted(nodes, key=lambda n: n != specs[z].primary)))
               for z, nodes in served.items()}
    problems: list[Problem] = []
    sources: dict[str, _Source] = {}
    for z, spec in specs.items():
        try:
            sources[z] = _author_source(z, spec, src, directory, values or {})
        except InputProblems as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputProblems(problems)
    plans, places = {}, {}
    signals: dict[str, list[str]] = {}  # RFC 9615: the CDS of a zone, in the zones of its name servers
    for z, spec in specs.items():
        for host in servers[z] if spec.dnssec and spec.dnssec.signal else ():
            home = closest_zone(host, specs)
            signals.setdefault(home, []).extend(f"_dsboot.{z}_signal.{host} IN CDS {k.ds().to_text()}"
                                                for k in keys.get(z, []) if k.role == "ksk")
    for z, spec in specs.items():
        parent = parent_of(z, specs) if spec.delegated else None
        below = [c for c in specs if parent_of(c, specs) == z]
        children = [c for c in below if specs[c].delegated]
        key = next(k for k in src.data.get("zones", {}) if zone_name(k) == z)
        ds = {c: [k.ds() for k in keys.get(c, []) if k.role == "ksk"] for c in children
              if not specs[c].dnssec or specs[c].dnssec.ds}
        lines, where, refused = _derived(z, spec, servers, children, addrs, sources[z], edits, owners or {}, ds,
                                         signals.get(z, []), hidden=[c for c in below if c not in children])
        problems += [Problem(place, f"zones.{key}: {msg}") for place, msg in refused]
        header = f"$ORIGIN {z}\n$TTL {spec.ttl}\n"
        text = header + "".join(ln + "\n" for ln in lines) + sources[z].text
        places[z] = [f"zone {z}", f"zone {z}"] + where + sources[z].places
        transfers = edits.transfers.get(z, spec.transfers)
        plans[z] = ZonePlan(z, tuple(served[z]), tuple(servers[z]), parent, text,
                            spec.primary, bool(spec.primary and spec.tsig and transfers != "address"),
                            _plain(SigningPlan, spec.dnssec, nsec3=Nsec3Plan), tuple(keys.get(z, ())) if spec.dnssec
                            else (), _plain(RegistryPlan, spec.registry), spec.ttl,
                            edits.signed[z][0] if z in edits.signed else None, transfers)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for z, found in zip(plans, pool.map(lambda z: named_checkzone(z, plans[z].text), plans if check else ())):
            for line, msg in found:
                where = places[z][line - 1] if 0 < line <= len(places[z]) else f"zone {z}"
                problems.append(Problem(where, f"zone {z}: {msg}"))
    if problems:
        raise InputProblems(problems)
    for z in plans:  # a fault that changes an author's RRset: the zone in canonical form
        if _touches_author(z, sources[z].text, edits):
            plans[z] = dataclasses.replace(plans[z], text=_canonical(z, plans[z].text, edits))
    return plans


def _author_source(zone: str, spec, src: yamlsrc.Source, directory: Path, values: dict[str, str]) -> _Source:
    from . import vary, yamlsrc
    key = next(k for k in src.data.get("zones", {}) if zone_name(k) == zone)
    lines: list[str] = []
    places: list[str] = []
    if spec.file:
        path = inside(directory, spec.file, src.where(("zones", key, "file")), f"zones.{key}.file")
        content = yamlsrc.read_text(path, MAX_ZONE_BYTES).splitlines()
        lines += content
        places += [f"{path}:{i + 1}" for i in range(len(content))]
    for i, record in enumerate(spec.records):
        lines.append(record)
        places.append(src.where(("zones", key, "records", i)))
    text = vary.render("\n".join(lines), values, lambda i: places[i])
    return _Source("".join(line + "\n" for line in text.split("\n")) if lines else "", places)


def inside(directory: Path, rel: str, where: str, field: str) -> Path:
    """``directory/rel`` if it is a file of the lab folder (no absolute path, no ``..``, no link
    out of it); :class:`InputProblems` otherwise, without reading anything."""
    path = directory / rel
    try:
        ok = not Path(rel).is_absolute() and ".." not in Path(rel).parts and \
            path.resolve().is_relative_to(directory.resolve())
    except OSError:
        ok = False
    if not ok:
        raise InputProblems([Problem(where, f"{field}: {rel!r} is not a file of the lab folder "
                                            "(give a path relative to lab.yaml, inside its folder)")])
    if not path.is_file():
        raise InputProblems([Problem(where, f"{field}: no file {rel} beside lab.yaml")])
    return path


def _parse(zone: str, text: str) -> dns.zone.Zone | None:
    try:
        return dns.zone.from_text("$TTL 3600\n" + text, zone, relativize=False, check_origin=False)
    except (dns.exception.DNSException, ValueError):
        return None


def record_types(zone: str, text: str) -> dict[str, set[str]]:
    """Owner name -> record types the author wrote (best effort: a broken file yields {})."""
    parsed = _parse(zone, text)
    if parsed is None:
        return {}
    return {n.to_text().lower(): {dns.rdatatype.to_text(r.rdtype) for r in node} for n, node in parsed.items()}


def data_of(zone: ZonePlan, owner: str, rtype: str) -> set[str]:
    """The data of ``owner``'s ``rtype`` records in ``zone``'s file (empty if none or unparsable)."""
    parsed = _parse(zone.name, zone.text)
    try:
        name, want = dns.name.from_text(owner), dns.rdatatype.from_text(rtype)
    except (dns.exception.DNSException, ValueError):
        return set()
    rdataset = parsed.get_rdataset(name, want) if parsed is not None else None
    return {r.to_text() for r in rdataset} if rdataset else set()


def _key(zone: str, owner: str, rtype: str) -> tuple[str, str]:
    """(absolute lower-case owner, TYPE) of a record written relative to ``zone``."""
    name = dns.name.from_text(owner, origin=dns.name.from_text(zone))
    return name.to_text().lower(), rtype.upper()


def _fault_keys(zone: str, edits: faults.Applied) -> tuple[dict[tuple[str, str], list[tuple[str, str]]], set]:
    """The faults' records of a zone by (owner, type), and the (owner, type) they remove."""
    added: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for record, place in edits.records.get(zone, []):
        parsed = _parse(zone, record)
        if parsed is None:  # kept as written: named-checkzone says what is wrong, at the fault's line
            added.setdefault(("", record), []).append((record, place))
        for name, node in (parsed.items() if parsed else []):
            for rds in node:
                added.setdefault((name.to_text().lower(), dns.rdatatype.to_text(rds.rdtype)), []).append(
                    (record, place))
    removed = {_key(zone, owner, rtype) for owner, rtype, _ in edits.remove.get(zone, [])}
    return added, removed


def _mailbox(zone: str, mname: str) -> str:
    """The SOA RNAME: hostmaster at the zone, or for the root and a TLD (no mail domain of
    their own) at the domain of the primary name server (ns1.nic.test. -> hostmaster.nic.test.)."""
    if zone.count(".") >= 2:
        return f"hostmaster.{zone}"
    domain = mname.split(".", 1)[1] if "." in mname else ""
    return f"hostmaster.{domain}" if domain.count(".") >= 2 else f"hostmaster.{zone.lstrip('.')}"


def _derived(zone: str, spec, servers: dict[str, list[str]], children: list[str],
             addrs: dict[str, tuple[str, ...]], author: _Source, edits: faults.Applied,
             owners: dict[str, str], ds: dict[str, list],
             signals: list[str] = (), hidden: list[str] = ()) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """The derived records of ``zone`` with the faults' changes: (lines, their places,
    refused author records as (place, reason)); ``ds``: the DS records of signed children,
    ``signals``: RFC 9615 signalling records (CDS) of zones this zone's names serve; ``hidden``:
    zones below it that it does not delegate (nothing of theirs goes in it)."""
    written = record_types(zone, author.text)
    added, removed = _fault_keys(zone, edits)
    replaced = set(added) | removed
    ns = servers[zone]
    out: list[tuple[str, str]] = []
    place = f"zone {zone} (derived records)"
    if "SOA" not in written.get(zone, set()) and (zone, "SOA") not in replaced:
        serial = edits.serials.get(zone, spec.serial)
        mname = ns[0] if ns else zone
        # refresh and retry short for a lab, expire as registries ask (Zonemaster: a week at least)
        out.append((f"{zone} {spec.ttl} IN SOA {mname} {_mailbox(zone, mname)} {serial} 3600 600 604800 60", place))
    for owner, hosts in [(zone, ns)] + [(c, servers[c]) for c in children]:
        if (owner, "NS") not in replaced:  # merged with any NS the author wrote
            out += [(f"{owner} IN NS {h}", place) for h in hosts]
    for child, records in ds.items():
        if (child, "DS") not in replaced:
            out += [(f"{child} IN DS {r.to_text()}", place) for r in records]
    out += [(line, place) for line in signals]
    targets = set(ns) | {h for c in children for h in servers[c]}
    zname = dns.name.from_text(zone)
    refused = []
    mine = _addresses_written(zone, author)
    for host in sorted(addrs):
        hname = dns.name.from_text(host)
        if not hname.is_subdomain(zname):
            continue
        below_cut = any(hname.is_subdomain(dns.name.from_text(c)) for c in children)
        if (below_cut and host not in targets) or any(hname.is_subdomain(dns.name.from_text(c)) for c in hidden):
            continue
        for rtype in ("A", "AAAA"):
            derived = {a for a in addrs[host] if (":" in a) == (rtype == "AAAA")}
            if (host, rtype) in replaced or not derived:
                continue
            if (host, rtype) in mine:
                wrote, where = mine[(host, rtype)]
                if wrote != derived:
                    refused.append((where, f"{host} {rtype} {', '.join(sorted(wrote))} differs from the address of "
                                           f"node {owners.get(host, '?')} ({', '.join(sorted(derived))}), which dnslab "
                                           "writes itself: remove this record (to break it on purpose, use a fault)"))
                continue
            out += [(f"{host} IN {rtype} {a}", place) for a in sorted(derived)]
    for key in sorted(added):
        out += [(_as_derived(zone, record), where) for record, where in added[key]]
    soa = [r for r in out if " SOA " in r[0]]
    rest = sorted((r for r in out if " SOA " not in r[0]), key=lambda r: (" IN NS " not in r[0], r[0].split()[0]))
    out = soa + rest  # one order for derived and fault records alike
    return [r for r, _ in out], [w for _, w in out], refused


def _as_derived(zone: str, record: str) -> str:
    """A fault's record written as dnslab writes derived ones (absolute owner, no TTL): nothing in
    the zone file tells it from them. Unparseable, it stays as written (named-checkzone reports it)."""
    parsed = _parse(zone, record)
    lines = [f"{name.to_text()} IN {dns.rdatatype.to_text(rds.rdtype)} {rr.to_text()}"
             for name, node in (parsed.items() if parsed else []) for rds in node for rr in rds]
    return lines[0] if len(lines) == 1 else record


def _addresses_written(zone: str, author: _Source) -> dict[tuple[str, str], tuple[set[str], str]]:
    """(owner, A|AAAA) -> (addresses, place of the first line) the author wrote."""
    parsed = _parse(zone, author.text)
    found: dict[tuple[str, str], tuple[set[str], str]] = {}
    for name, node in (parsed.items() if parsed else []):
        for rds in node:
            if rds.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                owner = name.to_text().lower()
                where = next((author.places[i] for i, line in enumerate(author.text.splitlines())
                              if _mentions(line, owner, zone)), author.places[0] if author.places else f"zone {zone}")
                found[(owner, dns.rdatatype.to_text(rds.rdtype))] = ({rr.to_text() for rr in rds}, where)
    return found


def _mentions(line: str, owner: str, zone: str) -> bool:
    first = line.split(";", 1)[0].split()
    if not first or first[0].startswith("$"):
        return False
    try:
        return dns.name.from_text(first[0], origin=dns.name.from_text(zone)).to_text().lower() == owner
    except dns.exception.DNSException:
        return False


def _touches_author(zone: str, author_text: str, edits: faults.Applied) -> bool:
    added, removed = _fault_keys(zone, edits)
    written = record_types(zone, author_text)
    return any(rtype in written.get(owner, set()) for owner, rtype in set(added) | removed)


def _canonical(zone: str, text: str, edits: faults.Applied) -> str:
    """The zone with the faults' RRsets replacing the author's, in canonical form."""
    parsed = dns.zone.from_text(text, zone, relativize=False, check_origin=False)
    added, removed = _fault_keys(zone, edits)
    for owner, rtype in removed:
        parsed.delete_rdataset(owner, rtype)
    for (owner, rtype), records in added.items():
        parsed.delete_rdataset(owner, rtype)
        extra = dns.zone.from_text("$TTL 3600\n" + "".join(r + "\n" for r, _ in records), zone, relativize=False,
                                   check_origin=False)
        parsed.replace_rdataset(owner, extra.find_rdataset(owner, rtype))
    return parsed.to_text(relativize=False)


_CHECK_LINE = re.compile(r"^(?:dns_\w+: )?zone\.db:(\d+): (.*)$")


def named_checkzone(zone: str, text: str) -> list[tuple[int, str]]:
    """Run ``named-checkzone`` on a zone text: [(line, message)] of what it rejects."""
    exe = shutil.which("named-checkzone")
    if exe is None:
        raise EnvError("named-checkzone not found: apt-get install bind9-utils")
    with tempfile.TemporaryDirectory(prefix="dnslab-zone-") as tmp:
        path = Path(tmp) / "zone.db"
        path.write_text(text, encoding="utf-8")
        res = subprocess.run([exe, "-i", "local", "-k", "fail", "-n", "fail", zone, "zone.db"],
                             cwd=tmp, capture_output=True, text=True)
    if res.returncode == 0:
        return []
    found = []
    for line in (res.stdout + res.stderr).splitlines():
        m = _CHECK_LINE.match(line.strip())
        if m:
            found.append((int(m.group(1)), m.group(2)))
    if not found:
        msgs = [ln.split(": ", 1)[-1] for ln in res.stdout.splitlines()
                if ln and "not loaded" not in ln and "loading from master file" not in ln]
        found = [(0, "; ".join(msgs) or "rejected by named-checkzone")]
    return found


def glue_problems(plans: dict[str, ZonePlan]) -> list[Problem]:
    """Delegations to a name server inside the delegated zone with no address in the parent:
    a resolver could never reach it (the rendered zones, faults included, are read)."""
    problems = []
    for z, plan in plans.items():
        parsed = _parse(z, plan.text)
        if parsed is None:
            continue
        for name, node in parsed.items():
            ns = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.NS)
            if ns is None or name == parsed.origin:
                continue
            for rr in ns:
                target = rr.target
                if target.is_subdomain(name) and not any(
                        parsed.get_rdataset(target, t) for t in (dns.rdatatype.A, dns.rdatatype.AAAA)):
                    problems.append(Problem(f"zone {z}", f"the delegation of {name} names {target}, inside {name}, "
                                                         f"with no address (glue) in {z}: nobody could reach it"))
    return problems


def ttl_problems(plans: dict[str, ZonePlan]) -> list[tuple[str, str]]:
    """(zone, why) for each zone with a record whose TTL is above the zone's own TTL: a signer
    with lab timers takes the zone's TTL as the longest it waits for."""
    out = []
    for z, plan in plans.items():
        parsed = _parse(z, plan.text)
        for name, node in (parsed.items() if parsed else []):
            for rds in node:
                if rds.ttl > plan.ttl:
                    out.append((z, f"{name} {dns.rdatatype.to_text(rds.rdtype)} has TTL {rds.ttl}, above the "
                                   f"zone's TTL {plan.ttl}: with lab timers, no record may outlive the zone's TTL"))
                    break
    return out


def delegation_warnings(plans: dict[str, ZonePlan], addrs: dict[str, tuple[str, ...]]) -> list[Problem]:
    """What a registry's pre-delegation test would refuse: a delegation with fewer than two
    name servers, or whose name servers do not have distinct addresses."""
    warnings = []
    for z, plan in plans.items():
        if plan.parent is None:
            continue
        hosts = plan.nameservers
        addresses = [a for h in hosts for a in addrs.get(h, ())]
        if len(hosts) < 2:
            warnings.append(Problem(f"zone {z}", f"delegated with {len(hosts)} name server: registries require "
                                                 "at least two (serve it on a second node)"))
        elif len(set(addresses)) < len(addresses):
            warnings.append(Problem(f"zone {z}", "its name servers share an address: registries require distinct "
                                                 "ones"))
    return warnings
