"""BIND 9: authoritative server or recursive resolver."""
from __future__ import annotations

from .base import Kind


class Bind9(Kind):
    name = "bind9"
    roles = ("authoritative", "resolver")
    binaries = {"named": "bind9"}
    templates = {"named.conf": "bind9.named.conf.j2"}

    def argv(self, node, d):
        return ("named", "-g", "-n", "1", "-c", f"{d}/named.conf")
