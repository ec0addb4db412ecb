"""Labs served as registries serve them, on both backends: each zone loaded by a primary of one
implementation and transferred to secondaries of the two others (NOTIFY, IXFR or AXFR, TSIG
where the lab says so); a change reaches every secondary before `reload` returns; a repaired
fault shows through every resolver at once; faults that stop, block, set options and roll a
serial back; checks from any node; a missing program exits 127."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsigkeyring
import pytest

try:
    from . import livelab
except ImportError:
    import livelab
from conftest import make_lab

from dnslab import checks, dnsquery

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

XFR = """
name: xfr
nodes:
  root: {kind: nsd, zones: [.], hostname: a.root.test}
  p-bind: {kind: bind9, zones: [test, example.test, lab.test], hostname: ns1.nic.test}
  s-knot: {kind: knot, zones: [test, example.test, lab.test], hostname: ns2.nic.test}
  s-nsd: {kind: nsd, zones: [test, example.test, lab.test], hostname: ns3.nic.test}
  resolver: {kind: unbound}
  resolver2: {kind: bind9, role: resolver}
  client: {kind: client}
zones:
  .: {}
  test: {primary: p-bind, tsig: true}
  example.test: {primary: s-knot, tsig: true, records: ["www IN A 192.0.2.80", "big IN TXT {big}"]}
  lab.test: {primary: s-nsd, records: ["www IN A 192.0.2.81"]}
"""
BIG = " ".join(f'"{"x" * 200}"' for _ in range(4))  # a TXT answer of about 800 bytes
CHECKS = """
checks:
  - {check: serials, id: test-serials, zone: test}
  - {check: serials, id: example-serials, zone: example.test}
  - {check: serials, id: lab-serials, zone: lab.test}
  - {check: authoritative, id: example-aa-from-knot, zone: example.test, from: s-knot}
  - {check: resolves, id: www, name: www.example.test, expect: [192.0.2.80]}
  - {check: resolves, id: www-bind, name: www.example.test, expect: [192.0.2.80], via: resolver2}
"""
FAULTS = {
    "stop-nsd": "summary: s-nsd stopped\nseen_by: [lab-serials]\nnodes:\n  s-nsd: {stop: true}\n",
    "no-tcp": "summary: no DNS over TCP on p-bind\nseen_by: [www]\nnodes:\n  p-bind: {block: [tcp/53]}\n",
    "small-udp": "summary: big UDP answers dropped at s-knot\nseen_by: [www]\nnodes:\n  s-knot: {block: [udp/53>512]}\n",
    "identity": "summary: knot says who it is\nseen_by: [www]\nnodes:\n  s-knot: {options: ['identity: \"site-42\"']}\n",
    "rollback": "summary: the primary's serial went back\nseen_by: [lab-serials]\nzones:\n  lab.test: {serial: 0}\n",
}


@pytest.fixture(scope="module")
def xfr(backend, tmp_path_factory):
    d = make_lab(tmp_path_factory.mktemp("xfr"), XFR.replace("{big}", BIG.replace('"', '\\"')),
                         {"checks.yaml": CHECKS, **{f"faults/{k}.yaml": v for k, v in FAULTS.items()}})
    with livelab.instance(livelab.unique_name("xf"), d, backend) as inst:
        yield inst


def serial(inst, server: str, zone: str) -> int | None:
    return dnsquery.serial_of(inst.sockets("client"), inst.address_of(server), zone, timeout=1.0)


def results(inst, *ids: str) -> dict[str, bool]:
    return {i: checks.run(inst, only=i)[0].passed for i in ids}


def test_every_implementation_secondary_serves_what_the_primary_loads(xfr):
    assert results(xfr, "test-serials", "example-serials", "lab-serials", "example-aa-from-knot", "www",
                   "www-bind") == dict.fromkeys(["test-serials", "example-serials", "lab-serials",
                                                 "example-aa-from-knot", "www", "www-bind"], True)
    for server in ("p-bind", "s-knot", "s-nsd"):
        for zone, name, addr in (("example.test.", "www.example.test", "192.0.2.80"),
                                 ("lab.test.", "www.lab.test", "192.0.2.81")):
            reply = xfr.query(name, "A", server=server, rd=False)
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == [addr], (server, name)
    result = checks.run(xfr, only="example-aa-from-knot")[0]
    assert {e.source for e in result.evidence} == {"s-knot"}  # asked from the node the check names


def test_a_change_on_each_primary_reaches_every_secondary_before_reload_returns(xfr):
    for primary, zone in (("p-bind", "test"), ("s-knot", "example.test"), ("s-nsd", "lab.test")):
        path = xfr.state.node_dir(primary) / "zones" / xfr.plan.zones[f"{zone}."].filename
        text, new = livelab.bump_serial(path.read_text())
        path.write_text(text + f"changed.{zone}. IN A 192.0.2.77\n")
        xfr.reload(primary)  # returns once every secondary serves the new serial
        for server in ("p-bind", "s-knot", "s-nsd"):
            assert serial(xfr, server, f"{zone}.") == new, (zone, server)
            reply = xfr.query(f"changed.{zone}", "A", server=server, rd=False)
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["192.0.2.77"]


def _axfr(inst, zone: str, keyring=None) -> int:
    """The rcode of an AXFR asked from the client to the zone's primary (with a TSIG key or not)."""
    q = dns.message.make_query(zone, dns.rdatatype.AXFR)
    if keyring:
        q.use_tsig(keyring, keyname=next(iter(keyring)))
    primary = inst.plan.zones[zone].primary
    sock = inst.sockets("client")(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(5)
        sock.connect((inst.address_of(primary), 53))
        sock.setblocking(False)
        reply = dns.query.tcp(q, inst.address_of(primary), timeout=5, sock=sock)  # verified with q's key
        return reply.rcode() if reply.answer or reply.rcode() else dns.rcode.REFUSED
    except (dns.exception.DNSException, OSError):
        return dns.rcode.REFUSED
    finally:
        sock.close()


def test_zone_transfers_need_the_zones_key(xfr):
    """From anywhere but a secondary, a transfer is refused; with a TSIG zone's key it is served
    (the key is the instance's own, in its state and its nodes' configs, never on a command line)."""
    keys = xfr.state.data["tsig"]
    assert set(keys) == {"xfr-test", "xfr-example.test"}
    for zone in ("test.", "example.test.", "lab.test."):
        assert _axfr(xfr, zone) != dns.rcode.NOERROR, zone
    for zone, key in (("test.", "xfr-test"), ("example.test.", "xfr-example.test")):
        ring = dns.tsigkeyring.from_text({key: ("hmac-sha256", keys[key])})
        assert _axfr(xfr, zone, ring) == dns.rcode.NOERROR, zone


def test_reload_and_flush_commands(xfr):
    res = livelab.cli("reload", xfr.name, "p-bind", "resolver", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["reloaded"] == ["p-bind", "resolver"], livelab.explain(res)
    res = livelab.cli("flush", xfr.name, "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["flushed"] == ["resolver", "resolver2"], livelab.explain(res)
    res = livelab.cli("flush", xfr.name, "p-bind")
    assert res.returncode == 2 and "not a resolver" in res.stderr


@pytest.mark.parametrize("fault", ["stop-nsd", "no-tcp", "small-udp", "identity", "rollback"])
def test_faults_applied_to_a_running_lab(backend, tmp_path, fault):
    """`dnslab break` applies each kind of fault to a live instance; the checks it names see it."""
    d = make_lab(tmp_path, XFR.replace("{big}", BIG.replace('"', '\\"')),
                         {"checks.yaml": CHECKS, **{f"faults/{k}.yaml": v for k, v in FAULTS.items()}})
    with livelab.instance(livelab.unique_name("xb"), d, backend) as inst:
        res = livelab.cli("break", inst.name, fault, "--json")
        assert res.returncode == 0, livelab.explain(res)
        inst = type(inst).open(inst.name)
        status = json.loads(livelab.cli("status", inst.name, "--json").stdout)
        assert status["faults"] == [fault]
        if fault == "stop-nsd":
            assert not inst.backend.running(inst.state, "s-nsd")
            assert results(inst, "lab-serials") == {"lab-serials": False}
        elif fault == "no-tcp":
            assert inst.query("test", "SOA", server="p-bind", rd=False).rcode() == 0
            with pytest.raises(OSError):
                inst.query("test", "SOA", server="p-bind", rd=False, tcp=True, timeout=1)
        elif fault == "small-udp":
            small = inst.query("www.example.test", "A", server="s-knot", rd=False)
            assert small.answer
            with pytest.raises(dns.exception.Timeout):
                q = dnsquery.make_query("big.example.test", "TXT", rd=False)
                q.use_edns(0, payload=1232)
                dnsquery.query(inst.sockets("client"), inst.address_of("s-knot"), q, timeout=1)
        elif fault == "identity":
            reply = inst.query("id.server", "TXT", server="s-knot", rdclass="CH", rd=False)
            assert '"site-42"' in [rr.to_text() for rrset in reply.answer for rr in rrset]
        else:
            assert {serial(inst, s, "lab.test.") for s in ("s-nsd", "p-bind", "s-knot")} == {0, 1}
            assert results(inst, "lab-serials") == {"lab-serials": False}


def test_a_missing_program_exits_127(xfr):
    res = livelab.cli("exec", xfr.name, "p-bind", "--", "no-such-program")
    assert res.returncode == 127, livelab.explain(res)


def test_a_repaired_fault_shows_through_every_resolver_at_once(backend):
    """dns-basics with lame-glue: the checks the fault names fail; the glue repaired on the primary,
    `reload` of it (its secondary follows) and `flush` of the resolvers: every check passes, at
    once, with no TTL to wait out."""
    with livelab.instance(livelab.unique_name("xr"), livelab.DNS_BASICS, backend, faults=["lame-glue"]) as inst:
        seen_by = ["lab-delegation", "example-delegation", "lab-mx", "www-via-unbound"]
        assert results(inst, *seen_by) == dict.fromkeys(seen_by, False)
        path = inst.state.node_dir("tld") / "zones" / "test.zone"
        text = path.read_text()
        for host, node in (("ns1.lab.test.", "sld-nsd"), ("ns1.example.test.", "sld-knot")):
            v4, v6 = inst.plan.nodes[node].addresses
            text = re.sub(rf"(?m)^({re.escape(host)}\s+IN\s+A\s+)\S+$", rf"\g<1>{v4}", text)
            text = re.sub(rf"(?m)^({re.escape(host)}\s+IN\s+AAAA\s+)\S+$", rf"\g<1>{v6}", text)
        path.write_text(livelab.bump_serial(text)[0])
        assert livelab.cli("reload", inst.name, "tld").returncode == 0
        assert livelab.cli("flush", inst.name).returncode == 0
        everything = [c.name_id for c in checks.for_instance(inst)]
        assert results(inst, *everything) == dict.fromkeys(everything, True)
        assert subprocess.run(livelab.dnslab_argv() + ["check", inst.name], capture_output=True).returncode == 0
