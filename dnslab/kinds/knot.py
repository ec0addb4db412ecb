"""Knot DNS: authoritative only."""
from __future__ import annotations

from .base import Kind


class Knot(Kind):
    name = "knot"
    roles = ("authoritative",)
    binaries = {"knotd": "knot"}
    templates = {"knot.conf": "knot.conf.j2"}

    def argv(self, node, d):
        return ("knotd", "-c", f"{d}/knot.conf")
