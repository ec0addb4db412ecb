"""Knot DNS: authoritative only; knotc on a control socket in the node dir. A zone it signs is
signed by knotd itself (automatic signing, ``manual: on``: with the lab's keys only), which
are imported once into its KASP database (``keymgr import-bind``) before it starts."""
from __future__ import annotations

import shlex

from .base import Kind, served


class Knot(Kind):
    name = "knot"
    roles = ("authoritative",)
    binaries = {"knotd": "knot", "knotc": "knot"}
    signing_binaries = {"keymgr": "knot"}
    resigns = True
    templates = {"knot.conf": "knot.conf.j2"}

    def argv(self, node, d):
        return ("knotd", "-c", f"{d}/knot.conf")

    def control(self, node, d):
        return ("knotc", "-c", f"{d}/knot.conf")

    def rollover(self, node, d, zone, role, tag):
        return (*self.control(node, d), "zone-key-rollover", zone, role)

    def key_states(self, node, d, zone):
        return ("keymgr", "-c", f"{d}/knot.conf", zone, "list", "-e")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "zone-retransfer", zone)

    def prepare(self, node, lab, d):
        out = []
        for how in served(node, lab):
            if how.signs:
                marker = f"keys/{how.id}.imported"  # a restart keeps the keys already imported
                imports = " && ".join(shlex.join(["keymgr", "-c", f"{d}/knot.conf", how.name, "import-bind",
                                                  f"keys/{k.basename}.private"]) for k in lab.zones[how.name].keys)
                out.append(f"{{ [ -e {marker} ] || {{ {{ {imports}; }} >/dev/null && touch {marker}; }}; }}")
        return out
