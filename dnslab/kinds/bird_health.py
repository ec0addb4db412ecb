"""Health check of an anycast site, beside BIRD on its router: asks the site's DNS server a
question every 0.05 s; after 3 unanswered, it withdraws the site's prefix (``birdc disable``
of its static protocol), after 3 answered it announces it again. Standard library only: it runs
on the node with Debian's python3 and the trainee's rights, until BIRD, its parent, is gone.

usage: bird_health.py <birdc socket> <protocol>=<server address> ...
"""
from __future__ import annotations

import os
import random
import select
import socket
import struct
import subprocess
import sys
import time

EVERY, MISSES, ANSWERS = 0.05, 3, 3


def answers(sock: socket.socket, address: str) -> bool:
    """Whether the server answers (anything at all) a question for the root's SOA within EVERY."""
    qid = random.randrange(65536)
    try:
        sock.sendto(struct.pack("!6H", qid, 0, 1, 0, 0, 0) + b"\0" + struct.pack("!2H", 6, 1), (address, 53))
    except OSError:
        return False
    end = time.monotonic() + EVERY
    while (left := end - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return False
        try:
            if sock.recv(4096)[:2] == struct.pack("!H", qid):
                return True
        except OSError:
            return False
    return False


def main(ctl: str, checks: list[str]) -> None:
    parent = os.getppid()
    sites = []
    for check in checks:
        proto, address = check.split("=", 1)
        sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, socket.SOCK_DGRAM)
        sites.append({"proto": proto, "address": address, "sock": sock, "up": True, "run": 0})
    while os.getppid() == parent:
        start = time.monotonic()
        for s in sites:
            ok = answers(s["sock"], s["address"])
            s["run"] = s["run"] + 1 if ok != s["up"] else 0
            if s["run"] >= (ANSWERS if ok else MISSES):
                verb = "enable" if ok else "disable"
                res = subprocess.run(["birdc", "-s", ctl, verb, s["proto"]], capture_output=True, text=True)
                if res.returncode == 0:
                    s["up"], s["run"] = ok, 0
                    print(f"health: {s['address']} {'answers again' if ok else 'does not answer'}: "
                          f"{verb}d {s['proto']}", flush=True)
        time.sleep(max(0.0, EVERY - (time.monotonic() - start)))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
