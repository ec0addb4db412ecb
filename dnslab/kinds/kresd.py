"""Knot Resolver (kresd 5): recursive resolver only; its Lua console on a Unix socket in the node
dir, through ``kresctl`` (socat). kresd has no reload: ``kresctl reload`` runs ``kresd.conf`` again
(written so that it can run twice) and empties the cache. It asks every name in random letter case
(0x20) and takes an answer in another case for forged: it asks again over TCP."""
from __future__ import annotations

from .base import Kind, top_domains


class Kresd(Kind):
    name = "kresd"
    roles = ("resolver",)
    binaries = {"kresd": "knot-resolver", "socat": "socat"}
    templates = {"kresd.conf": "kresd.conf.j2", "kresctl": "kresd.kresctl.j2"}

    def argv(self, node, d):
        return ("kresd", "--noninteractive", "--config", f"{d}/kresd.conf", d)

    def control(self, node, d):
        return ("sh", f"{d}/kresctl")

    def zone_cuts(self, node, d, names):
        # kresd 5 cannot list its cache (cache.get: "not implemented"); it says which zone cut it
        # holds for a name, the deepest name server set it has cached at or above it
        lua = ("local ffi = require('ffi') local out = {} for _, n in ipairs({%s}) do "
               "local apex = ffi.new('knot_dname_t *[1]') "
               "if ffi.C.kr_cache_closest_apex(kres.context().cache, kres.str2dname(n), false, apex) == 0 then "
               "out[#out + 1] = n .. ' ' .. kres.dname2str(apex[0]) ffi.C.free(apex[0]) end end "
               "return 'cuts: ' .. table.concat(out, ' ')") % ", ".join(f"'{n}'" for n in names)
        return (*self.control(node, d), lua)

    def context(self, node, lab, d):
        # kresd refuses special-use names (test., invalid., ...) unless told not to
        return {"special": sorted(top_domains(lab))}
