"""A client workstation: no daemon, dig/kdig/delv, resolv.conf pointing at its lab resolver."""
from __future__ import annotations

from ..nodespec import NodeSpec
from .base import Kind


class Client(Kind):
    name = "client"
    roles = ("client",)
    binaries = {"dig": "bind9-dnsutils", "delv": "bind9-dnsutils", "kdig": "knot-dnsutils"}

    def spec(self, node, lab, d, keys=None, control=None):
        # only the resolver's addresses the client can reach (validate refuses a client that reaches none)
        return NodeSpec(resolv_conf="".join(f"nameserver {a}\n" for a in node.reachable(lab.nodes[node.resolver])))
