"""Unbound: recursive resolver only; unbound-control on a Unix socket in the node dir."""
from __future__ import annotations

from .base import Kind, top_domains


class Unbound(Kind):
    name = "unbound"
    roles = ("resolver",)
    resolver_extras = ("policy", "local_root")
    binaries = {"unbound": "unbound", "unbound-control": "unbound"}
    templates = {"unbound.conf": "unbound.conf.j2"}

    def argv(self, node, d):
        return ("unbound", "-d", "-c", f"{d}/unbound.conf")

    def control(self, node, d):
        return ("unbound-control", "-c", f"{d}/unbound.conf")

    def flush(self, node, d):
        ctl = self.control(node, d)  # every name (flush_zone . drops the whole tree), and what it knows of servers
        return ((*ctl, "flush_zone", "."), (*ctl, "flush_infra", "all"))

    def drop_lookups(self, node, d):
        return (*self.control(node, d), "flush_requestlist")

    def dump_cache(self, node, d):
        return (*self.control(node, d), "dump_cache")

    def retransfer(self, node, d, zone):
        return (*self.control(node, d), "auth_zone_transfer", zone)

    def local_zone(self, node, d, zone):
        return (*self.control(node, d), "list_auth_zones")

    def holds_zone(self, output, zone):
        # a line per auth-zone: "<name>\tserial <n>" once it is loaded, "\tno serial" before
        return any(line.split("\t")[0] == zone and "\tserial" in line for line in output.splitlines())

    def context(self, node, lab, d):
        # Unbound answers special-use names (test., invalid., ...) itself unless told not to.
        names = {z for z in lab.zones if z != "."} | top_domains(lab)
        lab_timers = any(z.dnssec and z.dnssec.timers == "lab" for z in lab.zones.values())
        return {"nodefault": sorted(names), "lab_timers": lab_timers}
