"""The attacker node and its tools (dnslab/attacks/) on both backends, on a small test lab: the
zone-transfer probe tells a refused transfer from a leak; the random-subdomain flood and the
spoofer stop at their bounds (the spoofer's packets arrive forged as from the server); every
tool (probe, flood, Kaminsky, reflection) refuses targets outside its own lab (loopback, the
host's addresses, private and public ranges, names, lab-range addresses no node has); what one
instance's attacker sends reaches its own lab only, never another instance's; and a capture in
the host's own namespace sees none of an attack's packets."""
from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import threading
import time

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import capture

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "tests" / "labs" / "attack-mini"
PY = "/usr/bin/python3"  # Debian's, with dnspython: what the node runs the tools with


@pytest.fixture(scope="module")
def pair(backend):
    names = [livelab.unique_name("aa"), livelab.unique_name("ab")]
    with livelab.instances(names, LAB, backend) as insts:
        yield insts


def tool(inst, *argv: str) -> subprocess.CompletedProcess:
    return inst.exec("attacker", [PY, *argv], capture=True, timeout=60)


def test_the_zone_transfer_probe_tells_a_refusal_from_a_leak(pair):
    inst = pair[0]
    res = tool(inst, "attacks/axfr.py", "test", "tld", "tld2")
    assert res.returncode == 0, res.stderr
    assert [(r["server"], r["leaked"]) for r in json.loads(res.stdout)] == [("tld", False), ("tld2", False)]
    conf = inst.state.node_dir("tld") / "named.conf"  # the mistake the zone-transfer lab is about
    conf.write_text(re.sub(r"allow-transfer \{ [^}]*\};", "allow-transfer { any; };", conf.read_text()))
    inst.reload("tld")
    leak = {r["server"]: r for r in json.loads(tool(inst, "attacks/axfr.py", "test", "tld", "tld2").stdout)}
    assert leak["tld"]["leaked"] and leak["tld"]["records"] >= 6 and not leak["tld2"]["leaked"]


def test_the_flood_stops_at_its_bounds(pair):
    inst = pair[0]
    t0 = time.monotonic()
    out = json.loads(tool(inst, "attacks/flood.py", "resolver", "test", "--rate", "2000", "--packets", "300",
                          "--seconds", "20").stdout)
    assert out["sent"] == 300 and time.monotonic() - t0 < 10  # the packets bound first
    assert out["answered"] > 0 and set(out["rcodes"]) <= {"NXDOMAIN", "SERVFAIL"}
    out = json.loads(tool(inst, "attacks/flood.py", "resolver", "test", "--rate", "100", "--seconds", "1").stdout)
    assert out["sent"] <= 101 and out["seconds"] < 2  # the seconds bound first
    for flag, value in (("--seconds", "31"), ("--packets", "5000001"), ("--rate", "50001"), ("--rate", "0")):
        res = tool(inst, "attacks/flood.py", "resolver", "test", flag, value)
        assert res.returncode != 0 and "refused:" in res.stderr, (flag, value, res.stderr)


def test_the_spoofer_forges_the_server_at_speed_within_its_bounds(pair):
    """Forged responses arrive at the resolver as if from tld, one per transaction ID in turn;
    the count bound holds; a source or target outside the lab is refused."""
    inst = pair[0]
    bpf = f"udp dst port 33333 and src host {inst.node('tld').address}"
    seen = {}
    watcher = threading.Thread(target=lambda: seen.update(n=inst.capture("resolver", 3000, 4, bpf).packets))
    watcher.start()
    time.sleep(1)
    res = tool(inst, "attacks/spoof.py", "--source", "tld", "--target", "resolver", "--port", "33333",
               "--name", "www.test", "--answer", "192.0.2.66", "--packets", "2000")
    watcher.join()
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["sent"] == 2000 and seen["n"] == 2000, (out, seen)
    for source, target in (("8.8.8.8", "resolver"), ("tld", "10.0.0.1"), ("127.0.0.1", "resolver")):
        res = tool(inst, "attacks/spoof.py", "--source", source, "--target", target, "--port", "33333",
                   "--name", "www.test", "--answer", "192.0.2.66")
        assert res.returncode != 0 and "refused:" in res.stderr, (source, target, res.stderr)


def _host_addresses() -> list[str]:
    out = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True).stdout)
    return [a["local"] for link in out for a in link.get("addr_info", [])
            if not ipaddress.ip_address(a["local"]).is_loopback and not a["local"].startswith("fe80")]


def test_every_tool_refuses_targets_outside_its_own_lab(pair):
    inst = pair[0]
    outside = ["127.0.0.1", "::1", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1", "8.8.8.8",
               "2001:4860:4860::8888", "224.0.0.251", "198.51.100.250", "www.example.com", *_host_addresses()[:3]]
    for target in outside:
        for argv in (("attacks/flood.py", target, "test", "--seconds", "1"), ("attacks/axfr.py", "test", target),
                     ("attacks/kaminsky.py", "--resolver", target, "--server", "tld", "--port", "33333", "--zone",
                      "www.test", "--ns", "ns.www.test", "--seconds", "1"),
                     ("attacks/kaminsky.py", "--resolver", "resolver", "--server", "tld", "--port", "33333",
                      "--zone", "www.test", "--ns", "ns.www.test", "--glue", target, "--seconds", "1"),
                     ("attacks/reflect.py", target, "tld", "--name", "test", "--seconds", "1"),
                     ("attacks/reflect.py", "client", target, "--name", "test", "--seconds", "1")):
            res = tool(inst, *argv)
            assert res.returncode != 0 and res.stdout == "" and "refused:" in res.stderr, (target, argv, res)


def test_an_attack_reaches_its_own_lab_and_no_other_instance(pair):
    """A flood from instance A's attacker at A's resolver: A's resolver sees it; B's resolver, at
    the very same address in B's namespaces, sees none of it."""
    a, b = pair
    seen: dict[str, int] = {}

    bpf = f"udp dst port 53 and src host {a.node('attacker').address}"  # the same address in both instances

    def watch(inst):
        seen[inst.name] = inst.capture("resolver", packets=5000, seconds=4, bpf=bpf).packets
    watchers = [threading.Thread(target=watch, args=(i,)) for i in (a, b)]
    for w in watchers:
        w.start()
    time.sleep(1)
    out = json.loads(tool(a, "attacks/flood.py", "resolver", "test", "--rate", "500", "--seconds", "1").stdout)
    for w in watchers:
        w.join()
    assert out["sent"] > 100
    assert seen[a.name] == out["sent"] and seen[b.name] == 0, (seen, out)


def test_the_trainee_spoofs_in_her_own_lab_without_root(backend):
    """In a trainee's lab the tools run with her rights: raw sockets work in her attacker node
    (netns: her user namespace owns the node's namespace; docker: a file capability on the
    image's interpreter), and what she runs there is not root on the host."""
    with livelab.instance(livelab.unique_name("at"), LAB, backend, trainees=True) as inst:
        res = tool(inst, "attacks/spoof.py", "--source", "tld", "--target", "resolver", "--port", "33333",
                   "--name", "www.test", "--answer", "192.0.2.66", "--packets", "1000")
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["sent"] == 1000
        marker = inst.exec("attacker", ["sh", "-c", "touch made-by-her && stat -c %u made-by-her"], capture=True)
        assert (inst.state.node_dir("attacker") / "made-by-her").stat().st_uid == inst.state.owner[0], marker


def test_a_host_side_capture_sees_none_of_an_attack(pair):
    """While the attacker floods and forges at full speed, a capture on every interface of the
    host's own namespace sees no packet of the lab's range: the attack stays in the lab."""
    inst = pair[0]
    lab_range = str(inst.plan.networks["lan"].ipv4)
    watcher = subprocess.Popen(["timeout", "-s", "INT", "5", "tcpdump", "-i", "any", "-n", "-U", "-w", "-",
                                "net", lab_range], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    time.sleep(1)
    flood = json.loads(tool(inst, "attacks/flood.py", "resolver", "test", "--rate", "2000", "--seconds", "1").stdout)
    forged = json.loads(tool(inst, "attacks/kaminsky.py", "--resolver", "resolver", "--server", "tld", "--port",
                             "33333", "--zone", "www.test", "--ns", "ns.www.test", "--seconds", "1").stdout)
    pcap, err = watcher.communicate(timeout=30)
    assert flood["sent"] > 1000 and forged["sent"] > 10_000, (flood, forged)
    assert err and capture._count(pcap) == 0, err  # tcpdump ran, and saw nothing
