"""The zone-transfer lab (labs/zone-transfer) on both backends: out of the box only the secondaries
copy bank.test, with its TSIG key; `open-transfers` makes every server (BIND, NSD, Knot) hand it
to the attacker, whose probe lists the instance's hidden host, and closing each server's config
again (as its operator would) ends the leak; `no-tsig` is seen by the checks that try a
secondary's address without the key and with it."""
from __future__ import annotations

import json
import os
import re

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks, faults

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "zone-transfer"


def _close(inst) -> None:
    """Each server gives bank.test to the TSIG key only again: its config edited, then reloaded."""
    d = inst.state.node_dir
    bind = d("bank-bind") / "named.conf"
    bind.write_text(bind.read_text().replace("allow-transfer { any; };", 'allow-transfer { key "xfr-bank.test"; };'))
    nsd = d("bank-nsd") / "nsd.conf"
    nsd.write_text(re.sub(r"(?m)^  provide-xfr: \S+ NOKEY\n", "", nsd.read_text()))
    knot = d("bank-knot") / "knot.conf"
    knot.write_text(knot.read_text().replace(", open-bank.test]", "]"))
    for node in ("bank-bind", "bank-nsd", "bank-knot"):
        inst.reload(node)


def test_every_fault_is_tested_here():
    assert set(faults.available(LAB)) == {"open-transfers", "no-tsig"}


def test_an_open_zone_leaks_to_the_attacker_until_each_server_is_closed(backend):
    with livelab.instance(livelab.unique_name("zt"), LAB, backend) as inst:
        livelab.break_and_repair(inst, LAB, "open-transfers", _close)


def test_the_probe_lists_the_hidden_host_of_an_open_zone(backend):
    with livelab.instance(livelab.unique_name("zp"), LAB, backend, faults=["open-transfers"]) as inst:
        res = inst.exec("attacker", ["/usr/bin/python3", "attacks/axfr.py", "bank.test", "bank-bind", "bank-nsd",
                                     "bank-knot"], capture=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert all(r["leaked"] and r["records"] >= 8 for r in json.loads(res.stdout)), res.stdout
        nsd = inst.node("bank-nsd").address
        dump = inst.exec("attacker", ["dig", "+noall", "+answer", "axfr", "bank.test", f"@{nsd}"], capture=True,
                         timeout=30).stdout
        assert f"{inst.plan.values['hidden_host']}.bank.test." in dump


def test_transfers_without_tsig_are_seen_by_the_key_checks(backend):
    seen_by = set(faults.load(LAB, "no-tsig")[0].seen_by)
    with livelab.instance(livelab.unique_name("zn"), LAB, backend, faults=["no-tsig"]) as inst:
        failed = {r.id for r in checks.run(inst) if not r.passed}
        assert failed == seen_by
