"""Two instances of one lab, same addresses, side by side: each answers with its own
daemons, neither sees the other's packets, no node reaches the host, and nothing of a
lab lives in the host's network namespace. On each backend (the ``backend`` fixture); for
docker also: each container's network namespace is the one dnslab wired (network mode none,
no docker network), so the same captures prove the same isolation without any iptables rule."""
from __future__ import annotations

import errno
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess

import dns.rdatatype
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab.backends.netns import bridge_ns, link_name, node_ns

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)


@pytest.fixture(scope="module")
def pair(backend):
    """Instances A and B of dns-basics, brought up together."""
    with livelab.instances([livelab.unique_name("ia"), livelab.unique_name("ib")], backend=backend) as insts:
        yield insts


def txt(reply):
    return sorted(rr.to_text() for rrset in reply.answer if rrset.rdtype == dns.rdatatype.TXT for rr in rrset)


def test_same_lab_same_addresses(pair):
    a, b = pair
    assert a.name != b.name
    assert {n: p.addresses for n, p in a.plan.nodes.items()} == {n: p.addresses for n, p in b.plan.nodes.items()}


def test_each_instance_answers_with_its_own_daemons(pair):
    """The same record gets a different value in each instance; each client sees its own,
    from the authoritative server and through both resolvers."""
    for inst in pair:
        path = inst.state.node_dir("sld-knot") / "zones" / "example.test.zone"
        text, _ = livelab.bump_serial(path.read_text())
        path.write_text(text + f'whoami.example.test. 60 IN TXT "{inst.name}"\n')
        inst.reload("sld-knot")
    for inst in pair:
        livelab.wait_for(lambda: txt(inst.query("whoami.example.test", "TXT", server="sld-knot", rd=False,
                                                timeout=0.5)) == [f'"{inst.name}"'],
                         what=f"sld-knot of {inst.name} to serve its marker")
    for inst in pair:
        for server in ("sld-knot", "resolver-bind", "resolver-unbound"):
            reply = inst.query("whoami.example.test", "TXT", server=server, source="client")
            assert txt(reply) == [f'"{inst.name}"'], f"{inst.name}: {server} answered {txt(reply)}"
        res = livelab.cli("exec", inst.name, "client", "--", "dig", "+short", "whoami.example.test", "TXT")
        assert res.stdout.split() == [f'"{inst.name}"'], livelab.explain(res)


class Capture:
    """tcpdump inside one of an instance's namespaces: by default on its bridge, in its bridge
    namespace; with ``node``, on the node's eth0 inside the node's namespace (for docker, the
    container's own). Bounded by -c and timeout."""

    def __init__(self, inst, path, node: str | None = None):
        self.path = path
        self.err = path.with_suffix(".err")
        ns, dev = (node_ns(inst.name, node), "eth0") if node else (bridge_ns(inst.name), "br-lan")
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                ["timeout", "60", "ip", "netns", "exec", ns,
                 "tcpdump", "-i", dev, "-n", "-U", "-c", "2000", "-w", str(path), "udp", "port", "53"],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
        try:
            livelab.wait_for(lambda: f"listening on {dev}" in self.err.read_text() or self.proc.poll() is not None,
                             what=f"tcpdump to listen on {dev} in {ns}")
            assert self.proc.poll() is None, self.err.read_text()
        except BaseException:
            self.stop()
            raise

    def text(self) -> str:
        """The capture so far, as tcpdump prints it (one line per packet)."""
        res = subprocess.run(["tcpdump", "-n", "-r", str(self.path)], capture_output=True, text=True, timeout=30)
        return res.stdout

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # timeout passes it on; tcpdump flushes and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.text()


PACKET = re.compile(r" IP6? (?P<src>\S+)\.(?P<sport>\d+) > (?P<dst>\S+)\.(?P<dport>\d+): (?P<id>\d+)(?P<rest>.*)$")


def foreign_packets(capture: str) -> list[str]:
    """Lines of a capture that are not a query, nor the answer to a query in the same capture."""
    asked, foreign = set(), []
    for line in capture.splitlines():
        m = PACKET.search(line)
        if m is None:
            foreign.append(line)
        elif "?" in m["rest"]:
            asked.add((m["src"], m["sport"], m["dst"], m["dport"], m["id"]))
        elif (m["dst"], m["dport"], m["src"], m["sport"], m["id"]) not in asked:
            foreign.append(line)
    return foreign


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_bridge_of_b_sees_none_of_a_packets(pair, tmp_path):
    """Captures on B's bridge and inside B's resolver (its own eth0, in its own namespace)
    while A's nodes talk, at the same addresses and ports B uses."""
    a, b = pair
    token = secrets.token_hex(4)
    cap_a = Capture(a, tmp_path / "a.pcap")
    try:
        cap_b = Capture(b, tmp_path / "b.pcap")
        cap_node = Capture(b, tmp_path / "b-node.pcap", node="resolver-unbound")
        try:
            # traffic in A only: the client to both resolvers (which then ask the servers),
            # and straight to every authoritative server
            for i in range(6):
                for server in ("resolver-bind", "resolver-unbound"):
                    a.query(f"a{token}-{i}.example.test", "A", server=server, source="client")
            for server in ("a-root", "b-root", "tld", "sld-knot", "sld-nsd"):
                a.query(f"a{token}-{server}.example.test", "A", server=server, source="client", rd=False)
            livelab.wait_for(lambda: f"a{token}-sld-nsd" in cap_a.text(), what="A's capture to see A's traffic")
            # then B's own traffic, the positive control for B's capture
            b.query(f"b{token}.example.test", "A", server="resolver-unbound", source="client")
            livelab.wait_for(lambda: f"b{token}" in cap_b.text(), what="B's capture to see B's traffic")
            livelab.wait_for(lambda: f"b{token}" in cap_node.text(), what="B's resolver to see B's traffic")
        finally:
            seen_b = cap_b.stop()
            seen_node = cap_node.stop()
    finally:
        seen_a = cap_a.stop()
    assert f"b{token}" in seen_b and f"b{token}" in seen_node
    assert f"a{token}" not in seen_node, "B's resolver saw A's queries:\n" + seen_node
    assert foreign_packets(seen_node) == [], "B's resolver saw answers to queries it never carried"
    assert f"a{token}" not in seen_b, "B's bridge saw A's queries:\n" + "\n".join(
        ln for ln in seen_b.splitlines() if f"a{token}" in ln)
    assert foreign_packets(seen_b) == [], "B's bridge saw answers to queries it never carried"
    assert foreign_packets(seen_a) == []
    # A's bridge carried all of A's queries, client to resolvers and resolvers to servers
    assert seen_a.count(f"a{token}-") >= 12 + 5  # at least every query the client sent
    assert f"b{token}" not in seen_a


def test_node_cannot_reach_the_host(pair):
    a = pair[0]
    nets = [p for n in a.plan.networks.values() for p in (n.ipv4, n.ipv6) if p]
    hosts = [h for h in livelab.host_addresses() if not any(ipaddress.ip_address(h) in p for p in nets)]
    if not hosts:
        pytest.skip("the host has no global address to try")
    for host in hosts:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            sock = a.backend.socket(a.state, "client", family, kind)
            try:
                with pytest.raises(OSError) as exc:
                    sock.settimeout(3)
                    sock.connect((host, 53))
                assert exc.value.errno == errno.ENETUNREACH, f"{host}: {exc.value}"
                assert "Network is unreachable" in str(exc.value)
            finally:
                sock.close()
        res = livelab.cli("exec", a.name, "client", "--", "bash", "-c", f"exec 3<>/dev/tcp/{host}/22")
        assert res.returncode != 0 and "Network is unreachable" in res.stderr, livelab.explain(res)


@pytest.mark.parametrize("family", ["-4", "-6"])
def test_nodes_have_no_default_route(pair, family):
    for inst in pair:
        for node in inst.plan.nodes:
            ns = node_ns(inst.name, node)
            assert livelab.ip_json(family, "route", "show", "default", netns=ns) == [], (ns, family)
            routes = livelab.ip_json(family, "route", "show", netns=ns)
            assert routes and all(r["dst"] != "default" for r in routes)


def test_bridge_namespace_holds_the_lab_and_the_host_nothing(pair):
    host_links = {link["ifname"] for link in livelab.ip_json("link")}
    assert not [n for n in host_links if n.startswith("dl")], host_links
    for inst in pair:
        br = bridge_ns(inst.name)
        assert (livelab.NETNS_DIR / br).exists()
        bridges = [link["ifname"] for link in livelab.ip_json("link", "show", "type", "bridge", netns=br)]
        assert bridges == ["br-lan"]
        ports = {link["ifname"] for link in livelab.ip_json("link", "show", "master", "br-lan", netns=br)}
        veths = {link_name(inst.name, node, "lan") for node in inst.plan.nodes}
        assert ports == veths
        assert not veths & host_links
        # the bridge namespace has no address: it switches, it does not route
        addrs = [a for link in livelab.ip_json("addr", netns=br) for a in link.get("addr_info", [])
                 if a.get("scope") == "global"]
        assert addrs == []
        # each node sees only its own eth0 (and lo)
        for node in inst.plan.nodes:
            links = {link["ifname"] for link in livelab.ip_json("link", netns=node_ns(inst.name, node))}
            assert links == {"lo", "eth0"}
    assert "br-lan" not in host_links


def test_docker_nodes_live_in_the_namespaces_dnslab_wired(pair):
    """Docker only: every container runs with network mode none, is on no docker network, and
    its network namespace is the one named dnslab-<instance>-<node> (the one the captures and
    route checks above look at); inside, it sees only lo and our eth0, and no default route."""
    if pair[0].backend.name != "docker":
        pytest.skip("docker backend only")
    engine = livelab.docker_client()
    for inst in pair:
        for node in inst.plan.nodes:
            c = engine.containers.get(livelab.read_state(inst.name)["nodes"][node]["container"])
            assert c.labels[livelab.LABEL] == inst.name and c.status == "running"
            assert c.attrs["HostConfig"]["NetworkMode"] == "none"
            nets = c.attrs["NetworkSettings"]["Networks"]
            assert set(nets) <= {"none"} and not any(n.get("IPAddress") for n in nets.values()), nets
            pid = c.attrs["State"]["Pid"]
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(livelab.NETNS_DIR / node_ns(inst.name, node)).st_ino
            res = inst.exec(node, ["ip", "-j", "addr"], capture=True)
            assert res.returncode == 0, res.stderr
            links = {link["ifname"]: {a["local"] for a in link.get("addr_info", []) if a.get("scope") == "global"}
                     for link in json.loads(res.stdout)}
            assert set(links) == {"lo", "eth0"}, (node, links)
            assert links["eth0"] == set(inst.node(node).addresses), (node, links)
            for family in ("-4", "-6"):
                res = inst.exec(node, ["ip", family, "route", "show", "default"], capture=True)
                assert res.returncode == 0 and res.stdout.strip() == "", (node, family, res.stdout)
