"""Which targets an attack tool may aim at: the node addresses of its own instance, nothing else.

``scope.json`` (beside ``attacks/``, written by dnslab at ``up``) lists them: ``{"lab": name,
"nodes": {node: [addresses it reaches them at]}}``. :func:`target` takes a node name or an address and returns the
address, or exits with a message that says why not.
"""
from __future__ import annotations

import ipaddress
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LIMITS = {"packets": 5_000_000, "seconds": 30.0, "rate": 50_000}  # what any one run may take


def load(path: str | None = None) -> dict:
    with open(path or os.path.join(HERE, "..", "scope.json")) as f:
        return json.load(f)


def check(target: str, scope: dict) -> str:
    """The address ``target`` (a node name or one of its addresses) stands for.

    :raises ValueError: anything that is not an address of a node of this instance
    """
    nodes = scope["nodes"]
    if target in nodes:
        return nodes[target][0]
    try:
        addr = ipaddress.ip_address(target)
    except ValueError:
        raise ValueError(f"{target!r}: give a node of this lab ({', '.join(sorted(nodes))}) or one of its "
                         "addresses; names are not resolved") from None
    if addr.is_loopback or addr.is_unspecified or addr.is_multicast or addr.is_link_local:
        raise ValueError(f"{addr}: loopback, unspecified, multicast and link-local addresses are never targets")
    owner = next((n for n, addrs in nodes.items() if str(addr) in addrs), None)
    if owner is None:
        raise ValueError(f"{addr} is not an address of a node of your lab ({scope['lab']}): attack tools aim at "
                         "your own lab only")
    return str(addr)


def bounded(name: str, value: float) -> float:
    """``value`` if within the limit of ``name`` (packets, seconds, rate), else ValueError."""
    if not 0 < value <= LIMITS[name]:
        raise ValueError(f"{name}: more than 0 and at most {LIMITS[name]:g}, not {value:g}")
    return value


def target(text: str) -> str:
    """:func:`check` against this node's scope.json, exiting with status 2 and the reason if refused."""
    try:
        return check(text, load())
    except ValueError as exc:
        sys.exit(f"refused: {exc}")
