"""Zone-transfer probe: ask each server for a full copy of a zone (AXFR over TCP) and report
whether it gave one away. ``python3 attacks/axfr.py ZONE SERVER [SERVER ...]`` prints JSON:
``[{"server", "address", "leaked", "records", "error"}]``. At most 10,000 records and 5 seconds
per server."""
from __future__ import annotations

import json
import sys

import dns.exception
import dns.query
import dns.rdatatype
import dns.zone

import scope

MAX_RECORDS, TIMEOUT = 10_000, 5.0


def probe(zone: str, address: str) -> dict:
    out = {"address": address, "leaked": False, "records": 0, "error": ""}
    try:
        for message in dns.query.xfr(address, zone, timeout=TIMEOUT, lifetime=TIMEOUT):
            out["records"] += sum(len(rrset) for rrset in message.answer)
            if out["records"] > MAX_RECORDS:
                out["error"] = f"stopped after {MAX_RECORDS} records"
                break
        out["leaked"] = out["records"] > 0
    except (dns.exception.DNSException, OSError, EOFError) as exc:
        out["error"] = str(exc) or type(exc).__name__
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.exit("usage: axfr.py ZONE SERVER [SERVER ...]  (servers: nodes of this lab or their addresses)")
    zone, servers = argv[1], argv[2:]
    results = [{"server": s, **probe(zone, scope.target(s))} for s in servers]
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
