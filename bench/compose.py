"""Write a lab as a plain docker-compose project: the peer users know, for bench/startup.py.

The configs are the ones dnslab renders (same daemons, same images from `dnslab images
build`); what differs is who starts them: `docker-compose up -d` with one internal
bridge network, static addresses and an explicit gateway, instead of dnslab.
usage: python bench/compose.py LAB_DIR OUT_DIR
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from dnslab import kinds, plan
from dnslab.backends.docker import image


def write_project(lab_dir: Path, out: Path) -> Path:
    lab = plan.load(lab_dir)
    (net,) = lab.networks.values()
    services = {}
    for node in lab.nodes.values():
        spec = kinds.KINDS[node.kind].spec(node, lab, "/lab")
        d = out / node.name
        d.mkdir(parents=True, exist_ok=True)
        for rel, content in spec.files.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(content)
        svc = {"image": image(node.kind), "init": True, "working_dir": "/lab", "volumes": [f"./{node.name}:/lab"],
               "command": list(spec.argv) if spec.argv else ["sleep", "infinity"],
               "networks": {net.name: {"ipv4_address": str(node.interfaces[0].ipv4.ip)}}}
        if spec.resolv_conf is not None:
            svc["dns"] = [lab.nodes[node.resolver].address]
        services[node.name] = svc
    gateway = str(net.ipv4.network_address + net.ipv4.num_addresses - 2)
    doc = {"version": "2.4", "services": services,
           "networks": {net.name: {"driver": "bridge", "internal": True,
                                   "ipam": {"config": [{"subnet": str(net.ipv4), "gateway": gateway}]}}}}
    path = out / "docker-compose.yml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


if __name__ == "__main__":
    print(write_project(Path(sys.argv[1]), Path(sys.argv[2])))
