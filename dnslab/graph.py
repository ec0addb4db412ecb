"""A lab drawn with graphviz: networks, nodes (kind, role, addresses, zones) and the
DNS relations the plan derived: delegations, zone transfers, root hints, which resolver a
client uses; BGP sessions between routers; and, for a live instance, each vantage point's
anycast site (its catchment)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import EnvError
from .plan import LabPlan

COLOURS = {"authoritative": "#dbeafe", "resolver": "#dcfce7", "client": "#fef9c3", "attacker": "#fee2e2",
           "router": "#f3e8ff"}
SITE_COLOURS = ("#dc2626", "#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2")


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(lab: LabPlan, catchment: dict[str, str | None] | None = None) -> str:
    """The DOT source of a lab's picture; ``catchment`` (vantage point -> the anycast site that
    answers it) draws each vantage point's site in the site's colour."""
    out = [f"graph {_q(lab.name)} {{", "  rankdir=TB; fontname=Helvetica; node [fontname=Helvetica fontsize=10];",
           "  edge [fontname=Helvetica fontsize=9];",
           f"  label={_q(lab.name + (': ' + lab.description if lab.description else ''))}; labelloc=t;"]
    for net in lab.networks.values():
        prefixes = "\\n".join(str(p) for p in (net.ipv4, net.ipv6) if p)
        out.append(f"  {_q('net:' + net.name)} [shape=box style=rounded label={_q(net.name)[:-1]}\\n{prefixes}\" "
                   "color=gray50 fontcolor=gray30];")
    for node in lab.nodes.values():
        lines = [f"<b>{node.name}</b>", f"{node.kind} · {node.role}"]
        if node.zones:
            lines.append("zones: " + ", ".join(node.zones))
        if node.hostname:
            lines.append(node.hostname)
        lines += node.addresses
        lines += [f"anycast {a}" for a in node.anycast]
        if node.bgp:
            lines.append(f"AS{node.bgp.asn}")
        label = "<" + "<br/>".join(lines) + ">"
        out.append(f"  {_q(node.name)} [shape=box style=filled fillcolor={_q(COLOURS.get(node.role, 'white'))} "
                   f"label={label}];")
        for iface in node.interfaces:
            out.append(f"  {_q(node.name)} -- {_q('net:' + iface.network)} [color=gray70 "
                       f"taillabel={_q(iface.ifname)}];")
    for zone in lab.zones.values():
        if zone.parent is None:
            continue
        for p in lab.zones[zone.parent].servers[:1]:
            for c in zone.servers:
                out.append(f"  {_q(p)} -- {_q(c)} [dir=forward style=dashed color=blue fontcolor=blue "
                           f"label={_q('delegates ' + zone.name)} constraint=true];")
    for zone in lab.zones.values():
        for s in zone.secondaries:
            label = f"transfers {zone.name}" + (" (TSIG)" if zone.tsig else "")
            out.append(f"  {_q(zone.primary)} -- {_q(s)} [dir=forward color=purple fontcolor=purple "
                       f"label={_q(label)} constraint=false];")
    roots = lab.zones["."].servers if "." in lab.zones else ()
    for node in lab.by_role("resolver"):
        for r in roots:
            out.append(f"  {_q(node.name)} -- {_q(r)} [dir=forward style=dotted color=darkgreen "
                       "label=\"root hints\" constraint=false];")
    for node in lab.by_role("client"):
        if node.resolver:
            out.append(f"  {_q(node.name)} -- {_q(node.resolver)} [dir=forward color=darkorange "
                       "label=\"resolver\" constraint=false];")
    for node in lab.nodes.values():
        for peer in node.bgp.peers if node.bgp else ():
            if node.name < peer.node:  # one edge per session pair
                out.append(f"  {_q(node.name)} -- {_q(peer.node)} [color=firebrick fontcolor=firebrick label=\"BGP\" "
                           "constraint=false];")
    sites = sorted({s for s in (catchment or {}).values() if s})
    for vantage, site in (catchment or {}).items():
        colour = SITE_COLOURS[sites.index(site) % len(SITE_COLOURS)] if site else "gray40"
        out.append(f"  {_q(vantage)} [color={_q(colour)} penwidth=3];")
        if site in lab.nodes:
            out.append(f"  {_q(site)} [color={_q(colour)} penwidth=3];")
            out.append(f"  {_q(vantage)} -- {_q(site)} [dir=forward color={_q(colour)} fontcolor={_q(colour)} "
                       f"penwidth=2 label=\"catchment\" constraint=false];")
    out.append("}")
    return "\n".join(out) + "\n"


def render(lab: LabPlan, output: Path, fmt: str = "svg", catchment: dict[str, str | None] | None = None) -> None:
    """Write the picture as SVG or PNG (``dot`` from Debian's graphviz); ``.dot`` writes the source."""
    source = dot(lab, catchment)
    if fmt == "dot":
        output.write_text(source)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise EnvError("graphviz's dot is not installed: apt-get install graphviz")
    res = subprocess.run([exe, f"-T{fmt}", "-o", str(output)], input=source, text=True, capture_output=True)
    if res.returncode:
        raise EnvError(f"dot failed: {res.stderr.strip()}")
