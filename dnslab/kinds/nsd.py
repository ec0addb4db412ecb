"""NSD: authoritative only; nsd-control on a Unix socket in the node dir."""
from __future__ import annotations

from .base import Kind


class Nsd(Kind):
    name = "nsd"
    roles = ("authoritative",)
    binaries = {"nsd": "nsd", "nsd-control": "nsd"}
    templates = {"nsd.conf": "nsd.conf.j2"}

    def argv(self, node, d):
        return ("nsd", "-d", "-c", f"{d}/nsd.conf")

    def control(self, node, d):
        return ("nsd-control", "-c", f"{d}/nsd.conf")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "force_transfer", zone)
