"""A registry: dnslab's CDS scanner (dnslab/registry.py, run by Debian's python3 on the node)
for each zone whose ``registry:`` names this node; it updates the zone's primary by dynamic
update signed with the zone's registry key. Its status is ``registry-status.json`` in the node dir,
its PID ``registry.pid`` (how its stop command finds it)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .base import Kind, registry_key, tsig_keys


class Registry(Kind):
    name = "registry"
    roles = ("registry",)
    binaries = {"/usr/bin/python3": "python3-dnspython"}

    def argv(self, node, d):
        return ("/usr/bin/python3", "-I", f"{d}/registry.py", f"{d}/registry.json")

    def config(self, node, lab, d, keys: dict[str, str]) -> dict:
        """What the scanner reads: per parent zone, its primary and its children's name servers,
        as this node reaches them (and their names, for RFC 9615 signals), the zone's registry key,
        and a validating resolver of the lab to check signals through."""
        registries = []
        for z in lab.zones.values():
            if z.registry is None or z.registry.node != node.name:
                continue
            children = {c.name: {"servers": [node.reachable(lab.nodes[s])[0] for s in c.servers],
                                 "nameservers": list(c.nameservers)}
                        for c in lab.zones.values() if c.parent == z.name}
            resolvers = [node.reachable(r)[0] for r in lab.by_role("resolver") if node.reachable(r)]
            registries.append({"parent": z.name, "primary": node.reachable(lab.nodes[z.loader])[0],
                               "key": registry_key(z.name, lab), "secret": keys[registry_key(z.name, lab)],
                               "interval": z.registry.interval, "stable": z.registry.stable, "ds_ttl": z.ttl,
                               "bootstrap": z.registry.bootstrap, "resolver": resolvers[0] if resolvers else None,
                               "children": children})
        return {"registries": registries, "status": f"{d}/registry-status.json", "pid": f"{d}/registry.pid"}

    def stop(self, node, d):
        return ("sh", "-c", f'kill "$(cat {d}/registry.pid)"')

    def spec(self, node, lab, d, keys=None, control=None):
        keys = tsig_keys(lab) if keys is None else keys
        spec = super().spec(node, lab, d, keys, control)
        return dataclasses.replace(spec, files={
            **spec.files, "registry.py": (Path(__file__).parent.parent / "registry.py").read_text(),
            "registry.json": json.dumps(self.config(node, lab, d, keys), indent=1)})
