"""The signed lab (labs/dnssec-signing) on both backends: every signer (Knot, BIND, NSD with
dnssec-signzone) x every validator (BIND, Unbound) validates the chain from the lab root's key;
what each server serves is signed with the instance's own keys (kept in its state, different
per instance); each fault is seen by the checks it names once `dnslab break` applies it to the
running lab, and the trainee's repair restores validation."""
from __future__ import annotations

import os
import re

import dns.dnssec
import dns.name
import dns.rdatatype
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks, dnsquery, dnssec

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "dnssec-signing"
SIGNED = {".": "root-knot", "test.": "tld-bind", "example.test.": "sld-nsd"}  # zone -> its signer
NAMES = {".": ("test", "NS"), "test.": ("nic.test", "TXT"), "example.test.": ("www.example.test", "A")}


@pytest.fixture(scope="module")
def signed(backend):
    with livelab.instance(livelab.unique_name("sg"), LAB, backend) as inst:
        yield inst


def results(inst, *ids: str) -> dict[str, bool]:
    return {i: checks.run(inst, only=i)[0].passed for i in ids}


def test_every_check_of_the_signed_lab_passes(signed):
    failed = [r.message() for r in checks.run(signed) if not r.passed]
    assert not failed, failed


@pytest.mark.parametrize("resolver", ["resolver-bind", "resolver-unbound"])
@pytest.mark.parametrize("zone", list(SIGNED))
def test_each_signer_validates_through_each_resolver(signed, zone, resolver):
    name, qtype = NAMES[zone]
    reply = signed.query(name, qtype, server=resolver, dnssec=True)
    assert checks.dnssec.verdict(reply) == "secure", (zone, resolver, reply)


@pytest.mark.parametrize("zone", list(SIGNED))
def test_every_server_serves_the_instance_keys_and_their_signatures(signed, zone):
    """The DNSKEY set each server of a zone serves is the instance's KSK and ZSK (from its state),
    self-signed by the KSK, and the parent's DS matches the KSK (the root's: the trust anchor)."""
    kept = [dnssec.Key.from_state(k) for k in signed.state.data["dnssec"][zone]]
    assert {k.role for k in kept} == {"ksk", "zsk"}
    origin = dns.name.from_text(zone)
    for server in signed.plan.zones[zone].servers:
        reply = signed.query(zone, "DNSKEY", server=server, rd=False, dnssec=True, tcp=True)
        keys = reply.find_rrset(reply.answer, origin, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        sigs = reply.find_rrset(reply.answer, origin, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
        assert {dns.dnssec.key_id(k) for k in keys} == {k.tag for k in kept}, server
        dns.dnssec.validate(keys, sigs, {origin: keys})  # raises if not signed by the served keys
        ksk = next(k for k in kept if k.role == "ksk")
        assert any(s.key_tag == ksk.tag for s in sigs), server
    parent = signed.plan.zones[zone].parent
    ksk = next(k for k in kept if k.role == "ksk")
    if parent is None:
        assert signed.plan.trust_anchor.tag == ksk.tag
    else:
        reply = signed.query(zone, "DS", server=signed.plan.zones[parent].servers[0], rd=False)
        ds = reply.find_rrset(reply.answer, origin, dns.rdataclass.IN, dns.rdatatype.DS)
        assert [r.to_text() for r in ds] == [ksk.ds().to_text()]


def test_keys_are_kept_and_differ_between_instances(signed, backend):
    """A command that opens the instance again (a new plan) keeps its keys; another instance of the
    same lab has keys of its own, so its answers differ."""
    again = type(signed).open(signed.name)
    assert again.plan.trust_anchor.tag == signed.plan.trust_anchor.tag
    assert again.plan.zones["test."].text == signed.plan.zones["test."].text  # the same DS
    with livelab.instance(livelab.unique_name("sg"), LAB, backend) as other:
        mine = {k["secret"] for ks in signed.state.data["dnssec"].values() for k in ks}
        theirs = {k["secret"] for ks in other.state.data["dnssec"].values() for k in ks}
        assert not mine & theirs
        assert checks.run(other, only="example-secure-unbound")[0].passed


def _repair_ds(inst) -> None:
    """As a registry would: the DS that example.test's signer wrote (keys/dsset-example.test.,
    beside its keys) in place of the wrong one, in test. on its primary; tld-bind reloaded (it
    signs the change; tld-nsd follows before reload returns)."""
    good = [ln for ln in inst.read_file("sld-nsd", "keys/dsset-example.test.").splitlines() if " DS " in ln]
    assert good
    path = inst.state.node_dir("tld-bind") / "zones" / "test.zone"
    text = re.sub(r"(?m)^example\.test\. IN DS .*\n", "", path.read_text())
    text, _ = livelab.bump_serial(text, by=100)
    path.write_text(text + "".join(f"{ln}\n" for ln in good))
    inst.reload("tld-bind")


def _drop_option(inst, node: str, conf: str, pattern: str) -> None:
    path = inst.state.node_dir(node) / conf
    path.write_text(re.sub(rf"(?m)^.*{pattern}.*\n", "", path.read_text()))


REPAIRS = {
    "ds-mismatch": _repair_ds,
    "clock-skew": lambda inst: _drop_option(inst, "resolver-unbound", "unbound.conf", "val-override-date"),
    "unsupported-algorithm": lambda inst: _drop_option(inst, "resolver-bind", "named.conf", "disable-algorithms"),
}


@pytest.mark.parametrize("fault", sorted(REPAIRS))
def test_each_fault_is_seen_and_its_repair_restores_validation(backend, fault):
    with livelab.instance(livelab.unique_name("sf"), LAB, backend) as inst:
        livelab.break_and_repair(inst, LAB, fault, REPAIRS[fault])


def test_a_signer_reload_serves_an_edit_signed_on_every_server(signed):
    """A trainee's edit of a signed zone, on each signer, is served signed by the zone's every
    server when reload returns (a signer's own serial is higher than the file's: BIND and Knot
    raise it when they sign)."""
    for zone, signer in SIGNED.items():
        zplan = signed.plan.zones[zone]
        path = signed.state.node_dir(signer) / "zones" / zplan.filename
        text, _ = livelab.bump_serial(path.read_text(), by=10)
        owner = f"edited.{zone}" if zone != "." else "."  # the root's: a TXT at its apex
        path.write_text(text + f"{owner} IN TXT \"edited {signer}\"\n")
        signed.reload(signer)
        served = {s: dnsquery.serial_of(signed.sockets("client"), signed.address_of(s), zone, timeout=1.0)
                  for s in zplan.servers}
        assert len(set(served.values())) == 1, served
        for server in zplan.servers:
            reply = signed.query(owner, "TXT", server=server, rd=False, dnssec=True, tcp=True)
            types = {r.rdtype for r in reply.answer}
            assert types == {dns.rdatatype.TXT, dns.rdatatype.RRSIG}, (zone, server, reply)


def test_the_chain_check_walks_the_instance_keys(signed):
    result = checks.run(signed, only="example-chain")[0]
    assert result.passed, result.message()
    for zone in SIGNED:
        for key in signed.plan.zones[zone].keys:
            assert str(key.tag) in result.params["chain"]
    assert result.params["days"] >= 7


def test_dnsviz_draws_the_chain_from_the_lab_anchor(signed, tmp_path):
    """`dnslab dnsviz` probes from the lab's client through its resolver and draws against the
    instance's own root key: the picture names the instance's key tags."""
    res = livelab.cli("dnsviz", signed.name, "www.example.test", "-o", str(tmp_path / "chain.svg"))
    assert res.returncode == 0, livelab.explain(res)
    svg = (tmp_path / "chain.svg").read_text()
    for zone in SIGNED:
        for key in signed.plan.zones[zone].keys:
            assert f"id={key.tag}" in svg, (zone, key.tag)
    assert signed.dnsviz("www.example.test").startswith(b"\x89PNG")


def test_a_random_drill_breaks_each_instance_of_a_lab(backend, tmp_path):
    """`dnslab break LAB --random` draws a fault per instance of the lab; each is seen by the
    checks it names."""
    import json
    import shutil
    from dnslab import faults
    name = f"drill{os.getpid() % 100000}"  # a lab of its own: other tests' instances are not its
    d = tmp_path / name
    shutil.copytree(LAB, d)
    (d / "lab.yaml").write_text((d / "lab.yaml").read_text().replace("name: dnssec-signing", f"name: {name}"))
    names = [livelab.unique_name("sd"), livelab.unique_name("sd")]
    with livelab.instances(names, d, backend) as insts:
        res = livelab.cli("break", name, "--random", "--json")
        assert res.returncode == 0, livelab.explain(res)
        drawn = {d["instance"]: d["fault"] for d in json.loads(res.stdout)}
        assert set(drawn) == set(names) and set(drawn.values()) <= set(faults.available(d))
        for inst in insts:
            inst = type(inst).open(inst.name)
            assert inst.state.data["faults"] == [drawn[inst.name]]
            seen_by = faults.load(d, drawn[inst.name])[0].seen_by
            assert not any(r.passed for r in checks.run(inst) if r.id in seen_by)
