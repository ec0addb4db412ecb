"""NSD: authoritative only."""
from __future__ import annotations

from .base import Kind


class Nsd(Kind):
    name = "nsd"
    roles = ("authoritative",)
    binaries = {"nsd": "nsd"}
    templates = {"nsd.conf": "nsd.conf.j2"}

    def argv(self, node, d):
        return ("nsd", "-d", "-c", f"{d}/nsd.conf")
