"""NSD: authoritative only; nsd-control on a Unix socket in the node dir. NSD does not sign:
a zone it signs is signed on the node by ``dnssec-signzone`` (BIND's tool, with the zone's keys
in ``keys/``) into ``zones/<zone>.zone.signed`` before NSD starts, and again before each reload."""
from __future__ import annotations

import re
import shlex

from .base import Kind, served


class Nsd(Kind):
    name = "nsd"
    roles = ("authoritative",)
    binaries = {"nsd": "nsd", "nsd-control": "nsd"}
    signing_binaries = {"dnssec-signzone": "bind9-utils"}
    templates = {"nsd.conf": "nsd.conf.j2", "sign.sh": "nsd.sign.sh.j2"}

    def argv(self, node, d):
        return ("nsd", "-d", "-c", f"{d}/nsd.conf")

    def control(self, node, d):
        return ("nsd-control", "-c", f"{d}/nsd.conf")

    def reload(self, node, d):
        # reconfig first: a reload rereads the zones only, not nsd.conf (ACLs, keys, zones added)
        return ((*self.control(node, d), "reconfig"), (*self.control(node, d), "reload"))

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "force_transfer", zone)

    def prepare(self, node, lab, d):
        return ["sh sign.sh"] if any(how.signs for how in served(node, lab)) else []

    signer_reload = prepare

    def context(self, node, lab, d):
        return {"signing": [_signing(lab.zones[how.name]) for how in served(node, lab) if how.signs]}


def _signing(z) -> dict:
    """How ``sign.sh`` signs zone ``z``: dnssec-signzone's arguments, and the records a fault
    drops from the signed file (a ``grep -v`` pattern; None: nothing)."""
    nsec3 = z.dnssec.nsec3
    args = ["-q", "-S", "-K", "keys", "-d", "keys", "-N", "keep", "-O", "full"]
    if nsec3:
        args += ["-3", z.salt, "-H", str(nsec3.iterations), *(["-A"] if nsec3.opt_out else [])]
    fault = z.signing_fault
    if fault and fault.expires is not None:
        # valid from a minute ago (a day before an expiry in the past) to the fault's expiry;
        # -P: dnssec-signzone would refuse to write a zone whose signatures do not verify now
        start = -60 if fault.expires > 0 else fault.expires - 86400
        args += ["-P", "-s", f"now{start:+d}", "-e", f"now{fault.expires:+d}"]
    args += ["-o", z.name, "-f", f"zones/{z.filename}.signed", f"zones/{z.filename}"]
    drop = [_pattern(z.name, r) for r in (fault.remove if fault else [])]
    return {"name": z.name, "file": z.filename, "args": shlex.join(args),
            "drop": shlex.quote("|".join(drop)) if drop else None}


def _pattern(zone: str, removal: str) -> str:
    """A line of ``dnssec-signzone -O full`` output matching a removal ``"<owner> <type> [<first
    field>]"``: a whole RRset goes with its signatures, a single record (first field given) alone."""
    owner, rtype, *first = removal.split()
    if owner == "*":
        name = r"\S+"
    else:
        fqdn = zone if owner == "@" else owner if owner.endswith(".") else f"{owner}.{zone}".replace("..", ".")
        name = re.escape(fqdn if fqdn.endswith(".") else fqdn + ".")
    what = rf"{rtype}\s+{re.escape(first[0])}" if first else rf"({rtype}|RRSIG\s+{rtype})"
    return rf"^{name}\s+[0-9]+\s+IN\s+{what}\s"
