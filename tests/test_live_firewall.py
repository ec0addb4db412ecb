"""The dns-firewall lab (labs/dns-firewall) on both backends: Unbound and BIND each block the
malicious domain and the names below it with a response policy zone of their own (policy.rpz)
and log each rewrite; with `empty-policy` the domain resolves again, until the policy is written
back in each resolver's file, as its operator would, and the resolvers reloaded."""
from __future__ import annotations

import os

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import faults

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "dns-firewall"


def _write_policy(inst) -> None:
    for node in ("resolver", "resolver-bind"):
        path = inst.state.node_dir(node) / "policy.rpz"
        path.write_text(path.read_text() + "malware.test CNAME .\n*.malware.test CNAME .\n")


def test_every_fault_is_tested_here():
    assert faults.available(LAB) == ["empty-policy"]


def test_an_empty_policy_is_seen_and_written_back(backend):
    with livelab.instance(livelab.unique_name("fw"), LAB, backend) as inst:
        livelab.break_and_repair(inst, LAB, "empty-policy", _write_policy)
