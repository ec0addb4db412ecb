"""An attacker: a workstation with dnslab's attack tools (dnslab/attacks/, copied into the node's
``attacks/`` and run there by Debian's python3 with dnspython, with the trainee's rights), each of
which aims only at this instance's nodes (``scope.json``) and stops at its bounds. No daemon."""
from __future__ import annotations

import json
from pathlib import Path

from .. import attacks
from ..nodespec import NodeSpec
from .base import Kind

TOOLS = Path(attacks.__file__).parent


class Attacker(Kind):
    name = "attacker"
    roles = ("attacker",)
    binaries = {"/usr/bin/python3": "python3-dnspython", "dig": "bind9-dnsutils", "tcpdump": "tcpdump"}

    def spec(self, node, lab, d, keys=None, control=None):
        tools = {f"attacks/{p.name}": p.read_text() for p in sorted(TOOLS.glob("*.py")) if p.name != "__init__.py"}
        # the nodes it may aim at: their addresses on the networks it shares with them
        nodes = {n.name: node.reachable(n) for n in lab.nodes.values() if n.name != node.name and node.reachable(n)}
        scope = {"lab": lab.name, "nodes": nodes}
        return NodeSpec(files={**tools, "scope.json": json.dumps(scope, indent=1)})
