"""The commands that need no running lab and no root: list, validate, kinds, schema, --help."""
from __future__ import annotations

import json

import pytest

from conftest import explain
from dnslab import cli


def ok(res):
    assert res.returncode == 0, explain(res)
    assert "Traceback" not in res.stderr, explain(res)
    return res


def test_list(dnslab):
    res = ok(dnslab("list"))
    header, *rows = res.stdout.splitlines()
    assert header.split() == ["LAB", "NODES", "DESCRIPTION"]
    assert any(r.split()[:2] == ["dns-basics", "9"] for r in rows), res.stdout


def test_list_json(dnslab):
    data = json.loads(ok(dnslab("list", "--json")).stdout)
    (basics,) = [d for d in data if d["name"] == "dns-basics"]
    assert basics["nodes"] == 9 and basics["zones"] == [".", "test.", "example.test.", "lab.test."]
    assert "error" not in basics


def test_list_shows_an_invalid_lab_without_failing(dnslab, write_lab, tmp_path):
    write_lab("name: good\nnodes:\n  root: {kind: nsd, zones: [.]}\nzones:\n  .: {}\n", name="good")
    write_lab("name: bad\nnodes:\n  root: {kind: bind8}\n", name="bad")
    (tmp_path / "not-a-lab").mkdir()
    res = ok(dnslab("list", env={"DNSLAB_LABS": str(tmp_path)}))
    rows = {r.split()[0]: r for r in res.stdout.splitlines()[1:]}
    assert set(rows) == {"bad", "good"}
    assert "(invalid: " in rows["bad"] and "unknown kind 'bind8'" in rows["bad"]
    data = {d["name"]: d for d in json.loads(ok(dnslab("list", "--json", env={"DNSLAB_LABS": str(tmp_path)})).stdout)}
    assert "unknown kind 'bind8'" in data["bad"]["error"] and data["good"]["nodes"] == 1


def test_validate_dns_basics(dnslab):
    res = ok(dnslab("validate", "dns-basics"))
    assert res.stdout.strip().endswith("labs/dns-basics/lab.yaml: ok, 9 nodes, 4 zones, 14 checks, 2 faults, "
                                       "exercise dns-basics (en, es, pt)")
    assert res.stderr == ""  # no warning: every delegation has two name servers on distinct addresses


def test_validate_dns_basics_json(dnslab):
    data = json.loads(ok(dnslab("validate", "dns-basics", "--json")).stdout)
    assert data["lab"] == "dns-basics" and data["checks"] == 14 and data["faults"] == ["lame-glue", "mx-removed"]
    assert data["exercise"] == "dns-basics" and data["warnings"] == []
    assert data["nodes"]["tld"] == {"kind": "bind9", "role": "authoritative",
                                    "addresses": ["198.51.100.3", "2001:db8:5100::3"]}
    assert data["nodes"]["client"]["role"] == "client"
    assert data["zones"]["example.test."] == {"servers": ["sld-knot", "sld-nsd"], "parent": "test.",
                                              "primary": "sld-knot"}
    assert data["zones"]["."] == {"servers": ["a-root", "b-root"], "parent": None, "primary": None}


def test_validate_by_path_to_folder_and_file(dnslab, write_lab):
    d = write_lab("name: tiny\nnodes:\n  root: {kind: nsd, zones: [.]}\nzones:\n  .: {}\n")
    assert ok(dnslab("validate", d)).stdout.strip() == f"{d}/lab.yaml: ok, 1 nodes, 1 zones, 0 checks"
    assert ok(dnslab("validate", d / "lab.yaml")).stdout.strip() == f"{d}/lab.yaml: ok, 1 nodes, 1 zones, 0 checks"


def test_kinds(dnslab):
    res = ok(dnslab("kinds"))
    assert res.stdout.splitlines()[0].split() == ["KIND", "ROLES", "DEBIAN", "PACKAGES"]


def test_kinds_json(dnslab):
    data = json.loads(ok(dnslab("kinds", "--json")).stdout)
    assert data == {
        "attacker": {"roles": ["attacker"], "packages": ["bind9-dnsutils", "python3-dnspython", "tcpdump"]},
        "bind9": {"roles": ["authoritative", "resolver"], "packages": ["bind9"]},
        "bird": {"roles": ["router"], "packages": ["bird2", "python3"]},
        "client": {"roles": ["client"], "packages": ["bind9-dnsutils", "knot-dnsutils"]},
        "knot": {"roles": ["authoritative"], "packages": ["knot"]},
        "nsd": {"roles": ["authoritative"], "packages": ["bind9-utils", "nsd"]},
        "registry": {"roles": ["registry"], "packages": ["python3-dnspython"]},
        "unbound": {"roles": ["resolver"], "packages": ["unbound"]},
        "kresd": {"roles": ["resolver"], "packages": ["knot-resolver", "socat"]},
    }


@pytest.mark.parametrize("what", [[], ["lab"], ["checks"]], ids=["default", "lab", "checks"])
def test_schema(dnslab, what):
    schema = json.loads(ok(dnslab("schema", *what)).stdout)
    assert schema["type"] == "object" and schema["additionalProperties"] is False


COMMANDS = sorted(cli.parser()._subparsers._group_actions[0].choices)  # every subcommand, as registered


def test_every_command_is_covered():
    assert set(COMMANDS) == {"list", "validate", "schema", "kinds", "up", "down", "status", "exec", "logs",
                             "check", "graph", "images", "gc", "grade", "exercise", "reload", "flush", "break",
                             "class", "faults", "dnsviz", "dnssec", "start", "unblock", "capture",
                             "catchment", "failover"}


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help(dnslab, command):
    res = ok(dnslab(*([command] if command else []), "--help"))
    assert res.stdout.startswith(f"usage: dnslab {command or ''}".rstrip())
    assert res.stderr == ""


def test_version(dnslab):
    res = ok(dnslab("--version"))
    assert res.stdout.startswith("dnslab ")


def test_no_command_is_a_usage_error(dnslab):
    res = dnslab()
    assert res.returncode == 2 and "usage: dnslab" in res.stderr, explain(res)


def test_graph_draws_the_derived_relations(dnslab, tmp_path):
    out = tmp_path / "basics.dot"
    ok(dnslab("graph", "dns-basics", "-o", str(out), "--format", "dot"))
    dot = out.read_text()
    assert '"a-root" -- "tld" [dir=forward style=dashed' in dot and 'label="delegates test."' in dot
    assert '"tld" -- "tld2"' in dot and 'label="transfers test. (TSIG)"' in dot
    assert '"sld-nsd" -- "sld-knot"' in dot and 'label="transfers lab.test."' in dot
    assert '"client" -- "resolver-unbound"' in dot and 'label="root hints"' in dot


def test_a_trainee_is_stuck_when_nothing_changes_for_ten_minutes():
    from dnslab.classstatus import STUCK_AFTER, progress
    row = {"checks": {"a": True, "b": False}, "faults": ["f"]}
    first = progress(row, None, 1000.0)
    assert first == {"progress_at": 1000.0, "stuck": False}
    same = {**row, **first}
    assert progress(row, same, 1000.0 + STUCK_AFTER - 1)["stuck"] is False
    assert progress(row, same, 1000.0 + STUCK_AFTER) == {"progress_at": 1000.0, "stuck": True}
    # a repair is progress; a lab all green is never stuck
    fixed = {"checks": {"a": True, "b": True}, "faults": ["f"]}
    assert progress(fixed, same, 5000.0) == {"progress_at": 5000.0, "stuck": False}
    assert progress(fixed, {**fixed, "progress_at": 0.0}, 5000.0)["stuck"] is False
    # a drill (a new fault) restarts the clock
    assert progress({**row, "faults": ["f", "g"]}, same, 5000.0)["progress_at"] == 5000.0


def test_class_table_says_which_points_the_lab_shows():
    """The class table counts only tasks judged from the lab; answer tasks wait for grading."""
    from dnslab.classstatus import table
    snap = {"class": "c", "lab": "dns-basics", "url": "http://h/", "at": 0.0,
            "tasks": [{"id": "fix", "points": 2, "judged": "lab"}, {"id": "fix2", "points": 2, "judged": "lab"},
                      {"id": "trace", "points": 2, "judged": "answer"}],
            "trainees": [{"trainee": "Ana", "instance": "c-ana", "health": "ok", "checks": {"a": True, "b": False},
                          "tasks": {"fix": 2, "fix2": 0, "trace": None}, "server": True, "kernels": 1,
                          "stuck": True}]}
    line = table(snap).splitlines()[1]
    assert "checks 1/2  lab tasks 2/4 pts (+1 answer tasks at grading)" in line
    assert "server up (1 kernel)  STUCK  failing: b" in line


def test_faults_lists_a_labs_faults(dnslab):
    rows = json.loads(ok(dnslab("faults", "dnssec-signing", "--json")).stdout)
    assert [r["name"] for r in rows] == ["clock-skew", "ds-mismatch", "unsupported-algorithm"]
    assert all(r["summary"] and r["seen_by"] for r in rows)
    assert "ds-mismatch" in ok(dnslab("faults", "dnssec-signing")).stdout


def test_break_needs_a_fault_or_random(dnslab):
    res = dnslab("break", "nothing-here")
    assert res.returncode == 2 and "name a fault of the lab" in res.stderr
