#!/usr/bin/env python3
"""DNSSEC benchmark: a signed lab's start-up to its first validated answer against the signed
floor, and the wall time of key rollovers on each signer, in one run.

    .venv/bin/python bench/dnssec.py [--runs 3] [--rollovers 2] [--no-write]      (as root)

1. Start-up: ``dnslab up dnssec-signing`` (9 nodes: the root signed by Knot, test. by BIND,
   example.test by dnssec-signzone for NSD, keys made for the instance; two validating
   resolvers) against the shared floor ``/work/shared/bench/floor-lab.sh up 0 1`` (a bare script:
   5 nodes, the root and test. signed by dnssec-signzone, example.test by Knot, keys made by
   dnssec-keygen, one Unbound validating from its root key), in turn; dnslab both as every `up`
   after the first runs (the folder's validation remembered, the plan the previous `up` made ahead
   taken) and as the first (the folder's record and the compiled templates removed). Each is timed from
   launching the command until ``www.example.test A`` asked with DO from the client's network
   namespace, every 10 ms, comes back from the (Unbound) resolver with the address and the AD flag.
2. Rollovers on ``dnssec-rollover`` (lab timers): a ZSK, a KSK (new DS from the CDS, by the
   registry) and an algorithm rollover (ECDSA P-256 to Ed25519 and back, both keys) of bind.test
   (BIND) and knot.test (Knot), each from ``dnslab``'s start of it (``Instance.rollover``,
   ``Instance.roll_algorithm``) until the old key is gone and every KSK left has its DS
   (``Instance.follow_rollover``), with validating queries through both resolvers every 50 ms
   meanwhile: their count and how many failed (not NOERROR with AD).

Prints a Markdown table and writes it to bench/results/dnssec.md. Everything it makes is removed
in a finally block.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import select
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dnslab import lab  # noqa: E402
from dnslab.backends import nsutil  # noqa: E402

CACHE = Path(os.environ.get("DNSLAB_CACHE", "/var/cache/dnslab"))
FLOOR = Path(os.environ.get("DNSLAB_FLOOR", "/work/shared/bench/floor-lab.sh"))
DNSLAB = [str(REPO / ".venv" / "bin" / "dnslab")]
INSTANCE, ROLLING = "benchsigned", "benchroll"
TIMEOUT = 60.0


def first_ad(cmd: list[str], netns: str, server: str, qname: str, want: str) -> float:
    """Launch ``cmd`` and ask ``qname`` A with DO from ``netns`` every 10 ms; seconds until an answer
    with ``want`` and the AD flag."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)
    sock = None
    try:
        while time.monotonic() - t0 < TIMEOUT:
            if proc.poll() not in (None, 0):
                raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout.read()[-2000:]}")
            if sock is None and Path(f"/run/netns/{netns}").exists():
                try:
                    sock = nsutil.socket_in(f"/run/netns/{netns}", socket.AF_INET, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                except OSError:
                    sock = None
            if sock is not None:
                q = dns.message.make_query(qname, "A", want_dnssec=True)
                try:
                    sock.sendto(q.to_wire(), (server, 53))
                except OSError:
                    pass
                ready, _, _ = select.select([sock], [], [], 0.01)
                for _ in ready:
                    try:
                        reply = dns.message.from_wire(sock.recv(4096))
                    except Exception:  # EAGAIN, a reply that does not parse
                        continue
                    if reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AD and any(
                            rr.to_text() == want for rrset in reply.answer if rrset.rdtype == dns.rdatatype.A
                            for rr in rrset):
                        took = time.monotonic() - t0
                        proc.communicate()
                        if proc.returncode:
                            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}")
                        return took
            else:
                time.sleep(0.01)
        raise RuntimeError(f"no validated answer within {TIMEOUT:.0f}s")
    finally:
        if sock is not None:
            sock.close()
        if proc.poll() is None:
            proc.communicate()


def startup(runs: int) -> dict[str, list[float]]:
    """Start-ups of the floor, of dnslab with the folder validated before (``dnslab``: its
    fingerprint remembered and the plan the previous `up` made taken, as for every `up` after the
    first) and without (``cold``: the folder's record and the compiled templates removed first, so
    the whole folder is validated and the templates compiled; the key pools stay, as any earlier
    `up` of a signed lab leaves them), in turn."""
    out: dict[str, list[float]] = {"floor": [], "dnslab": [], "cold": []}
    resolver = lab.load_plan(lab.find_lab("dnssec-signing")).nodes["resolver-unbound"].address
    subprocess.run([*DNSLAB, "validate", "dnssec-signing"], capture_output=True)
    for cmd in (["up", "dnssec-signing", "--name", INSTANCE], ["down", INSTANCE]):  # the first up: not counted
        subprocess.run([*DNSLAB, *cmd], capture_output=True)
    for i in range(runs):
        order = ("floor", "dnslab", "cold") if i % 2 == 0 else ("cold", "dnslab", "floor")
        for system in order:
            if system == "floor":
                out["floor"].append(first_ad(["bash", str(FLOOR), "up", "0", "1"], "floor-c0-cli", "198.18.0.4",
                                             "www.example.test", "192.0.2.80"))
                subprocess.run(["bash", str(FLOOR), "down", "0"], capture_output=True)
                continue
            if system == "cold":
                for sub in ("validated", "templates"):
                    shutil.rmtree(CACHE / sub, ignore_errors=True)
            out[system].append(first_ad([*DNSLAB, "up", "dnssec-signing", "--name", INSTANCE],
                                        f"dnslab-{INSTANCE}-client", resolver, "www.example.test", "192.0.2.80"))
            subprocess.run([*DNSLAB, "down", INSTANCE], capture_output=True)
    return out


def rollovers(runs: int) -> dict[tuple[str, str], list[tuple[float, int, int]]]:
    """(zone, role) -> [(seconds, queries, failures)]."""
    inst = lab.up(lab.find_lab("dnssec-rollover"), [ROLLING])[0]
    out: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for _ in range(runs):
        for zone, role in (("knot.test.", "zsk"), ("knot.test.", "ksk"), ("bind.test.", "zsk"), ("bind.test.", "ksk"),
                           ("knot.test.", "algorithm"), ("bind.test.", "algorithm")):
            stop, counts = threading.Event(), [0, 0]

            def ask() -> None:
                while not stop.is_set():
                    for resolver in ("resolver-unbound", "resolver-bind"):
                        try:
                            reply = inst.query(f"www.{zone}", "A", server=resolver, dnssec=True, timeout=2)
                            ok = reply.rcode() == dns.rcode.NOERROR and bool(reply.flags & dns.flags.AD)
                        except Exception:
                            ok = False
                        counts[0] += 1
                        counts[1] += not ok
                    time.sleep(0.05)
            thread = threading.Thread(target=ask)
            thread.start()
            try:
                if role == "algorithm":  # to ED25519, and back at the next run
                    to = "ECDSAP256SHA256" if inst.plan.zones[zone].dnssec.algorithm == "ED25519" else "ED25519"
                    took = inst.follow_rollover(zone, inst.roll_algorithm(zone, to), timeout=180)
                else:
                    took = inst.follow_rollover(zone, inst.rollover(zone, role), timeout=180)
            finally:
                stop.set()
                thread.join()
            out.setdefault((zone, role), []).append((took, counts[0], counts[1]))
            print(f"  {role.upper()} rollover of {zone}: {took:.1f}s, {counts[0]} queries, {counts[1]} failed",
                  flush=True)
    return out


def table(start: dict[str, list[float]], rolls: dict) -> str:
    def cell(xs: list[float]) -> str:
        return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
    ratio = statistics.median(start["dnslab"]) / statistics.median(start["floor"])
    cold = statistics.median(start["cold"]) / statistics.median(start["floor"])
    lines = [f"DNSSEC benchmark, {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; "
             f"{len(start['dnslab'])} start-ups each, {len(next(iter(rolls.values()), []))} rollovers each.", "",
             "| start-up to the first validated (AD) answer | seconds, median (min-max) | vs the floor | target |",
             "|---|---|---|---|",
             f"| signed floor (`floor-lab.sh up 0 1`, 5 nodes) | {cell(start['floor'])} | 1.00x | |",
             f"| `dnslab up dnssec-signing` (9 nodes, 3 signers, keys per instance) | {cell(start['dnslab'])} | "
             f"{ratio:.2f}x | <= 1.5x |",
             f"| the same, first `up` of the folder (validated whole, templates compiled) | {cell(start['cold'])} | "
             f"{cold:.2f}x | |", ""]
    if rolls:
        lines += ["| rollover (lab timers) | seconds, median (min-max) | validating queries | failed | target |",
                  "|---|---|---|---|---|"]
    for (zone, role), rows in rolls.items():
        signer = "BIND" if zone.startswith("bind") else "Knot"
        what = (f"algorithm of {zone} ({signer}), ECDSA P-256 <-> Ed25519, both keys" if role == "algorithm" else
                f"{role.upper()} of {zone} ({signer})") + (", DS replaced by the registry from the CDS"
                                                           if role in ("ksk", "algorithm") else "")
        target = {"ksk": "<= 60 s, ", "zsk": "<= 30 s, "}.get(role, "")
        lines.append(f"| {what} | {cell([r[0] for r in rows])} | {sum(r[1] for r in rows)} | "
                     f"{sum(r[2] for r in rows)} | {target}0 failed |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="start-ups of each system")
    ap.add_argument("--rollovers", type=int, default=2, help="rollovers of each kind")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/dnssec.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/dnssec.py needs root (network namespaces)", file=sys.stderr)
        return 3
    try:
        print("start-up to the first validated answer ...", flush=True)
        start = startup(args.runs)
        print("rollovers ...", flush=True)
        rolls = rollovers(args.rollovers) if args.rollovers else {}
    finally:
        subprocess.run(["bash", str(FLOOR), "down", "0"], capture_output=True)
        for name in (INSTANCE, ROLLING):
            subprocess.run([*DNSLAB, "down", name], capture_output=True)
    text = table(start, rolls)
    print(text)
    if not args.no_write:
        (REPO / "bench" / "results" / "dnssec.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
