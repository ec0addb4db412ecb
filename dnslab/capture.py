"""Packet capture inside one node of a lab: what crosses its interfaces, as a pcap file that
Wireshark opens, bounded in packets, seconds and bytes.

``tcpdump`` runs in the node's network namespace (the same on both backends: a container's is
attached by name), raw (``-w -``: it dissects nothing it captures, so nothing a trainee sends is
parsed with root's rights), and stops at whichever bound comes first. A summary for a terminal
is read back from the pcap by ``tcpdump -r`` with no rights at all (``setpriv`` to nobody).
"""
from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from typing import Iterator

from .errors import EnvError, InputError
from .backends.base import BackendError
from .backends.wiring import node_ns

MAX_PACKETS, MAX_SECONDS, MAX_BYTES = 100_000, 300, 64 << 20
TRAINEE_BYTES = 8 << 20  # what a notebook gets through the lab's helper (base64 in one reply)
SNAPLEN = 4096  # a DNS message over UDP is at most 4096 bytes here (EDNS buffers are 1232)
FILTER = re.compile(r"^[A-Za-z0-9 .:/()!&|<>=\[\]-]{0,200}$")


@dataclass
class Capture:
    pcap: bytes
    packets: int
    seconds: float
    truncated: bool  # stopped at the byte bound


def bounds(packets: int, seconds: float, bpf: str) -> None:
    """:raises InputError: a bound outside what a capture may take, or a filter that is no tcpdump expression"""
    if not 0 < packets <= MAX_PACKETS:
        raise InputError(f"packets: 1 to {MAX_PACKETS}, not {packets}")
    if not 0 < seconds <= MAX_SECONDS:
        raise InputError(f"seconds: more than 0 and at most {MAX_SECONDS}, not {seconds}")
    if not FILTER.match(bpf):
        raise InputError(f"filter {bpf!r}: a tcpdump expression of at most 200 characters (letters, digits, "
                         "spaces and . : / ( ) ! & | < > = [ ] -), e.g. 'udp port 53'")


def run(instance: str, node: str, packets: int = 1000, seconds: float = 10, bpf: str = "",
        max_bytes: int = MAX_BYTES) -> Capture:
    """Capture in ``node`` of ``instance`` until ``packets`` are seen, ``seconds`` have passed or
    the pcap holds ``max_bytes``.

    :raises InputError: bounds or filter (:func:`bounds`)
    :raises EnvError: no tcpdump here
    :raises BackendError: tcpdump refused (its message, e.g. a bad filter)
    """
    bounds(packets, seconds, bpf)
    tcpdump = shutil.which("tcpdump", path="/usr/sbin:/usr/bin:/sbin:/bin")
    if tcpdump is None:
        raise EnvError("capturing needs tcpdump: apt-get install tcpdump")
    argv = ["ip", "netns", "exec", node_ns(instance, node), "timeout", "-s", "INT", f"{seconds}",
            tcpdump, "-i", "any", "-U", "-n", "-s", str(SNAPLEN), "-c", str(packets), "-w", "-", *bpf.split()]
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    out, truncated = bytearray(), False
    try:
        while chunk := proc.stdout.read1(1 << 16):
            out += chunk
            if len(out) > max_bytes:
                truncated = True
                proc.terminate()
                break
        err = proc.stderr.read().decode(errors="replace")
    finally:
        proc.stdout.close()
        proc.stderr.close()
        proc.wait()
    if proc.returncode not in (0, 124, -2, -15) and not out:  # 124: timeout's; -2/-15: our own signal
        said = [ln for ln in err.splitlines() if not ln.startswith(("tcpdump: data link type", "tcpdump: listening"))]
        raise BackendError(f"tcpdump in {node} failed: {' '.join(said).strip()[-500:]}")
    pcap = bytes(out[:max_bytes])
    return Capture(pcap, _count(pcap), round(time.monotonic() - t0, 2), truncated)


def summary(pcap: bytes, limit: int = 200) -> str:
    """One line per packet (the first ``limit``), read by ``tcpdump -r`` as nobody."""
    if not pcap:
        return ""
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--no-new-privs",
            "tcpdump", "-nn", "-r", "-", "-c", str(limit)]
    res = subprocess.run(argv, input=pcap, capture_output=True, timeout=30, cwd="/")
    return res.stdout.decode(errors="replace")


def _records(pcap: bytes) -> Iterator[bytes]:
    """The packets of a pcap stream (a record cut short at the end left out)."""
    if len(pcap) < 24:
        return
    order = "little" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    at = 24
    while at + 16 <= len(pcap):
        size = int.from_bytes(pcap[at + 8:at + 12], order)
        if at + 16 + size > len(pcap):
            return
        yield pcap[at + 16:at + 16 + size]
        at += 16 + size


def _count(pcap: bytes) -> int:
    return sum(1 for _ in _records(pcap))


LINK_HEADER = {113: (16, 14), 276: (20, 0), 1: (14, 12)}  # linktype: (header length, offset of the EtherType)


def udp_datagrams(pcap: bytes) -> list[tuple[str, int, bytes]]:
    """(source address, source port, payload) of each UDP datagram in a capture of ``-i any``
    (Linux cooked headers) or of one Ethernet link; anything else is skipped."""
    if len(pcap) < 24:
        return []
    order = "little" if pcap[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    header, ethertype_at = LINK_HEADER.get(int.from_bytes(pcap[20:24], order) & 0xFFFF, (None, None))
    out = []
    for pkt in _records(pcap) if header is not None else ():
        ethertype, ip = int.from_bytes(pkt[ethertype_at:ethertype_at + 2], "big"), pkt[header:]
        if ethertype == 0x0800 and len(ip) >= 20 and ip[9] == 17:
            src, udp = ipaddress.IPv4Address(ip[12:16]), ip[(ip[0] & 0x0F) * 4:]
        elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == 17:
            src, udp = ipaddress.IPv6Address(ip[8:24]), ip[40:]
        else:
            continue
        if len(udp) >= 8:
            out.append((str(src), int.from_bytes(udp[0:2], "big"), udp[8:]))
    return out
