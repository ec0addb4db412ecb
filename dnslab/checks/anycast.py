"""Which site of an anycast service answers each vantage point: the answering server names
itself (CHAOS TXT ``id.server``, which BIND, Knot, NSD and Unbound all answer with their node's
name in a lab), so a catchment is read from the live routing, never from the lab file."""
from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import dns.rdatatype

from .base import Check, ask

if TYPE_CHECKING:
    from ..lab import Instance
    from ..plan import LabPlan
    from .result import Evidence


def service_address(lab: LabPlan) -> str | None:
    """The lab root's first anycast address (an address some nodes share), None if it has none."""
    return next((a for n in lab.nodes.values() if "." in n.zones for a in n.anycast), None)


def site_of(inst: Instance, address: str, source: str) -> tuple[str | None, Evidence]:
    """The node that answers ``address`` from ``source`` (its id.server), None if none does."""
    reply, ev = ask(inst, address, "id.server", "TXT", source=source, rdclass="CH")
    txt = [r for rrset in (reply.answer if reply else []) if rrset.rdtype == dns.rdatatype.TXT for r in rrset]
    return (b"".join(txt[0].strings).decode(errors="replace") if txt else None), ev


def catchments(inst: Instance, address: str | None = None) -> dict[str, str | None]:
    """The site each resolver and client reaches at ``address`` (default: the root's)."""
    address = address or service_address(inst.plan)
    return {n.name: site_of(inst, address, n.name)[0] for n in inst.plan.nodes.values()
            if n.role in ("resolver", "client")}


class Catchment(Check):
    """The vantage point (``from``) reaches the anycast ``address`` (default: the lab root's) at
    the ``site`` node."""

    check_type = "catchment"
    check: Literal["catchment"]
    site: str
    address: str | None = None

    def targets(self, lab):
        return []  # routed: any vantage point with a gateway reaches it

    def run(self, inst):
        source = self.source or inst.default_vantage()
        address = self.address or service_address(inst.plan)
        got, ev = site_of(inst, address, source)
        p = {"source": source, "address": address, "site": self.site}
        if got is None:
            return self.result(False, "timeout", [ev], error=ev.error or ev.rcode or "no id.server", **p)
        return self.result(got == self.site, "pass" if got == self.site else "other", [ev], got=got, **p)


CHECKS = (Catchment,)
