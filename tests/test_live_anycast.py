"""The root-anycast lab on both backends: BGP (BIRD) carries one anycast address to three sites;
each vantage point's site (its catchment, read from the answering server's NSID) follows the
routing, moves when a router's policy changes or a new site is announced, and moves to another
site when its own fails: at once when links are cut, after BFD's 0.3 s when they go silent, and
when the DNS daemon stops only with a health check (without one the site is a black hole)."""
from __future__ import annotations

import json
import os
import time

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import checks, failover
from dnslab.checks.anycast import catchments

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "root-anycast"
FRESH = {"resolver-north": "root-a", "client-north": "root-a", "resolver-south": "root-c", "client-south": "root-c"}
EXERCISE = {"north-bfd", "north-local-root"}  # what the exercise adds besides site B


@pytest.fixture(scope="module")
def anycast(backend):
    with livelab.instance(livelab.unique_name("ac"), LAB, backend) as inst:
        yield inst


@pytest.fixture(scope="module")
def guarded(backend, tmp_path_factory):
    """The lab with BFD and a health check on every site (failover's fastest setting)."""
    lab_dir = failover.variant(LAB, "bfd+health", tmp_path_factory.mktemp("bfd") / "root-anycast")
    with livelab.instance(livelab.unique_name("ag"), lab_dir, backend) as inst:
        yield inst


def settle(inst, wanted: dict[str, str], seconds: float = 15.0) -> dict[str, str | None]:
    """The catchments once they are ``wanted`` (BGP takes a moment), or as they are after ``seconds``."""
    end = time.monotonic() + seconds
    while (got := catchments(inst)) != wanted and time.monotonic() < end:
        time.sleep(0.2)
    return got


def test_fresh_lab_north_reaches_its_site_and_south_the_global_one(anycast):
    assert catchments(anycast) == FRESH
    failed = {r.id: r.message() for r in checks.run(anycast) if not r.passed}
    assert set(failed) == {"south-resolver-site", "south-client-site", *EXERCISE}, failed
    assert all("at root-c, expected root-b" in failed[i] for i in ("south-resolver-site", "south-client-site"))


def test_every_ipv6_address_is_usable_at_once_anycast_loopbacks_too(anycast):
    """No address waits for duplicate detection: a tentative one (the kernel's work queue may get to
    it after a daemon binds, on a loaded host) made NSD exit with EADDRNOTAVAIL."""
    for node in ("root-a", "root-c", "r-north"):
        shown = anycast.exec(node, ["ip", "-6", "-o", "addr", "show", "scope", "global"], capture=True).stdout
        assert shown.strip() and all(" nodad" in line for line in shown.splitlines()), (node, shown)
    assert "2001:db8:53::1/128" in anycast.exec("root-a", ["ip", "-6", "-o", "addr", "show", "dev", "lo"],
                                                capture=True).stdout


def test_every_router_originates_or_learns_the_anycast_prefix_and_nothing_leaks(anycast):
    """Site routers announce only their own prefixes (no transit): north reaches south's network
    over the core, not through site C."""
    birdc = ["birdc", "-s", f"{anycast.backend.node_path(anycast.state, 'r-north')}/bird.ctl"]
    routes = anycast.exec("r-north", [*birdc, "show", "route", "for", "198.18.20.1"], capture=True).stdout
    assert "[AS64520i]" in routes and "AS64503" not in routes, routes
    assert "unicast" in anycast.exec("r-north", [*birdc, "show", "route", "for", "2001:db8:53::1"], capture=True).stdout


def test_local_preference_moves_north_to_the_global_site_and_back(anycast):
    prefer_c = (r"(protocol bgp bgp_rtr_c_\d from lab \{\n  neighbor \S+ as 64503;\n  ipv\d \{\n    import filter \{ )",
                r"\1bgp_local_pref = 200; ")
    livelab.edit_conf(anycast, "r-north", "bird.conf", prefer_c)
    assert settle(anycast, {**FRESH, "resolver-north": "root-c", "client-north": "root-c"})["client-north"] == "root-c"
    livelab.edit_conf(anycast, "r-north", "bird.conf", (r"bgp_local_pref = 200; ", ""))
    assert settle(anycast, FRESH) == FRESH


def test_announcing_the_new_site_moves_south_to_it(anycast):
    birdc = ["birdc", "-s", f"{anycast.backend.node_path(anycast.state, 'rtr-b')}/bird.ctl"]
    for proto in ("announce0", "announce1"):
        assert anycast.exec("rtr-b", [*birdc, "enable", proto], capture=True).returncode == 0
    wanted = {**FRESH, "resolver-south": "root-b", "client-south": "root-b"}
    try:
        assert settle(anycast, wanted) == wanted
        failed = {r.id for r in checks.run(anycast) if not r.passed}
        assert failed == EXERCISE, failed
    finally:
        for proto in ("announce0", "announce1"):
            anycast.exec("rtr-b", [*birdc, "disable", proto], capture=True)
    assert settle(anycast, FRESH) == FRESH


def test_without_a_health_check_a_dead_daemon_is_a_black_hole(anycast):
    out = failover.measure(anycast, "root-a", "daemon", budget=2.0, vantages=["client-north", "client-south"])
    assert out.seconds is None and out.moved["client-north"] is None, out
    # a question counts as lost when its answer takes longer than the 10 ms between questions:
    # under load the south loses a few, the north loses them all
    assert out.lost["client-north"] > 50 and out.lost["client-south"] < out.lost["client-north"] / 4, out
    assert catchments(anycast) == FRESH  # repaired: the daemon answers again


def test_a_cut_link_moves_north_to_another_site(anycast):
    out = failover.measure(anycast, "root-a", "cut", budget=10.0)
    assert out.seconds is not None and out.moved["client-north"][0] == "root-c", out


@pytest.mark.parametrize("how", list(failover.HOW))
def test_with_bfd_and_a_health_check_every_failure_moves_north(guarded, how):
    out = failover.measure(guarded, "root-a", how, budget=10.0)
    assert out.seconds is not None, out
    assert {v: m[0] for v, m in out.moved.items()} == {**FRESH, "resolver-north": "root-c", "client-north": "root-c"}


def test_a_local_root_resolves_on_with_every_root_site_down(anycast):
    """resolver-south keeps a local root (BIND mirror zone); resolver-north gets one (Unbound
    auth-zone, ZONEMD checked) from the operator's edit of its config; then every root site stops:
    both resolve a name never asked, from their own copy."""
    d = anycast.backend.node_path(anycast.state, "resolver-north")
    auth = ('auth-zone:\n  name: "."\n  primary: 198.51.100.1\n  fallback-enabled: yes\n  for-downstream: no\n'
            f'  for-upstream: yes\n  zonemd-check: yes\n  zonefile: "{d}/root.zone"\nremote-control:\n')
    livelab.edit_conf(anycast, "resolver-north", "unbound.conf", (r"(?m)^remote-control:\n", auth))
    control = ["unbound-control", "-c", f"{d}/unbound.conf"]
    end = time.monotonic() + 15
    while ".\tserial" not in (zones := anycast.exec("resolver-north", [*control, "list_auth_zones"],
                                                      capture=True).stdout) and time.monotonic() < end:
        time.sleep(0.2)
    assert zones.startswith(".\tserial"), zones
    sites = ["root-b", "root-a", "root-c"]  # the primary first when they start again
    for s in sites:
        failover.fail(anycast, failover.site(anycast, s), "daemon")
    try:
        for resolver, client in (("resolver-north", "client-north"), ("resolver-south", "client-south")):
            anycast.flush(resolver)
            reply = anycast.query("www.test", "A", server=resolver, source=client, timeout=3)
            assert [r.to_text() for rrset in reply.answer for r in rrset] == ["192.0.2.80"], (resolver, reply)
    finally:
        for s in sites:
            anycast.start(s)


def test_the_cli_shows_and_draws_the_catchments(anycast, tmp_path):
    res = livelab.cli("catchment", anycast.name, "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == FRESH, livelab.explain(res)
    out = tmp_path / "catchment.dot"
    res = livelab.cli("graph", anycast.name, "--catchment", "-o", str(out))
    assert res.returncode == 0, livelab.explain(res)
    text = out.read_text()
    assert '"client-south" -- "root-c"' in text and '"client-north" -- "root-a"' in text and 'label="BGP"' in text
    res = livelab.cli("failover", anycast.name, "root-a", "--how", "cut", "--json")
    assert res.returncode == 0, livelab.explain(res)
    data = json.loads(res.stdout)
    assert data["seconds"] is not None and data["moved"]["client-north"] == "root-c", data
    res = livelab.cli("failover", anycast.name, "nosuch")
    assert res.returncode == 2 and "nosuch" in res.stderr, livelab.explain(res)


def test_static_routes_through_a_router_without_bgp(backend):
    """A BIRD node without BGP forwards between two networks; the resolver reaches the root by
    its static routes, the client (no route) cannot reach it itself."""
    with livelab.instance(livelab.unique_name("rt"), livelab.REPO / "tests" / "labs" / "routed", backend) as inst:
        for family in ("A", "AAAA"):
            root = next(a for a in inst.node("root").addresses if (":" in a) == (family == "AAAA"))
            ok = inst.query(".", "SOA", server=root, source="resolver", rd=False)
            assert ok.answer, ok
            with pytest.raises(OSError, match="unreachable"):  # no route of its own
                inst.query(".", "SOA", server=root, source="client", rd=False, timeout=0.5)
        reply = inst.query("www.test", "A", server="resolver", source="client")
        assert [r.to_text() for rrset in reply.answer for r in rrset] == ["192.0.2.80"]
