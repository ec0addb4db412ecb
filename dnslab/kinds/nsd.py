"""NSD: authoritative only; nsd-control on a Unix socket in the node dir. NSD does not sign:
a zone it signs is signed on the node by ``dnssec-signzone`` (BIND's tool, with the zone's keys
in ``keys/``) into ``zones/<zone>.zone.signed`` before NSD starts, and again before each reload."""
from __future__ import annotations

import shlex

from .base import Kind, served


class Nsd(Kind):
    name = "nsd"
    roles = ("authoritative",)
    binaries = {"nsd": "nsd", "nsd-control": "nsd"}
    signing_binaries = {"dnssec-signzone": "bind9-utils"}
    templates = {"nsd.conf": "nsd.conf.j2"}

    def argv(self, node, d):
        return ("nsd", "-d", "-c", f"{d}/nsd.conf")

    def control(self, node, d):
        return ("nsd-control", "-c", f"{d}/nsd.conf")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "force_transfer", zone)

    def prepare(self, node, lab, d):
        out = []
        for how in served(node, lab):
            if not how.signs:
                continue
            z = lab.zones[how.name]
            nsec3 = z.dnssec.nsec3
            hashed = ["-3", z.salt, "-H", str(nsec3.iterations), *(["-A"] if nsec3.opt_out else [])] if nsec3 else []
            # -S: the keys of keys/ by their timing metadata; -N keep: the serial of the zone file
            out.append(shlex.join(["dnssec-signzone", "-q", "-S", "-K", "keys", "-d", "keys", "-N", "keep", *hashed,
                                   "-o", how.name, "-f", f"zones/{how.filename}.signed", f"zones/{how.filename}"]))
        return out

    signer_reload = prepare
