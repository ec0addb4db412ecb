"""What ``dnslab dnssec status`` shows of a live instance: per signed zone, the keys its signer
serves (tag, KSK or ZSK, algorithm), which of them the parent's DS vouches for and which the
zone's CDS asks for, its registry's last word, and the signer's own account of its keys
(``rndc dnssec -status``, ``keymgr list``), as the daemon tells it."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import dns.dnssec
import dns.exception
import dns.name
import dns.rdatatype

if TYPE_CHECKING:
    from .lab import Instance


@dataclass
class KeyView:
    tag: int
    role: str            # KSK or ZSK
    algorithm: int
    ds: bool             # the parent's DS vouches for it
    cds: bool            # the zone's CDS asks for it


@dataclass
class ZoneView:
    zone: str
    signer: str
    kind: str
    keys: list[KeyView] = field(default_factory=list)
    ds: list[str] = field(default_factory=list)       # the parent's DS records (from the parent's primary)
    cds: list[str] = field(default_factory=list)      # the zone's CDS records
    registry: str = ""                                # the parent's registry: its state for this zone
    signer_says: str = ""                             # the signer's own tool, on its keys

    def to_dict(self) -> dict:
        return asdict(self)


def _rdatas(inst: Instance, server: str, zone: str, rdtype: str) -> list:
    try:
        reply = inst.query(zone, rdtype, server=server, rd=False, dnssec=True, tcp=True, timeout=2)
    except (dns.exception.DNSException, OSError):
        return []
    want = dns.rdatatype.from_text(rdtype)
    return [rr for rrset in reply.answer if rrset.rdtype == want and rrset.name == dns.name.from_text(zone)
            for rr in rrset]


def zone_view(inst: Instance, zone: str) -> ZoneView:
    from . import dnssec, kinds
    from .names import zone_name
    zone = zone_name(zone)
    zplan = inst.plan.zones[zone]
    node = inst.plan.nodes[zplan.signer]
    view = ZoneView(zone, node.name, node.kind)
    name = dns.name.from_text(zone)
    keys = _rdatas(inst, node.name, zone, "DNSKEY")
    ds = _rdatas(inst, inst.plan.zones[zplan.parent].loader, zone, "DS") if zplan.parent else \
        ([inst.plan.trust_anchor.ds()] if inst.plan.trust_anchor else [])
    cds = _rdatas(inst, node.name, zone, "CDS")
    view.ds, view.cds = [d.to_text() for d in ds], [c.to_text() for c in cds]

    def vouched(key, records) -> bool:
        return any(dnssec.vouches(name, key, r) for r in records)
    view.keys = [KeyView(dns.dnssec.key_id(k), "KSK" if k.flags & 1 else "ZSK", int(k.algorithm), vouched(k, ds),
                         vouched(k, cds)) for k in keys]
    if zplan.parent and inst.plan.zones[zplan.parent].registry:
        reg = inst.plan.zones[zplan.parent].registry.node
        status = json.loads(inst.read_file(reg, "registry-status.json") or "{}")
        for r in status.get("registries", []):
            st = r["children"].get(zone)
            if st:
                view.registry = st["state"] + (f": {st['reason']}" if st.get("reason") else "")
    argv = kinds.KINDS[node.kind].key_states(node, inst.backend.node_path(inst.state, node.name), zone)
    if argv:
        res = inst.exec(node.name, argv, capture=True, timeout=20)
        view.signer_says = (res.stdout or res.stderr).strip()
    return view


def status(inst: Instance, zone: str | None = None) -> list[ZoneView]:
    """Every signed zone of the instance (or ``zone`` only)."""
    from .errors import InputError
    from .names import zone_name
    signed = [z for z, p in inst.plan.zones.items() if p.dnssec]
    if zone is not None:
        if zone_name(zone) not in signed:
            raise InputError(f"{zone_name(zone)} is not a signed zone of {inst.name} (signed: {', '.join(signed) or 'none'})")
        signed = [zone_name(zone)]
    return [zone_view(inst, z) for z in signed]
