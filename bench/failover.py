#!/usr/bin/env python3
"""Failover benchmark: how long the vantage points of the root-anycast lab wait for another site
when their site fails, for each way of failing and each BGP setting, in one run.

    .venv/bin/python bench/failover.py [--budget 15] [--no-write]      (as root)

For each setting of :data:`dnslab.failover.SETTINGS` (BIRD's default timers; hold 3 s; BFD
100 ms x 3; BFD and a health check) one instance of ``root-anycast`` made so, and for each way a
site fails (:data:`dnslab.failover.HOW`: its DNS daemon stops, its router freezes, its links go
silent, its links are cut) site A (north's) fails while every resolver and client asks the root's
anycast address for its NSID every 10 ms, until every one is answered by another site (at most
``--budget`` seconds), then the site is repaired. Prints a Markdown table (seconds until the last
vantage point moved, and the questions north's resolver lost meanwhile), writes it to
bench/results/failover.md. Instances are removed in a finally block.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from dnslab import failover, lab  # noqa: E402

DNSLAB = [str(REPO / ".venv" / "bin" / "dnslab")]


def measure(budget: float) -> dict[tuple[str, str], failover.Outage]:
    out = {}
    for setting in failover.SETTINGS:
        name = f"bench-fo-{setting.replace('+', '-')}"
        with tempfile.TemporaryDirectory() as tmp:
            lab_dir = failover.variant(lab.find_lab("root-anycast"), setting, Path(tmp) / "root-anycast")
            try:
                inst = lab.up(lab_dir, [name])[0]
                for how in failover.HOW:
                    print(f"  {setting}: {how} ...", flush=True)
                    out[(setting, how)] = failover.measure(inst, "root-a", how, budget=budget)
            finally:
                subprocess.run([*DNSLAB, "down", name], capture_output=True, cwd=REPO)
    return out


def table(results: dict[tuple[str, str], failover.Outage], budget: float) -> str:
    lines = [f"Failover of site A in `root-anycast` ({datetime.date.today()}, {platform.node()}, {os.cpu_count()} "
             f"cores): seconds until every resolver and client is answered by another site (NSID asked every "
             f"10 ms; at most {budget:g} s), and in brackets the questions north's resolver lost meanwhile", "",
             "| BGP setting | " + " | ".join(failover.HOW) + " |", "|---" * (len(failover.HOW) + 1) + "|"]
    for setting, words in failover.SETTINGS.items():
        cells = []
        for how in failover.HOW:
            o = results[(setting, how)]
            lost = o.lost.get("resolver-north", 0)
            cells.append(f"{o.seconds:.2f} ({lost})" if o.seconds is not None else f"> {budget:g} ({lost})")
        lines.append(f"| {setting} ({words}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=15, help="seconds one failover is waited for")
    ap.add_argument("--no-write", action="store_true", help="do not write bench/results/failover.md")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/failover.py needs root (network namespaces)", file=sys.stderr)
        return 3
    text = table(measure(args.budget), args.budget)
    print(text)
    if not args.no_write:
        (REPO / "bench" / "results" / "failover.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
