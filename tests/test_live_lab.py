"""dns-basics for real: every daemon kind serves, both resolvers resolve, the CLI's status,
check, exec and logs work on a live instance, SIGHUP reloads, and a broken lab fails its
checks with a message. Plus a two-network lab built in a temporary folder. Every test
runs on each backend (the ``backend`` fixture: netns, docker)."""
from __future__ import annotations

import json
import os
import re
import signal
import textwrap

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks
from dnslab.backends.netns import bridge_ns, link_name, node_ns

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

AUTHORITATIVE = [  # node, kind, zone it serves
    ("a-root", "nsd", "."),
    ("b-root", "knot", "."),
    ("tld", "bind9", "test."),
    ("sld-knot", "knot", "example.test."),
    ("sld-nsd", "nsd", "lab.test."),
]
RESOLVERS = [("resolver-bind", "bind9"), ("resolver-unbound", "unbound")]
ANSWERS = [  # name, type, the data every resolver must return
    ("www.example.test", "A", ["192.0.2.80"]),
    ("www.example.test", "AAAA", ["2001:db8:2::80"]),
    ("lab.test", "MX", ["10 mail.lab.test."]),
]


@pytest.fixture(scope="module")
def inst(backend):
    with livelab.instance(livelab.unique_name("lv"), backend=backend) as i:
        assert i.backend.name == backend
        yield i


@pytest.fixture
def fresh(backend):
    """An instance of its own, for a test that breaks it beyond repair."""
    with livelab.instance(livelab.unique_name("lf"), backend=backend) as i:
        yield i


def rdata(reply, qtype):
    want = dns.rdatatype.from_text(qtype)
    return sorted(rr.to_text() for rrset in reply.answer if rrset.rdtype == want for rr in rrset)


# ---------------------------------------------------------------- every kind serves

@pytest.mark.parametrize("node,kind,zone", AUTHORITATIVE, ids=[a[0] for a in AUTHORITATIVE])
@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_authoritative_server_answers_soa_with_aa(inst, node, kind, zone, tcp):
    assert inst.node(node).kind == kind
    reply = inst.query(zone, "SOA", server=node, rd=False, tcp=tcp)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.AA, f"{node} ({kind}) is not authoritative for {zone}"
    assert not reply.flags & dns.flags.RA
    assert len(rdata(reply, "SOA")) == 1


@pytest.mark.parametrize("node,kind", RESOLVERS, ids=[r[0] for r in RESOLVERS])
def test_resolver_recurses(inst, node, kind):
    assert inst.node(node).kind == kind
    reply = inst.query("www.example.test", "A", server=node, rd=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.flags & dns.flags.RA, f"{node} does not offer recursion"
    assert not reply.flags & dns.flags.AA, f"{node} answered from authority, not by resolving"
    assert rdata(reply, "A") == ["192.0.2.80"]


def test_authoritative_server_does_not_recurse(inst):
    reply = inst.query("www.example.test", "A", server="tld", rd=True)
    assert not reply.flags & dns.flags.RA
    assert not rdata(reply, "A")


# ---------------------------------------------------------------- resolution from the client

@pytest.mark.parametrize("resolver", [r[0] for r in RESOLVERS])
@pytest.mark.parametrize("name,qtype,expected", ANSWERS, ids=[f"{a[0]}-{a[1]}" for a in ANSWERS])
def test_client_resolves_through_resolver(inst, resolver, name, qtype, expected):
    reply = inst.query(name, qtype, server=resolver, source="client")
    assert reply.rcode() == dns.rcode.NOERROR
    assert rdata(reply, qtype) == expected


def test_client_resolves_over_ipv6(inst):
    for resolver, _ in RESOLVERS:
        v6 = [a for a in inst.node(resolver).addresses if ":" in a]
        reply = inst.query("www.example.test", "AAAA", server=v6[0], source="client")
        assert rdata(reply, "AAAA") == ["2001:db8:2::80"], resolver


def test_dig_on_client_uses_its_resolv_conf(inst):
    unbound = inst.node("resolver-unbound").address
    res = livelab.cli("exec", inst.name, "client", "--", "cat", "/etc/resolv.conf")
    assert res.returncode == 0, livelab.explain(res)
    assert res.stdout.splitlines()[0] == f"nameserver {unbound}"

    res = livelab.cli("exec", inst.name, "client", "--", "dig", "+short", "www.example.test")
    assert res.returncode == 0, livelab.explain(res)
    assert res.stdout.split() == ["192.0.2.80"]

    res = livelab.cli("exec", inst.name, "client", "--", "dig", "www.example.test", "AAAA")
    assert res.returncode == 0, livelab.explain(res)
    assert f";; SERVER: {unbound}#53({unbound})" in res.stdout, "dig did not ask the client's resolver"
    assert re.search(r"^www\.example\.test\.\s+\d+\s+IN\s+AAAA\s+2001:db8:2::80$", res.stdout, re.M)


@pytest.mark.parametrize("name,qtype,expected", ANSWERS, ids=[f"{a[0]}-{a[1]}" for a in ANSWERS])
def test_dig_on_client_through_bind_resolver(inst, name, qtype, expected):
    bind = inst.node("resolver-bind").address
    res = livelab.cli("exec", inst.name, "client", "--", "dig", "+short", f"@{bind}", name, qtype)
    assert res.returncode == 0, livelab.explain(res)
    assert sorted(res.stdout.splitlines()) == expected


# ---------------------------------------------------------------- the CLI on a live instance

def test_every_check_passes(inst):
    res = livelab.cli("check", inst.name, "--json")
    assert res.returncode == 0, livelab.explain(res)
    results = json.loads(res.stdout)[inst.name]
    declared = [c.id for c in checks.for_instance(inst)]
    assert [r["id"] for r in results] == declared
    assert len(declared) == 14
    assert all(r["passed"] for r in results), [r["message"] for r in results if not r["passed"]]
    assert all(r["key"].endswith(".pass") and r["message"] and r["evidence"] for r in results)


def test_check_human_output(inst):
    res = livelab.cli("check", inst.name)
    assert res.returncode == 0, livelab.explain(res)
    assert res.stdout.splitlines()[0] == f"instance {inst.name}: 14/14 checks pass"
    assert res.stdout.count("  PASS  ") == 14


def test_status_shows_every_node_running_and_answering(inst):
    res = livelab.cli("status", inst.name, "--json")
    assert res.returncode == 0, livelab.explain(res)
    data = json.loads(res.stdout)
    assert data["instance"] == inst.name and data["phase"] == "ready" and data["lab"] == "dns-basics"
    nodes = {n["name"]: n for n in data["nodes"]}
    assert set(nodes) == set(inst.plan.nodes)
    for name, n in nodes.items():
        assert n["running"], f"{name} is not running"
        assert n["answers"] is (None if n["kind"] == "client" else True), f"{name}: answers={n['answers']}"
        assert n["addresses"] == inst.node(name).addresses


def test_status_lists_the_instance(inst):
    res = livelab.cli("status", "--json")
    assert res.returncode == 0, livelab.explain(res)
    row = next(r for r in json.loads(res.stdout) if r["instance"] == inst.name)
    assert (row["running"], row["nodes"], row["answering"], row["daemons"]) == (9, 9, 8, 8)


def test_logs_prints_named_log(inst):
    res = livelab.cli("logs", inst.name, "tld")
    assert res.returncode == 0, livelab.explain(res)
    assert "starting BIND 9" in res.stdout
    # the node's directory as its daemon sees it: the run dir (netns), /lab in the container (docker)
    assert f"running as: named -g -n 1 -c {inst.backend.node_path(inst.state, 'tld')}/named.conf" in res.stdout
    assert "zone test/IN: loaded serial" in res.stdout
    tail = livelab.cli("logs", inst.name, "tld", "-n", "2")
    assert tail.returncode == 0 and tail.stdout.splitlines() == res.stdout.splitlines()[-2:]


def test_logs_of_client_say_it_has_none(inst):
    res = livelab.cli("logs", inst.name, "client")
    assert res.returncode == 0 and res.stdout == ""
    assert "runs no daemon" in res.stderr


def test_exec_returns_the_command_exit_code(inst):
    res = livelab.cli("exec", inst.name, "client", "--", "sh", "-c", "exit 7")
    assert res.returncode == 7


# ---------------------------------------------------------------- SIGHUP reload

@pytest.mark.parametrize("node,kind,zone", AUTHORITATIVE[2:], ids=[a[0] for a in AUTHORITATIVE[2:]])
def test_sighup_reload_serves_new_record(inst, node, kind, zone):
    path = inst.state.node_dir(node) / "zones" / inst.plan.zones[zone].filename
    text, serial = livelab.bump_serial(path.read_text())
    new = f"reloaded-{kind}.{zone}"
    path.write_text(text + f"{new} 60 IN A 192.0.2.{len(kind)}\n")
    assert not inst.query(new, "A", server=node, rd=False).answer  # not there before the reload
    inst.reload(node)

    def served():
        reply = inst.query(new, "A", server=node, rd=False, timeout=0.5)
        soa = inst.query(zone, "SOA", server=node, rd=False, timeout=0.5)
        return (rdata(reply, "A") == [f"192.0.2.{len(kind)}"] and reply.flags & dns.flags.AA
                and [rr.serial for rrset in soa.answer for rr in rrset] == [serial])
    livelab.wait_steady(served, what=f"{node} ({kind}) to serve {new} and serial {serial} after SIGHUP")
    assert inst.backend.running(inst.state, node), f"{node} died on SIGHUP"
    for resolver, _ in RESOLVERS:  # a name never asked before: no negative cache in the way
        assert rdata(inst.query(new, "A", server=resolver), "A") == [f"192.0.2.{len(kind)}"], resolver


# ---------------------------------------------------------------- a broken lab fails its checks

def test_wrong_glue_fails_delegation_check(inst):
    path = inst.state.node_dir("tld") / "zones" / "test.zone"
    original = path.read_text()
    right, right6 = inst.node("sld-knot").addresses
    other = inst.node("sld-nsd").address  # the other name server of example.test: its glue stays right
    wrong = "198.51.100.99"
    glue = f"ns1.example.test. IN A {right}\n"
    assert glue in original
    broken, _ = livelab.bump_serial(original.replace(glue, f"ns1.example.test. IN A {wrong}\n"))

    def referral_glue():
        reply = inst.query("example.test", "NS", server="tld", rd=False, timeout=0.5)
        return sorted(rr.to_text() for rrset in reply.additional if rrset.rdtype == dns.rdatatype.A
                      for rr in rrset)
    try:
        path.write_text(broken)
        inst.reload("tld")
        livelab.wait_for(lambda: referral_glue() == sorted([wrong, other]), what="tld to serve the wrong glue")

        res = livelab.cli("check", inst.name, "--only", "example-delegation")
        assert res.returncode == 1, livelab.explain(res)
        fail = [ln for ln in res.stdout.splitlines() if ln.strip().startswith("FAIL")]
        assert len(fail) == 1 and "example-delegation" in fail[0], res.stdout
        assert (f"glue for ns1.example.test. in test. is {wrong}, {right6} "
                f"but the name server is at {right}, {right6}") in fail[0]

        res = livelab.cli("check", inst.name, "--json", "-v")
        assert res.returncode == 1, livelab.explain(res)
        results = {r["id"]: r for r in json.loads(res.stdout)[inst.name]}
        failed = {i for i, r in results.items() if not r["passed"]}
        assert failed == {"example-delegation", "lab-delegation"}, failed  # ns1.example.test serves both
        r = results["example-delegation"]
        assert r["key"] == "delegation.glue_mismatch"
        assert r["params"]["host"] == "ns1.example.test."
        assert any(wrong in line for ev in r["evidence"] for line in ev["additional"])
    finally:
        restored, _ = livelab.bump_serial(original, by=2)  # above the broken one
        path.write_text(restored)
        inst.reload("tld")
        livelab.wait_for(lambda: checks.run(inst, only="example-delegation")[0].passed,
                         what="the delegation check to pass again")


# What Zonemaster reports that the lab intends: its name servers sit in documentation prefixes
# (RFC 5737, RFC 3849), which have no reverse zones.
INTENDED = {"NAMESERVER_IP_PRIVATE_NETWORK", "NAMESERVER_IP_WITHOUT_REVERSE"}


@pytest.mark.parametrize("zone", ["test", "example.test", "lab.test"])
def test_delegations_pass_the_registry_pre_delegation_test(inst, zone, tmp_path):
    """Zonemaster, the pre-delegation test of many ccTLDs (Debian's zonemaster-cli), run from
    the client against the lab's own root: no warning or error but the intended ones. (The root
    zone itself is out of its reach: it takes a root server's NXDOMAIN for recursion.)"""
    if inst.backend.name != "netns":
        pytest.skip("zonemaster-cli runs on the host, inside the client's namespace: netns only")
    hints = tmp_path / "root.hints"
    hints.write_text("".join(f". IN NS {host}\n" + "".join(f"{host} IN {'AAAA' if ':' in a else 'A'} {a}\n"
                                                         for a in addrs) for host, addrs in inst.plan.root_hints))
    res = inst.exec("client", ["zonemaster-cli", "--hints", str(hints), "--level", "WARNING", "--json",
                               "--no-progress", zone], capture=True, timeout=300)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert {f["tag"] for f in found} >= {"NAMESERVER_IP_PRIVATE_NETWORK"}, "the run reached the name servers"
    assert [f for f in found if f["tag"] not in INTENDED] == []


def daemon_pid(inst, node: str) -> int:
    """The host PID of a node's daemon: recorded in the state (netns), or the container's main
    process under docker-init (docker)."""
    if inst.backend.name == "docker":
        init = livelab.read_state(inst.name)["nodes"][node]["container"]
        init_pid = livelab.docker_client().containers.get(init).attrs["State"]["Pid"]
        kids = [pid for pid, (state, _) in livelab.children(init_pid).items() if state not in "ZX"]
        assert len(kids) == 1, kids
        return kids[0]
    return livelab.read_state(inst.name)["nodes"][node]["pid"]


def test_stopped_daemon_fails_checks(fresh):
    pid = daemon_pid(fresh, "sld-knot")
    assert livelab.proc_stat(pid)[2] == "knotd"
    os.kill(pid, signal.SIGKILL)
    livelab.wait_for(lambda: not fresh.backend.running(fresh.state, "sld-knot"), what="knotd to die")

    res = livelab.cli("check", fresh.name, "--only", "sld-aa")
    assert res.returncode == 1, livelab.explain(res)
    fail = [ln for ln in res.stdout.splitlines() if ln.strip().startswith("FAIL")]
    assert len(fail) == 1 and "sld-aa" in fail[0]
    assert "sld-knot did not answer for example.test.: " in fail[0]

    res = livelab.cli("status", fresh.name, "--json")
    assert res.returncode == 1, livelab.explain(res)
    nodes = {n["name"]: n for n in json.loads(res.stdout)["nodes"]}
    assert (nodes["sld-knot"]["running"], nodes["sld-knot"]["answers"]) == (False, False)
    assert all(n["running"] for name, n in nodes.items() if name != "sld-knot")

    res = livelab.cli("check", fresh.name, "--json")
    assert res.returncode == 1, livelab.explain(res)
    results = {r["id"]: r for r in json.loads(res.stdout)[fresh.name]}
    failed = {i for i, r in results.items() if not r["passed"]}
    assert {"sld-aa", "example-delegation", "example-serials"} <= failed
    # example.test has a second server (sld-nsd, its secondary): names still resolve, as a registry's rule wants
    assert not failed & {"www-via-unbound", "www-via-bind", "root-aa", "test-delegation", "lab-mx", "root-serials",
                         "tld-closed"}
    assert all(results[i]["message"] for i in failed)


# ---------------------------------------------------------------- two networks

TWO_NETS = textwrap.dedent("""\
    name: two-nets
    description: a resolver on two segments, between a root and a client
    networks:
      lan:
        ipv4: 198.51.100.0/24
        ipv6: 2001:db8:5100::/64
      dmz:
        ipv4: 203.0.113.0/24
        ipv6: 2001:db8:113::/64
    nodes:
      root:
        kind: nsd
        zones: [.]
        hostname: a.root-servers.test
        interfaces: {lan: {}}
      corp-ns:
        kind: knot
        zones: [corp.test]
        hostname: ns1.corp.test
        interfaces: {dmz: {ipv4: 203.0.113.53}}
      resolver:
        kind: unbound
        interfaces: {lan: {}, dmz: {ipv4: 203.0.113.250}}
      client:
        kind: client
        interfaces: {dmz: {}}
    zones:
      .: {}
      corp.test:
        records:
          - "www IN A 203.0.113.80"
    """)


def test_two_network_lab(tmp_path, backend):
    (tmp_path / "lab.yaml").write_text(TWO_NETS)
    with livelab.instance(livelab.unique_name("l2"), tmp_path, backend) as two:
        br = bridge_ns(two.name)
        bridges = {link["ifname"] for link in livelab.ip_json("link", "show", "type", "bridge", netns=br)}
        assert bridges == {"br-lan", "br-dmz"}
        for node in two.plan.nodes.values():
            addrs = {link["ifname"]: {a["local"] for a in link.get("addr_info", []) if a.get("scope") == "global"}
                     for link in livelab.ip_json("addr", netns=node_ns(two.name, node.name))}
            assert set(addrs) == {"lo"} | {i.ifname for i in node.interfaces}
            for iface in node.interfaces:
                assert addrs[iface.ifname] == set(iface.addresses), (node.name, iface.ifname, addrs)
                ports = {link["ifname"] for link in
                         livelab.ip_json("link", "show", "master", f"br-{iface.network}", netns=br)}
                assert link_name(two.name, node.name, iface.network) in ports
        resolver = two.node("resolver")
        assert [i.network for i in resolver.interfaces] == ["lan", "dmz"]
        assert resolver.interfaces[1].addresses[0] == "203.0.113.250"
        # the client (dmz only) cannot reach the resolver's lan address, but resolves through
        # its dmz one; the resolver reaches the root on lan and corp.test's server on dmz
        reply = two.query("www.corp.test", "A", server="203.0.113.250", source="client")
        assert rdata(reply, "A") == ["203.0.113.80"]
        reply = two.query("www.corp.test", "A", server=resolver.interfaces[1].addresses[1], source="client")
        assert rdata(reply, "A") == ["203.0.113.80"]
        with pytest.raises(OSError, match="Network is unreachable"):
            two.query("www.corp.test", "A", server=resolver.address, source="client", timeout=1)
