"""A resolver's response policy zone (RPZ, a DNS firewall): the zone file written from the lab
file's ``policy`` records, which the resolver loads from its node directory (``policy.rpz``),
and the check of one record."""
from __future__ import annotations

import dns.exception
import dns.zone

ZONE = "rpz."  # the policy zone's name, the same on every resolver
HEAD = "$TTL 60\n@ IN SOA localhost. hostmaster.localhost. 1 3600 600 86400 60\n@ IN NS localhost.\n"


def zone_text(records: tuple[str, ...] | list[str]) -> str:
    """The policy zone: its SOA and NS, then the records (relative to it, as written)."""
    return HEAD + "".join(f"{r}\n" for r in records)


def record_problem(record: str) -> str | None:
    """Why ``record`` is no policy record (a zone-file line relative to the policy zone), or None."""
    if "\n" in record or record.lstrip().startswith("$"):
        return "one record per line, no $ directives"
    try:
        dns.zone.from_text(zone_text([record]), origin=ZONE, relativize=False, check_origin=True)
    except (dns.exception.DNSException, ValueError) as exc:
        return f"{record!r} is not a policy record ({exc}); e.g. 'bad.test CNAME .' blocks bad.test"
    return None
