"""What every kind shares: render its templates, say how to start, how to tell it is ready,
and how an operator controls it (its control tool: reload, stop).

A kind *describes* a node as a :class:`NodeSpec` (files, command, readiness probe);
a backend *runs* it. Neither imports the other.
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import jinja2

if TYPE_CHECKING:
    from ..plan import LabPlan, NodePlan

_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Probe:
    """A DNS query that a node answers once it is ready."""

    address: str
    qname: str
    qtype: str = "SOA"
    rdclass: str = "IN"
    authoritative: bool = True  # need NOERROR with AA; otherwise any answer will do


@dataclass(frozen=True)
class NodeSpec:
    """Everything a backend needs to make one node real, and how an operator drives its daemon."""

    files: dict[str, str] = field(default_factory=dict)  # path relative to the node dir -> content
    argv: tuple[str, ...] | None = None                  # the daemon, in the foreground
    ready: Probe | None = None
    resolv_conf: str | None = None                       # /etc/resolv.conf as the node sees it
    reload: tuple[tuple[str, ...], ...] = ()             # rereads config and zones (a resolver: and its cache)
    stop: tuple[str, ...] | None = None                  # asks the daemon to exit


class Kind:
    """One node kind. Subclasses set the class variables and, when needed, override a hook."""

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    binaries: ClassVar[dict[str, str]] = {}   # executable -> Debian package that has it
    templates: ClassVar[dict[str, str]] = {}  # file written in the node dir -> template beside the kind

    def argv(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """The daemon's command line, in the foreground; ``d`` is the node dir as the node sees it."""
        return None

    def control(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """The daemon's control tool with its config (rndc, knotc, ...), as typed on the node."""
        return None

    def reload(self, node: NodePlan, d: str) -> tuple[tuple[str, ...], ...]:
        """Commands that make the daemon reread its config and zones (and a resolver drop its cache)."""
        c = self.control(node, d)
        return ((*c, "reload"),) if c else ()

    def probe(self, node: NodePlan) -> Probe | None:
        if node.role == "authoritative":
            return Probe(node.address, node.zones[0])
        if node.role == "resolver":
            # any reply will do; BIND rate-limits version.bind, so ask for the root's NS
            return Probe(node.address, ".", "NS", authoritative=False)
        return None

    def context(self, node: NodePlan, lab: LabPlan, d: str) -> dict:
        """Extra template variables of this kind."""
        return {}

    def spec(self, node: NodePlan, lab: LabPlan, d: str) -> NodeSpec:
        """Render the node: its config files, zone files, root hints and command."""
        files = {}
        secret = base64.b64encode(secrets.token_bytes(32)).decode()  # this node's control key, made per instance
        zones = [lab.zones[z] for z in node.zones]
        for z in zones:
            files[f"zones/{z.filename}"] = z.text
        if node.role == "resolver":
            files["root.hints"] = "".join(
                f". 3600000 IN NS {host}\n" + "".join(
                    f"{host} 3600000 IN {'AAAA' if ':' in a else 'A'} {a}\n" for a in addrs)
                for host, addrs in lab.root_hints)
        ctx = {"node": node, "lab": lab, "dir": d, "zones": zones, "secret": secret,
               "lab_prefixes": [str(p) for n in lab.networks.values() for p in (n.ipv4, n.ipv6) if p],
               **self.context(node, lab, d)}
        for out, template in self.templates.items():
            files[out] = _TEMPLATES.get_template(template).render(ctx)
        control = self.control(node, d)
        if control:  # a shell on the node (dnslab-node) types the tool's name alone
            files["shell.rc"] = (f"cd {d}\nPS1='{node.name}:\\w# '\n"
                                 f"alias {control[0]}='{' '.join(control)}'\n")
        return NodeSpec(files=files, argv=self.argv(node, d), ready=self.probe(node), reload=self.reload(node, d),
                        stop=(*control, "stop") if control else None)
