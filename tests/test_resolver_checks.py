"""The pieces of the resolver checks that need no lab: reading Unbound's and BIND's cache dumps,
and the UDP datagrams of a capture (Linux cooked headers of ``-i any``, both versions)."""
from __future__ import annotations

import struct

import pytest

from dnslab import capture
from dnslab.checks.resolver import cached

UNBOUND = """START_RRSET_CACHE
;rrset 3587 1 0 8 0
www.bank.test.\t3587\tIN\tNS\tns.www.bank.test.
;rrset 3587 1 0 8 0
ns.www.bank.test.\t3587\tIN\tA\t198.51.100.4
;rrset 58 1 0 8 1
x.www.bank.test.\t58\tIN\tA\t203.0.113.66
;rrset 58 1 0 7 0
ns1.bank.test.\t58\tIN\tAAAA\t\\# 0
END_RRSET_CACHE
START_MSG_CACHE
msg x.www.bank.test. IN A 33152 1 3587 3 1 1 1
www.bank.test. IN NS 0
END_MSG_CACHE
EOF
"""

BIND = """;
; Cache dump of view '_default' (cache _default)
$DATE 20261204072500
; authanswer
bank.test.\t\t3590\tNS\tns1.bank.test.
\t\t\t3590\tRRSIG\tNS 13 2 3600 20261211 20261204 1234 bank.test. AAAA
; glue
ns1.bank.test.\t\t3590\tA\t198.51.100.3
\\-AAAA ;-$NXRRSET
; Dump complete
"""


def test_unbound_cache_dump_records_only_not_bogus_nor_empty_ones():
    assert list(cached(UNBOUND)) == [("www.bank.test.", "NS", "ns.www.bank.test."),
                                     ("ns.www.bank.test.", "A", "198.51.100.4")]


def test_a_validating_unbound_serves_nothing_unchecked():
    validating = UNBOUND.replace(";rrset 3587 1 0 8 0\nwww", ";rrset 3587 1 0 8 5\nwww")
    assert list(cached(validating)) == [("www.bank.test.", "NS", "ns.www.bank.test.")]


def test_bind_cache_dump_with_blank_owners_and_no_class():
    assert list(cached(BIND)) == [("bank.test.", "NS", "ns1.bank.test."),
                                  ("bank.test.", "RRSIG", "NS 13 2 3600 20261211 20261204 1234 bank.test. AAAA"),
                                  ("ns1.bank.test.", "A", "198.51.100.3")]


def _pcap(linktype: int, packets: list[bytes]) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)
    for p in packets:
        out += struct.pack("<IIII", 0, 0, len(p), len(p)) + p
    return out


def _udp4(src: str, sport: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                     bytes(int(x) for x in src.split(".")), bytes(4))
    return ip + struct.pack("!HHHH", sport, 53, 8 + len(payload), 0) + payload


def test_udp_datagrams_of_both_cooked_headers_and_nothing_else():
    dgram = _udp4("198.51.100.5", 33333, b"dns")
    sll = bytes(14) + b"\x08\x00"            # SLL: EtherType at 14
    sll2 = b"\x08\x00" + bytes(18)           # SLL2: EtherType first
    tcp = bytearray(dgram)
    tcp[9] = 6
    for linktype, head in ((113, sll), (276, sll2)):
        got = capture.udp_datagrams(_pcap(linktype, [head + dgram, head + bytes(tcp), head[:4]]))
        assert got == [("198.51.100.5", 33333, b"dns")]
    assert capture.udp_datagrams(_pcap(147, [dgram])) == [] and capture.udp_datagrams(b"") == []


def test_an_attack_timeline_charts_as_well_formed_svg():
    import xml.etree.ElementTree as ET

    from dnslab import plot
    timeline = [[0.07, 6144, "NXDOMAIN"], [1.5, 200000, "TIMEOUT"], [1.9, 260000, "NOERROR"]]
    chart = plot.lines({"forged packets": [(t, n) for t, n, _ in timeline]}, x="seconds", y="packets",
                       title="<attack>", marks=[(t, n, rcode) for t, n, rcode in timeline if rcode == "NOERROR"])
    root = ET.fromstring(chart._repr_svg_())
    lines = root.findall("{http://www.w3.org/2000/svg}polyline")
    assert len(lines) == 2 and len(lines[1].get("points").split()) == 4  # the axes, the series from 0
    assert "&lt;attack&gt;" in chart.svg and len(root.findall("{http://www.w3.org/2000/svg}circle")) == 1


def test_counters_before_and_after_chart_as_bars_to_scale():
    import xml.etree.ElementTree as ET

    from dnslab import plot
    svg = "{http://www.w3.org/2000/svg}"
    chart = plot.bars({"auth-bind": {"open": 26.0, "limited": 0.9}, "<resolver>": {"open": 13.0}},
                      y="bytes at the victim per byte sent", title="reflection")
    root = ET.fromstring(chart.svg)
    bars = root.findall(f"{svg}rect")[1:]  # after the background
    assert [float(b.get("height")) for b in bars] == pytest.approx([164.0, 164.0 * 0.9 / 26, 82.0], abs=0.1)
    texts = [t.text for t in root.findall(f"{svg}text")]
    assert {"open", "limited", "auth-bind", "<resolver>", "26", "0.9", "13"} <= set(texts)
    assert "&lt;resolver&gt;" in chart.svg
