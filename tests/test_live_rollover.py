"""The rollover lab (labs/dnssec-rollover) on both backends: the registry of test. takes a DS
submitted by hand only when it is right (and says why not), rebuilds a broken DS from the
child's CDS, and carries the KSK rollovers; ZSK and KSK rollovers on BIND and Knot finish with no
validation failure among continuous queries through both resolvers; a rollover stalled for want
of a DS is seen by the ds_sync check and finished by a DS submitted by hand."""
from __future__ import annotations

import json
import os
import threading
import time

import dns.flags
import dns.rdata
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks, keystate, registry

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "dnssec-rollover"


@pytest.fixture(scope="module")
def rolling(backend):
    with livelab.instance(livelab.unique_name("ro"), LAB, backend) as inst:
        yield inst


def ksk(inst, zone: str):
    return next(k for k in keystate.zone_view(inst, zone).keys if k.role == "KSK")


def test_every_check_passes_and_the_registry_is_in_sync(rolling):
    results = checks.run(rolling)
    failed = [r.message() for r in results if not r.passed and r.check != "rolled"]
    assert not failed, failed
    assert {r.id: r.key for r in results if r.check == "rolled"} == {"bind-zsk-rolled": "rolled.original",
                                                                    "knot-ksk-rolled": "rolled.original"}
    livelab.wait_for(lambda: all(v.registry == "in sync" for v in keystate.status(rolling)
                                 if v.zone in ("bind.test.", "knot.test.")), what="the registry in sync")


def test_a_ds_submitted_by_hand_is_checked_before_it_is_published(rolling):
    zone = "knot.test."
    key = next(k for k in rolling.plan.zones[zone].keys if k.role == "ksk")
    live = ksk(rolling, zone)  # the lab's key, unless a test rolled it already
    zsk = next(k for k in keystate.zone_view(rolling, zone).keys if k.role == "ZSK")
    refused = {
        "not a DS record": ["ds for me please"],
        "digest type 1 is not accepted": [f"{live.tag} 13 1 {'ab' * 20}"],
        "has no key with tag": [f"{(live.tag + 1) % 65536} 13 2 {'ab' * 32}"],
        "(wrong digest)": [f"{live.tag} 13 2 {'ab' * 32}"],
        "is a DS of lab.test.": [f"lab.test. IN DS {key.ds().to_text()}"],
        "not a key-signing key": [f"{zsk.tag} 13 2 {'ab' * 32}"],
    }
    for reason, records in refused.items():
        res = livelab.cli("dnssec", "submit-ds", rolling.name, zone, *records)
        assert res.returncode == 2 and reason in res.stderr, (reason, livelab.explain(res))
    good = [d for d in keystate.zone_view(rolling, zone).cds]
    res = livelab.cli("dnssec", "submit-ds", rolling.name, zone, *good, "--json")
    assert res.returncode == 0, livelab.explain(res)
    assert sorted(json.loads(res.stdout)["published"]) == sorted(good)
    assert checks.run(rolling, only="knot-secure-unbound")[0].passed


def test_the_registry_rebuilds_a_broken_ds_from_the_cds(rolling):
    """A DS that vouches for nothing (a botched registrar edit, sent with the registry's own key)
    makes knot.test bogus; the registry sees the child's CDS, the same on every name server over
    its stable scans, and puts the right DS back (bootstrapping: the broken chain cannot vouch)."""
    _, config = rolling.registry_of("knot.test")
    bogus = dns.rdata.from_text("IN", "DS", f"4711 13 2 {'ab' * 32}")
    registry.update_parent(config["primary"], config["parent"], "knot.test.", [bogus], config["key"],
                           config["secret"], rolling.sockets("registry"), ttl=config["ds_ttl"])
    # the parent took it (asked at once: the registry, scanning every second, soon replaces it)
    served = rolling.query("knot.test", "DS", server=config["primary"], rd=False).answer
    assert served and {ds.key_tag for ds in served[0]} == {4711}
    livelab.wait_for(lambda: checks.run(rolling, only="knot-chain")[0].passed, timeout=30,
                     what="the registry to restore the DS of knot.test")

    def validates() -> bool:  # once the parent's secondary has the DS too
        for node in ("resolver-bind", "resolver-unbound"):
            rolling.flush(node)
        return all(checks.run(rolling, only=i)[0].passed for i in ("knot-secure-bind", "knot-secure-unbound"))
    livelab.wait_for(validates, timeout=15, interval=0.5, what="both resolvers to validate knot.test again")


ALGORITHM_TO = {"knot.test.": ("ED25519", 15), "bind.test.": ("ECDSAP384SHA384", 14)}


@pytest.mark.parametrize("zone, role", [("knot.test.", "zsk"), ("knot.test.", "ksk"),
                                        ("bind.test.", "zsk"), ("bind.test.", "ksk"),
                                        ("knot.test.", "algorithm"), ("bind.test.", "algorithm")])
def test_a_rollover_ends_without_a_validation_failure(rolling, zone, role):
    """Continuous validating queries through both resolvers, every 50 ms, from the start of the
    rollover to its end: not one fails. A KSK rollover ends with the registry's DS replaced; an
    algorithm rollover (both keys) with only keys of the new algorithm and the new KSK's DS."""
    failures, count, stop = [], [0], threading.Event()

    def ask():
        while not stop.is_set():
            for resolver in ("resolver-unbound", "resolver-bind"):
                try:
                    reply = rolling.query(f"www.{zone}", "A", server=resolver, dnssec=True, timeout=2)
                    ok = reply.rcode() == 0 and bool(reply.flags & dns.flags.AD)
                except Exception as exc:  # a timeout is a failure too
                    ok, reply = False, exc
                count[0] += 1
                if not ok:
                    failures.append((resolver, str(reply)[:200]))
            time.sleep(0.05)
    before = {k.tag for k in keystate.zone_view(rolling, zone).keys}
    thread = threading.Thread(target=ask)
    thread.start()
    try:
        old = rolling.roll_algorithm(zone, ALGORITHM_TO[zone][0]) if role == "algorithm" else [rolling.rollover(zone, role)]
        took = rolling.follow_rollover(zone, old, timeout=150)
    finally:
        stop.set()
        thread.join()
    after = keystate.zone_view(rolling, zone)
    assert set(old) <= before and not set(old) & {k.tag for k in after.keys}
    for r in (("KSK", "ZSK") if role == "algorithm" else (role.upper(),)):
        assert len([k for k in after.keys if k.role == r]) == 1
    assert count[0] > 100 and not failures, (took, count[0], failures[:5])
    if role == "algorithm":
        assert {k.algorithm for k in after.keys} == {ALGORITHM_TO[zone][1]}
    if role in ("ksk", "algorithm"):
        assert after.ds == after.cds  # the parent's DS is the new key's
    rolled = {("bind.test.", "zsk"): "bind-zsk-rolled", ("knot.test.", "ksk"): "knot-ksk-rolled"}.get((zone, role))
    if rolled:
        assert checks.run(rolling, only=rolled)[0].passed
    assert checks.run(rolling, only=f"{zone.split('.')[0]}-chain")[0].passed


def test_a_ksk_rollover_stalled_without_its_registry_ends_with_a_ds_by_hand(backend):
    """With the registry down, a KSK rollover on Knot waits for its DS: the ds_sync check says so;
    the new DS submitted by hand (from the CDS the child publishes) ends it."""
    with livelab.instance(livelab.unique_name("rs"), LAB, backend, faults=["registry-down"]) as inst:
        assert not inst.backend.running(inst.state, "registry")
        old = inst.rollover("knot.test", "ksk")
        livelab.wait_for(lambda: not checks.run(inst, only="knot-ds")[0].passed, timeout=30,
                         what="the child's new CDS")
        result = checks.run(inst, only="knot-ds")[0]
        assert result.key == "ds_sync.waiting", result.message()
        time.sleep(3)
        assert not checks.run(inst, only="knot-ds")[0].passed  # nobody acts: it stays stalled

        def agreed() -> list[str]:  # the registry checks every name server: the secondary must have followed,
            def rdata(server: str, rtype: str) -> list[str]:  # its DNSKEY set as well as its CDS (seen in CI)
                reply = inst.query("knot.test", rtype, server=server, rd=False, tcp=True)
                return sorted(r.to_text() for rrset in reply.answer for r in rrset)
            sets = [(rdata(s, "CDS"), rdata(s, "DNSKEY")) for s in ("sld-knot", "sld-bind")]
            return sets[0][0] if sets[0] == sets[1] else []
        inst.submit_ds("knot.test", livelab.wait_for(agreed, what="both name servers serving the new CDS"))
        inst.follow_rollover("knot.test", old, timeout=60)
        inst.submit_ds("knot.test", livelab.wait_for(agreed, what="both name servers serving the last CDS"))
        assert checks.run(inst, only="knot-ds")[0].passed and checks.run(inst, only="knot-chain")[0].passed


def test_a_stopped_signer_leaves_its_secondary_serving_signatures_that_expire(backend):
    """With BIND (bind.test's signer) stopped, its secondary answers on, with signatures of a
    minute: within it, both resolvers stop validating bind.test (BIND: bogus; Unbound, trying the
    dead signer too, gives no validated answer in time); the checks the fault names see it; the
    signer started again, everything validates."""
    from dnslab import faults
    seen_by = set(faults.load(LAB, "stale-signatures")[0].seen_by)
    with livelab.instance(livelab.unique_name("rx"), LAB, backend) as inst:
        res = livelab.cli("break", inst.name, "stale-signatures")
        assert res.returncode == 0, livelab.explain(res)
        inst = type(inst).open(inst.name)
        assert not inst.backend.running(inst.state, "sld-bind")
        reply = inst.query("www.bind.test", "A", server="sld-knot", rd=False)
        assert reply.answer  # the secondary still answers

        def expired():
            for node in ("resolver-bind", "resolver-unbound"):
                inst.flush(node)
            return checks.run(inst, only="bind-secure-bind")[0].key == "validates.bogus" and \
                not checks.run(inst, only="bind-secure-unbound")[0].passed
        livelab.wait_for(expired, timeout=100, interval=2, what="bind.test's signatures to expire")
        failed = {r.id for r in checks.run(inst) if not r.passed and r.check != "rolled"}
        assert failed == seen_by, failed
        res = livelab.cli("start", inst.name, "sld-bind")
        assert res.returncode == 0, livelab.explain(res)

        def repaired():
            for node in ("resolver-bind", "resolver-unbound"):
                inst.flush(node)
            return not [r for r in checks.run(inst) if not r.passed and r.check != "rolled"]
        livelab.wait_for(repaired, timeout=30, interval=1, what="bind.test to validate again")


def test_an_algorithm_rollover_refuses_what_it_cannot_do(rolling):
    from dnslab.errors import InputError
    for zone, algorithm, why in (("test.", "RSASHA1", "unknown algorithm 'RSASHA1'"),
                                 ("test.", "ECDSAP256SHA256", "is signed with ECDSAP256SHA256 already"),
                                 (".", "ED25519", "trust anchor")):
        with pytest.raises(InputError, match=why):
            rolling.roll_algorithm(zone, algorithm)
    with pytest.raises(InputError, match="trust anchor"):
        rolling.rollover(".", "ksk")
    assert "algorithms" not in rolling.state.data or "test." not in rolling.state.data["algorithms"]


def _new_test_validates(inst) -> bool:
    from dnslab.checks.dnssec import Validates
    for node in ("resolver-bind", "resolver-unbound"):
        inst.flush(node)
    return all(Validates(check="validates", name="www.new.test", via=r).run(inst).passed
               for r in ("resolver-bind", "resolver-unbound"))


def test_a_new_zone_is_bootstrapped_at_once_by_its_rfc9615_signals(rolling):
    """new.test comes up without a DS in test. (ds: false); its CDS is signalled, signed, under
    the names of both its name servers; the registry publishes its DS on its first look (not after
    its stable scans) and new.test validates."""
    livelab.wait_for(lambda: "new.test.: DS bootstrapped (RFC 9615)" in rolling.read_file("registry", "daemon.log"),
                     timeout=20, what="the registry to bootstrap new.test")
    view = keystate.zone_view(rolling, "new.test")
    assert view.ds and view.ds == view.cds
    signal = rolling.query("_dsboot.new.test._signal.ns1.bind.test", "CDS", server="sld-bind", rd=False).answer
    assert {r.to_text() for r in signal[0]} == set(view.cds)
    livelab.wait_for(lambda: _new_test_validates(rolling), timeout=15, interval=0.5, what="new.test validating")


def test_authenticated_bootstrapping_needs_a_validated_signal_at_every_name_server(rolling):
    """A registry that bootstraps by RFC 9615 only: with a name server that does not signal, it
    waits and says where the signal is missing; with every signal there and validated, it
    publishes the DS at once. (The lab's own registry is stopped meanwhile, and started again.)"""
    from dnslab import kinds
    stop = kinds.KINDS["registry"].stop(rolling.node("registry"), rolling.backend.node_path(rolling.state, "registry"))
    rolling.backend.stop_daemon(rolling.state, "registry", stop)
    try:
        _, config = rolling.registry_of("new.test")
        config = {**config, "bootstrap": "authenticated"}
        bogus = dns.rdata.from_text("IN", "DS", f"4711 13 2 {'ab' * 32}")
        registry.update_parent(config["primary"], config["parent"], "new.test.", [bogus], config["key"],
                               config["secret"], rolling.sockets("registry"), ttl=config["ds_ttl"])
        child = config["children"]["new.test."]
        partial = {**config, "children": {"new.test.": {**child, "nameservers": [*child["nameservers"],
                                                                                   "ns1.nic.test."]}}}
        scanner = registry.Scanner(partial, rolling.sockets("registry"))
        for _ in range(3):  # however stable the CDS, no delay makes up for a missing signal
            scanner.scan()
        status = scanner.status["new.test."]
        assert status["state"] == "waiting for an RFC 9615 signal", status
        assert "no signal at _dsboot.new.test._signal.ns1.nic.test." in status["reason"], status
        scanner = registry.Scanner(config, rolling.sockets("registry"))
        scanner.scan()
        assert scanner.status["new.test."]["state"] == "DS bootstrapped (RFC 9615)", scanner.status
    finally:
        rolling.start("registry")
    livelab.wait_for(lambda: _new_test_validates(rolling), timeout=15, interval=0.5, what="new.test validating")
