#!/usr/bin/env python3
"""Kaminsky benchmark: how often and how fast the cache-poisoning lab's attack wins, against the
weakened resolver and with each defence on its own, in one run.

    .venv/bin/python bench/kaminsky.py [--runs 10] [--seconds 10] [--no-write]      (as root)

One instance of ``cache-poisoning`` with the faults fixed-port and no-validation (Unbound: one
query port drawn per instance, 0x20 off as by default, no validation; bank.test's server loses
nine in ten of its NXDOMAIN answers, a far server). Each run flushes the resolver, then runs
``attacks/kaminsky.py`` on the attacker node (forged referrals for www.bank.test to ns.evil.test)
for at most ``--seconds``, and counts a win when a random name below www.bank.test resolves to
the attacker's address. Conditions, each changed in the resolver's config as a trainee does and
reloaded: the weak resolver; 0x20 on (``use-caps-for-id: yes``); random ports (the port lines
removed); validation on (``module-config: "validator iterator"``, port still fixed). The BIND
resolver on one port (fault bind-fixed-port: use-v4-udp-ports), without cookies (no-cookies),
validation off; then its DNS cookies on (port still fixed); then random ports, cookies off.
Knot Resolver on two ports (the attacker races on one), no QNAME minimisation, no validation
(fault knot-weak), 0x20 off (knot-no-0x20); then its 0x20 on (nothing else changed).
Prints a Markdown table (wins, median and slowest time to win, median forged packets) and writes
it to bench/results/kaminsky.md. The instance is removed in a finally block.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dnslab import lab  # noqa: E402

INSTANCE = "bench-kaminsky"
DNSLAB = [str(REPO / ".venv" / "bin" / "dnslab")]


def attack(inst, resolver: str, seconds: float) -> dict:
    inst.flush(resolver)
    argv = ["/usr/bin/python3", "attacks/kaminsky.py", "--resolver", resolver, "--server", "bank",
            "--port", inst.plan.values["port"], "--zone", "www.bank.test", "--ns", "ns.evil.test",
            "--seconds", str(seconds)]
    res = inst.exec("attacker", argv, capture=True, timeout=seconds + 30)
    return json.loads(res.stdout)


def edit(inst, node: str, conf: str, pattern: str, repl: str) -> None:
    path = inst.state.node_dir(node) / conf
    path.write_text(re.sub(pattern, repl, path.read_text()))
    inst.reload(node)


def measure(runs: int, seconds: float) -> list[tuple[str, list[dict]]]:
    inst = lab.up(lab.find_lab("cache-poisoning"), [INSTANCE],
                  faults=["fixed-port", "no-validation", "bind-fixed-port", "no-cookies", "knot-weak",
                          "knot-no-0x20"])[0]
    out = []

    def condition(label: str, resolver: str = "resolver", n: int = runs) -> None:
        print(f"  {label} ...", flush=True)
        out.append((label, [attack(inst, resolver, seconds) for _ in range(n)]))

    condition("weak Unbound: one port, no 0x20, no validation")
    edit(inst, "resolver", "unbound.conf", r"(?m)^server:\n", "server:\n  use-caps-for-id: yes\n")
    condition("+ 0x20 (use-caps-for-id: yes)")
    edit(inst, "resolver", "unbound.conf", r"(?m)^  use-caps-for-id: yes\n", "")
    edit(inst, "resolver", "unbound.conf", 'module-config: "iterator"', 'module-config: "validator iterator"')
    condition("+ DNSSEC validation (port still fixed)", n=max(3, runs // 2))
    edit(inst, "resolver", "unbound.conf", 'module-config: "validator iterator"', 'module-config: "iterator"')
    edit(inst, "resolver", "unbound.conf", r"(?m)^  outgoing-port-.*\n", "")
    condition("+ random source ports (validation off)", n=max(3, runs // 2))
    condition("BIND 9.18: one query port, no cookies, no validation", "resolver-bind")
    edit(inst, "resolver-bind", "named.conf", r"(?m)^    send-cookie no;\n", "")
    condition("+ DNS cookies (port still fixed)", "resolver-bind", n=max(3, runs // 2))
    edit(inst, "resolver-bind", "named.conf", r"(?m)^options \{\n", "options {\n    send-cookie no;\n")
    edit(inst, "resolver-bind", "named.conf", r"(?m)^    use-v4-udp-ports .*\n", "")
    condition("+ random source ports (cookies off)", "resolver-bind", n=max(3, runs // 2))
    condition("Knot Resolver 5.6: two ports, whole names, no 0x20, no validation", "resolver-knot")
    edit(inst, "resolver-knot", "kresd.conf", r"(?m)^.*NO_0X20 = true\n", "")
    condition("+ 0x20 (its default; ports still fixed)", "resolver-knot", n=max(3, runs // 2))
    return out


def table(rows: list[tuple[str, list[dict]]], seconds: float) -> str:
    lines = [f"Kaminsky attack on `cache-poisoning` ({datetime.date.today()}, {platform.node()}, "
             f"{os.cpu_count()} cores; each run bounded to {seconds:g} s, resolver flushed first)", "",
             "| resolver | won | median time to win | slowest win | median forged packets to win |",
             "|---|---|---|---|---|"]
    for label, runs in rows:
        won = [r for r in runs if r["poisoned"]]
        times = sorted(r["seconds"] for r in won)
        median, slowest, packets = ((f"{statistics.median(times):.2f} s", f"{times[-1]:.2f} s",
                                     f"{statistics.median(r['sent'] for r in won):,.0f}") if won else ("-", "-", "-"))
        lines.append(f"| {label} | {len(won)}/{len(runs)} | {median} | {slowest} | {packets} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="attacks per condition (half for those that never win)")
    ap.add_argument("--seconds", type=float, default=10, help="bound of one attack")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/kaminsky.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/kaminsky.py needs root (network namespaces)", file=sys.stderr)
        return 3
    try:
        rows = measure(args.runs, args.seconds)
    finally:
        subprocess.run([*DNSLAB, "down", INSTANCE], capture_output=True, cwd=REPO)
    text = table(rows, args.seconds)
    print(text)
    if not args.no_write:
        (REPO / "bench" / "results" / "kaminsky.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
