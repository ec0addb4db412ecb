#!/usr/bin/env python3
"""Spoofer benchmark: forged DNS responses per second from dnslab's spoofer against a C sender and
scapy, in the same run, on the same path.

    .venv/bin/python bench/spoof.py [--runs 3] [--packets 500000] [--no-write]      (as root)

The bench makes two network namespaces of its own joined by a veth pair (198.51.100.1 sends,
198.51.100.2 receives and drops; nothing else reaches or leaves them) and sends the same
forged response (the Kaminsky packet: IPv4, UDP from port 53, an A answer) with:
1. ``dnslab/attacks/spoof.py`` as the attacker node runs it (Debian's python3: packets built
   once for all 65,536 IDs, one connected raw socket, ``send`` mapped over a batch in C);
2. a C reference built here with gcc: the same packets, ``sendmmsg`` in batches of 1,024;
3. scapy ``send()`` (a new socket per call, as most tutorials do) and scapy on one reused L3
   socket, installed from PyPI into a throw-away venv (fewer packets: they are slow).
Prints a Markdown table and writes it to bench/results/spoof.md; removes everything it made.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NS = ("dnslab-bench-spoof-a", "dnslab-bench-spoof-b")
SRC, DST, FORGED_FROM = "198.51.100.1", "198.51.100.2", "198.51.100.3"

C_SENDER = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
/* argv: hex of one packet (IPv4+UDP+DNS, ID 0 at the DNS header), destination, count */
int main(int argc, char **argv) {
    size_t len = strlen(argv[1]) / 2; unsigned char tpl[2048];
    for (size_t i = 0; i < len; i++) sscanf(argv[1] + 2 * i, "%2hhx", &tpl[i]);
    long count = atol(argv[3]); enum { B = 1024 };
    static unsigned char bufs[B][2048]; struct mmsghdr msgs[B]; struct iovec iov[B];
    struct sockaddr_in dst = { .sin_family = AF_INET }; inet_pton(AF_INET, argv[2], &dst.sin_addr);
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); if (s < 0) { perror("socket"); return 1; }
    for (int i = 0; i < B; i++) {
        memcpy(bufs[i], tpl, len); iov[i].iov_base = bufs[i]; iov[i].iov_len = len;
        memset(&msgs[i], 0, sizeof msgs[i]); msgs[i].msg_hdr.msg_iov = &iov[i]; msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &dst; msgs[i].msg_hdr.msg_namelen = sizeof dst;
    }
    struct timespec t0, t1; clock_gettime(CLOCK_MONOTONIC, &t0);
    long sent = 0; unsigned id = 0;
    while (sent < count) {
        int n = count - sent < B ? (int)(count - sent) : B;
        for (int i = 0; i < n; i++, id++) { bufs[i][28] = id >> 8; bufs[i][29] = id & 0xff; }
        int r = sendmmsg(s, msgs, n, 0); if (r < 0) { perror("sendmmsg"); return 1; }
        sent += r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("{\"sent\": %ld, \"seconds\": %.3f, \"pps\": %.0f}\n", sent, secs, sent / secs);
    return 0;
}
"""

SCAPY = r"""
import json, sys, time
from scapy.all import IP, UDP, DNS, DNSQR, DNSRR, conf, send
mode, count = sys.argv[1], int(sys.argv[2])
pkt = IP(src=sys.argv[3], dst=sys.argv[4]) / UDP(sport=53, dport=33333) / DNS(
    id=0, qr=1, aa=1, qd=DNSQR(qname="www.test."), an=DNSRR(rrname="www.test.", rdata="192.0.2.66"))
t0 = time.monotonic()
if mode == "send":
    for i in range(count):
        pkt[DNS].id = i & 0xffff
        send(pkt, verbose=False)
else:
    s = conf.L3socket()
    for i in range(count):
        pkt[DNS].id = i & 0xffff
        s.send(pkt)
took = time.monotonic() - t0
print(json.dumps({"sent": count, "seconds": round(took, 3), "pps": round(count / took)}))
"""


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd="/", **kw)


def make_path() -> None:
    for ns in NS:
        sh("ip", "netns", "add", ns)
    sh("ip", "-n", NS[0], "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", NS[1])
    for ns, dev, addr in ((NS[0], "veth0", SRC), (NS[1], "veth1", DST)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def remove_path() -> None:
    for ns in NS:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, cwd="/")


def in_a(*argv: str, timeout: float = 300) -> dict:
    res = sh("ip", "netns", "exec", NS[0], *argv, timeout=timeout)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--packets", type=int, default=500_000, help="packets per run of dnslab and C")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    tmp = Path(tempfile.mkdtemp(prefix="dnslab-bench-spoof-"))
    results: dict[str, list[float]] = {}
    try:
        remove_path()
        make_path()
        tools = tmp / "attacks"
        shutil.copytree(REPO / "dnslab" / "attacks", tools)
        (tmp / "scope.json").write_text(json.dumps({"lab": "bench", "nodes": {"resolver": [DST],
                                                                                "server": [FORGED_FROM]}}))
        sys.path.insert(0, str(tools))
        import spoof  # the very packet the node's spoofer sends, for the C sender
        wire = spoof.packets(FORGED_FROM, DST, 33333, spoof.response("www.test", "192.0.2.66", None))[0]
        (tmp / "sender.c").write_text(C_SENDER)
        sh("gcc", "-O2", "-o", str(tmp / "sender"), str(tmp / "sender.c"))
        print("installing scapy into a throw-away venv ...", flush=True)
        sh(sys.executable, "-m", "venv", str(tmp / "venv"))
        sh(str(tmp / "venv" / "bin" / "pip"), "install", "-q", "scapy", timeout=300)
        (tmp / "scapy_send.py").write_text(SCAPY)
        spoofer = ["/usr/bin/python3", str(tools / "spoof.py"), "--source", FORGED_FROM, "--target", DST,
                   "--port", "33333", "--name", "www.test", "--answer", "192.0.2.66", "--seconds", "30",
                   "--packets", str(args.packets)]
        runs = {
            "C sendmmsg (reference)": [str(tmp / "sender"), wire.hex(), DST, str(args.packets)],
            "dnslab spoofer": spoofer,
            "scapy send()": [str(tmp / "venv" / "bin" / "python"), str(tmp / "scapy_send.py"), "send", "2000",
                             FORGED_FROM, DST],
            "scapy, one L3 socket": [str(tmp / "venv" / "bin" / "python"), str(tmp / "scapy_send.py"), "socket",
                                     "20000", FORGED_FROM, DST],
        }
        for i in range(args.runs):
            for name, argv in runs.items():
                got = in_a(*argv)
                results.setdefault(name, []).append(got["pps"])
                print(f"  run {i + 1}: {name}: {got['pps']:.0f} packets/s ({got['sent']} in {got['seconds']}s)",
                      flush=True)
    finally:
        remove_path()
        shutil.rmtree(tmp, ignore_errors=True)
    ref = statistics.median(results["C sendmmsg (reference)"])
    lines = [f"Spoofer benchmark, {datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs; "
             f"{args.runs} runs each, alternating; forged DNS responses over a veth pair between two namespaces.", "",
             "| sender | packets/s, median (min-max) | vs C | target |", "|---|---|---|---|"]
    for name, pps in results.items():
        target = ">= 0.75x" if name == "dnslab spoofer" else ""
        lines.append(f"| {name} | {statistics.median(pps):,.0f} ({min(pps):,.0f}-{max(pps):,.0f}) | "
                     f"{statistics.median(pps) / ref:.2f}x | {target} |")
    table = "\n".join(lines) + "\n"
    print(table)
    if not args.no_write:
        out = REPO / "bench" / "results" / "spoof.md"
        out.write_text(table)
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
