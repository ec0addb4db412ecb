"""What every kind shares: render its templates, say how to start, how to tell it is ready,
and how an operator controls it (its control tool: reload, stop).

A kind *describes* a node as a :class:`~dnslab.nodespec.NodeSpec` (files, command, control
commands) and says how to tell it is ready (:meth:`Kind.probe`); a backend *runs* the spec.
Neither imports the other.
"""
from __future__ import annotations

import base64
import secrets
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Collection

import jinja2

from .. import cache, rpz
from ..nodespec import NodeSpec

if TYPE_CHECKING:
    from ..plan import LabPlan, NodePlan
    from ..zones import ZonePlan

_COMPILED = cache.directory("templates")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent),
    bytecode_cache=jinja2.FileSystemBytecodeCache(str(_COMPILED)) if _COMPILED else None,
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


@dataclass(frozen=True)
class Probe:
    """A DNS query that a node answers once it is ready."""

    address: str
    qname: str
    qtype: str = "SOA"
    rdclass: str = "IN"
    authoritative: bool = True  # need NOERROR with AA; otherwise any answer will do
    signed: bool = False  # need the answer's signature too (asked with DO)


@dataclass(frozen=True)
class Readiness:
    """How a node shows it is ready beyond answering DNS: a command run on it that exits 0 and
    whose output passes ``test``; ``nudge``, run each second it is not, hurries it along."""

    argv: tuple[str, ...]
    test: Callable[[str], bool] = lambda out: True
    nudge: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Served:
    """One zone as one node serves it: its copy, or the transfers it takes part in."""

    name: str
    filename: str
    role: str                                   # "standalone", "primary" or "secondary"
    primary: str | None = None                  # a secondary's: the primary's address it can reach
    secondaries: tuple[str, ...] = ()           # a primary's: every address of its secondaries (who may transfer)
    notify: tuple[str, ...] = ()                # a primary's: one address per secondary, the one it expects us from
    key: str | None = None                      # the TSIG key's name, when transfers are signed
    signs: bool = False                         # this node signs the zone (DNSSEC)
    update_key: str | None = None               # the TSIG key of the zone's registry, on the node it updates
    open: bool = False                          # anyone may transfer the zone from this node (a fault)

    @property
    def id(self) -> str:
        """A name for the zone in configs: its file name without ``.zone`` (``root`` for the root)."""
        return self.filename.removesuffix(".zone")


def served(node: NodePlan, lab: LabPlan) -> list[Served]:
    """How ``node`` serves each of its zones (the templates render this, one way per kind)."""
    out = []
    for z in node.zones:
        plan = lab.zones[z]
        key = f"xfr-{plan.filename.removesuffix('.zone')}" if plan.tsig else None
        signs = plan.signer == node.name
        update = registry_key(z, lab) if plan.registry and plan.loader == node.name else None
        anyone = plan.transfers == "any"
        if plan.primary is None:
            out.append(Served(z, plan.filename, "standalone", signs=signs, update_key=update, open=anyone))
        elif plan.primary == node.name:
            reach = [_toward(node, lab.nodes[s]) for s in plan.secondaries]
            out.append(Served(z, plan.filename, "primary", key=key, secondaries=tuple(a for r in reach for a in r),
                              notify=tuple(r[0] for r in reach if r), signs=signs, update_key=update, open=anyone))
        else:
            reach = _toward(node, lab.nodes[plan.primary])
            out.append(Served(z, plan.filename, "secondary", primary=reach[0] if reach else None, key=key,
                              open=anyone))
    return out


def _toward(node: NodePlan, other: NodePlan) -> list[str]:
    """``other``'s addresses ``node`` reaches it at: on a network both share, or, through its
    gateway, its own (interface) addresses."""
    return node.reachable(other) or (other.addresses if node.gateway else [])


def resigned(zone: ZonePlan, lab: LabPlan) -> bool:
    """True when ``zone``'s signer is a daemon that signs it itself, raising its serial as it does."""
    from . import KINDS
    return zone.signer is not None and KINDS[lab.nodes[zone.signer].kind].resigns


def _clients(node: NodePlan, lab: LabPlan) -> list[str]:
    """Who a resolver answers: its named clients' addresses, or every network of the lab; and
    anyone, last, when a fault opened it (removing those two lines closes it again)."""
    own = ([f"{a}/{128 if ':' in a else 32}" for c in node.clients for a in lab.nodes[c].addresses] if node.clients
           else [str(p) for n in lab.networks.values() for p in (n.ipv4, n.ipv6) if p])
    return own + (["0.0.0.0/0", "::/0"] if node.open else [])


def _parents(node: NodePlan, lab: LabPlan) -> dict[str, list[str]]:
    """For each zone ``node`` signs with lab timers: the addresses of its parent's servers (where
    a signer that checks its DS itself, Knot, looks for it during a KSK rollover) that the node
    reaches."""
    out = {}
    for z in node.zones:
        zplan = lab.zones[z]
        if zplan.signer == node.name and zplan.dnssec.timers == "lab" and zplan.parent:
            out[z] = [a for s in lab.zones[zplan.parent].servers for a in node.reachable(lab.nodes[s])[:1]]
    return out


def top_domains(lab: LabPlan) -> set[str]:
    """The top-level domains of the lab's zones (``test.``): special-use names that a resolver
    answers itself, or refuses, unless told that the lab serves them."""
    return {z.split(".")[-2] + "." for z in lab.zones if z != "."}


def new_secret() -> str:
    """A fresh HMAC-SHA256 secret, base64 (control channels, TSIG keys)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def tsig_keys(lab: LabPlan) -> dict[str, str]:
    """A fresh secret for each zone whose transfers are signed (shared by the zone's primary and
    secondaries) and for each zone's registry (shared by the registry and the zone's primary):
    one set per instance."""
    return {**{f"xfr-{z.filename.removesuffix('.zone')}": new_secret() for z in lab.zones.values() if z.tsig},
            **{registry_key(z.name, lab): new_secret() for z in lab.zones.values() if z.registry}}


def registry_key(zone: str, lab: LabPlan) -> str:
    """The name of the TSIG key a zone's registry signs its updates with."""
    return f"registry-{lab.zones[zone].filename.removesuffix('.zone')}"


class Kind:
    """One node kind. Subclasses set the class variables and, when needed, override a hook."""

    name: ClassVar[str]
    roles: ClassVar[tuple[str, ...]]
    binaries: ClassVar[dict[str, str]] = {}   # executable -> Debian package that has it
    signing_binaries: ClassVar[dict[str, str]] = {}  # what a node needs besides when it signs a zone
    templates: ClassVar[dict[str, str]] = {}  # file written in the node dir -> template beside the kind
    resigns: ClassVar[bool] = False           # a zone it signs is signed by the daemon, with a serial of its own
    capabilities: ClassVar[tuple[str, ...]] = ()  # beyond binding port 53, in its own network namespace only
    resolver_extras: ClassVar[tuple[str, ...]] = ()  # what a resolver kind does here: "policy" (RPZ), "local_root"

    def needs(self, node: NodePlan, lab: LabPlan) -> dict[str, str]:
        """The programs this node runs (executable -> Debian package)."""
        signs = any(lab.zones[z].signer == node.name for z in node.zones)
        return {**self.binaries, **(self.signing_binaries if signs else {})}

    def argv(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """The daemon's command line, in the foreground; ``d`` is the node dir as the node sees it."""
        return None

    def prepare(self, node: NodePlan, lab: LabPlan, d: str) -> list[str]:
        """Shell commands run on the node before its daemon starts (in the node dir): signing
        zones, importing keys."""
        return []

    def signer_reload(self, node: NodePlan, lab: LabPlan, d: str) -> list[str]:
        """Shell commands run on the node before its daemon rereads its zones (re-signing a zone
        its daemon does not sign itself)."""
        return []

    def control(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """The daemon's control tool with its config (rndc, knotc, ...), as typed on the node."""
        return None

    def reload(self, node: NodePlan, d: str) -> tuple[tuple[str, ...], ...]:
        """Commands that make the daemon reread its config and zones (and a resolver drop its cache)."""
        c = self.control(node, d)
        return ((*c, "reload"),) if c else ()

    def rollover(self, node: NodePlan, d: str, zone: str, role: str, tag: int) -> tuple[str, ...] | None:
        """The command that starts a rollover of the zone's ``role`` key (``ksk`` or ``zsk``; ``tag``:
        the key being replaced) on a signer that rolls keys itself (None: it does not)."""
        return None

    def checkds(self, node: NodePlan, d: str, zone: str, tag: int, published: bool) -> tuple[str, ...] | None:
        """The command that tells the signer the parent's DS for KSK ``tag`` is now published (or
        withdrawn), so that a KSK rollover goes on (None: the signer checks the parent itself)."""
        return None

    def told(self, read, zone: str, tag: int, algorithm: int, published: bool) -> bool:
        """Whether the signer already knows that the DS of key ``tag`` is published (or withdrawn);
        ``read`` gives the text of a file of the node dir."""
        return False

    def retiring(self, key_states: str) -> set[int]:
        """The tags of keys on their way out, read from the output of :meth:`key_states`."""
        return set()

    def key_states(self, node: NodePlan, d: str, zone: str) -> tuple[str, ...] | None:
        """The command that shows how the daemon sees the keys of a zone it signs (None: it keeps
        no key states)."""
        return None

    def retransfer(self, node: NodePlan, d: str, zone: str) -> tuple[str, ...] | None:
        """The command that makes a secondary transfer ``zone`` again now (after a failed try,
        BIND waits minutes before asking the same primary again)."""
        return None

    def stop(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """The command that asks the daemon to exit."""
        c = self.control(node, d)
        return (*c, "stop") if c else None

    def flush(self, node: NodePlan, d: str) -> tuple[tuple[str, ...], ...]:
        """Commands that empty a resolver's cache."""
        c = self.control(node, d)
        return ((*c, "flush"),) if c and node.role == "resolver" else ()

    def drop_lookups(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """A command that makes a resolver drop the lookups it is still working on (whoever asked
        gets no answer), so that the next question starts afresh (None: it has none)."""
        return None

    def dump_cache(self, node: NodePlan, d: str) -> tuple[str, ...] | None:
        """A command that prints a resolver's cache as zone-file lines (None: the kind has none)."""
        return None

    def zone_cuts(self, node: NodePlan, d: str, names: Collection[str]) -> tuple[str, ...] | None:
        """For a resolver that cannot print its cache: a command that prints ``cuts:`` and, for
        each of ``names`` it holds a zone cut for, the name and the cut (the deepest name server
        set it has cached at or above it); None: the kind has no such command."""
        return None

    def local_zone(self, node: NodePlan, d: str, zone: str) -> tuple[str, ...] | None:
        """A command whose output says whether a resolver answers from its own copy of ``zone``
        (a local root), read by :meth:`holds_zone` (None: the kind keeps none)."""
        return None

    def holds_zone(self, output: str, zone: str) -> bool:
        """Whether :meth:`local_zone`'s output shows ``zone`` loaded and in use."""
        return False

    def probes(self, node: NodePlan, signed: Collection[str] = ()) -> list[Probe]:
        """What the node answers once it is ready: an authoritative server, each of its zones'
        SOA with authority (a secondary: once transferred), or for a zone of ``signed`` its
        DNSKEY set with its signature (a daemon that signs at load serves a moment unsigned);
        a resolver, anything."""
        if node.role == "authoritative":
            return [Probe(node.address, z, "DNSKEY", signed=True) if z in signed else Probe(node.address, z)
                    for z in node.zones]
        if node.role == "resolver":
            # any reply will do; BIND rate-limits version.bind, so ask for the root's NS
            return [Probe(node.address, ".", "NS", authoritative=False)]
        return []

    def ready(self, node: NodePlan, lab: LabPlan, d: str) -> Readiness | None:
        """How the node shows it is ready in a way no DNS question does (a router: its BGP
        sessions established; a resolver with a local root: its copy in use, its transfer asked
        again each second until then, as the routes to the root may have come after its first
        try); None: no such wait."""
        argv = self.local_zone(node, d, ".") if node.local_root else None
        if argv is None:
            return None
        return Readiness(argv, lambda out: self.holds_zone(out, "."), self.retransfer(node, d, "."))

    def context(self, node: NodePlan, lab: LabPlan, d: str) -> dict:
        """Extra template variables of this kind."""
        return {}

    def spec(self, node: NodePlan, lab: LabPlan, d: str, keys: dict[str, str] | None = None,
             control: str | None = None) -> NodeSpec:
        """Render the node: its config files, zone files (a secondary gets none: it transfers
        them), the keys of the zones it signs, root hints and command. ``keys``: the instance's
        TSIG secrets by key name (:func:`tsig_keys`), ``control``: the node's control-channel
        secret (both kept in the instance's state; left out, fresh ones: right for a node
        rendered on its own only)."""
        keys = tsig_keys(lab) if keys is None else keys
        files = {}
        secret = control or new_secret()
        zones = [lab.zones[z] for z in node.zones]
        serving = served(node, lab)
        for z, how in zip(zones, serving):
            if how.role != "secondary":
                files[f"zones/{z.filename}"] = z.text
            if how.signs:
                files.update({f"keys/{name}": text for k in z.keys for name, text in k.bind_files().items()})
        used = sorted({k for how in serving for k in (how.key, how.update_key) if k})

        if node.role == "resolver" and node.policy is not None:
            files["policy.rpz"] = rpz.zone_text(node.policy)
        if node.role == "resolver":
            files["root.hints"] = "".join(
                f". 3600000 IN NS {host}\n" + "".join(
                    f"{host} 3600000 IN {'AAAA' if ':' in a else 'A'} {a}\n" for a in addrs)
                for host, addrs in lab.root_hints)
        ctx = {"node": node, "lab": lab, "dir": d, "zones": zones, "secret": secret, "serving": serving,
               "keys": [(k, keys[k]) for k in used],
               "clients": _clients(node, lab),
               "anchor": lab.trust_anchor, "parents": _parents(node, lab),
               "root_servers": [a for _, addrs in lab.root_hints for a in addrs],
               "parent_ttl": {z.name: lab.zones[z.parent].ttl if z.parent else 0 for z in zones},
               **self.context(node, lab, d)}
        for out, template in self.templates.items():
            files[out] = _TEMPLATES.get_template(template).render(ctx)
        control = self.control(node, d)
        if control:  # a shell on the node (dnslab-node) types the tool's name alone
            files["shell.rc"] = (f"cd {d}\nPS1='{node.name}:\\w# '\n"
                                 f"alias {control[0]}='{' '.join(control)}'\n")
        argv, before = self.argv(node, d), self.prepare(node, lab, d)
        if argv and before:
            argv = ("sh", "-c", f"cd {shlex.quote(d)} && {' && '.join(before)} && exec {shlex.join(argv)}")
        return NodeSpec(files=files, argv=argv, reload=self.reloading(node, lab, d), stop=self.stop(node, d),
                        control=control, capabilities=self.capabilities)

    def reloading(self, node: NodePlan, lab: LabPlan, d: str) -> tuple[tuple[str, ...], ...]:
        """Every command of a reload: re-signing what the daemon does not sign, then :meth:`reload`."""
        resign = self.signer_reload(node, lab, d)
        first = (("sh", "-c", f"cd {shlex.quote(d)} && {' && '.join(resign)}"),) if resign else ()
        return (*first, *self.reload(node, d))
