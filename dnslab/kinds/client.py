"""A client workstation: no daemon, dig/kdig/delv, resolv.conf pointing at its lab resolver."""
from __future__ import annotations

from .base import Kind, NodeSpec


class Client(Kind):
    name = "client"
    roles = ("client",)
    binaries = {"dig": "bind9-dnsutils", "delv": "bind9-dnsutils", "kdig": "knot-dnsutils"}

    def spec(self, node, lab, d):
        resolver = lab.nodes[node.resolver]
        return NodeSpec(resolv_conf="".join(f"nameserver {a}\n" for a in resolver.addresses))
