"""Zone files: an author's records plus what dnslab derives (SOA, apex NS,
delegations, glue), checked by ``named-checkzone`` with errors mapped back to the
author's file or YAML line.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.name
import dns.rdatatype
import dns.zone

from . import yamlsrc
from .topology import zone_name
from .errors import EnvError, InputProblems, Problem, not_utf8


@dataclass(frozen=True)
class ZonePlan:
    name: str
    servers: tuple[str, ...]          # node names serving it
    nameservers: tuple[str, ...]      # their host names (apex NS)
    parent: str | None
    text: str                          # the zone file every server loads

    @property
    def filename(self) -> str:
        return "root.zone" if self.name == "." else f"{self.name.rstrip('.')}.zone"


@dataclass
class _Source:
    text: str                 # the author's part, without our header
    places: list[str]         # places[i]: where line i+1 of text came from


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
               addrs: dict[str, tuple[str, ...]], src: yamlsrc.Source, directory: Path) -> dict[str, ZonePlan]:
    """Render and check every zone; all problems are raised together.

    ``served`` maps a zone to the nodes serving it, ``hostnames`` a node to its name
    server name, ``addrs`` a name server name to its addresses.
    """
    servers = {z: [hostnames[n] for n in nodes] for z, nodes in served.items()}
    problems: list[Problem] = []
    sources: dict[str, _Source] = {}
    for z, spec in specs.items():
        try:
            sources[z] = _author_source(z, spec, src, directory)
        except InputProblems as exc:
            problems.extend(exc.problems)
    if problems:
        raise InputProblems(problems)
    plans = {}
    for z, spec in specs.items():
        parent = parent_of(z, specs)
        children = [c for c in specs if parent_of(c, specs) == z]
        header, derived = _derived(z, spec, servers, children, addrs, sources[z].text)
        text = header + derived + sources[z].text
        plans[z] = ZonePlan(z, tuple(served[z]), tuple(servers[z]), parent, text)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for z, found in zip(plans, pool.map(lambda z: check(z, plans[z].text), plans)):
            offset = plans[z].text.count("\n") - sources[z].text.count("\n")
            for line, msg in found:
                i = line - offset - 1
                where = sources[z].places[i] if 0 <= i < len(sources[z].places) else f"zone {z} (derived records)"
                problems.append(Problem(where, f"zone {z}: {msg}"))
    if problems:
        raise InputProblems(problems)
    return plans


def _author_source(zone: str, spec, src: yamlsrc.Source, directory: Path) -> _Source:
    key = next(k for k in src.data.get("zones", {}) if zone_name(k) == zone)
    lines: list[str] = []
    places: list[str] = []
    if spec.file:
        path = directory / spec.file
        try:
            content = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputProblems([Problem(src.where(("zones", key, "file")),
                                         f"zones.{key}.file: cannot read {path}: {exc.strerror}")]) from None
        except UnicodeDecodeError:
            raise InputProblems([not_utf8(path)]) from None
        lines += content
        places += [f"{path}:{i + 1}" for i in range(len(content))]
    for i, record in enumerate(spec.records):
        lines.append(record)
        places.append(src.where(("zones", key, "records", i)))
    return _Source("".join(line + "\n" for line in lines), places)


def _owners(zone: str, text: str) -> dict[str, set[str]]:
    """Owner name -> record types the author wrote (best effort: a broken file yields {})."""
    try:
        parsed = dns.zone.from_text("$TTL 3600\n" + text, zone, relativize=False, check_origin=False)
    except (dns.exception.DNSException, ValueError):
        return {}
    return {n.to_text().lower(): {dns.rdatatype.to_text(r.rdtype) for r in node} for n, node in parsed.items()}


def _derived(zone: str, spec, servers: dict[str, list[str]], children: list[str],
             addrs: dict[str, tuple[str, ...]], author: str) -> tuple[str, str]:
    owners = _owners(zone, author)
    ns = servers[zone]
    header = f"$ORIGIN {zone}\n$TTL {spec.ttl}\n"
    out = []
    if "SOA" not in owners.get(zone, set()):
        mailbox = f"hostmaster.{zone}" if zone != "." else "hostmaster."
        out.append(f"{zone} {spec.ttl} IN SOA {ns[0] if ns else zone} {mailbox} {spec.serial} 3600 600 86400 60")
    if "NS" not in owners.get(zone, set()):
        out += [f"{zone} IN NS {h}" for h in ns]
    cuts = [c for c in children if "NS" not in owners.get(c, set())]
    for child in cuts:
        out += [f"{child} IN NS {h}" for h in servers[child]]
    targets = set(ns) | {h for c in children for h in servers[c]}
    zname = dns.name.from_text(zone)
    for host in sorted(addrs):
        hname = dns.name.from_text(host)
        if not hname.is_subdomain(zname):
            continue
        below_cut = any(hname.is_subdomain(dns.name.from_text(c)) for c in children)
        if below_cut and host not in targets:
            continue
        have = owners.get(host, set())
        for a in addrs[host]:
            rtype = "AAAA" if ":" in a else "A"
            if rtype not in have:
                out.append(f"{host} IN {rtype} {a}")
    derived = "; derived by dnslab: SOA, apex NS, delegations and glue\n" + "".join(r + "\n" for r in out)
    return header, derived + "; from the lab author\n"


_CHECK_LINE = re.compile(r"^(?:dns_\w+: )?zone\.db:(\d+): (.*)$")


def check(zone: str, text: str) -> list[tuple[int, str]]:
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
