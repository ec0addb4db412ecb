"""The amplification lab (labs/amplification) on both backends: each authoritative server of
amp.test (BIND, Knot, NSD) limits its response rate out of the box and the resolver answers its
client only; `no-rrl` and `open-resolver` are each seen by exactly their checks and mended in
the servers' configs as their operators would; and the
attacker's reflection tool, sending questions with the victim's address, buries the victim
under about sixteen times its bytes (IP level, measured at the victim) until RRL is back."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import capture, faults

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "amplification"


def _rate_limit(inst) -> None:
    """RRL back on each server, in its own syntax: 5 identical answers a second, slip 2."""
    livelab.edit_conf(inst, "auth-bind", "named.conf",
                      (r"(?m)^options \{\n", "options {\n    rate-limit { responses-per-second 5; slip 2; };\n"))
    livelab.edit_conf(inst, "auth-knot", "knot.conf",
                      (r"(?m)^template:\n  - id: default\n",
                       "mod-rrl:\n  - id: lab\n    rate-limit: 5\n    slip: 2\ntemplate:\n  - id: default\n"
                       "    global-module: mod-rrl/lab\n"))
    livelab.edit_conf(inst, "auth-nsd", "nsd.conf", (r"rrl-ratelimit: 0", "rrl-ratelimit: 5"))


def _close(inst) -> None:
    """The resolver answers its client only again."""
    livelab.edit_conf(inst, "resolver", "unbound.conf",
                      (r"(?m)^  access-control: (0\.0\.0\.0/0|::/0) allow\n", ""))


REPAIRS = {"no-rrl": _rate_limit, "open-resolver": _close}


def test_every_fault_is_tested_here():
    assert set(faults.available(LAB)) == set(REPAIRS)


@pytest.mark.parametrize("fault", sorted(REPAIRS))
def test_each_fault_is_seen_and_mended(backend, fault):
    with livelab.instance(livelab.unique_name("ar"), LAB, backend) as inst:
        livelab.break_and_repair(inst, LAB, fault, REPAIRS[fault])


def _reflected(inst) -> float:
    """The attacker reflects 300 questions off the three servers as the victim; the bytes the
    victim receives over the bytes the attacker sent (IP packets, captured at the victim)."""
    seen: dict = {}
    bpf = f"udp src port 53 and dst host {inst.node('victim').address}"
    watcher = threading.Thread(target=lambda: seen.update(c=inst.capture("victim", 100_000, 6, bpf)))
    watcher.start()
    time.sleep(1)
    res = inst.exec("attacker", ["/usr/bin/python3", "attacks/reflect.py", "victim", "auth-bind", "auth-knot",
                                 "auth-nsd", "--name", "big.amp.test", "--rate", "300", "--seconds", "3", "--packets", "300"],
                    capture=True, timeout=60)
    watcher.join()
    assert res.returncode == 0, res.stderr
    sent = json.loads(res.stdout)
    assert sent["sent"] == 300, sent
    received = sum(len(payload) + 28 for _, _, payload in capture.udp_datagrams(seen["c"].pcap))
    return received / sent["bytes"]


def test_reflection_amplifies_at_the_victim_until_rrl_is_back(backend):
    with livelab.instance(livelab.unique_name("aa"), LAB, backend, faults=["no-rrl"]) as inst:
        before = _reflected(inst)
        assert before > 12, before  # every question answered in full: ~16x the attacker's bytes
        _rate_limit(inst)
        after = _reflected(inst)
        assert after < before / 3, (before, after)
