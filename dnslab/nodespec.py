"""A node as a backend runs it: files, a command, how an operator drives its daemon.

Kinds (:mod:`dnslab.kinds`) render a plan's node into a :class:`NodeSpec`; backends
(:mod:`dnslab.backends`) make it real without knowing which kind it came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeSpec:
    """Everything a backend needs to make one node real, and how an operator drives its daemon."""

    files: dict[str, str] = field(default_factory=dict)  # path relative to the node dir -> content
    argv: tuple[str, ...] | None = None                  # the daemon, in the foreground
    resolv_conf: str | None = None                       # /etc/resolv.conf as the node sees it
    reload: tuple[tuple[str, ...], ...] = ()             # rereads config and zones (a resolver: and its cache)
    stop: tuple[str, ...] | None = None                  # asks the daemon to exit
    control: tuple[str, ...] | None = None               # the daemon's control tool with its config (rndc -c ...)
    capabilities: tuple[str, ...] = ()                   # what the daemon needs in its own namespace (NET_ADMIN)
