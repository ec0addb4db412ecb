"""Every bad input, through the real CLI: ``dnslab validate`` and ``dnslab up`` exit 2 with one
clear message naming the place (file:line, node and field), and ``up`` creates nothing.
Environment problems (not root, a daemon missing) exit 3 and say what to do."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import PYTHON, REPO, explain, run_dnslab
from dnslab import confine
from dnslab.state import run_root

_serial = itertools.count()

# A valid lab every case changes in one place. Lines: root 3-5, tld 6-8, res 9-10, client 11-12.
BASE = """\
name: mini
nodes:
  root:
    kind: nsd
    zones: [.]
  tld:
    kind: bind9
    zones: [test]
  res:
    kind: unbound
  client:
    kind: client
zones:
  .: {}
  test:
    records:
      - "www IN A 192.0.2.1"
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, needle: str) -> int:
    """1-based line of the (only) line containing ``needle``."""
    found = [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln]
    assert len(found) == 1, (needle, found)
    return found[0]


@dataclass
class Case:
    id: str
    lab: str
    expect: list[str]                       # substrings of stderr; {lab} is the lab folder
    files: dict[str, str | bytes] = field(default_factory=dict)


def _cases() -> list[Case]:
    c = []
    t = edit("    zones: [.]\n", "    zones: [.]\n   hostname: x\n")
    c.append(Case("yaml-syntax", t, [f"{{lab}}/lab.yaml:{line_of(t, 'hostname: x')}:4:", "YAML syntax error"]))
    t = edit("zones: [.]", "zones: [.")
    c.append(Case("yaml-unclosed", t, ["{lab}/lab.yaml:6:6:", "YAML syntax error"]))
    t = edit("kind: bind9", "kind: bind8")
    c.append(Case("unknown-kind", t, [f"{{lab}}/lab.yaml:{line_of(t, 'bind8')}:5: nodes.tld.kind: unknown kind "
                                      "'bind8' (did you mean 'bind9'?) (known: attacker, bind9, bird, client, knot, kresd, nsd, registry, unbound)"]))
    t = edit("    kind: client\n", "    kind: clinet\n    resolver: res\n")
    c.append(Case("unknown-kind-with-resolver", t, ["{lab}/lab.yaml:12:5: nodes.client.kind: unknown kind 'clinet'"]))
    t = edit("  tld:\n", "  root:\n")
    c.append(Case("duplicate-node", t, ["{lab}/lab.yaml:6:3: duplicate key 'root' (first defined on line 3)"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    colour: red\n")
    c.append(Case("unknown-field", t, [f"{{lab}}/lab.yaml:{line_of(t, 'colour')}:5: nodes.res.colour: unknown field"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    role: authoritative\n")
    c.append(Case("impossible-role", t, ["lab.yaml:11:5: nodes.res.role: unbound cannot be authoritative"]))
    for cid, net in (("network-10", "ipv4: 10.0.0.0/24"), ("network-192-168", "ipv4: 192.168.1.0/24"),
                     ("network-v6-ula", 'ipv6: "fd00::/64"')):
        t = edit("nodes:\n", f"networks:\n  lan:\n    {net}\nnodes:\n")
        c.append(Case(cid, t, [f"{{lab}}/lab.yaml:4:5: networks.lan.ipv{net[3]}: {net.split()[1].strip(chr(34))} "
                               "is outside the lab ranges"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    interfaces:\n      lan:\n        ipv4: 10.0.0.1\n")
    c.append(Case("address-outside", t, [f"{{lab}}/lab.yaml:{line_of(t, '10.0.0.1')}:9: "
                                         "nodes.res.interfaces.lan.ipv4: 10.0.0.1 is not a host address of "
                                         "network lan (198.51.100.0/24)"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    interfaces:\n      lan:\n        ipv4: 198.51.100.0\n")
    c.append(Case("network-address", t, ["nodes.res.interfaces.lan.ipv4: 198.51.100.0 is not a host address"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    interfaces:\n      lan: {ipv6: '2001:db8:5100::9'}\n")
    t = edit("    kind: client\n", "    kind: client\n    interfaces:\n      lan: {ipv6: '2001:db8:5100::9'}\n", t)
    c.append(Case("duplicate-address", t, [f"{{lab}}/lab.yaml:{line_of(t, 'kind: client') + 2}:13: "
                                           "nodes.client.interfaces.lan.ipv6: 2001:db8:5100::9 is already used "
                                           "by node res"]))
    t = edit("  test:\n", "  example.test: {}\n  test:\n")
    c.append(Case("zone-served-by-nobody", t, [f"{{lab}}/lab.yaml:{line_of(t, 'example.test')}:3: "
                                               "zones.example.test: zone example.test. is delegated from test. "
                                               "but served by no node"]))
    t = edit("zones: [test]", "zones: [test, lab.test]")
    c.append(Case("zone-not-defined", t, [f"{{lab}}/lab.yaml:{line_of(t, 'lab.test')}:19: nodes.tld.zones[1]: "
                                          "zone lab.test. is not defined under zones"]))
    t = edit("zones: [.]", "zones: [test]").replace("  .: {}\n", "")
    c.append(Case("resolver-without-root", t, ["{lab}/lab.yaml:9:3: nodes.res: a resolver needs a root to start "
                                               "from: no node serves the root zone '.'"]))
    t = edit('      - "www IN A 192.0.2.1"', '      - "www IN A 192.0.2.1"\n      - "ftp IN A 1.2.3"')
    c.append(Case("broken-yaml-record", t, [f"{{lab}}/lab.yaml:{line_of(t, 'ftp')}:9: zone test.: near '1.2.3': "
                                            "bad dotted quad"]))
    t = edit('    records:\n      - "www IN A 192.0.2.1"', "    file: test.zone")
    c.append(Case("broken-zone-file", t, ["{lab}/test.zone:3: zone test.: near '1.2.3': bad dotted quad"],
                  {"test.zone": "; the test zone\nmail IN A 192.0.2.25\nwww A 1.2.3\n"}))
    c.append(Case("zone-file-missing", t, [f"{{lab}}/lab.yaml:{line_of(t, 'file:')}:5: zones.test.file: no file "
                                           "test.zone beside lab.yaml"]))
    c.append(Case("zone-file-not-utf8", t, ["{lab}/test.zone:2: not UTF-8 text"],
                  {"test.zone": b"; caf\xc3\xa9 is fine\n; caf\xe9 is not\nwww A 192.0.2.1\n"}))
    t = edit('      - "www IN A 192.0.2.1"', '      - "www IN CNAME ftp"\n      - "www IN A 192.0.2.2"')
    c.append(Case("cname-and-other-data", t, [f"{{lab}}/lab.yaml:{line_of(t, '192.0.2.2')}:9: zone test.: "
                                              "www.test: CNAME and other data"]))
    t = edit("zones: [test]", "zones: [test]\n    hostname: ns..nic.test")
    c.append(Case("bad-hostname", t, [f"{{lab}}/lab.yaml:{line_of(t, 'hostname')}:5: nodes.tld.hostname: "
                                      "'ns..nic.test' is not a DNS name"]))
    t = edit("    kind: client\n", "    kind: client\n    resolver: tld\n")
    c.append(Case("client-resolver-not-resolver", t, [f"{{lab}}/lab.yaml:{line_of(t, 'resolver: tld')}:5: "
                                                      "nodes.client.resolver: 'tld' is not a resolver node"]))
    t = edit("name: mini", "name: Mini_Lab")
    c.append(Case("bad-lab-name", t, ["{lab}/lab.yaml:1:1: name: String should match pattern"]))
    t = BASE + "# caf\xe9\n"
    c.append(Case("lab-not-utf8", "", [f"{{lab}}/lab.yaml:{t.count(chr(10))}: not UTF-8 text"],
                  {"lab.yaml": t.encode("latin-1")}))
    t = edit("  .: {}\n", "  .: {}\n  ? [x]\n  : {}\n")
    c.append(Case("list-as-key", t, [f"{{lab}}/lab.yaml:{line_of(t, '[x]')}:5: a key must be a plain name"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    interfaces: {}\n")
    c.append(Case("node-without-address", t, ["{lab}/lab.yaml:9:3: nodes.res: the node has no address"]))
    t = edit("nodes:\n", "networks:\n  lan: {ipv4: 192.0.2.0/24, ipv6: null}\nnodes:\n")
    t = edit("    kind: unbound\n", "    kind: unbound\n    interfaces: {lan: {ipv6: '2001:db8::5'}}\n", t)
    c.append(Case("no-such-prefix", t, [f"{{lab}}/lab.yaml:{line_of(t, '2001:db8::5')}:24: "
                                        "nodes.res.interfaces.lan.ipv6: network lan has no IPv6 prefix"]))
    c.append(Case("no-nodes", "name: empty\nnodes: {}\n", ["{lab}/lab.yaml:2:1: nodes: "]))
    t = edit("name: mini", "name: !!python/name:os.system x")
    c.append(Case("yaml-python-tag", t, ["{lab}/lab.yaml:1:7: YAML error: could not determine a constructor"]))
    c.append(Case("not-a-mapping", "- just\n- a list\n", ["{lab}/lab.yaml:1:1: a lab file is a mapping"]))
    c.append(Case("checks-unknown-node", BASE, ["{lab}/checks.yaml:5:5: checks[0].server: no node 'nosuch' in lab mini"],
                  {"checks.yaml": "# checks of mini\nchecks:\n  - check: recursion\n    expect: closed\n"
                                  "    server: nosuch\n"}))
    c.append(Case("checks-unknown-zone", BASE, ["{lab}/checks.yaml:4:5: checks[0].zone: no zone example.test. in lab"],
                  {"checks.yaml": "checks:\n  - check: delegation\n    id: d\n    zone: example.test\n"}))
    c.append(Case("checks-unknown-check", BASE, ["{lab}/checks.yaml:2:5: checks[0]"],
                  {"checks.yaml": "checks:\n  - check: telepathy\n"}))
    # routing: anycast addresses, gateways, BGP sessions
    t = edit("    kind: nsd\n", "    kind: nsd\n    anycast: [198.51.100.7]\n")
    c.append(Case("anycast-inside-network", t, [f"{{lab}}/lab.yaml:{line_of(t, 'anycast')}:15: nodes.root.anycast[0]: "
                                                "198.51.100.7 is inside network lan"]))
    t = edit("    kind: client\n", "    kind: client\n    gateway: res\n")
    c.append(Case("gateway-not-router", t, [f"{{lab}}/lab.yaml:{line_of(t, 'gateway')}:5: nodes.client.gateway: "
                                            "res is not a router (kind bird)"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    bgp: {asn: 64500}\n")
    c.append(Case("bgp-not-router", t, [f"{{lab}}/lab.yaml:{line_of(t, 'bgp')}:5: nodes.res.bgp: res runs unbound: "
                                        "BGP is a router's (kind bird)"]))
    t = edit("  client:\n", "  r1: {kind: bird, bgp: {asn: 64501, peers: {r2: {}}}}\n"
                           "  r2: {kind: bird, bgp: {asn: 64502}}\n  client:\n")
    c.append(Case("bgp-one-sided", t, [f"{{lab}}/lab.yaml:{line_of(t, 'r1:')}:", "nodes.r1.bgp.peers.r2: r2 does not "
                                       "list r1 among its peers: a session needs both ends"]))
    t = edit("  client:\n", "  r1: {kind: bird, bgp: {asn: 64501, hold: 9, keepalive: 4}}\n  client:\n")
    c.append(Case("bgp-keepalive", t, [f"{{lab}}/lab.yaml:{line_of(t, 'r1:')}:", "keepalive 4 must be at most a third "
                                       "of hold 9"]))
    t = edit("  client:\n", "  r1: {kind: bird, bgp: {asn: 64501, announce: [{prefix: 198.51.100.0/24, via: "
                           "rooot}]}}\n  client:\n")
    c.append(Case("announce-unknown-via", t, ["nodes.r1.bgp.announce[0].via: no node 'rooot' in the lab (did you "
                                              "mean 'root'?)"]))
    t = edit("  client:\n", "  r1: {kind: bird, bgp: {asn: 64501, announce: [{prefix: 198.51.100.0/24, via: "
                           "client, health: true}]}}\n  client:\n")
    c.append(Case("health-without-dns", t, ["nodes.r1.bgp.announce[0].health: client runs no DNS server (client)"]))
    t = edit("    kind: client\n", "    kind: client\n    routes: [{prefix: 203.0.113.0/24, via: root}]\n")
    c.append(Case("route-via-non-router", t, ["nodes.client.routes[0].via: root is not a router (kind bird)"]))
    t = edit("  client:\n", "  r1: {kind: bird, routes: [{prefix: 203.0.113.0/24, via: r1}]}\n  client:\n")
    c.append(Case("route-via-itself", t, ["nodes.r1.routes[0].via: r1 is not a router (kind bird) of this lab"]))
    t = edit("    kind: unbound\n", "    kind: unbound\n    local_root: true\n")
    c.append(Case("local-root-closed", t, [f"{{lab}}/lab.yaml:{line_of(t, 'local_root')}:5: nodes.res.local_root: "
                                           "the root's servers give their zone to nobody: set transfers: any"]))
    t = edit("  .: {}\n", "  .: {transfers: any}\n", edit("    kind: unbound\n", "    kind: unbound\n    local_root: true\n"))
    c.append(Case("local-root-unsigned", t, ["nodes.res.local_root: a local root is verified with DNSSEC: sign the "
                                             "root"]))
    t = edit("    kind: unbound\n", "    kind: kresd\n    local_root: true\n")
    c.append(Case("local-root-kresd", t, ["nodes.res.local_root: res runs kresd: dnslab keeps a local root on bind9 "
                                          "and unbound resolvers only"]))
    return c


CASES = _cases()


def unique_name() -> str:
    return f"xbad{os.getpid() % 100000}-{next(_serial)}"


def namespaces() -> list[str]:
    if shutil.which("ip"):
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        return [ln.split()[0] for ln in out.splitlines() if ln.strip()]
    return os.listdir("/run/netns") if os.path.isdir("/run/netns") else []


def created(name: str) -> list[str]:
    """What an ``up`` of instance ``name`` left behind: its run dir, its namespaces."""
    found = [str(run_root() / name)] if (run_root() / name).exists() else []
    return found + [n for n in namespaces() if n == f"dnslab-{name}" or n.startswith(f"dnslab-{name}-")]


@pytest.fixture
def up():
    """``up(*args, env=..., prefix=...)`` runs ``dnslab up ... --name <fresh>`` and returns (result, name);
    at teardown anything the run created is removed (after the test has already failed on it)."""
    names = []

    def run(*args, names_of_run: list[str] | None = None, **kw):
        name = unique_name()
        names.extend(names_of_run or [name])
        return run_dnslab("up", *args, "--name", name, **kw), name
    yield run
    for n in names:
        if created(n):
            run_dnslab("down", n)


def write(tmp_path: Path, case: Case) -> Path:
    d = tmp_path / "mini"
    d.mkdir()
    if case.lab:
        (d / "lab.yaml").write_text(case.lab)
    for rel, content in case.files.items():
        (d / rel).write_bytes(content) if isinstance(content, bytes) else (d / rel).write_text(content)
    return d


def assert_clear(res: subprocess.CompletedProcess, expect: list[str], code: int = 2) -> None:
    assert res.returncode == code, explain(res)
    assert "Traceback" not in res.stderr, explain(res)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnslab: "), f"not one clear message:\n{explain(res)}"
    for e in expect:
        assert e in res.stderr, f"{e!r} not in the message:\n{explain(res)}"
    assert res.stdout == "", explain(res)


# (classes only so that pytest-xdist's --dist loadscope spreads them over workers)
class TestValidate:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_rejects(self, case, tmp_path, dnslab):
        d = write(tmp_path, case)
        assert_clear(dnslab("validate", d), [e.replace("{lab}", str(d)) for e in case.expect])


class TestUp:
    @pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
    def test_rejects_and_creates_nothing(self, case, tmp_path, up):
        d = write(tmp_path, case)
        res, name = up(d)
        assert_clear(res, [e.replace("{lab}", str(d)) for e in case.expect])
        assert created(name) == []


def test_the_base_lab_is_valid(tmp_path, dnslab):
    """The cases above break a lab that is otherwise fine."""
    res = dnslab("validate", write(tmp_path, Case("base", BASE, [])))
    assert res.returncode == 0 and "ok, 4 nodes, 2 zones" in res.stdout, explain(res)


@pytest.mark.parametrize("cmd", ["validate", "up"])
def test_unknown_lab(cmd, dnslab, up):
    if cmd == "up":
        res, name = up("no-such-lab")
        assert created(name) == []
    else:
        res = dnslab("validate", "no-such-lab")
    assert_clear(res, ["no lab 'no-such-lab': not a shipped lab (known: ", "dns-basics"])


@pytest.mark.parametrize("cmd", ["validate", "up"])
def test_lab_file_not_named_lab_yaml(cmd, tmp_path, dnslab, up):
    f = tmp_path / "mini.yaml"
    f.write_text(BASE)
    if cmd == "up":
        res, name = up(f)
        assert created(name) == []
    else:
        res = dnslab("validate", f)
    assert_clear(res, [f"{f}: a lab file is named lab.yaml"])


@pytest.mark.parametrize("roster, expect", [
    ("trainee,email\nAna Diaz,a@x\nana  DIAZ,b@x\n", ":3: trainee 'ana  DIAZ' gives instance name 'ana-diaz', "
                                                     "already used by 'Ana Diaz'"),
    ("trainee,email\nAna,a@x\n,b@x\n", ":3: empty trainee name"),
    ("name,email\nAna,a@x\n", ":1: a roster needs a 'trainee' column"),
    (b"trainee\nAna\nJos\xe9\n", ":3: not UTF-8 text"),
], ids=["duplicate", "empty-name", "no-trainee-column", "not-utf8"])
def test_up_rejects_bad_roster(roster, expect, tmp_path, up):
    f = tmp_path / "roster.csv"
    f.write_bytes(roster) if isinstance(roster, bytes) else f.write_text(roster)
    res, _ = up("dns-basics", "--trainees", f, names_of_run=["ana", "ana-diaz", "jos"])
    assert_clear(res, [f"dnslab: {f}{expect}"])
    assert created("ana") == created("ana-diaz") == created("jos") == []


def test_up_rejects_bad_instance_name(up):
    res, _ = up("dns-basics", "--instances", "0")
    assert_clear(res, ["--instances must be at least 1"])
    res = run_dnslab("up", "dns-basics", "--name", "Bad_Name")
    assert_clear(res, ["instance name 'Bad_Name': use 1-32 lower-case letters"])


def test_unknown_backend(up):
    res, name = up("dns-basics", "--backend", "vmware")
    assert_clear(res, ["unknown backend 'vmware' (known: netns, docker)"])
    assert created(name) == []


# --------------------------------------------------------------------------- environment: exit 3

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _nobody_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"),
            "HOME": "/tmp", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}


def test_up_as_unprivileged_user(up):
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is not installed")
        # the checkout may sit where user 65534 cannot reach (/root/dnslab): it sees it where
        # trainees do, bind-mounted at confine.CODE in a mount namespace of its own
        seen = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mkdir -p "$1" && mount --bind "$0" "$1" && shift && exec "$@"', str(REPO), str(confine.CODE)]
        res, name = up("dns-basics", prefix=seen + NOBODY, python=confine.trainee_python(),
                       env={**_nobody_env(), "PYTHONPATH": str(confine.CODE)}, replace_env=True, cwd=Path("/"))
    else:
        res, name = up("dns-basics")
    assert_clear(res, ["the netns backend needs root (CAP_NET_ADMIN): run it with sudo"], code=3)
    assert created(name) == []


def _bin_dir(tmp_path: Path, tools: list[str]) -> Path:
    """A PATH directory with symlinks to just these tools (skip the test when one is missing here)."""
    d = tmp_path / "bin"
    d.mkdir()
    for t in tools:
        exe = shutil.which(t) or (f"/usr/sbin/{t}" if os.path.exists(f"/usr/sbin/{t}") else None)
        if exe is None:
            pytest.skip(f"{t} is not installed here")
        (d / t).symlink_to(exe)
    (d / "python3").symlink_to(PYTHON)
    return d


MISSING_BIND = BASE.replace("kind: unbound", "kind: bind9\n    role: resolver")


@pytest.mark.parametrize("lab, have, missing, packages", [
    ("mini", ["nsd", "nsd-control", "dig", "delv", "kdig"], "named, rndc", "bind9"),
    ("dns-basics", [], "delv, dig, kdig, knotc, knotd, named, nsd, nsd-control, rndc, unbound, unbound-control",
     "bind9 bind9-dnsutils knot knot-dnsutils nsd unbound"),
], ids=["named", "every-program"])
def test_up_with_a_daemon_missing_names_the_package(lab, have, missing, packages, tmp_path, up):
    if os.geteuid() != 0:
        pytest.skip("the root check comes first: this needs root")
    bindir = _bin_dir(tmp_path, ["ip", "nsenter", "named-checkzone", *have])
    if lab == "mini":
        lab = tmp_path / "mini"
        lab.mkdir()
        (lab / "lab.yaml").write_text(MISSING_BIND)
    res, name = up(lab, env={"PATH": str(bindir)})
    assert_clear(res, [f"missing programs: {missing}; install them with: apt-get install {packages}"], code=3)
    assert created(name) == []


def test_validate_without_named_checkzone_names_the_package(tmp_path, dnslab):
    bindir = _bin_dir(tmp_path, [])
    res = dnslab("validate", "dns-basics", env={"PATH": str(bindir)})
    assert_clear(res, ["named-checkzone not found: apt-get install bind9-utils"], code=3)
