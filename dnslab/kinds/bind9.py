"""BIND 9: authoritative server or recursive resolver; rndc on 127.0.0.1 with a key of the node's own."""
from __future__ import annotations

from .base import Kind


class Bind9(Kind):
    name = "bind9"
    roles = ("authoritative", "resolver")
    binaries = {"named": "bind9", "rndc": "bind9"}
    resigns = True
    templates = {"named.conf": "bind9.named.conf.j2", "rndc.conf": "bind9.rndc.conf.j2"}

    def argv(self, node, d):
        return ("named", "-g", "-n", "1", "-c", f"{d}/named.conf")

    def control(self, node, d):
        return ("rndc", "-c", f"{d}/rndc.conf")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "retransfer", zone)

    def reload(self, node, d):
        rndc = self.control(node, d)
        # `rndc reload` keeps a resolver's cache: a repair would stay invisible until the TTLs run out
        return ((*rndc, "reload"), (*rndc, "flush")) if node.role == "resolver" else ((*rndc, "reload"),)
