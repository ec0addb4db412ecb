"""The denial-of-existence lab (labs/dnssec-nsec3) on both backends: an NSEC chain lists the
zone, with the instance's own hidden name; NSEC3 with opt-out leaves NXDOMAIN insecure; 200
NSEC3 iterations make both resolvers treat proofs of absence as insecure (RFC 9276) until Knot
signs with 0, which the trainee's edit of knot.conf and a reload achieve."""
from __future__ import annotations

import os

import dns.rdatatype
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "dnssec-nsec3"
SLOW = {"slow-nxdomain-unbound", "slow-nxdomain-bind"}


@pytest.fixture(scope="module")
def nsec3(backend):
    with livelab.instance(livelab.unique_name("n3"), LAB, backend) as inst:
        yield inst


def test_only_the_high_iteration_proofs_fail_on_a_fresh_lab(nsec3):
    failed = {r.id: r.message() for r in checks.run(nsec3) if not r.passed}
    assert set(failed) == SLOW, failed
    assert all("is insecure, expected secure" in m for m in failed.values())


def test_the_nsec_chain_lists_the_zone_with_the_instance_hidden_name(nsec3):
    name, names = "walk.test.", []
    while len(names) < 20:
        names.append(name)
        reply = nsec3.query(name, "NSEC", server="tld-bind", rd=False, dnssec=True)
        name = next(r for rrset in reply.answer if rrset.rdtype == dns.rdatatype.NSEC for r in rrset).next.to_text()
        if name == "walk.test.":
            break
    secret = nsec3.plan.values["walk_secret"]
    assert sorted(names) == sorted(["walk.test.", "www.walk.test.", "mail.walk.test.", f"{secret}.walk.test."])


def test_opt_out_nsec3_records_skip_the_unsigned_delegation(nsec3):
    reply = nsec3.query("nowhere.hashed.test", "A", server="hashed-nsd", rd=False, dnssec=True)
    nsec3s = [r for rrset in reply.authority if rrset.rdtype == dns.rdatatype.NSEC3 for r in rrset]
    assert nsec3s and all(r.flags & 1 for r in nsec3s)  # the opt-out flag


def test_zero_iterations_make_the_proofs_secure(nsec3):
    conf = nsec3.state.node_dir("hashed-knot") / "knot.conf"
    conf.write_text(conf.read_text().replace("nsec3-iterations: 200", "nsec3-iterations: 0"))
    nsec3.reload("hashed-knot")
    param = nsec3.query("slow.test", "NSEC3PARAM", server="hashed-knot", rd=False).answer[0][0]
    assert param.iterations == 0
    for node in ("resolver-bind", "resolver-unbound"):
        nsec3.flush(node)
    failed = [r.message() for r in checks.run(nsec3) if not r.passed]
    assert not failed, failed


def test_ldns_walk_on_the_client_lists_the_zone_too(nsec3):
    res = nsec3.exec("client", ["ldns-walk", f"@{nsec3.node('tld-bind').address}", "walk.test"], capture=True,
                     timeout=30)
    assert res.returncode == 0, res.stderr
    assert f"{nsec3.plan.values['walk_secret']}.walk.test." in res.stdout
