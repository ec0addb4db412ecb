"""BIRD 2: a router of the lab (role router), forwarding between its networks, speaking BGP as
its node's ``bgp:`` says (sessions, policy, timers, BFD, prefixes it originates), driven with
birdc on a Unix socket in the node dir. An originated prefix with ``health`` is withdrawn while
the DNS server it is routed to does not answer (``health.py``, beside BIRD)."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from .base import Kind, Readiness

HEALTH = Path(__file__).with_name("bird_health.py")


def proto(peer: str, address: str) -> str:
    """The name of the BGP protocol (session) with ``peer`` at ``address`` in bird.conf."""
    return f"bgp_{re.sub(r'[^a-z0-9]', '_', peer)}_{6 if ':' in address else 4}"


class Bird(Kind):
    name = "bird"
    roles = ("router",)
    binaries = {"bird": "bird2", "birdc": "bird2", "/usr/bin/python3": "python3"}
    templates = {"bird.conf": "bird.conf.j2"}
    capabilities = ("NET_ADMIN",)  # its routes, in the kernel of its own network namespace

    def argv(self, node, d):
        bird = ("bird", "-f", "-c", f"{d}/bird.conf", "-s", f"{d}/bird.ctl", "-P", f"{d}/bird.pid")
        checks = [f"announce{i}={a.via}" for i, a in enumerate(node.bgp.announce if node.bgp else ())
                  if a.health and a.active]
        if not checks:
            return bird
        # the health check runs as BIRD's child (exec keeps the PID), and ends with it
        health = shlex.join(["/usr/bin/python3", f"{d}/health.py", f"{d}/bird.ctl", *checks])
        return ("/bin/sh", "-c", f"{health} & exec {shlex.join(bird)}")

    def control(self, node, d):
        return ("birdc", "-s", f"{d}/bird.ctl")

    def reload(self, node, d):
        return ((*self.control(node, d), "configure"),)

    def stop(self, node, d):
        return (*self.control(node, d), "down")

    def ready(self, node, lab, d):
        sessions = sum(len(p.addresses) for p in node.bgp.peers) if node.bgp else 0
        prefixes = sorted({a.prefix for n in lab.nodes.values() if n.bgp for a in n.bgp.announce if a.active}
                          if node.bgp else ())
        birdc = shlex.join(self.control(node, d))
        # every session established (and its BFD session up), a route to every prefix the lab's routers originate
        tests = [f'[ "$({birdc} show protocols | grep -c " BGP .* Established")" -ge {sessions} ]']
        if node.bgp and node.bgp.bfd:
            tests.append(f'[ "$({birdc} show bfd sessions | grep -c " Up ")" -ge {sessions} ]')
        tests += [f"{birdc} show route for {p} | grep -q via" for p in prefixes]
        return Readiness(("/bin/sh", "-c", " && ".join(tests)))

    def spec(self, node, lab, d, keys=None, control=None):
        spec = super().spec(node, lab, d, keys, control)
        if node.bgp and any(a.health and a.active for a in node.bgp.announce):
            spec.files["health.py"] = HEALTH.read_text()
        return spec

    def context(self, node, lab, d):
        # its first IPv4 address (the plan refuses BGP on a node without one)
        router_id = next((str(i.ipv4.ip) for i in node.interfaces if i.ipv4), "192.0.2.1")
        return {"bgp": node.bgp, "proto": proto, "router_id": router_id}
