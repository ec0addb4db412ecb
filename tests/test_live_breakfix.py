"""The break-and-fix lab (labs/dnssec-breakfix) on both backends: each of its faults, applied to a
running lab by `dnslab break`, is seen by exactly the checks it names, Unbound says why with an
Extended DNS Error (livelab.break_and_repair), and the operator's repair (done as the trainee would: the node's sign.sh
mended, a new serial, a reload; the firewall opened; the right DS) restores every check."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import faults

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

LAB = livelab.REPO / "labs" / "dnssec-breakfix"


def _resign(inst, mend) -> None:
    """shop-nsd's sign.sh mended by ``mend``, the zone's serial raised, shop-nsd reloaded (it signs
    again; its Knot secondary follows before reload returns)."""
    d = inst.state.node_dir("shop-nsd")
    script = d / "sign.sh"
    script.write_text(mend(script.read_text()))
    zone = d / "zones" / "shop.test.zone"
    zone.write_text(livelab.bump_serial(zone.read_text())[0])
    inst.reload("shop-nsd")


def _no_window(text: str) -> str:
    return re.sub(r" -P -s now\S+ -e now\S+", "", text)


def _no_removal(text: str) -> str:
    return re.sub(r"(?m)^(grep|mv) .*\n", "", text)


def _right_ds(inst) -> None:
    good = [ln for ln in inst.read_file("shop-nsd", "keys/dsset-shop.test.").splitlines() if " DS " in ln]
    assert good
    path = inst.state.node_dir("tld-bind") / "zones" / "test.zone"
    text = re.sub(r"(?m)^shop\.test\. IN DS .*\n", "", path.read_text())
    path.write_text(livelab.bump_serial(text, by=100)[0] + "".join(f"{ln}\n" for ln in good))
    inst.reload("tld-bind")


def _open_tcp(inst) -> None:
    for node in ("shop-nsd", "shop-knot"):
        res = livelab.cli("unblock", inst.name, node)
        assert res.returncode == 0, livelab.explain(res)


REPAIRS = {
    "expired-signatures": lambda inst: _resign(inst, _no_window),
    "ttl-outlives-signatures": lambda inst: _resign(inst, _no_window),
    "missing-dnskey": lambda inst: _resign(inst, _no_removal),
    "broken-nsec3": lambda inst: _resign(inst, _no_removal),
    "tcp-blocked": _open_tcp,
    "ds-mismatch": _right_ds,
}


def test_every_fault_of_the_lab_has_a_repair_here():
    assert set(REPAIRS) == set(faults.available(LAB))


@pytest.mark.parametrize("fault", sorted(REPAIRS))
def test_each_fault_is_seen_and_its_repair_restores_every_check(backend, fault):
    with livelab.instance(livelab.unique_name("bf"), LAB, backend) as inst:
        livelab.break_and_repair(inst, LAB, fault, REPAIRS[fault])


def test_a_signing_fault_is_written_where_the_trainee_can_read_and_mend_it(backend):
    """The fault is in sign.sh, in the node dir the trainee owns, in plain dnssec-signzone options."""
    with livelab.instance(livelab.unique_name("bs"), LAB, backend, faults=["expired-signatures",
                                                                          "broken-nsec3"]) as inst:
        script = (inst.state.node_dir("shop-nsd") / "sign.sh").read_text()
        assert re.search(r"dnssec-signzone .* -P -s now-\d+ -e now-172800 ", script)
        assert re.search(r"(?m)^grep -v .*RRSIG.*NSEC3", script)
        signed = inst.read_file("shop-nsd", "zones/shop.test.zone.signed")
        assert re.search(r"\sIN\s+NSEC3\s", signed) and re.search(r"\sRRSIG\s+A\s", signed)
        assert not re.search(r"\sRRSIG\s+NSEC3\s", signed)
        assert (inst.state.node_dir("shop-nsd") / "sign.sh").stat().st_uid == (inst.state.owner or 0)


def test_her_signing_script_runs_with_her_rights_and_her_helper_opens_only_her_nodes():
    """The trainee owns sign.sh and may write anything in it: what she plants runs as her when
    the instructor reloads the signer (root never runs it). Through her lab's helper she opens
    her own node's firewall and captures in her own node, bounded, and names nothing else."""
    from dnslab import broker, confine
    with livelab.instance(livelab.unique_name("bh"), LAB, faults=["tcp-blocked"], trainees=True) as inst:
        st = inst.state
        uid = st.owner[0]
        d = st.node_dir("shop-nsd")
        script = d / "sign.sh"
        script.write_text(script.read_text() + "id -u > whoami.txt\n")  # her edit (the file is hers)
        assert script.stat().st_uid == uid
        res = livelab.cli("reload", inst.name, "shop-nsd")
        assert res.returncode == 0, livelab.explain(res)
        # made by her uid (inside her user namespace she is "0", mapped to her uid outside)
        assert (d / "whoami.txt").stat().st_uid == uid

        def helper(req: str) -> str:
            code = ("import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                    "s.sendall(sys.argv[2].encode()+b'\\n'); print(s.recv(65536).decode())")
            argv = confine.enter_argv(st, "client", confine.trainee_of(st),
                                      ["/usr/bin/python3", "-c", code, str(st.dir / "control.sock"), req])
            res = subprocess.run(argv, capture_output=True, text=True, cwd="/", timeout=60)
            return res.stdout + res.stderr

        broker.ensure(st)  # her lab's helper (up --jupyter and grade start it)

        assert '"ok": false' in helper('{"op": "unblock", "node": "../../etc"}').replace("'", '"')
        assert '"was_blocked": true' in helper('{"op": "unblock", "node": "shop-nsd"}')
        # a capture in her own node, bounded as asked (a pcap, base64)
        assert '"ok": true' in helper('{"op": "capture", "node": "client", "packets": 5, "seconds": 1}')
        assert "a tcpdump expression" in helper('{"op": "capture", "node": "client", "filter": "port 53; id"}')
        assert inst.query("catalog.shop.test", "TXT", server="shop-nsd", rd=False, tcp=True).answer
