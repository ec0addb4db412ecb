"""Knot DNS: authoritative only; knotc on a control socket in the node dir."""
from __future__ import annotations

from .base import Kind


class Knot(Kind):
    name = "knot"
    roles = ("authoritative",)
    binaries = {"knotd": "knot", "knotc": "knot"}
    templates = {"knot.conf": "knot.conf.j2"}

    def argv(self, node, d):
        return ("knotd", "-c", f"{d}/knot.conf")

    def control(self, node, d):
        return ("knotc", "-c", f"{d}/knot.conf")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "zone-retransfer", zone)
