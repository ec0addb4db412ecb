"""BIND 9: authoritative server or recursive resolver; rndc on 127.0.0.1 with a key of the node's own."""
from __future__ import annotations

import re

from .base import Kind


class Bind9(Kind):
    name = "bind9"
    roles = ("authoritative", "resolver")
    binaries = {"named": "bind9", "rndc": "bind9"}
    resigns = True
    resolver_extras = ("policy", "local_root")
    templates = {"named.conf": "bind9.named.conf.j2", "rndc.conf": "bind9.rndc.conf.j2"}

    def argv(self, node, d):
        return ("named", "-g", "-n", "1", "-c", f"{d}/named.conf")

    def control(self, node, d):
        return ("rndc", "-c", f"{d}/rndc.conf")

    def rollover(self, node, d, zone, role, tag):
        return (*self.control(node, d), "dnssec", "-rollover", "-key", str(tag), zone)

    def checkds(self, node, d, zone, tag, published):
        # named 9.18 did not act on parental-agents here: it is told, as an operator does
        return (*self.control(node, d), "dnssec", "-checkds", "-key", str(tag),
                "published" if published else "withdrawn", zone)

    def told(self, read, zone, tag, algorithm, published):
        # each -checkds restarts named's wait for the DS TTL: told once, as its key state file records
        state = read(f"keys/K{zone}+{algorithm:03d}+{tag:05d}.state")
        return ("DSPublish:" if published else "DSRemoved:") in state

    def retiring(self, key_states):
        # rndc dnssec -status: "key: TAG (ALG), KSK" ... "- goal:           hidden"
        blocks = re.finditer(r"(?ms)^key: (\d+) .*?(?=^key: |\Z)", key_states)
        return {int(m.group(1)) for m in blocks if re.search(r"- goal:\s+hidden", m.group(0))}

    def key_states(self, node, d, zone):
        return (*self.control(node, d), "dnssec", "-status", zone)

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "retransfer", zone)

    def local_zone(self, node, d, zone):
        return (*self.control(node, d), "zonestatus", zone)

    def holds_zone(self, output, zone):
        # a mirror zone is used only once its copy is loaded and validated
        return re.search(r"(?m)^type: (mirror|secondary)$", output) is not None and "serial:" in output

    def dump_cache(self, node, d):
        # rndc dumpdb returns before named has written the file: wait for its last line
        rndc = " ".join(self.control(node, d))
        return ("sh", "-c", f"rm -f {d}/named_dump.db && {rndc} dumpdb -cache && for i in $(seq 100); do "
                f"grep -q '^; Dump complete' {d}/named_dump.db 2>/dev/null && exec cat {d}/named_dump.db; "
                "sleep 0.05; done; echo 'named wrote no complete dump' >&2; exit 1")

    def reload(self, node, d):
        rndc = self.control(node, d)
        # `rndc reload` keeps a resolver's cache: a repair would stay invisible until the TTLs run out
        return ((*rndc, "reload"), (*rndc, "flush")) if node.role == "resolver" else ((*rndc, "reload"),)
