"""`dnslab validate` on a whole lab folder, offline: every mistake an instructor made on purpose
gives exit 2 and a message naming the right file and line, all of them in one run, within
bounded time and memory; near-misses get a suggestion; shipped labs pass without a warning."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from conftest import REPO, explain

LAB = """\
name: mini
nodes:
  root:
    kind: nsd
    zones: [.]
  tld:
    kind: bind9
    zones: [test]
    hostname: ns1.nic.test
  tld2:
    kind: knot
    zones: [test]
    hostname: ns2.nic.test
  res:
    kind: unbound
  client:
    kind: client
zones:
  .: {}
  test: {}
"""
CHECKS = """\
checks:
  - check: authoritative
    id: tld-aa
    zone: test
  - check: serials
    id: test-serials
    zone: test
"""


def validate(dnslab, d: Path) -> tuple[int, str, str]:
    res = dnslab("validate", d)
    return res.returncode, res.stdout, res.stderr


def failing(dnslab, d: Path, *expect: str) -> str:
    """Run validate; exit 2, one 'dnslab:' header, every expected text present."""
    res = dnslab("validate", d)
    assert res.returncode == 2, explain(res)
    assert "Traceback" not in res.stderr and "InputProblems" not in res.stderr, explain(res)
    for e in expect:
        assert e.replace("{lab}", str(d)) in res.stderr, f"{e!r} not in:\n{explain(res)}"
    return res.stderr


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


@pytest.fixture
def lab(write_lab):
    def make(text: str = LAB, checks: str | None = CHECKS, files: dict | None = None) -> Path:
        files = dict(files or {})
        if checks is not None:
            files["checks.yaml"] = checks
        return write_lab(text, files)
    return make


# ----------------------------------------------------------------------------- the rules

def test_a_clean_lab_passes_without_warning(dnslab, lab):
    rc, out, err = validate(dnslab, lab())
    assert rc == 0 and out.strip().endswith("ok, 5 nodes, 2 zones, 2 checks") and err == "", (out, err)


def test_name_server_name_in_no_lab_zone(dnslab, lab):
    text = ("name: noroot\nnodes:\n  tld:\n    kind: bind9\n    zones: [test]\n    hostname: ns1.nic.test\n"
            "  tld2:\n    kind: knot\n    zones: [test]\n    hostname: ns2.example.net\nzones:\n  test: {}\n")
    failing(dnslab, lab(text, checks=None), f"{{lab}}/lab.yaml:{line_of(text, 'ns2.example.net')}:5: "
                                            "nodes.tld2.hostname: name server name ns2.example.net. is in no zone of "
                                            "the lab, so nothing can resolve its address")


def test_in_bailiwick_name_server_without_glue(dnslab, lab):
    text = LAB.replace("  test: {}", '  test: {records: ["sub IN NS ns.sub.test."]}')
    failing(dnslab, lab(text), "zone test.: the delegation of sub.test. names ns.sub.test., inside sub.test., "
                               "with no address (glue) in test.")


def test_resolver_with_no_network_to_a_root_server(dnslab, lab):
    text = LAB.replace("name: mini\n", "name: mini\nnetworks:\n  a: {ipv4: 198.51.100.0/24, ipv6: null}\n"
                                       "  b: {ipv4: 203.0.113.0/24, ipv6: null}\n")
    for node in ("root", "tld", "tld2", "client"):
        text = text.replace(f"  {node}:\n", f"  {node}:\n    interfaces: {{a: {{}}}}\n", 1)
    text = text.replace("  res:\n", "  res:\n    interfaces: {b: {}}\n")
    failing(dnslab, lab(text), "nodes.res: resolver res shares no network (and IP family) with a root server (root)",
            "nodes.client.resolver: client client shares no network (and IP family) with its resolver res")


def test_author_address_for_a_name_server_refused(dnslab, lab):
    text = LAB.replace("  test: {}", '  test: {records: ["ns1.nic IN A 192.0.2.53"]}')
    failing(dnslab, lab(text), f"{{lab}}/lab.yaml:{line_of(text, '192.0.2.53')}:", "differs from the address of node "
                                                                                     "tld", "use a fault")


def test_delegation_with_one_name_server_is_a_warning(dnslab, lab):
    text = LAB.replace("    zones: [test]\n    hostname: ns2.nic.test", "    zones: [.]\n    hostname: ns2.nic.test")
    rc, out, err = validate(dnslab, lab(text, CHECKS.replace("test-serials", "root-serials").replace(
        "zone: test\n", "zone: .\n", 2)))
    assert rc == 0 and "warning: zone test.: delegated with 1 name server: registries require at least two" in err


def test_primary_must_serve_the_zone_and_tsig_needs_a_primary(dnslab, lab):
    text = LAB.replace("  test: {}", "  test: {primary: res, tsig: true}\n  other.test: {tsig: true}").replace(
        "zones: [test]\n    hostname: ns1", "zones: [test, other.test]\n    hostname: ns1")
    failing(dnslab, lab(text), "zones.test.primary: the primary of test. must be one of its servers (tld, tld2)",
            "zones.other.test.tsig: tsig signs zone transfers: give the zone a primary first")


# ----------------------------------------------------------------------------- checks, faults, exercise

def test_checks_unknown_type_duplicate_ids_and_unreachable_vantage(dnslab, lab):
    checks = CHECKS + "  - check: serial\n    zone: test\n  - check: authoritative\n    id: tld-aa\n    zone: test\n"
    err = failing(dnslab, lab(checks=checks), "unknown check 'serial' (did you mean 'serials'?)")
    checks = CHECKS + "  - check: authoritative\n    id: tld-aa2\n    zone: test\n    from: resolver\n"
    failing(dnslab, lab(checks=checks), f"{{lab}}/checks.yaml:{line_of(checks, 'from: resolver')}:",
            "checks[2].from: no node 'resolver' in lab mini (did you mean 'res'?)")
    dup = CHECKS + "  - check: authoritative\n    id: tld-aa\n    zone: test\n"
    failing(dnslab, lab(checks=dup), "checks[2]: id 'tld-aa' is already the id of checks[0]")
    assert "problems" not in err or err.count("\n") > 1


def test_a_check_whose_vantage_cannot_reach_its_target(dnslab, lab):
    text = LAB.replace("name: mini\n", "name: mini\nnetworks:\n  a: {ipv4: 198.51.100.0/24, ipv6: null}\n"
                                       "  b: {ipv4: 203.0.113.0/24, ipv6: null}\n")
    for node, nets in (("root", "a"), ("tld", "a"), ("tld2", "a: {}, b"), ("res", "a: {}, b"), ("client", "b")):
        text = text.replace(f"  {node}:\n", f"  {node}:\n    interfaces: {{{nets}: {{}}}}\n", 1)
    d = lab(text)
    failing(dnslab, d, "{lab}/checks.yaml:2:", "client has no network (and IP family) in common with tld, which "
                                                   "this check asks: name a node that does with from:")
    (d / "checks.yaml").write_text(CHECKS.replace("    zone: test\n", "    zone: test\n    from: tld2\n"))
    rc, out, err = validate(dnslab, d)
    assert rc == 0, err


def test_fault_errors_name_the_fault_file(dnslab, lab):
    bad_block = "summary: x\nseen_by: [tld-aa]\nnodes:\n  tld:\n    block: [tcp/99999]\n"
    d = lab(files={"faults/block.yaml": bad_block})
    failing(dnslab, d, "{lab}/faults/block.yaml:5:", "tcp/99999")
    (d / "faults" / "block.yaml").unlink()
    fault = ("summary: wrong glue\nseen_by: [tld-aa, tld-serial]\nzones:\n  test:\n    records:\n"
             "      - \"ns1.nic.test. IN A not-an-address\"\n  nope.test:\n    records: [\"x IN A 192.0.2.1\"]\n"
             "nodes:\n  tldx: {stop: true}\n")
    failing(dnslab, lab(files={"faults/bad.yaml": fault}),
            f"{{lab}}/faults/bad.yaml:{line_of(fault, 'tld-serial')}:", "seen_by[1]: no check 'tld-serial' in "
            "checks.yaml (did you mean 'test-serials'?)", f"{{lab}}/faults/bad.yaml:{line_of(fault, 'nope.test')}:",
            "no zone nope.test. in the lab", f"{{lab}}/faults/bad.yaml:{line_of(fault, 'tldx')}:", "no node 'tldx'")
    fault = "summary: wrong glue\nseen_by: [tld-aa]\nzones:\n  test:\n    records:\n" \
            "      - \"ns1.nic.test. IN A not-an-address\"\n"
    failing(dnslab, lab(files={"faults/bad.yaml": fault}), "{lab}/faults/bad.yaml:6:", "zone test.")


def test_rfc9615_signals_need_signed_zones_outside_the_zone(dnslab, lab):
    inside = LAB.replace("  test: {}", "  test: {primary: tld, dnssec: {signal: true}}")
    failing(dnslab, lab(inside), "zones.test.dnssec.signal: RFC 9615 signals live in the zones of the name servers, "
                                 "outside test.: ns1.nic.test. is inside it (in-bailiwick)")
    unsigned = LAB.replace("  test: {}", "  test: {}\n  other.test: {dnssec: {signal: true}}").replace(
        "zones: [test]\n    hostname: ns1", "zones: [test, other.test]\n    hostname: ns1")
    failing(dnslab, lab(unsigned), "zones.other.test.dnssec.signal: the signal of other.test. would be in test. "
                                   "(its name server ns1.nic.test.), which is not signed")


def test_a_signing_fault_needs_a_zone_an_offline_signer_signs(dnslab, lab):
    fault = "summary: x\nseen_by: [tld-aa]\nzones:\n  test:\n    signed: {expires: -3600}\n"
    failing(dnslab, lab(files={"faults/sig.yaml": fault}), "{lab}/faults/sig.yaml:5:",
            "signed: test. is not signed in the lab (add dnssec: to the zone)")
    signed = LAB.replace("  test: {}", "  test: {primary: tld, dnssec: {}}")
    failing(dnslab, lab(signed, files={"faults/sig.yaml": fault}), "{lab}/faults/sig.yaml:5:",
            "signed: test. is signed by its daemon on tld (bind9); only an offline signer")
    bad = "summary: x\nseen_by: [tld-aa]\nzones:\n  test:\n    signed: {remove: [\"www A ; rm -rf\"]}\n"
    failing(dnslab, lab(files={"faults/sig.yaml": bad}), "{lab}/faults/sig.yaml:5:", "signed.remove[0]")


def test_exercise_typos_found_at_validate(dnslab, lab, tmp_path):
    d = lab(LAB.replace("name: mini", "name: minix"))
    ex = tmp_path / "exercises" / "minix"
    shutil.copytree(REPO / "exercises" / "dns-basics", ex)
    text = (ex / "exercise.yaml").read_text().replace("lab: dns-basics", "lab: minix")
    (ex / "exercise.yaml").write_text(text)
    res = dnslab("validate", d, env={"DNSLAB_EXERCISES": str(tmp_path / "exercises")})
    assert res.returncode == 2, explain(res)
    for check_id in ("lab-delegation", "lab-mx", "www-via-unbound"):
        assert f"no check {check_id!r} in the lab's checks.yaml" in res.stderr, explain(res)
    assert "no fault 'lame-glue'" in res.stderr and "no zone test. in the lab" not in res.stderr
    assert "answer: the lab has no A record at www.lab.test" in res.stderr, explain(res)
    text = text.replace("accept: data-of, owner: www.lab.test, type: A", "accept: data-of, zone: lab.test")
    (ex / "exercise.yaml").write_text(text)
    res = dnslab("validate", d, env={"DNSLAB_EXERCISES": str(tmp_path / "exercises")})
    assert "accept: data-of takes owner and type (missing owner, type) (not zone)" in res.stderr, explain(res)
    assert f"{ex}/exercise.yaml:" in res.stderr and "problems:" in res.stderr.splitlines()[0]
    text = text.replace("accept: data-of, zone: lab.test", "accept: ksk-tag-of, zone: test")
    (ex / "exercise.yaml").write_text(text)
    res = dnslab("validate", d, env={"DNSLAB_EXERCISES": str(tmp_path / "exercises")})
    assert "answer.zone: test. is not signed in the lab" in res.stderr, explain(res)


# ----------------------------------------------------------------------------- bounded input

def test_alias_bomb_is_refused_fast(dnslab, lab):
    bomb = "name: bomb\n" + "".join(f"{a}: &{a} [{', '.join(['*' + p] * 10) if p else ', '.join(['x'] * 10)}]\n"
                                   for p, a in zip([''] + list('abcdefgh'), 'abcdefghi'))
    t0 = time.monotonic()
    failing(dnslab, lab(bomb.replace("[*", "[*").replace("[, ", "[")), "more than 100000 values (YAML aliases?)")
    assert time.monotonic() - t0 < 60  # not the minutes (and gigabytes) of an unbounded expansion


def test_oversized_files_are_refused_without_reading_them_whole(dnslab, lab):
    records = "".join(f'    - "h{i} IN A 192.0.2.{i % 250 + 1}"\n' for i in range(40_000))
    failing(dnslab, lab(LAB.replace("  test: {}", "  test:\n    records:\n" + records)), "larger than 1024 KiB")
    big = "".join(f"h{i} IN A 192.0.2.{i % 250 + 1}\n" for i in range(40_000))
    failing(dnslab, lab(LAB.replace("  test: {}", "  test: {file: big.zone}"), files={"big.zone": big}),
            "big.zone: larger than 512 KiB")


@pytest.mark.parametrize("path", ["../../../../etc/passwd", "/etc/passwd", "link.zone"])
def test_zone_files_stay_inside_the_lab_folder(dnslab, lab, path):
    d = lab(LAB.replace("  test: {}", f"  test: {{file: {path}}}"))
    (d / "link.zone").symlink_to("/etc/passwd")
    err = failing(dnslab, d, f"zones.test.file: {path!r} is not a file of the lab folder")
    assert "root:" not in err and "nologin" not in err  # nothing of it read, nothing echoed


# ----------------------------------------------------------------------------- messages

@pytest.mark.parametrize("mistake, hint", [
    ("    kind: unbound\n   colour: red", "check the indentation of this line: it should line up with the keys"),
    ("    kind: unbound: x", "check the indentation of this line and the one above, or quote a value"),
])
def test_yaml_mistakes_get_a_hint(dnslab, lab, mistake, hint):
    failing(dnslab, lab(LAB.replace("    kind: unbound", mistake)), hint)


def test_a_directory_named_lab_yaml(dnslab, tmp_path):
    (tmp_path / "x" / "lab.yaml").mkdir(parents=True)
    res = dnslab("validate", tmp_path / "x" / "lab.yaml")
    assert res.returncode == 2 and "is a directory: a lab file is a file named lab.yaml" in res.stderr, explain(res)


def test_no_dangling_colon_nor_wrapper_in_messages(dnslab, lab):
    text = LAB.replace("name: mini\n", "name: mini\nnetworks:\n  a: {}\n  b: {ipv4: 203.0.113.0/24}\n")
    err = failing(dnslab, lab(text), "the lab has several networks: say which this node attaches to, under "
                                     "interfaces (a, b)")
    assert not any(line.rstrip().endswith(":") for line in err.splitlines()[1:]), err
    assert err.startswith("dnslab: 5 problems:\n") and "InputProblems" not in err


def test_the_signed_lab_validates_without_warning(dnslab):
    data = json.loads(dnslab("validate", "dnssec-signing", "--json").stdout)
    assert data["warnings"] == [] and data["exercise"] == "dnssec-signing"
    assert data["faults"] == ["clock-skew", "ds-mismatch", "unsupported-algorithm"]


def test_validate_json_and_shipped_labs_have_no_warnings(dnslab):
    data = json.loads(dnslab("validate", "dns-basics", "--json").stdout)
    assert data["warnings"] == [] and data["exercise"] == "dns-basics" and data["faults"] == ["lame-glue", "mx-removed"]
    assert all(len(z["servers"]) >= 2 for name, z in data["zones"].items() if name != ".")


def test_up_skips_the_whole_folder_only_when_that_very_folder_passed(lab, tmp_path, monkeypatch):
    """A folder that passed validation is remembered by its fingerprint (in root's cache), and
    `up` of it loads the lab file alone; a change anywhere in it (a check with a typo) is validated
    whole again, and a folder that failed is never remembered."""
    from dnslab import labfolder
    from dnslab.errors import InputProblems
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    d = lab(LAB)
    labfolder.validate(d)
    assert len(list((tmp_path / "cache" / "validated").iterdir())) == 1
    whole = []
    monkeypatch.setattr(labfolder, "validate", lambda *a, **k: whole.append(a) or pytest.fail("validated again"))
    assert labfolder.plan_for_up(d).name == "mini" and not whole
    monkeypatch.undo()
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    checks = d / "checks.yaml"
    checks.write_text((checks.read_text() if checks.exists() else "checks:\n") + "  - {check: nosuch, id: typo}\n")
    with pytest.raises(InputProblems):
        labfolder.plan_for_up(d)
    assert len(list((tmp_path / "cache" / "validated").iterdir())) == 1


def test_a_validated_folders_zones_are_checked_again_only_when_they_can_differ(monkeypatch):
    """named-checkzone sees a validated folder's zones again only when an instance's can differ
    from the validated ones by more than its keys: values drawn per instance, faults combined."""
    from dnslab import plan, zones
    checked: list[str] = []
    real = zones.named_checkzone
    monkeypatch.setattr(zones, "named_checkzone", lambda z, text: checked.append(z) or real(z, text))
    signed, drawn = REPO / "labs" / "dnssec-signing", REPO / "labs" / "dns-basics"
    for folder, faults, validated, again in [(signed, (), True, False), (signed, ("ds-mismatch",), True, False),
                                             (signed, ("ds-mismatch", "clock-skew"), True, True),
                                             (signed, (), False, True), (drawn, (), True, True)]:
        checked.clear()
        plan.load(folder, faults, validated=validated)
        assert bool(checked) == again, (folder.name, faults, validated)


def test_each_up_takes_the_plan_the_last_one_made(tmp_path, monkeypatch):
    """`up` of a validated folder takes the plan the previous `up` left made (keys of its own; a
    made plan is given once), never with faults named, never one made of the folder before a change;
    a folder that draws values per instance gets none made."""
    from dnslab import labfolder
    monkeypatch.setenv("DNSLAB_CACHE", str(tmp_path / "cache"))
    made = tmp_path / "cache" / "plans"
    d, drawn = tmp_path / "dnssec-signing", tmp_path / "dns-basics"
    for folder in (d, drawn):
        shutil.copytree(REPO / "labs" / folder.name, folder)
    first = labfolder.validate(d).plan
    labfolder.prepare(d)
    assert len(list(made.glob("*/*.item"))) == 1
    loads: list[tuple] = []
    load = labfolder._plan.load
    monkeypatch.setattr(labfolder._plan, "load", lambda *a, **k: loads.append(a) or load(*a, **k))
    taken = labfolder.plan_for_up(d)
    assert not loads and not list(made.glob("*/*.item"))
    assert taken.nodes == first.nodes and taken.zones.keys() == first.zones.keys()
    assert taken.trust_anchor.secret != first.trust_anchor.secret  # keys of its own
    again = labfolder.plan_for_up(d)  # none left: the lab file's plan
    assert len(loads) == 1 and again.trust_anchor.secret not in (first.trust_anchor.secret, taken.trust_anchor.secret)
    labfolder.prepare(d)
    assert labfolder.plan_for_up(d, ("ds-mismatch",)).zones["test."].text != taken.zones["test."].text
    assert len(list(made.glob("*/*.item"))) == 1 and len(loads) == 3  # prepare's, the fault's: the made plan stays
    (d / "lab.yaml").write_text((d / "lab.yaml").read_text() + "# changed\n")
    labfolder.plan_for_up(d)  # validated whole, as it now is
    assert len(list(made.glob("*/*.item"))) == 1
    labfolder.validate(drawn)
    labfolder.prepare(drawn)
    assert len(list(made.glob("*/*.item"))) == 1


def test_the_plans_signing_and_registry_have_the_lab_files_fields():
    """A plan holds a zone's signing policy and registry as plain data (a plan made ahead is read
    without the schema's library), field for field what the lab file says."""
    import dataclasses
    from dnslab import topology, zones
    for plain, schema in ((zones.SigningPlan, topology.Dnssec), (zones.Nsec3Plan, topology.Nsec3),
                          (zones.RegistryPlan, topology.Registry)):
        assert [f.name for f in dataclasses.fields(plain)] == list(schema.model_fields)
        assert all(f.default == schema.model_fields[f.name].default for f in dataclasses.fields(plain)
                   if f.default is not dataclasses.MISSING)
