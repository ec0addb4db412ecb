"""`dnslab capture` on both backends: tcpdump in a node's namespace writes the packets that cross
it as a pcap, stops at whichever bound (packets, seconds) comes first, and refuses bounds and
filters outside what a capture may take; a summary is read back without rights."""
from __future__ import annotations

import json
import os
import re
import threading

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import capture
from dnslab.backends.base import BackendError
from dnslab.errors import InputError

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)


@pytest.fixture(scope="module")
def basics(backend):
    with livelab.instance(livelab.unique_name("cp"), livelab.DNS_BASICS, backend) as inst:
        yield inst


class _ask_soon(threading.Thread):
    """Names below ``name`` asked of the resolver every 0.2 s until joined (however long tcpdump
    takes to start on a loaded machine), at most 50."""

    def __init__(self, inst, name: str):
        super().__init__()
        self.inst, self.name, self.done = inst, name, threading.Event()
        self.start()

    def run(self):
        for i in range(50):
            if self.done.wait(0.2):
                return
            self.inst.query(f"x{i}.{self.name}", "A", server="resolver-unbound")

    def join(self, timeout=None):
        self.done.set()
        super().join(timeout)


def test_a_capture_holds_the_queries_that_cross_the_node(basics, tmp_path):
    asker = _ask_soon(basics, "www.lab.test")
    out = tmp_path / "resolver.pcap"
    res = livelab.cli("capture", basics.name, "resolver-unbound", "-c", "6", "-s", "5", "-f", "udp port 53",
                      "-w", str(out), "--json")
    asker.join()
    assert res.returncode == 0, livelab.explain(res)
    got = json.loads(res.stdout)
    assert got["packets"] >= 3 and got["file"] == str(out) and not got["truncated"]
    assert out.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")  # a pcap file
    assert re.search(r"A\? x\d+\.www\.lab\.test\.", capture.summary(out.read_bytes()))


def test_a_capture_stops_at_its_first_bound(basics):
    asker = _ask_soon(basics, "lab.test")
    got = basics.capture("resolver-unbound", packets=2, seconds=20, bpf="udp port 53")
    asker.join()
    assert got.packets == 2 and got.seconds < 10  # packets first
    got = basics.capture("resolver-unbound", packets=100, seconds=1, bpf="udp port 9")
    assert got.packets == 0 and got.seconds < 5  # seconds first


def test_a_capture_refuses_what_it_may_not_take(basics):
    for packets, seconds, bpf, why in ((0, 1, "", "packets: 1 to"), (10, 301, "", "seconds"),
                                       (10, 1, "port 53; rm -rf /", "a tcpdump expression"),
                                       (10, 1, "x" * 201, "a tcpdump expression")):
        with pytest.raises(InputError, match=why):
            basics.capture("resolver-unbound", packets, seconds, bpf)
    with pytest.raises(BackendError, match="unknown port 'nope'"):
        basics.capture("resolver-unbound", 10, 1, "udp port nope")
