"""Pictures of a name's chain of trust, drawn by dnsviz (Debian's package) on the lab's own
client: probed through a lab resolver, analysed against the lab root's key (never the real
root's), returned as PNG or SVG bytes. The CLI (``dnslab dnsviz``) and the notebooks
(``lab.dnsviz(name)``) run the same command on the node, with the rights of whoever owns it."""
from __future__ import annotations

import base64

import dns.exception
import dns.name

from .errors import InputError

FORMATS = ("png", "svg")

# $1 the trust anchor (a DNSKEY record), $2 the resolver's address, $3 the name, $4 the format;
# the picture comes out base64-encoded (node commands give text)
_SCRIPT = ('T=$(mktemp -d) && trap \'rm -rf "$T"\' EXIT && printf "%s\\n" "$1" > "$T/anchor" && '
           'dnsviz probe -s "$2" "$3" > "$T/probe.json" && '
           'dnsviz graph -r "$T/probe.json" -t "$T/anchor" -T"$4" -o - | base64 -w0')


def command(anchor: str, resolver: str, name: str, fmt: str = "png") -> list[str]:
    """The command that draws ``name``'s chain of trust on a node that reaches ``resolver``."""
    try:
        dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise InputError(f"{name!r} is not a DNS name: {exc}") from None
    if fmt not in FORMATS:
        raise InputError(f"format {fmt!r}: dnsviz draws {', '.join(FORMATS)}")
    return ["sh", "-c", _SCRIPT, "dnsviz", anchor, resolver, name, fmt]


def decode(output: str) -> bytes:
    return base64.b64decode(output.strip() or b"")
