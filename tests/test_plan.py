"""The lab file schema and what the plan derives from it, without root and without a running lab:
addresses, name server names, apex NS, delegations, glue, root hints, the kinds' rendered
configs, the JSON schema and trainee rosters."""
from __future__ import annotations

import dataclasses
import ipaddress
import json

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from conftest import REPO, explain
from dnslab import failover, faults, kinds, plan, roster
from dnslab.errors import InputProblems

DNS_BASICS = REPO / "labs" / "dns-basics"


def load(write_lab, text: str, files=None) -> plan.LabPlan:
    return plan.load(write_lab(text, files))


def problems(write_lab, text: str, files=None) -> str:
    with pytest.raises(InputProblems) as exc:
        load(write_lab, text, files)
    return str(exc.value)


def records(zp, owner: str, rtype: str) -> set[str]:
    """The data of ``owner``/``rtype`` in a planned zone (parsed from its text), as text."""
    z = dns.zone.from_text(zp.text, origin=zp.name, relativize=False)
    rds = z.get_rdataset(dns.name.from_text(owner), dns.rdatatype.from_text(rtype))
    return {rd.to_text().lower() for rd in rds} if rds else set()


def owners(zp) -> set[str]:
    z = dns.zone.from_text(zp.text, origin=zp.name, relativize=False)
    return {n.to_text().lower() for n in z.nodes}


# A lab touching every derivation: two roots (one with an explicit name below test.), a TLD,
# a second-level zone with an in-bailiwick and an out-of-zone server, two resolvers, a client.
DERIV = """
    name: deriv
    nodes:
      root:
        kind: nsd
        zones: [.]
      root2:
        kind: knot
        zones: [.]
        hostname: b.root-servers.test
      tld:
        kind: bind9
        zones: [test]
        hostname: ns1.nic.test.
      sld:
        kind: knot
        zones: [example.test]
      far:
        kind: nsd
        zones: [example.test]
        hostname: ns.other.test
      res:
        kind: unbound
      res2:
        kind: bind9
        role: resolver
      client:
        kind: client
    zones:
      .: {}
      test: {}
      example.test:
        records:
          - "www IN A 192.0.2.80"
"""


@pytest.fixture
def deriv(write_lab) -> plan.LabPlan:
    return load(write_lab, DERIV)


# ------------------------------------------------------------------------------------ addresses

def test_addresses_auto_assigned_in_node_order(deriv):
    assert [n.addresses for n in deriv.nodes.values()] == [
        [f"198.51.100.{i}", f"2001:db8:5100::{i:x}"] for i in range(1, 9)]
    iface = deriv.nodes["tld"].interfaces[0]
    assert (iface.network, iface.ifname) == ("lan", "eth0")
    assert iface.ipv4 == ipaddress.ip_interface("198.51.100.3/24")
    assert iface.ipv6 == ipaddress.ip_interface("2001:db8:5100::3/64")
    assert deriv.nodes["tld"].address == "198.51.100.3"


def test_explicit_addresses_respected_and_skipped_by_auto(write_lab):
    p = load(write_lab, """
        name: explicit
        networks:
          lan:
            ipv4: 192.0.2.0/24
            ipv6: 2001:db8:77::/64
        nodes:
          a:
            kind: nsd
            zones: [.]
          b:
            kind: knot
            zones: [.]
            interfaces:
              lan: {ipv4: 192.0.2.1, ipv6: "2001:db8:77::1"}
          c:
            kind: unbound
            interfaces:
              lan: {ipv4: 192.0.2.200}
          d:
            kind: client
        zones:
          .: {}
    """)
    assert p.nodes["b"].addresses == ["192.0.2.1", "2001:db8:77::1"]
    assert p.nodes["a"].addresses == ["192.0.2.2", "2001:db8:77::2"]
    assert p.nodes["c"].addresses == ["192.0.2.200", "2001:db8:77::3"]   # explicit IPv4, auto IPv6
    assert p.nodes["d"].addresses == ["192.0.2.3", "2001:db8:77::4"]


def test_two_networks_and_single_family_prefixes(write_lab):
    p = load(write_lab, """
        name: twonets
        networks:
          core:
            ipv4: 203.0.113.0/24
            ipv6: null
          edge:
            ipv4: null
            ipv6: 2001:db8:e::/64
        nodes:
          root:
            kind: nsd
            zones: [.]
            interfaces: {core: {}, edge: {}}
          res:
            kind: unbound
            interfaces: {edge: {ipv6: "2001:db8:e::53"}}
        zones:
          .: {}
    """)
    root = p.nodes["root"]
    assert [(i.network, i.ifname) for i in root.interfaces] == [("core", "eth0"), ("edge", "eth1")]
    assert root.addresses == ["203.0.113.1", "2001:db8:e::1"]
    assert p.nodes["res"].addresses == ["2001:db8:e::53"]
    assert p.nodes["res"].address == "2001:db8:e::53"
    assert p.root_hints == (("root.", ("203.0.113.1", "2001:db8:e::1")),)


@pytest.mark.parametrize("prefixes, hosts", [
    ("ipv4: 192.0.2.0/29\n    ipv6: null", [f"192.0.2.{i}" for i in range(1, 6)]),
    ("ipv4: null\n    ipv6: 2001:db8::/125", [f"2001:db8::{i}" for i in range(1, 6)]),
], ids=["ipv4", "ipv6"])
def test_last_host_address_never_auto_assigned(write_lab, prefixes, hosts):
    """A /29 (or /125) has 6 host addresses; the 6th is kept free, so 5 nodes fit and a 6th does not."""
    def lab(n: int) -> str:
        nodes = "".join(f"  n{i}:\n    kind: client\n    resolver: res\n" for i in range(n - 1))
        return (f"name: small\nnetworks:\n  lan:\n    {prefixes}\nnodes:\n  root:\n    kind: nsd\n"
                f"    zones: [.]\n  res:\n    kind: unbound\n{nodes}zones:\n  .: {{}}\n")
    p = plan.load(write_lab(lab(4)))  # root, res and 3 clients: 5 nodes
    assert sorted((a for n in p.nodes.values() for a in n.addresses), key=ipaddress.ip_address) == hosts
    msg = problems(write_lab, lab(5))
    assert "no free IPv" in msg and "address left" in msg and "lab.yaml:3:3" in msg


def test_last_host_address_may_be_given_explicitly(write_lab):
    p = load(write_lab, """
        name: small
        networks:
          lan: {ipv4: 192.0.2.0/29, ipv6: null}
        nodes:
          root:
            kind: nsd
            zones: [.]
            interfaces: {lan: {ipv4: 192.0.2.6}}
        zones:
          .: {}
    """)
    assert p.nodes["root"].addresses == ["192.0.2.6"]


# ------------------------------------------------------------------------------ names, NS, glue

def test_hostnames_default_to_node_dot_first_zone(deriv):
    hosts = {n.name: n.hostname for n in deriv.nodes.values()}
    assert hosts == {"root": "root.", "root2": "b.root-servers.test.", "tld": "ns1.nic.test.",
                     "sld": "sld.example.test.", "far": "ns.other.test.",
                     "res": None, "res2": None, "client": None}
    assert deriv.nodes["tld"].zones == ("test.",)


def test_hostname_uses_the_first_of_several_zones(write_lab):
    p = load(write_lab, """
        name: multi
        nodes:
          root:
            kind: nsd
            zones: [.]
          tld:
            kind: bind9
            zones: [Test., example.test]
        zones:
          .: {}
          test: {}
          EXAMPLE.test.: {}
    """)
    assert p.nodes["tld"].hostname == "tld.test."
    assert p.nodes["tld"].zones == ("test.", "example.test.")
    assert set(p.zones) == {".", "test.", "example.test."}
    assert p.zones["example.test."].parent == "test."


def test_zone_plans_servers_and_parents(deriv):
    z = deriv.zones
    assert (z["."].servers, z["."].nameservers, z["."].parent) == (
        ("root", "root2"), ("root.", "b.root-servers.test."), None)
    assert (z["test."].servers, z["test."].parent) == (("tld",), ".")
    assert (z["example.test."].servers, z["example.test."].nameservers, z["example.test."].parent) == (
        ("sld", "far"), ("sld.example.test.", "ns.other.test."), "test.")
    assert [zp.filename for zp in z.values()] == ["root.zone", "test.zone", "example.test.zone"]
    assert [n.name for n in deriv.servers_of("example.test.")] == ["sld", "far"]
    assert [n.name for n in deriv.by_role("resolver")] == ["res", "res2"]


def test_derived_soa_and_apex_ns(deriv):
    assert records(deriv.zones["."], ".", "NS") == {"root.", "b.root-servers.test."}
    assert records(deriv.zones["test."], "test.", "NS") == {"ns1.nic.test."}
    assert records(deriv.zones["example.test."], "example.test.", "NS") == {"sld.example.test.", "ns.other.test."}
    (soa,) = records(deriv.zones["test."], "test.", "SOA")
    assert soa.split()[:3] == ["ns1.nic.test.", "hostmaster.nic.test.", "1"]  # a TLD takes no mail: its NS domain


def test_derived_delegations(deriv):
    assert records(deriv.zones["."], "test.", "NS") == {"ns1.nic.test."}
    assert records(deriv.zones["test."], "example.test.", "NS") == {"sld.example.test.", "ns.other.test."}
    # a grandchild is delegated by its parent only
    assert records(deriv.zones["."], "example.test.", "NS") == set()


def test_glue_in_bailiwick_present(deriv):
    root, test = deriv.zones["."], deriv.zones["test."]
    assert records(root, "ns1.nic.test.", "A") == {"198.51.100.3"}          # the TLD's server, below the cut
    assert records(root, "ns1.nic.test.", "AAAA") == {"2001:db8:5100::3"}
    assert records(root, "b.root-servers.test.", "A") == {"198.51.100.2"}   # the root's own server below a cut
    assert records(root, "root.", "AAAA") == {"2001:db8:5100::1"}
    assert records(test, "sld.example.test.", "A") == {"198.51.100.4"}      # glue for example.test
    assert records(test, "ns1.nic.test.", "A") == {"198.51.100.3"}          # the zone's own server
    assert records(deriv.zones["example.test."], "sld.example.test.", "AAAA") == {"2001:db8:5100::4"}


def test_out_of_zone_names_not_added(deriv):
    assert records(deriv.zones["test."], "ns.other.test.", "A") == {"198.51.100.5"}  # its own zone holds it
    assert "ns.other.test." not in owners(deriv.zones["example.test."])
    assert "ns.other.test." not in owners(deriv.zones["."])
    assert "root." not in owners(deriv.zones["test."])
    # below a cut and not a server of the child: not the parent's business
    assert "sld.example.test." not in owners(deriv.zones["."])


def test_author_records_kept_after_the_derived_ones_unmarked(deriv):
    assert records(deriv.zones["example.test."], "www.example.test.", "A") == {"192.0.2.80"}
    text = deriv.zones["example.test."].text
    assert text.index(" IN NS ") < text.index("www IN A")
    assert ";" not in text  # nothing tells derived, authored and fault records apart


def test_root_hints(deriv):
    assert deriv.root_hints == (("root.", ("198.51.100.1", "2001:db8:5100::1")),
                                ("b.root-servers.test.", ("198.51.100.2", "2001:db8:5100::2")))


OVERRIDE = """
    name: override
    nodes:
      root:
        kind: nsd
        zones: [.]
      tld:
        kind: bind9
        zones: [test]
        hostname: ns1.nic.test
      sld:
        kind: knot
        zones: [example.test]
    zones:
      .: {}
      test:
        records:
          - "@ IN NS ns1.nic.test."
          - "@ IN NS backup.example.org."
          - "example IN NS ns.other.org."
      example.test: {}
"""


def test_author_ns_merge_with_the_derived(write_lab):
    test = load(write_lab, OVERRIDE).zones["test."]
    assert records(test, "test.", "NS") == {"ns1.nic.test.", "backup.example.org."}
    assert records(test, "example.test.", "NS") == {"sld.example.test.", "ns.other.org."}


def test_author_address_of_a_name_server_refused_unless_it_is_the_nodes(write_lab):
    same = OVERRIDE.replace('- "example IN NS ns.other.org."', '- "ns1.nic IN A 198.51.100.2"')
    assert records(load(write_lab, same).zones["test."], "ns1.nic.test.", "A") == {"198.51.100.2"}
    wrong = OVERRIDE.replace('- "example IN NS ns.other.org."', '- "ns1.nic IN A 192.0.2.53"')
    msg = problems(write_lab, wrong)
    assert "lab.yaml:19:" in msg and "ns1.nic.test. A 192.0.2.53 differs from the address of node tld " \
                                     "(198.51.100.2)" in msg and "use a fault" in msg, msg


def test_author_soa_overrides_derived(write_lab):
    p = load(write_lab, """
        name: soa
        nodes:
          root:
            kind: nsd
            zones: [.]
        zones:
          .:
            serial: 7
            records: [". IN SOA root. admin.root. 42 1800 900 604800 300"]
    """)
    assert records(p.zones["."], ".", "SOA") == {"root. admin.root. 42 1800 900 604800 300"}
    assert p.zones["."].text.count(" IN SOA ") == 1


def test_zone_file_and_records_combined(write_lab):
    p = load(write_lab, """
        name: files
        nodes:
          root:
            kind: nsd
            zones: [.]
          tld:
            kind: bind9
            zones: [test]
        zones:
          .: {}
          test:
            file: zones/test.db
            ttl: 300
            serial: 2024010101
            records: ["extra IN TXT \\"from yaml\\""]
    """, files={"zones/test.db": "www IN A 192.0.2.8\n"})
    test = p.zones["test."]
    assert records(test, "www.test.", "A") == {"192.0.2.8"}
    assert records(test, "extra.test.", "TXT") == {'"from yaml"'}
    assert "$TTL 300" in test.text
    assert records(test, "test.", "SOA").pop().split()[2] == "2024010101"


def test_roles_defaults(deriv):
    assert {n.name: n.role for n in deriv.nodes.values()} == {
        "root": "authoritative", "root2": "authoritative", "tld": "authoritative", "sld": "authoritative",
        "far": "authoritative", "res": "resolver", "res2": "resolver", "client": "client"}
    assert deriv.nodes["client"].resolver == "res"  # the first resolver, when not named


# ----------------------------------------------------------------------------- rendered configs

@pytest.fixture(scope="module")
def basics() -> plan.LabPlan:
    return plan.load(DNS_BASICS)


CONFIG = {"bind9": "named.conf", "knot": "knot.conf", "nsd": "nsd.conf", "unbound": "unbound.conf"}


@pytest.mark.parametrize("node", ["a-root", "b-root", "tld", "tld2", "sld-knot", "sld-nsd"])
def test_authoritative_config_mentions_addresses_and_zone_files(basics, node):
    n = basics.nodes[node]
    spec = kinds.KINDS[n.kind].spec(n, basics, "/x")
    conf = spec.files[CONFIG[n.kind]]
    for a in n.addresses:
        assert a in conf, f"{n.kind} config of {node} misses {a}:\n{conf}"
    for z in n.zones:
        zp = basics.zones[z]
        assert f'"{zp.name}"' in conf
        assert f"/x/zones/{zp.filename}" in conf or ("zonesdir: \"/x/zones\"" in conf and zp.filename in conf)
        if node in zp.secondaries:  # a secondary transfers its copy: no file of ours
            assert f"zones/{zp.filename}" not in spec.files
        else:
            assert spec.files[f"zones/{zp.filename}"] == zp.text
    assert f"/x/{CONFIG[n.kind]}" in spec.argv
    probes = kinds.KINDS[n.kind].probes(n)
    assert [(p.address, p.qname, p.authoritative) for p in probes] == [(n.address, z, True) for z in n.zones]
    assert "root.hints" not in spec.files and spec.resolv_conf is None


def test_the_soa_names_the_primary(basics):
    for zone, host in (("lab.test.", "ns1.lab.test."), ("example.test.", "ns1.example.test."), ("test.", "ns1.nic.test.")):
        (soa,) = records(basics.zones[zone], zone, "SOA")
        assert soa.split()[0] == host, (zone, soa)


def test_bind9_authoritative_is_not_recursive(basics):
    conf = kinds.KINDS["bind9"].spec(basics.nodes["tld"], basics, "/x").files["named.conf"]
    assert "recursion no;" in conf and 'zone "test." {\n    file "/x/zones/test.zone";\n    type primary;' in conf
    assert "listen-on { 198.51.100.3; };" in conf and "listen-on-v6 { 2001:db8:5100::3; };" in conf


@pytest.mark.parametrize("node", ["resolver-bind", "resolver-unbound"])
def test_resolver_config_and_root_hints(basics, node):
    n = basics.nodes[node]
    spec = kinds.KINDS[n.kind].spec(n, basics, "/x")
    conf = spec.files[CONFIG[n.kind]]
    for a in n.addresses:
        assert a in conf
    assert "/x/root.hints" in conf
    hints = spec.files["root.hints"]
    for host, addrs in basics.root_hints:
        assert f". 3600000 IN NS {host}\n" in hints
        for a in addrs:
            assert f"{host} 3600000 IN {'AAAA' if ':' in a else 'A'} {a}\n" in hints
    for prefix in ("198.51.100.0/24", "2001:db8:5100::/64"):
        assert prefix in conf   # who may ask: the lab's networks
    assert not any(f.startswith("zones/") for f in spec.files)
    (probe,) = kinds.KINDS[n.kind].probes(n)
    assert probe.authoritative is False


def test_kresd_config_trusts_the_lab_root_only_and_runs_twice(basics):
    n = dataclasses.replace(basics.nodes["resolver-unbound"], kind="kresd")
    spec = kinds.KINDS["kresd"].spec(n, basics, "/x")
    conf = spec.files["kresd.conf"]
    for a in n.addresses:
        assert f"net.listen('{a}', 53" in conf
    assert "hints.root_file('/x/root.hints')" in conf and "policy.todnames({ 'test.' })" in conf
    assert "view:addr('198.51.100.0/24', policy.all(policy.PASS))" in conf
    assert "trust_anchors.remove('.')" in conf and "NO_0X20 = false" in conf  # the real root's key gone, 0x20 on
    weak = kinds.KINDS["kresd"].spec(dataclasses.replace(n, options=("kres.context().options.NO_0X20 = true",)),
                                     basics, "/x").files["kresd.conf"]
    assert weak.index("NO_0X20 = false") < weak.index("NO_0X20 = true")  # a fault's lines come last
    assert "if not dnslab_started then" in conf  # sockets opened once: `kresctl reload` runs it again
    assert spec.control == ("sh", "/x/kresctl") and spec.reload == (("sh", "/x/kresctl", "reload"),)
    assert "socat" in spec.files["kresctl"] and "dofile, '/x/kresd.conf'" in spec.files["kresctl"]
    anchor = basics.trust_anchor
    if anchor is not None:
        assert f"trust_anchors.add('. DS {anchor.ds().to_text()}')" in conf
        off = kinds.KINDS["kresd"].spec(dataclasses.replace(n, validate=False), basics, "/x").files["kresd.conf"]
        assert f"\n-- trust_anchors.add('. DS {anchor.ds().to_text()}')" in off


@pytest.mark.parametrize("text,ports", [("24000", (24000, 24000)), ("24000-24009", (24000, 24009)),
                                        ("24000+1", (24000, 24001)), (" 65535 ", (65535, 65535))])
def test_fault_port_ranges(text, ports):
    assert faults.port_range(text) == ports


@pytest.mark.parametrize("text", ["80", "24000-23999", "65535+1", "24000,24001", "", "70000"])
def test_fault_port_ranges_refused(text):
    with pytest.raises(ValueError, match="P, P-Q, or P\\+N"):
        faults.port_range(text)


def test_unbound_answers_special_use_names_from_the_lab(basics):
    conf = kinds.KINDS["unbound"].spec(basics.nodes["resolver-unbound"], basics, "/x").files["unbound.conf"]
    assert 'local-zone: "test." nodefault' in conf
    assert 'local-zone: "example.test." nodefault' in conf
    assert 'local-zone: "." nodefault' not in conf


def test_bind9_resolver_config(basics):
    conf = kinds.KINDS["bind9"].spec(basics.nodes["resolver-bind"], basics, "/x").files["named.conf"]
    assert "recursion yes;" in conf
    assert 'zone "." { type hint; file "/x/root.hints"; };' in conf
    assert "type primary" not in conf


def test_client_resolv_conf_points_at_its_resolver(basics):
    n = basics.nodes["client"]
    spec = kinds.KINDS["client"].spec(n, basics, "/x")
    assert n.resolver == "resolver-unbound"
    assert spec.resolv_conf == "nameserver 198.51.100.8\nnameserver 2001:db8:5100::8\n"
    assert spec.argv is None and kinds.KINDS["client"].probes(n) == [] and spec.files == {}


def test_every_kind_declares_its_debian_packages():
    assert set(kinds.KINDS) == {"attacker", "bind9", "bird", "client", "knot", "kresd", "nsd", "registry", "unbound"}
    assert kinds.KINDS["bind9"].binaries == {"named": "bind9", "rndc": "bind9"}
    assert kinds.KINDS["knot"].binaries == {"knotd": "knot", "knotc": "knot"}
    signed, basics = plan.load(REPO / "labs" / "dnssec-signing"), plan.load(DNS_BASICS)
    nsd = kinds.KINDS["nsd"]  # a zone NSD serves signed is signed by BIND's dnssec-signzone, on the node
    assert nsd.needs(signed.nodes["sld-nsd"], signed)["dnssec-signzone"] == "bind9-utils"
    assert "dnssec-signzone" not in nsd.needs(signed.nodes["root-nsd"], signed)  # a secondary: no signing
    assert "dnssec-signzone" not in nsd.needs(basics.nodes["tld2"], basics)
    for k in kinds.KINDS.values():
        assert k.roles and k.binaries


@pytest.mark.parametrize("kind", ["bind9", "knot", "nsd", "unbound"])
def test_every_daemon_has_its_control_tool_on_a_local_channel(basics, kind):
    """Reload and stop go through the daemon's own control tool (rndc, knotc, nsd-control,
    unbound-control), on a channel inside the node: a Unix socket in the node dir, or rndc on
    127.0.0.1 with a key of the node's own, made per instance (never on a command line)."""
    node = next(n for n in basics.nodes.values() if n.kind == kind)
    one, two = (kinds.KINDS[kind].spec(node, basics, "/n") for _ in range(2))
    tool = next(b for b in kinds.KINDS[kind].binaries if b.endswith(("c", "control")))
    assert one.reload and all(cmd[0] == tool for cmd in one.reload) and one.stop[0] == tool
    assert one.reload[-1][-1] == "reload" and one.stop[-1] == "stop"
    assert f"alias {tool}=" in one.files["shell.rc"]
    conf = "\n".join(one.files.values())
    if kind == "bind9":
        assert "inet 127.0.0.1 port 953" in conf and "rndc-key" in one.files["rndc.conf"]
        assert one.files["rndc.conf"] != two.files["rndc.conf"]  # a new secret each time
        assert not any("secret" in a for cmd in one.reload for a in cmd)
    else:
        assert any(f'"/n/{sock}"' in conf for sock in ("knot.sock", "nsd.ctl", "unbound.ctl")), conf


# ------------------------------------------------------------------------------------ schema

def test_schema_is_json_with_node_fields(dnslab):
    res = dnslab("schema")
    assert res.returncode == 0, explain(res)
    schema = json.loads(res.stdout)
    node = schema["$defs"]["Node"]
    assert set(node["properties"]) == {"kind", "role", "zones", "hostname", "resolver", "interfaces", "loss", "rrl", "clients", "policy",
                                       "anycast", "gateway", "bgp", "local_root",
                                       "routes"}
    assert node["required"] == ["kind"] and node["additionalProperties"] is False
    assert schema["additionalProperties"] is False
    assert {"name", "nodes", "networks", "zones"} <= set(schema["properties"])
    assert set(schema["$defs"]["Zone"]["properties"]) == {"file", "records", "ttl", "serial", "primary", "tsig",
                                                          "dnssec", "registry", "delegated", "transfers"}
    assert set(schema["$defs"]["Dnssec"]["properties"]) == {"algorithm", "nsec3", "timers", "ds", "signal", "zonemd"}
    assert set(schema["$defs"]["Registry"]["properties"]) == {"node", "interval", "stable", "bootstrap"}
    assert set(schema["$defs"]["Nsec3"]["properties"]) == {"iterations", "salt_length", "opt_out"}
    assert all(p.get("description") for k, p in node["properties"].items())


def test_checks_schema_is_json(dnslab):
    res = dnslab("schema", "checks")
    assert res.returncode == 0, explain(res)
    schema = json.loads(res.stdout)
    assert "checks" in schema["properties"]
    assert {"Resolves", "Authoritative", "Delegation"} <= set(schema["$defs"])


# ------------------------------------------------------------------------------------ rosters

@pytest.mark.parametrize("trainee, name", [
    ("María López", "mar-a-l-pez"),
    ("  Bob   SMITH ", "bob-smith"),
    ("o'neil, jr.", "o-neil-jr"),
    ("x" * 40, "x" * 32),
    ("a" * 31 + " b", "a" * 31),   # cut at 32, no trailing dash
    ("trainee-07", "trainee-07"),
])
def test_instance_names_sanitized(trainee, name):
    assert roster.instance_name(trainee) == name


def test_roster_rows_kept_by_instance_name(tmp_path):
    f = tmp_path / "roster.csv"
    f.write_text("\ufefftrainee,email,group\nMaría López,maria@example.test,A\nBob Smith,bob@example.test,B\n")
    assert roster.load(f) == {
        "mar-a-l-pez": {"trainee": "María López", "email": "maria@example.test", "group": "A"},
        "bob-smith": {"trainee": "Bob Smith", "email": "bob@example.test", "group": "B"}}


def test_roster_duplicate_after_sanitizing_names_the_line(tmp_path):
    f = tmp_path / "roster.csv"
    f.write_text("trainee,email\nBob Smith,a\nAna,b\n\nbob  smith!,c\n")   # a blank line before it
    with pytest.raises(InputProblems) as exc:
        roster.load(f)
    (p,) = exc.value.problems
    assert p.where == f"{f}:5"
    assert "'bob  smith!'" in p.message and "'bob-smith'" in p.message and "'Bob Smith'" in p.message


def test_roster_without_trainee_column(tmp_path):
    f = tmp_path / "roster.csv"
    f.write_text("name,email\nBob,b\n")
    with pytest.raises(InputProblems) as exc:
        roster.load(f)
    assert str(exc.value) == f"{f}:1: a roster needs a 'trainee' column"


def test_roster_empty_name_and_empty_roster(tmp_path):
    f = tmp_path / "roster.csv"
    f.write_text("trainee,email\nBob,b\n ,c\n")
    with pytest.raises(InputProblems) as exc:
        roster.load(f)
    assert str(exc.value) == f"{f}:3: empty trainee name"
    f.write_text("\ufefftrainee\n")
    with pytest.raises(InputProblems) as exc:
        roster.load(f)
    assert str(exc.value) == f"{f}: the roster lists no trainee"


# ------------------------------------------------------------------------------ per-instance values

VARIED = """
    name: varied
    nodes:
      root: {kind: nsd, zones: [.]}
      tld: {kind: bind9, zones: [test]}
    zones:
      .: {}
      test:
        records: ["www IN A {{ www }}", "secret IN TXT \\"{{ word }}-{{ n }}\\""]
    vary:
      www: {address: 203.0.113.0/24}
      word: {word: 6}
      n: {number: [10, 99]}
    """


def test_values_are_drawn_per_seed_and_fill_the_zones(write_lab):
    d = write_lab(VARIED)
    a, b, a2 = plan.load(d, seed=1), plan.load(d, seed=2), plan.load(d, seed=1)
    assert a.values == a2.values and a.values != b.values
    assert set(a.values) == {"www", "word", "n"} and ipaddress.ip_address(a.values["www"]) in \
        ipaddress.ip_network("203.0.113.0/24") and len(a.values["word"]) == 6 and 10 <= int(a.values["n"]) <= 99
    assert records(a.zones["test."], "www.test.", "A") == {a.values["www"]}
    assert records(b.zones["test."], "secret.test.", "TXT") == {f'"{b.values["word"]}-{b.values["n"]}"'}
    assert plan.load(d).values == plan.load(d, seed=0).values  # validate and graph see one concrete lab


def test_unknown_and_misplaced_values_are_refused(write_lab):
    msg = problems(write_lab, VARIED.replace("{{ www }}", "{{ wwww }}"))
    assert "lab.yaml:8:15: unknown value {{ wwww }} (did you mean 'www'?) (vary: n, word, www)" in msg
    msg = problems(write_lab, VARIED.replace("n: {number: [10, 99]}",
                                             "n: {number: [10, 99]}\n      lan: {address: 198.51.100.0/28}"))
    assert "vary.lan.address: 198.51.100.0/28 overlaps network lan" in msg
    msg = problems(write_lab, VARIED.replace("n: {number: [10, 99]}", "n: {word: 5, number: [1, 2]}"))
    assert "vary.n: give exactly one of address, word, number, choice" in msg


# ------------------------------------------------------------------------------------ DNSSEC

SIGNED_LAB = REPO / "labs" / "dnssec-signing"


@pytest.fixture(scope="module")
def signed() -> plan.LabPlan:
    return plan.load(SIGNED_LAB)


def test_a_signed_child_has_its_ds_in_the_parent_and_the_root_is_the_anchor(signed):
    for zone, parent in (("test.", "."), ("example.test.", "test.")):
        ksk = next(k for k in signed.zones[zone].keys if k.role == "ksk")
        assert records(signed.zones[parent], zone, "DS") == {ksk.ds().to_text().lower()}
    assert records(signed.zones["test."], "lab.test.", "DS") == set()  # unsigned: no DS
    root_ksk = next(k for k in signed.zones["."].keys if k.role == "ksk")
    assert signed.trust_anchor == root_ksk
    assert {k.role for z in ("." , "test.", "example.test.") for k in signed.zones[z].keys} == {"ksk", "zsk"}
    assert not signed.zones["lab.test."].keys


def test_a_zone_its_daemon_signs_is_ready_once_its_dnskey_set_is_served_signed(signed):
    """BIND serves a zone it signs at load a moment before its first signatures: readiness at
    ``up`` asks for the signed DNSKEY set; a zone signed offline (NSD) is signed when loaded."""
    resigned = {z.name for z in signed.zones.values() if kinds.resigned(z, signed)}
    assert {"test.", "."} <= resigned and "example.test." not in resigned
    tld = signed.nodes["tld-bind"]
    probes = {p.qname: p for p in kinds.KINDS["bind9"].probes(tld, resigned)}
    assert (probes["test."].qtype, probes["test."].signed) == ("DNSKEY", True)
    assert all((p.qtype, p.signed) == ("SOA", False) for z, p in probes.items() if z not in resigned)
    assert all(not p.signed for p in kinds.KINDS["bind9"].probes(tld))


def test_keys_given_are_kept_and_fresh_ones_differ(signed):
    again = plan.load(SIGNED_LAB, keys=signed.keys)
    assert again.zones["test."].text == signed.zones["test."].text  # the same DS of example.test
    other = plan.load(SIGNED_LAB)
    assert other.trust_anchor.secret != signed.trust_anchor.secret


@pytest.mark.parametrize("algorithm", ["RSASHA256", "ECDSAP256SHA256", "ECDSAP384SHA384", "ED25519"])
def test_bind_key_files_agree_with_bind_on_tag_and_ds(tmp_path, algorithm):
    """The key files written for the signers are what BIND's own tools read: dnssec-dsfromkey
    computes the same key tag and DS from them."""
    import shutil
    import subprocess
    from dnslab import dnssec
    if shutil.which("dnssec-dsfromkey") is None:
        pytest.skip("dnssec-dsfromkey (bind9-utils) is not installed")
    for key in dnssec.make("example.test.", dnssec.ALGORITHMS[algorithm]):
        for name, text in key.bind_files().items():
            (tmp_path / name).write_text(text)
        out = subprocess.run(["dnssec-dsfromkey", "-2", str(tmp_path / f"{key.basename}.key")],
                             capture_output=True, text=True, check=True).stdout.split()
        assert out[3:] == key.ds().to_text().upper().split()


def test_keys_made_ahead_are_each_given_once(tmp_path, monkeypatch):
    """Keys come from root's pool, made ahead: every key taken is gone from it (eight takers at
    once share none), an empty pool makes keys on the spot, and a refill tops it up again."""
    import threading
    from dnslab import dnssec, pool
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    made = [dnssec.make("a.test.", 8) for _ in range(2)]
    assert not list((tmp_path / "cache").glob("keys-*/*"))  # nothing there yet: made on the spot
    (tmp_path / "cache" / "keys-8" / "old.pem").write_text("a key as an earlier dnslab kept it")
    dnssec.refill({"a.test.": made[0], "b.test.": dnssec.make("b.test.", 13)})
    pooled = {p.read_bytes() for p in (tmp_path / "cache" / "keys-8").iterdir()}  # the old one removed
    assert len(pooled) == dnssec.AHEAD and len(list((tmp_path / "cache" / "keys-13").iterdir())) == dnssec.AHEAD
    taken: list[bytes | None] = []
    threads = [threading.Thread(target=lambda: taken.append(pool.take("keys-8"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    given = [data for data in taken if data is not None]
    assert sorted(given) == sorted(pooled) and taken.count(None) == 8 - dnssec.AHEAD
    keys = dnssec.make("c.test.", 8)  # the pool is empty: fresh keys, still a valid pair
    assert len({k.secret for k in keys} | {json.loads(data)[1] for data in given}) == len(given) + 2
    assert all(k.tag for k in keys)
    dnssec.refill({"c.test.": keys})
    assert len(list((tmp_path / "cache" / "keys-8").glob("*.item"))) == dnssec.AHEAD


def test_keys_kept_by_an_earlier_dnslab_still_serve():
    """An instance's state from before keys were kept as BIND fields (a PEM private key) gives the
    same key: tag, DS and key files as a key made now from the same private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from dnslab import dnssec
    private = ec.generate_private_key(ec.SECP256R1())
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    old = dnssec.Key.from_state({"zone": "a.test.", "role": "ksk", "algorithm": 13, "pem": pem, "created": 1})
    public, secret = dnssec._material(private, 13)
    assert (old.public, old.secret) == (public, secret)
    assert dnssec.Key.from_state(old.to_state()) == old and old.ds().key_tag == old.tag


def test_signers_render_their_signing_and_resolvers_their_anchor(signed):
    anchor = signed.trust_anchor.ds()
    bind = kinds.KINDS["bind9"].spec(signed.nodes["tld-bind"], signed, "/x")
    assert 'dnssec-policy "sign-test";' in bind.files["named.conf"]
    assert any(f.startswith("keys/K") and f.endswith(".private") for f in bind.files)
    knot = kinds.KINDS["knot"].spec(signed.nodes["root-knot"], signed, "/x")
    assert "dnssec-signing: on" in knot.files["knot.conf"] and "import-bind" in knot.argv[-1]
    nsd = kinds.KINDS["nsd"].spec(signed.nodes["sld-nsd"], signed, "/x")
    assert "sh sign.sh" in nsd.argv[-1] and "sh sign.sh" in nsd.reload[0][-1] and nsd.reload[-1][-1] == "reload"
    sign = nsd.files["sign.sh"]  # the node's own signing script, which the trainee reads (and a fault edits)
    assert f"-3 {signed.zones['example.test.'].salt} -H 0" in sign and "zones/example.test.zone.signed" in sign
    assert "grep" not in sign and " -e " not in sign
    assert 'zonefile: "/x/zones/example.test.zone.signed"' in nsd.files["nsd.conf"]
    secondary = kinds.KINDS["nsd"].spec(signed.nodes["root-nsd"], signed, "/x")
    assert not any(f.startswith("keys/") for f in secondary.files)  # only a signer has the keys
    unbound = kinds.KINDS["unbound"].spec(signed.nodes["resolver-unbound"], signed, "/x").files["unbound.conf"]
    assert f'trust-anchor: ". DS {anchor.to_text()}"' in unbound and '"validator iterator"' in unbound
    named = kinds.KINDS["bind9"].spec(signed.nodes["resolver-bind"], signed, "/x").files["named.conf"]
    assert "dnssec-validation yes;" in named and f'static-ds {anchor.key_tag} 13 2 "{anchor.digest.hex()}"' in named


def test_an_unsigned_lab_validates_nothing(basics):
    assert basics.trust_anchor is None
    named = kinds.KINDS["bind9"].spec(basics.nodes["resolver-bind"], basics, "/x").files["named.conf"]
    assert "dnssec-validation no;" in named and "trust-anchors" not in named
    unbound = kinds.KINDS["unbound"].spec(basics.nodes["resolver-unbound"], basics, "/x").files["unbound.conf"]
    assert 'module-config: "iterator"' in unbound


def test_a_signed_zone_on_several_servers_needs_its_signer_named(write_lab):
    text = """
    name: s
    nodes:
      a: {kind: knot, zones: [.]}
      b: {kind: nsd, zones: [.]}
    zones:
      .: {dnssec: {}}
    """
    assert "signed and served by 2 nodes: name the one that signs it as primary" in problems(write_lab, text)
    bad = problems(write_lab, text.replace("{dnssec: {}}", "{dnssec: {algorithm: RSASHA1, nsec3: {iterations: 501}}}"))
    assert "algorithm" in bad and "iterations" in bad


def test_a_registry_needs_a_registry_node_and_a_knot_primary(write_lab):
    text = """
    name: r
    nodes:
      root: {kind: knot, zones: [.]}
      tld: {kind: bind9, zones: [test]}
      reg: {kind: registry}
    zones:
      .: {}
      test: {registry: {node: reg}}
    """
    assert "make a knot node the primary" in problems(write_lab, text)
    assert "a registry runs on a node of kind registry" in problems(
        write_lab, text.replace("{node: reg}", "{node: root}").replace("kind: bind9", "kind: knot"))
    assert "no node 'regg'" in problems(write_lab, text.replace("{node: reg}", "{node: regg}"))
    ok = load(write_lab, text.replace("kind: bind9", "kind: knot"))
    config = kinds.KINDS["registry"].config(ok.nodes["reg"], ok, "/x", kinds.tsig_keys(ok))
    assert config["registries"][0]["parent"] == "test." and config["registries"][0]["key"] == "registry-test"
    conf = kinds.KINDS["knot"].spec(ok.nodes["tld"], ok, "/x").files["knot.conf"]
    assert "action: update" in conf and "update-type: [DS]" in conf and "registry-test" in conf


def test_lab_timers_keep_ttls_short(write_lab):
    text = """
    name: t
    nodes:
      root: {kind: knot, zones: [.]}
    zones:
      .: {ttl: 10, dnssec: {timers: lab}, records: ["x IN TXT hi"]}
    """
    load(write_lab, text)
    assert "its TTL must be at most 60 s" in problems(write_lab, text.replace("ttl: 10", "ttl: 3600"))
    assert "has TTL 300, above the zone's TTL 10" in problems(write_lab, text.replace("x IN TXT", "x 300 IN TXT"))


# ------------------------------------------------------------------- zones nobody delegates

HIDDEN = """
    name: hidden
    networks: {lan: {ipv4: 198.51.100.0/24}}
    nodes:
      root: {kind: nsd, zones: [.], hostname: a.root-servers.test}
      tld: {kind: knot, zones: [test], hostname: ns1.nic.test}
      bank: {kind: bind9, zones: [bank.test], hostname: ns1.bank.test, loss: 90}
      rogue: {kind: nsd, zones: [evil.test, www.bank.test], hostname: ns.evil.test}
      resolver: {kind: unbound}
    zones:
      .: {}
      test: {}
      bank.test: {records: ["www IN A 192.0.2.80"]}
      evil.test: {}
      www.bank.test: {delegated: false, records: ["* IN A 203.0.113.66"]}
"""


def test_a_zone_nobody_delegates_is_served_but_left_out_of_its_parent(write_lab):
    p = load(write_lab, HIDDEN)
    bank, hidden = p.zones["bank.test."], p.zones["www.bank.test."]
    assert records(bank, "www.bank.test.", "NS") == set() and records(bank, "www.bank.test.", "A") == {"192.0.2.80"}
    assert "ns.evil.test." not in owners(bank) and hidden.parent is None and hidden.servers == ("rogue",)
    assert records(hidden, "www.bank.test.", "NS") == {"ns.evil.test."}
    assert records(p.zones["test."], "evil.test.", "NS") == {"ns.evil.test."}  # its other zone is delegated
    # what resolution finds: bank.test's own data, never the hidden copy's
    assert p.data_of("www.bank.test", "A") == {"192.0.2.80"} and p.data_of("x.www.bank.test", "A") == set()
    assert p.nodes["bank"].block == ("udp/53~90",)  # a far server: its NXDOMAIN answers mostly lost


def test_validation_is_turned_off_by_a_fault_on_resolvers_only(write_lab):
    lab = write_lab(HIDDEN, {"faults/off.yaml": "summary: s\nseen_by: [x]\nnodes:\n  resolver: {validate: false}\n",
                             "faults/bad.yaml": "summary: s\nseen_by: [x]\nnodes:\n  bank: {validate: false}\n"})
    assert plan.load(lab, faults=["off"]).nodes["resolver"].validate is False
    assert plan.load(lab).nodes["resolver"].validate is True
    with pytest.raises(InputProblems) as exc:
        plan.load(lab, faults=["bad"])
    assert "bank is not a resolver (authoritative)" in str(exc.value)


def test_a_response_policy_where_none_can_be_is_told_once_where_it_was_written(write_lab):
    """On a kind of resolver that gets none here (kresd), or on a node that is no resolver: the
    lab file's policy is told at its line (once), a fault's as the fault's."""
    text = HIDDEN.replace("resolver: {kind: unbound}", "resolver: {kind: kresd, policy: ['bad.test CNAME .']}")
    told = problems(write_lab, text)
    assert told.count("resolver runs kresd: dnslab gives response policy zones to bind9 and unbound") == 1, told
    assert "fault on node" not in told
    lab = write_lab(HIDDEN.replace("resolver: {kind: unbound}", "resolver: {kind: kresd}"),
                    {"faults/rpz.yaml": "summary: s\nseen_by: [x]\nnodes:\n  resolver: {policy: ['bad.test CNAME .']}\n"
                                        "  bank: {policy: []}\n"})
    with pytest.raises(InputProblems) as exc:
        plan.load(lab, faults=["rpz"])
    assert "fault on node resolver: nodes.resolver.policy: resolver runs kresd" in str(exc.value)
    assert "fault on node bank: nodes.bank.policy: bank is not a resolver (authoritative)" in str(exc.value)


def test_a_faults_options_take_the_instances_values(write_lab):
    lab = write_lab(HIDDEN.replace("    name: hidden\n", "    name: hidden\n    vary: {port: {number: [20000, 20000]}}\n"),
                    {"faults/port.yaml": "summary: s\nseen_by: [x]\nnodes:\n  resolver:\n"
                                         "    options: ['outgoing-port-permit: {{ port }}']\n"})
    assert plan.load(lab, faults=["port"]).nodes["resolver"].options == ("outgoing-port-permit: 20000",)


def test_rrl_on_authoritative_servers_only_and_a_fault_turns_it_off(write_lab):
    lab = write_lab(HIDDEN.replace("hostname: ns.evil.test}", "hostname: ns.evil.test, rrl: 7}"),
                    {"faults/off.yaml": "summary: s\nseen_by: [x]\nnodes:\n  rogue: {rrl: false}\n"})
    assert plan.load(lab).nodes["rogue"].rrl == 7 and plan.load(lab).nodes["bank"].rrl is None
    assert plan.load(lab, faults=["off"]).nodes["rogue"].rrl == 0
    assert "resolver is not an authoritative server" in problems(write_lab, HIDDEN.replace(
        "resolver: {kind: unbound}", "resolver: {kind: unbound, rrl: 5}"))


@pytest.mark.parametrize("kind, says", [("bind9", "rate-limit { responses-per-second 7; slip 2; };"),
                                        ("knot", "global-module: mod-rrl/lab"), ("nsd", "rrl-ratelimit: 7")])
def test_each_kind_renders_rrl_in_its_own_syntax(write_lab, kind, says):
    p = load(write_lab, HIDDEN.replace("rogue: {kind: nsd,", f"rogue: {{kind: {kind},").replace(
        "hostname: ns.evil.test}", "hostname: ns.evil.test, rrl: 7}"))
    node = p.nodes["rogue"]
    files = kinds.KINDS[kind].spec(node, p, "/n").files
    assert any(says in text for text in files.values()), files.keys()


def test_a_resolver_answers_its_clients_only_until_a_fault_opens_it(write_lab):
    text = HIDDEN.replace("resolver: {kind: unbound}", "resolver: {kind: unbound, clients: [bank]}")
    lab = write_lab(text, {"faults/open.yaml": "summary: s\nseen_by: [x]\nnodes:\n  resolver: {open: true}\n"})

    def access(faults=()):
        p = plan.load(lab, faults=faults)
        conf = kinds.KINDS["unbound"].spec(p.nodes["resolver"], p, "/n").files["unbound.conf"]
        return [ln.split()[1] for ln in conf.splitlines() if "access-control:" in ln]
    bank = plan.load(lab).nodes["bank"].addresses
    assert access() == [f"{bank[0]}/32", f"{bank[1]}/128"]
    assert access(["open"]) == [*access(), "0.0.0.0/0", "::/0"]
    assert "bank is not a resolver" in problems(write_lab, HIDDEN.replace(
        "loss: 90}", "loss: 90, clients: [root]}"))
    assert "no node 'nobody'" in problems(write_lab, HIDDEN.replace(
        "resolver: {kind: unbound}", "resolver: {kind: unbound, clients: [nobody]}"))


def test_a_resolver_policy_is_checked_record_by_record_and_written_as_its_zone(write_lab):
    text = HIDDEN.replace("resolver: {kind: unbound}", "resolver: {kind: unbound, policy: ['bad.test CNAME .']}")
    p = load(write_lab, text)
    files = kinds.KINDS["unbound"].spec(p.nodes["resolver"], p, "/n").files
    assert files["policy.rpz"].endswith("bad.test CNAME .\n") and 'zonefile: "/n/policy.rpz"' in files["unbound.conf"]
    assert 'module-config: "respip iterator"' in files["unbound.conf"]
    out = problems(write_lab, HIDDEN.replace("resolver: {kind: unbound}",
                                             "resolver: {kind: unbound, policy: ['bad.test CNAME', 'x IN A 1.2.3']}"))
    assert "nodes.resolver.policy[0]" in out and "nodes.resolver.policy[1]" in out and "is not a policy record" in out
    assert "bank is not a resolver: a response policy" in problems(write_lab, HIDDEN.replace(
        "loss: 90}", "loss: 90, policy: []}"))


# ------------------------------------------------------------------------------------ routing

ANYCAST_LAB = REPO / "labs" / "root-anycast"


@pytest.fixture(scope="module")
def anycast() -> plan.LabPlan:
    return plan.load(ANYCAST_LAB)


def test_anycast_sites_share_one_name_server_and_its_addresses(anycast):
    assert anycast.root_hints == (("a.root-servers.test.", ("198.51.100.1", "2001:db8:53::1")),)
    assert records(anycast.zones["."], "a.root-servers.test.", "A") == {"198.51.100.1"}
    assert records(anycast.zones["."], ".", "NS") == {"a.root-servers.test."}
    for site in ("root-a", "root-b", "root-c"):
        node = anycast.nodes[site]
        assert node.anycast == ("198.51.100.1", "2001:db8:53::1") and node.listen[-2:] == list(node.anycast)
        assert node.gateway and all(a not in node.addresses for a in node.anycast)
    # the root is signed on site B and transferred by the others across routes
    assert anycast.zones["."].primary == "root-b" and set(anycast.zones["."].secondaries) == {"root-a", "root-c"}
    nsd = kinds.KINDS["nsd"].spec(anycast.nodes["root-a"], anycast, "/x").files["nsd.conf"]
    assert f"request-xfr: {anycast.nodes['root-b'].address} NOKEY" in nsd and "provide-xfr: 0.0.0.0/0 NOKEY" in nsd
    assert 'identity: "root-a"' in nsd and 'nsid: "ascii_root-a"' in nsd


def test_bird_renders_sessions_policy_and_announcements(anycast, tmp_path):
    north = kinds.KINDS["bird"].spec(anycast.nodes["r-north"], anycast, "/x").files["bird.conf"]
    assert "router id 198.18.10.1;" in north and "local as 64510;" in north and "hold time 240;" in north
    assert "neighbor 198.18.0.2 as 64520;" in north and "bgp_local_pref = 50;" in north
    site_c = kinds.KINDS["bird"].spec(anycast.nodes["rtr-c"], anycast, "/x").files["bird.conf"]
    assert site_c.count("bgp_path.prepend(64503);") == 4  # both peers, both families
    assert "[RTS_DEVICE, RTS_STATIC]" in site_c  # no transit
    site_b = kinds.KINDS["bird"].spec(anycast.nodes["rtr-b"], anycast, "/x").files["bird.conf"]
    assert "protocol static announce0 { disabled yes; ipv4; route 198.51.100.0/24 via 198.18.2.1; }" in site_b
    guarded = plan.load(failover.variant(ANYCAST_LAB, "bfd+health", tmp_path / "lab"))
    spec = kinds.KINDS["bird"].spec(guarded.nodes["rtr-a"], guarded, "/x")
    assert "bfd on;" in spec.files["bird.conf"] and "multiplier 3" in spec.files["bird.conf"]
    assert "hold time 3;" in spec.files["bird.conf"] and "keepalive time 1;" in spec.files["bird.conf"]
    assert "health.py" in spec.files and "announce0=198.18.1.1" in spec.argv[-1] and spec.capabilities == ("NET_ADMIN",)
    assert "health.py" not in kinds.KINDS["bird"].spec(guarded.nodes["rtr-b"], guarded, "/x").files  # not announced


def test_a_local_root_is_transferred_from_the_root_addresses(anycast):
    named = kinds.KINDS["bind9"].spec(anycast.nodes["resolver-south"], anycast, "/x").files["named.conf"]
    assert 'type mirror; primaries { 198.51.100.1; 2001:db8:53::1; }; file "/x/root.mirror";' in named
    assert "min-retry-time 1;" in named  # a first transfer that found no route yet is tried again at once
    how = kinds.KINDS["bind9"].ready(anycast.nodes["resolver-south"], anycast, "/x")
    assert how.nudge[-2:] == ("retransfer", ".") and how.test("type: mirror\nserial: 2\n") and not how.test("type: hint\n")
    assert kinds.KINDS["unbound"].ready(anycast.nodes["resolver-north"], anycast, "/x") is None  # no local root
    knot = kinds.KINDS["knot"].spec(anycast.nodes["root-b"], anycast, "/x").files["knot.conf"]
    assert "zonemd-generate: zonemd-sha384" in knot
    unbound = kinds.KINDS["unbound"].spec(anycast.nodes["resolver-north"], anycast, "/x").files["unbound.conf"]
    assert "auth-zone:" not in unbound
