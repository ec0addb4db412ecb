"""Labs and their instances: plan -> up / down / status, through a backend and the state file."""
from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
import dataclasses
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from . import backends
from .backends import BackendError
from .errors import InputError, LabError
from .state import State, all_states, check_name

if TYPE_CHECKING:  # imported where used: `down` needs neither pydantic, jinja2 nor dnspython
    import dns.message

    from . import capture, cgroups, dnsquery, keystate, kinds, plan

READY_TIMEOUT = 30.0
Progress = Callable[[str], None]


def labs_root() -> Path:
    """Where shipped labs live: ``$DNSLAB_LABS`` or the ``labs/`` folder of this checkout."""
    return Path(os.environ.get("DNSLAB_LABS", Path(__file__).resolve().parent.parent / "labs"))


def find_lab(name_or_path: str) -> Path:
    """A lab folder from a shipped lab name or a path to a folder or lab.yaml."""
    p = Path(name_or_path)
    if p.name == "lab.yaml" and p.is_dir():
        raise InputError(f"{p} is a directory: a lab file is a file named lab.yaml, in its lab folder")
    if p.is_file():
        if p.name != "lab.yaml":  # an instance copies the folder and reloads <folder>/lab.yaml
            raise InputError(f"{p}: a lab file is named lab.yaml, in its lab folder; give that folder")
        return p.parent
    if p.is_dir() and (p / "lab.yaml").is_file():
        return p
    shipped = labs_root() / name_or_path
    if "/" not in name_or_path and (shipped / "lab.yaml").is_file():
        return shipped
    known = ", ".join(shipped_labs()) or "none"
    raise InputError(f"no lab {name_or_path!r}: not a shipped lab (known: {known}) nor a folder with lab.yaml")


def shipped_labs() -> list[str]:
    root = labs_root()
    return sorted(d.name for d in root.iterdir() if (d / "lab.yaml").is_file()) if root.is_dir() else []


def load_plan(lab_dir: Path, faults: Sequence[str] = (), seed: int | None = None,
              keys: dict | None = None, algorithms: dict[str, str] | None = None,
              validated: bool = False) -> plan.LabPlan:
    """The plan of a lab (an instance's: with its faults, seed and DNSSEC keys as kept in its state,
    and the algorithm each zone was rolled to since, which its signer's config says from then on;
    ``validated``: as :func:`dnslab.plan.load`)."""
    from . import dnssec, plan
    made = {z: [dnssec.Key.from_state(k) for k in ks] for z, ks in (keys or {}).items()}
    lab = plan.load(lab_dir / "lab.yaml" if lab_dir.is_dir() else lab_dir, faults, seed, made, validated)
    rolled = {z: dataclasses.replace(p, dnssec=dataclasses.replace(p.dnssec, algorithm=algorithms[z]))
              for z, p in lab.zones.items() if p.dnssec and z in (algorithms or {})}
    return dataclasses.replace(lab, zones={**lab.zones, **rolled}) if rolled else lab


def _keys_state(lab: plan.LabPlan) -> dict[str, list[dict]]:
    return {z: [k.to_state() for k in ks] for z, ks in lab.keys.items()}


_ANCHOR_ROLL = ("the lab root's KSK is every lab resolver's trust anchor (a static DS): a new one would need "
                "RFC 5011 trust anchor updates, which the lab does not do; roll the root's ZSK, or a child zone's keys")


@dataclass
class NodeStatus:
    name: str
    kind: str
    role: str
    addresses: list[str]
    running: bool
    answers: bool | None  # None: nothing to ask (a client)


class Instance:
    """One live copy of a lab, reached through its backend."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.backend = backends.get(state.data["backend"])

    @classmethod
    def open(cls, name: str) -> Instance:
        return cls(State.open(name))

    @property
    def name(self) -> str:
        return self.state.name

    @cached_property
    def plan(self) -> plan.LabPlan:
        return self._plan_with(self.state.data.get("faults", ()))

    def _plan_with(self, faults: Sequence[str]) -> plan.LabPlan:
        return load_plan(self.state.lab_dir, faults, self.state.data.get("seed"), self.state.data.get("dnssec"),
                         self.state.data.get("algorithms"))

    def node(self, name: str) -> plan.NodePlan:
        try:
            return self.plan.nodes[name]
        except KeyError:
            raise InputError(f"no node {name!r} in instance {self.name} "
                             f"(nodes: {', '.join(self.plan.nodes)})") from None

    def sockets(self, node: str) -> dnsquery.SocketFactory:
        self.node(node)
        return lambda family, type: self.backend.socket(self.state, node, family, type)

    def address_of(self, server: str) -> str:
        """A node name (its first address) or an address, as given."""
        return self.node(server).address if server in self.plan.nodes else server

    def default_vantage(self) -> str:
        return self.plan.default_vantage()

    def query(self, qname: str, qtype: str = "A", *, server: str, source: str | None = None,
              rd: bool = True, dnssec: bool = False, rdclass: str = "IN", timeout: float = 2.0,
              tcp: bool = False) -> dns.message.Message:
        """Ask ``server`` (node or address) from node ``source`` (default: the client)."""
        from . import dnsquery
        q = dnsquery.make_query(qname, qtype, rdclass, rd=rd, dnssec=dnssec)
        return dnsquery.query(self.sockets(source or self.default_vantage()), self.address_of(server), q,
                              timeout=timeout, tcp=tcp)

    def exec(self, node: str, argv: Sequence[str], *, capture: bool = False, timeout: float | None = None):
        self.node(node)
        return self.backend.exec(self.state, node, argv, capture=capture, timeout=timeout)

    def reload(self, node: str, wait: float = 5.0, secondaries: bool = True) -> None:
        """Make the node's daemon reread its config and zones through its control tool (a resolver
        also drops its cache), run on the node with the lab owner's rights; return once it
        answers again and serves the serial of each of its zone files (on its secondaries too,
        unless ``secondaries`` is false).

        :raises BackendError: the control tool failed, or the node did not serve in ``wait`` seconds
        """
        from . import dnsquery, kinds
        plan = self.node(node)
        kind = kinds.KINDS[plan.kind]
        loaded = self.loaded(node) if wait > 0 else []  # the files' serials, as the reload will find them
        before = {z.zone: self.serial_at(node, z.zone) for z in loaded if z.resigned}
        for argv in kind.reloading(plan, self.plan, self.backend.node_path(self.state, node)):
            res = self.exec(node, argv, capture=True, timeout=30)
            if res.returncode != 0:
                raise BackendError(f"node {node}: `{' '.join(argv)}` failed: {(res.stderr or res.stdout).strip()}")
        probes = self.probes(node) if wait > 0 else {}
        if not probes:
            return
        deadline = time.monotonic() + wait
        try:
            left = dnsquery.wait_all(probes, lambda k: self.backend.running(self.state, k[0]), deadline)
            if left:
                p = probes[left[0]]
                raise BackendError(f"node {node} gave no {'authoritative ' if p.authoritative else ''}answer for "
                                   f"{p.qname} within {wait:.0f}s of its reload; its log ends with:\n"
                                   f"{self.log_tail(node)}")
        finally:
            for p in probes.values():
                p.sock.close()
        loaded = [dnsquery.Loaded(z.zone, z.serial, z.resigned, z.secondaries if secondaries else ())
                  for z in loaded]
        left, wanted = dnsquery.wait_loaded(self.serial_at, node, loaded, deadline, nudge=lambda key: self.nudge(*key),
                                            before=before)
        if left:
            server = next(iter(left))[0]
            raise BackendError(f"{dnsquery.serial_late(left, wanted, node, wait)}; the log of {server} ends "
                               f"with:\n{self.log_tail(server)}")

    def serial_at(self, server: str, zone: str) -> int | None:
        """The serial ``server`` serves for ``zone`` (asked from the server itself)."""
        from . import dnsquery
        return dnsquery.serial_of(self.sockets(server), self.address_of(server), zone)

    def loaded(self, node: str) -> list[dnsquery.Loaded]:
        """The zones ``node`` loads from a file (not as a secondary), with the serial written in
        its copy of the file now."""
        from . import dnsquery, kinds
        out = []
        for zone in self.node(node).zones:
            zplan = self.plan.zones[zone]
            if zplan.primary not in (None, node):
                continue  # a secondary's copy comes from its primary
            serial = dnsquery.serial_in(self.read_file(node, f"zones/{zplan.filename}"))
            if serial is not None:
                out.append(dnsquery.Loaded(zone, serial, kinds.resigned(zplan, self.plan), zplan.secondaries))
        return out

    def nudge(self, node: str, zone: str) -> None:
        """Tell a secondary to transfer ``zone`` again now (nothing for any other node or zone)."""
        from . import kinds
        plan = self.node(node)
        zplan = self.plan.zones.get(zone)
        if zplan is None or node not in zplan.secondaries:
            return
        argv = kinds.KINDS[plan.kind].retransfer(plan, self.backend.node_path(self.state, node), zone)
        if argv:
            self.exec(node, argv, capture=True, timeout=10)

    def read_file(self, node: str, rel: str, limit: int = 1 << 20) -> str:
        """A file of a node's dir (in a trainee's lab: opened without following any link, bounded)."""
        from . import safeio
        path = self.state.node_dir(node) / rel
        try:
            return safeio.read_bytes(self.state.work_dir, str(path.relative_to(self.state.work_dir)),
                                     limit).decode(errors="replace")
        except OSError:
            return ""

    def apply_runtime_faults(self, only: set[str] | None = None) -> None:
        """What faults do to a running lab: traffic blocked inside nodes, their source ports
        pinned, daemons stopped."""
        from . import kinds
        for node in self.plan.nodes.values():
            if only is not None and node.name not in only:
                continue
            if node.block:
                self.backend.block(self.state, node.name, node.block)
            if node.ports:
                self.backend.port_range(self.state, node.name, node.ports)
            stop = kinds.KINDS[node.kind].stop(node, self.backend.node_path(self.state, node.name))
            if node.stop and stop:
                self.backend.stop_daemon(self.state, node.name, stop)

    def break_with(self, fault: str) -> list[str]:
        """Apply a fault of the lab to this running instance (a break-and-fix drill): the zones and
        daemon configs it changes are rewritten from the lab file with the fault and reloaded (an
        edit the trainee made to those files is replaced), then its blocks and stops apply, and
        the resolvers forget what they cached (the drill is seen at once, not after the TTLs).
        A zone it changes gets a serial above the one served, so that secondaries follow, unless
        the fault sets the serial itself (a rollback: secondaries keep theirs). Returns the nodes
        it touched.

        :raises InputError: no such fault, or already applied
        """
        from . import dnsquery
        from .confine import unpack_as
        faults = list(self.state.data.get("faults", []))
        if fault in faults:
            raise InputError(f"fault {fault} is already applied to {self.name}")
        old = self.plan
        new = self._plan_with([*faults, fault])
        touched: list[str] = []
        rolled_back: set[str] = set()
        for z, zplan in new.zones.items():
            if zplan.text == old.zones[z].text and zplan.signing_fault == old.zones[z].signing_fault:
                continue  # (a change of who may transfer is a config change: the node files below)
            loaders = [n for n in zplan.servers if n not in zplan.secondaries]
            text, serial = zplan.text, dnsquery.serial_in(zplan.text)
            if serial is not None and serial == dnsquery.serial_in(old.zones[z].text):
                served = max((self.serial_at(n, z) or 0 for n in loaders), default=0)
                text = dnsquery.with_serial(text, max(serial, served) + 1)
            elif serial is not None:
                rolled_back.update(loaders)
            for node in loaders:
                unpack_as(self.state.owner, self.state.work_dir, {f"nodes/{node}/zones/{zplan.filename}": text})
                touched.append(node)
        for name in new.nodes:  # configs (and scripts) the fault renders otherwise
            before, after = self._node_files(old, name), self._node_files(new, name)
            files = {path: text for path, text in after.items() if before.get(path) != text}
            if files:
                unpack_as(self.state.owner, self.state.work_dir, files)
                touched.append(name)
        self.state.data["faults"] = [*faults, fault]
        self.state.save()
        self.__dict__["plan"] = new
        for node in dict.fromkeys(touched):  # zones and config reread
            self.reload(node, secondaries=node not in rolled_back)
        runtime = {n for n, p in new.nodes.items()
                   if (p.block, p.ports, p.stop) != (old.nodes[n].block, old.nodes[n].ports, old.nodes[n].stop)}
        self.apply_runtime_faults(only=runtime)
        for node in new.by_role("resolver"):
            if self.backend.running(self.state, node.name):
                self.flush(node.name)
        return sorted(set(touched) | runtime)

    def _node_files(self, planned: plan.LabPlan, name: str) -> dict[str, str]:
        """Node ``name``'s files as ``planned`` renders them (configs, scripts; not its zones and
        keys, which are the trainee's or the signer's), by their path in the work dir, with the
        instance's TSIG and control secrets."""
        from . import kinds
        node = planned.nodes[name]
        spec = kinds.KINDS[node.kind].spec(node, planned, self.backend.node_path(self.state, name),
                                           self.state.data.get("tsig", {}), self.state.data.get("control", {}).get(name))
        return {f"nodes/{name}/{rel}": text for rel, text in spec.files.items() if not rel.startswith(("zones/", "keys/"))}

    def dnsviz(self, name: str, via: str | None = None, fmt: str = "png") -> bytes:
        """The chain of trust of ``name`` as a picture, drawn by dnsviz on the lab's client through
        resolver ``via`` (default: the client's), against the lab root's key.

        :raises InputError: the lab's root is unsigned, a bad name, format or resolver
        :raises BackendError: dnsviz failed (its message says why)
        """
        from . import dnsviz
        anchor = self.plan.trust_anchor
        if anchor is None:
            raise InputError(f"lab {self.plan.name} has no signed root: no trust anchor to draw a chain of trust from")
        client = self.node(self.default_vantage())
        resolver = self.node(via or client.resolver or self.plan.by_role("resolver")[0].name)
        if resolver.role != "resolver" or not client.reachable(resolver):
            raise InputError(f"{resolver.name} is not a resolver that {client.name} reaches")
        argv = dnsviz.command(anchor.dnskey_record(), client.reachable(resolver)[0], name, fmt)
        res = self.exec(client.name, argv, capture=True, timeout=120)
        if res.returncode == 127:
            raise BackendError(f"dnsviz is not installed on node {client.name}: apt-get install dnsviz "
                               "(setup.sh installs it; docker: dnslab images build)")
        if res.returncode != 0:
            raise BackendError(f"dnsviz on {client.name} failed: {res.stderr.strip()[-1500:]}")
        return dnsviz.decode(res.stdout)

    def rollover(self, zone: str, role: str) -> int:
        """Start a rollover of ``zone``'s KSK or ZSK (``role``) on its signer, with the signer's own
        command (``rndc dnssec -rollover``, ``knotc zone-key-rollover``). Returns the tag of the key
        being replaced. The rollover goes on by the signer's policy (lab timers: within a minute;
        a KSK rollover waits for the parent's DS, which a registry updates from the CDS).

        :raises InputError: an unsigned zone, a signer that does not roll keys itself, no such key
        """
        from . import keystate, kinds
        from .names import zone_name
        zone = zone_name(zone)
        zplan = self.plan.zones.get(zone)
        if zplan is None or not zplan.dnssec:
            raise InputError(f"{zone} is not a signed zone of {self.name}")
        if zone == "." and role == "ksk":
            raise InputError(_ANCHOR_ROLL)
        node = self.plan.nodes[zplan.signer]
        current = [k for k in keystate.zone_view(self, zone).keys if k.role == role.upper()]
        if not current:
            raise InputError(f"{node.name} serves no {role.upper()} for {zone}")
        if len(current) > 1:
            raise InputError(f"a {role.upper()} rollover of {zone} is under way (keys "
                             f"{', '.join(str(k.tag) for k in current)}): let it end first")
        argv = kinds.KINDS[node.kind].rollover(node, self.backend.node_path(self.state, node.name), zone, role,
                                               current[0].tag)
        if argv is None:
            raise InputError(f"{node.name} ({node.kind}) does not roll keys itself: make a new key in its keys/ "
                             "(dnssec-keygen) and sign with both, by hand")
        res = self.exec(node.name, argv, capture=True, timeout=30)
        if res.returncode != 0:
            raise BackendError(f"node {node.name}: `{' '.join(argv)}` failed: {(res.stderr or res.stdout).strip()}")
        return current[0].tag

    def roll_algorithm(self, zone: str, algorithm: str) -> list[int]:
        """Start an algorithm rollover of ``zone`` (RFC 6781 4.1.4): its signer's policy names the
        new algorithm from now on (kept in the instance's state) and the signer, reloaded, makes
        keys of it, signs with both, has the parent's DS replaced from its CDS, and drops the old
        keys. Returns the tags of the keys being replaced (all of them).

        :raises InputError: an unsigned zone, an unknown or the same algorithm, a signer that does
            not roll keys itself, a rollover under way
        """
        from . import dnssec, keystate, kinds
        from .confine import unpack_as
        from .names import zone_name
        zone, algorithm = zone_name(zone), algorithm.upper()
        zplan = self.plan.zones.get(zone)
        if zplan is None or not zplan.dnssec:
            raise InputError(f"{zone} is not a signed zone of {self.name}")
        if algorithm not in dnssec.ALGORITHMS:
            raise InputError(f"unknown algorithm {algorithm!r} (one of: {', '.join(dnssec.ALGORITHMS)})")
        if algorithm == zplan.dnssec.algorithm:
            raise InputError(f"{zone} is signed with {algorithm} already")
        if zone == ".":
            raise InputError(_ANCHOR_ROLL)
        node = self.plan.nodes[zplan.signer]
        kind = kinds.KINDS[node.kind]
        if not kind.resigns:
            raise InputError(f"{node.name} ({node.kind}) does not roll keys itself: make keys of the new algorithm "
                             "in its keys/ (dnssec-keygen) and sign with both, by hand")
        keys = keystate.zone_view(self, zone).keys
        if len([k for k in keys if k.role == "KSK"]) > 1 or len([k for k in keys if k.role == "ZSK"]) > 1:
            raise InputError(f"a rollover of {zone} is under way (keys {', '.join(str(k.tag) for k in keys)}): "
                             "let it end first")
        self.state.data.setdefault("algorithms", {})[zone] = algorithm
        self.state.save()
        self.__dict__.pop("plan", None)
        unpack_as(self.state.owner, self.state.work_dir, self._node_files(self.plan, node.name))
        self.reload(node.name)
        return [k.tag for k in keys]

    def follow_rollover(self, zone: str, old: int | Iterable[int], timeout: float = 180,
                        progress: Progress = lambda msg: None) -> float:
        """Until the rollover that replaces key ``old`` (or keys: an algorithm rollover) of ``zone``
        is over: the keys gone from the zone's DNSKEY set and every KSK left vouched for by the
        parent's DS. Tells the signer what the parent's DS says as it changes (:meth:`checkds`).
        Returns the seconds it took.

        :raises BackendError: not over in ``timeout`` seconds (the message says where it stands)
        """
        from . import keystate
        gone = {old} if isinstance(old, int) else set(old)
        t0 = time.monotonic()
        last = None
        while True:
            view = keystate.zone_view(self, zone)
            now = ", ".join(f"{k.tag} {k.role}{' DS' if k.ds else ''}" for k in sorted(view.keys, key=lambda k: k.tag))
            if now != last:
                progress(f"{time.monotonic() - t0:5.1f}s  {zone} keys: {now}" +
                         (f"; registry: {view.registry}" if view.registry else ""))
                last = now
            if view.keys and not gone & {k.tag for k in view.keys} and all(k.ds for k in view.keys if k.role == "KSK"):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise BackendError(f"the rollover of key {', '.join(map(str, sorted(gone)))} of {zone} is not over after {timeout:.0f}s: keys {now}"
                                   + (f"; its registry: {view.registry}" if view.registry else "; no registry "
                                      "updates its DS: submit the new one (dnslab dnssec submit-ds)"))
            self.checkds(zone, view)
            time.sleep(0.5)

    def checkds(self, zone: str, view: keystate.ZoneView | None = None) -> list[tuple[int, str]]:
        """Tell ``zone``'s signer what the parent's DS says of its KSKs now (``rndc dnssec -checkds``),
        as an operator does once the parent has acted: published for a key the DS vouches for and
        the signer keeps, withdrawn for a key it retires that the DS no longer vouches for. Nothing
        for a signer that checks the parent itself (Knot). Returns (key tag, "published" or
        "withdrawn") for each KSK told; ``view``: the zone as just read (default: read now)."""
        from . import keystate, kinds
        from .names import zone_name
        zone = zone_name(zone)
        view = view or keystate.zone_view(self, zone)
        node = self.plan.nodes[view.signer]
        kind = kinds.KINDS[node.kind]
        retiring = kind.retiring(view.signer_says)
        told = []
        for key in (k for k in view.keys if k.role == "KSK" and k.ds != (k.tag in retiring)):
            if kind.told(lambda rel: self.read_file(node.name, rel), zone, key.tag, key.algorithm, key.ds):
                continue
            argv = kind.checkds(node, self.backend.node_path(self.state, node.name), zone, key.tag, key.ds)
            if argv is not None and self.exec(node.name, argv, capture=True, timeout=30).returncode == 0:
                told.append((key.tag, "published" if key.ds else "withdrawn"))
        return told

    def registry_of(self, zone: str) -> tuple[str, dict]:
        """The registry node that manages ``zone``'s DS in its parent, and its scanner's config of
        that parent (derived from the plan and the instance's keys, never read back from the node).

        :raises InputError: no registry manages the zone's DS
        """
        from . import kinds
        from .names import zone_name
        zplan = self.plan.zones.get(zone_name(zone))
        parent = self.plan.zones.get(zplan.parent) if zplan and zplan.parent else None
        if parent is None or parent.registry is None:
            raise InputError(f"no registry manages the DS of {zone_name(zone)} in this lab "
                             f"(a parent zone names one with registry:)")
        node = self.plan.nodes[parent.registry.node]
        config = kinds.KINDS[node.kind].config(node, self.plan, self.backend.node_path(self.state, node.name),
                                               self.state.data.get("tsig", {}))
        return node.name, next(r for r in config["registries"] if r["parent"] == parent.name)

    def submit_ds(self, zone: str, records: Sequence[str]) -> list[str]:
        """DS records for ``zone`` submitted to its parent's registry, as through a registrar's form:
        checked against the zone's DNSKEY set (as its name servers serve it), then published in the
        parent by the registry's signed dynamic update. Returns the DS records published.

        :raises InputError: no registry, or the registry refused them (the message says why)
        """
        from . import registry
        node, config = self.registry_of(zone)
        try:
            return registry.submit(config, zone, records, self.sockets(node))
        except registry.Refused as exc:
            raise InputError(f"the registry of {config['parent']} refused: {exc}") from None

    def capture(self, node: str, packets: int = 1000, seconds: float = 10, bpf: str = "",
                max_bytes: int | None = None) -> capture.Capture:
        """What crosses ``node``'s interfaces as a pcap, until ``packets``, ``seconds`` or
        ``max_bytes`` (see :mod:`dnslab.capture`)."""
        from . import capture as _capture
        return _capture.run(self.name, self.node(node).name, packets, seconds, bpf, max_bytes or _capture.MAX_BYTES)

    def unblock(self, node: str) -> bool:
        """Open a node's firewall again: drop what a fault blocks inside it (it stays open until
        the fault is applied again). Returns whether the node had anything blocked."""
        plan = self.node(node)
        self.backend.block(self.state, node, ())
        return bool(plan.block)

    def start(self, node: str, wait: float = 10.0) -> None:
        """Start a node's daemon again after a fault or a drill stopped it, with the command it was
        first started with; returns once it answers what it serves.

        :raises InputError: the node runs no daemon, or it is running
        :raises BackendError: it did not answer within ``wait`` seconds
        """
        import json

        from . import dnsquery
        argv = json.loads((self.state.dir / "nodes.json").read_text())["nodes"][self.node(node).name]["argv"]
        if not argv:
            raise InputError(f"node {node} runs no daemon")
        if self.backend.running(self.state, node):
            raise InputError(f"the daemon of node {node} is running")
        self.backend.start_daemon(self.state, node, argv)
        probes = self.probes(node)
        try:
            left = dnsquery.wait_all(probes, lambda k: self.backend.running(self.state, k[0]), time.monotonic() + wait)
        finally:
            for p in probes.values():
                p.sock.close()
        if left:
            raise BackendError(f"node {node} did not answer within {wait:.0f}s of its start; its log ends with:\n"
                               f"{self.log_tail(node)}")

    def flush(self, node: str) -> None:
        """Empty a resolver's cache (its reload does that too, and rereads its config)."""
        from . import kinds
        plan = self.node(node)
        if plan.role != "resolver":
            raise InputError(f"node {node} is a {plan.role}, not a resolver: nothing to flush")
        for argv in kinds.KINDS[plan.kind].flush(plan, self.backend.node_path(self.state, node)):
            res = self.exec(node, argv, capture=True, timeout=30)
            if res.returncode != 0:
                raise BackendError(f"node {node}: `{' '.join(argv)}` failed: {(res.stderr or res.stdout).strip()}")

    def log_path(self, node: str) -> Path:
        return self.backend.log_path(self.state, self.node(node).name)

    def log_fd(self, node: str) -> int:
        """A read descriptor of the node's daemon log. In a trainee's lab the log is in the
        trainee's own area: opened without following any link, a regular file only."""
        from . import safeio
        path = self.log_path(node)
        if self.state.owner is None:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        return safeio.open_regular(self.state.work_dir, str(path.relative_to(self.state.work_dir)))

    def log_tail(self, node: str, lines: int = 12) -> str:
        """The last lines of the node's daemon log, indented, for error messages."""
        from . import safeio
        return safeio.tail(self.log_path(node), lines)

    def status(self, probe: bool = True) -> list[NodeStatus]:
        from . import dnsquery
        out = []
        answers: dict[str, bool] = {}
        if probe and self.state.data["phase"] == "ready":
            probes = {k: p for n in self.plan.nodes for k, p in self.probes(n).items()}
            not_ready = {k[0] for k in dnsquery.wait_all(probes, lambda k: True, time.monotonic() + 1.0)}
            answers = {k[0]: k[0] not in not_ready for k in probes}
            for p in probes.values():
                p.sock.close()
        for name, node in self.plan.nodes.items():
            out.append(NodeStatus(name, node.kind, node.role, node.addresses,
                                  self.backend.running(self.state, name), answers.get(name)))
        return out

    def probes(self, node: str, signed: bool = False) -> dict[tuple[str, str], dnsquery.Probe]:
        """The readiness probes of a node by (node, name asked) (its kind says what it must answer),
        on sockets opened inside the node: the one place readiness is decided. {} without a daemon.
        ``signed``: a zone its daemons sign is ready once served signed (as at ``up``; a trainee's
        edit may have unsigned it since)."""
        from . import dnsquery, kinds
        out = {}
        zones = {z.name for z in self.plan.zones.values() if kinds.resigned(z, self.plan)} if signed else ()
        for spec in kinds.KINDS[self.node(node).kind].probes(self.node(node), zones):
            sock = self.backend.socket(self.state, node, dnsquery.family_of(spec.address), socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.connect((spec.address, 53))
            out[(node, spec.qname)] = dnsquery.Probe(sock, spec.qname, spec.qtype, spec.rdclass, spec.authoritative,
                                                     spec.signed)
        return out


def up(lab_dir: Path, names: Sequence[str], backend_name: str = "netns",
       progress: Progress = lambda msg: None, meta: dict[str, dict] | None = None,
       faults: Sequence[str] = (), before_ready: Callable[[list[Instance]], None] | None = None,
       trainees: bool = False, limits: cgroups.Limits | None = None, home_size: int | None = None,
       seeds: dict[str, int | None] | None = None, dnssec_keys: dict[str, dict] | None = None) -> list[Instance]:
    """Bring up one instance per name, in parallel; all or nothing. With ``trainees``, each
    instance gets its trainee first (user, cgroup with ``limits``, home of ``home_size`` bytes,
    working area; :func:`dnslab.confine.setup`) and its daemons run as that trainee.
    ``before_ready`` (e.g. the trainees' Jupyter servers) runs once every daemon answers; if it
    fails, everything is removed. ``seeds`` gives instances the seed of their values and
    ``dnssec_keys`` their DNSSEC keys (a reset lab keeps its own); others draw new ones.

    :raises InputError: bad lab or instance name (nothing created)
    :raises EnvError: the backend cannot run here (nothing created)
    :raises BackendError: a node failed; every instance of this call was removed
    """
    from . import confine, homes, kinds, labfolder
    for n in names:
        check_name(n)
    if len(set(names)) != len(names):
        raise InputError("instance names must be unique")
    # a lab `validate` rejects is not brought up; a plan made ahead serves a first instance without keys given
    lab = labfolder.plan_for_up(lab_dir, tuple(faults), made=not any((dnssec_keys or {}).get(n) for n in names[:1]))
    backend = backends.get(backend_name)
    backend.preflight(lab, {exe: pkg for n in lab.nodes.values() for exe, pkg in kinds.KINDS[n.kind].needs(n, lab).items()})
    t0 = time.monotonic()
    made: list[Instance] = []
    warnings: set[str] = set()
    refill: threading.Thread | None = None

    def build(name: str) -> Instance:
        state = State.create(name, lab_dir, backend.name)
        inst = Instance(state)
        made.append(inst)
        state.data["lab"] = lab.name
        state.data["meta"] = (meta or {}).get(name, {})
        state.data["faults"] = state.data["faults_up"] = list(faults)
        # a lab with per-instance values (vary:) gets a seed, and so a plan, of its own
        seed = (seeds or {}).get(name)
        state.data["seed"] = (seed or secrets.randbelow(1 << 62) + 1) if lab.values else None
        # and a signed lab keys of its own (made here, kept in the state: never made again); the
        # validated plan's fresh keys serve the first instance, and the validated plan itself does
        # when nothing in it is drawn per instance
        given = (dnssec_keys or {}).get(name)
        own = not lab.values and not given and name == names[0]
        plan_ = lab if own or not (lab.values or lab.keys) else load_plan(
            lab_dir, faults, state.data["seed"], given or (_keys_state(lab) if name == names[0] else None),
            validated=True)
        state.data["dnssec"] = _keys_state(plan_)
        state.set_phase("starting")
        if trainees:
            warnings.update(confine.setup(state, limits, home_size or homes.DEFAULT_SIZE))
        keys = kinds.tsig_keys(plan_)  # per instance: each lab has its own transfer keys, kept in its state
        state.data["tsig"] = keys
        control = state.data["control"] = {n: kinds.new_secret() for n in plan_.nodes}  # rndc keys, kept for drills
        specs = {n.name: kinds.KINDS[n.kind].spec(n, plan_, backend.node_path(state, n.name), keys, control[n.name])
                 for n in plan_.nodes.values()}
        _write_view(state, plan_, specs, backend.trainee_userns)
        backend.create(state, plan_, specs)
        inst.__dict__["plan"] = plan_
        return inst

    try:
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            instances = list(pool.map(build, names))
        for w in sorted(warnings):
            progress(f"warning: {w}")
        progress(f"{len(instances)} instance(s) of {lab.name} started in {time.monotonic() - t0:.2f}s; "
                 "waiting for every daemon to answer")
        _wait_ready(instances, progress, t0)
        # what this up took from root's pools (keys, the plan) made again, while the rest goes on
        refill = threading.Thread(target=_make_ahead, args=(lab_dir, {z: ks for i in instances
                                                                      for z, ks in i.plan.keys.items()},
                                                            not lab.values), daemon=True)
        refill.start()
        for inst in instances:
            inst.apply_runtime_faults()
        if before_ready is not None:
            before_ready(instances)
    except BaseException:
        down_states([i.state for i in made])
        raise
    finally:
        if refill is not None:
            refill.join()
    for inst in instances:
        inst.state.data["was_ready"] = True
        inst.state.set_phase("ready")
    return instances


def _make_ahead(lab_dir: Path, keys: dict[str, list], plan_ahead: bool) -> None:
    """The plan of the next ``up`` of its folder made (``plan_ahead``: not for a lab that draws
    values per instance), then the keys an ``up`` took (and that plan)."""
    from . import dnssec, labfolder
    if plan_ahead:
        labfolder.prepare(lab_dir)
    dnssec.refill(keys)


def _write_view(state: State, lab: plan.LabPlan, specs: dict[str, kinds.NodeSpec], userns: bool) -> None:
    """``nodes.json``: the lab as its trainee sees and drives it, read without pydantic (so
    attach() is quick): nodes, zones, and per node its dir, namespace and control commands."""
    import json

    from . import kinds
    from .backends.netns import NETNS_DIR, node_ns
    view = {"lab": lab.name, "backend": state.data["backend"],
            "userns": str(state.userns_file) if state.owner and userns else None,
            "nodes": {n.name: {"kind": n.kind, "role": n.role, "addresses": n.addresses, "anycast": list(n.anycast),
                               "hostname": n.hostname,
                               "zones": list(n.zones), "resolver": n.resolver, "dir": str(state.node_dir(n.name)),
                               "netns": str(NETNS_DIR / node_ns(state.name, n.name)),
                               "argv": specs[n.name].argv, "reload": specs[n.name].reload,
                               "control": specs[n.name].control,
                               "stop": specs[n.name].stop} for n in lab.nodes.values()},
            "zones": {z.name: {"file": z.filename, "servers": list(z.servers), "primary": z.primary,
                               "secondaries": list(z.secondaries), "signer": z.signer,
                               "resigned": kinds.resigned(z, lab)} for z in lab.zones.values()},
            "trust_anchor": lab.trust_anchor.dnskey_record() if lab.trust_anchor else None}
    fd = os.open(state.dir / "nodes.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w") as f:
        json.dump(view, f, indent=1)


def _wait_ready(instances: list[Instance], progress: Progress, t0: float) -> None:
    """Until every daemon answers what it serves; a secondary still without a zone is told to
    transfer it again (its first try may have found its primary not yet listening)."""
    from . import dnsquery
    probes: dict[tuple[int, str, str], dnsquery.Probe] = {}
    for i, inst in enumerate(instances):
        for name in inst.plan.nodes:
            probes.update({(i, *key): p for key, p in inst.probes(name, signed=True).items()})
    # once every zone has a server answering (its primary) and every resolver answers, they forget
    # what they met while servers were starting (the secondaries may still be transferring)
    loaders = {k for k in probes if k[1] not in getattr(instances[k[0]].plan.zones.get(k[2]), "secondaries", ())}
    try:
        left = dnsquery.wait_all(probes, lambda k: instances[k[0]].backend.running(instances[k[0]].state, k[1]),
                                 time.monotonic() + READY_TIMEOUT, nudge=lambda k: instances[k[0]].nudge(k[1], k[2]),
                                 nudge_after=1.0, first=(loaders, lambda: _forget_boot(instances)))
    finally:
        for p in probes.values():
            p.sock.close()
    if left:
        i, node, qname = left[0]
        inst = instances[i]
        why = ("exited" if not inst.backend.running(inst.state, node) else
               f"did not answer for {qname} in {READY_TIMEOUT:.0f}s")
        raise BackendError(f"instance {inst.name}: node {node} ({inst.plan.nodes[node].kind}) {why}; "
                           f"its log ends with:\n{inst.log_tail(node)}")
    from . import kinds
    wait_settled(instances)
    # a zone its primary signs (and re-signs) served alike by its secondaries, in every instance at once
    synced = [((i, z.primary), z.name, tuple((i, s) for s in z.secondaries))
              for i, inst in enumerate(instances) for z in inst.plan.zones.values()
              if z.secondaries and kinds.resigned(z, inst.plan)]
    late, wanted = dnsquery.wait_synced(lambda key, zone: instances[key[0]].serial_at(key[1], zone), synced,
                                        time.monotonic() + READY_TIMEOUT,
                                        nudge=lambda k: instances[k[0][0]].nudge(k[0][1], k[1]))
    if late:
        ((i, node), zone), got = next(iter(late.items()))
        raise BackendError(f"instance {instances[i].name}: {node} serves {zone} with serial {got}, not "
                           f"{wanted[((i, node), zone)]} as its primary does; its log ends with:\n"
                           f"{instances[i].log_tail(node)}")
    daemons = len({k[:2] for k in probes})
    progress(f"all {daemons} daemons of {len(instances)} instance(s) answer, {time.monotonic() - t0:.2f}s after start")


def _forget_boot(instances: list[Instance]) -> None:
    """Every resolver forgets what it met while its servers were starting (failures, a server's
    backoff, a lookup still waiting on a query that no server was there to answer: Unbound would
    wait ~0.4 s before asking again): its cache emptied and its pending lookups dropped. A resolver
    that cannot be told is left as it is: it learns."""
    from . import kinds

    def run(job: tuple[Instance, str, Sequence[str]]) -> None:
        inst, node, argv = job
        try:
            inst.exec(node, argv, capture=True, timeout=10)
        except BackendError:  # (a timeout is one too)
            pass
    resolvers = [(inst, n, inst.backend.node_path(inst.state, n.name)) for inst in instances
                 for n in inst.plan.by_role("resolver")]
    # every cache emptied at once, then the lookups dropped (a lookup started between the two would
    # meet what the caches held)
    flushes = [(inst, n.name, argv) for inst, n, d in resolvers for argv in kinds.KINDS[n.kind].flush(n, d)]
    drops = [(inst, n.name, argv) for inst, n, d in resolvers if (argv := kinds.KINDS[n.kind].drop_lookups(n, d))]
    for jobs in (flushes, drops):
        if jobs:
            with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
                list(pool.map(run, jobs))


def wait_settled(instances: list[Instance], timeout: float = READY_TIMEOUT) -> None:
    """Until each node is ready as its kind shows it (:meth:`Kind.ready`: a router's sessions and
    routes, a resolver's local root in use), all nodes of all instances polled together.

    :raises BackendError: a node exited, or was not ready within ``timeout`` seconds
    """
    from . import kinds
    pending = {}
    for inst in instances:
        for node in inst.plan.nodes.values():
            how = kinds.KINDS[node.kind].ready(node, inst.plan, inst.backend.node_path(inst.state, node.name))
            if how:
                pending[(inst, node.name)] = how
    deadline, nudge_at = time.monotonic() + timeout, time.monotonic() + 1.0
    while pending:
        nudge = time.monotonic() > nudge_at
        if nudge:
            nudge_at = time.monotonic() + 1.0
        for (inst, node), how in list(pending.items()):
            res = inst.exec(node, how.argv, capture=True, timeout=10)
            if res.returncode == 0 and how.test(res.stdout):
                del pending[(inst, node)]
            elif not inst.backend.running(inst.state, node):
                raise BackendError(f"instance {inst.name}: node {node} ({inst.plan.nodes[node].kind}) exited; its "
                                   f"log ends with:\n{inst.log_tail(node)}")
            elif nudge and how.nudge:
                inst.exec(node, how.nudge, capture=True, timeout=10)
        if pending and time.monotonic() > deadline:
            inst, node = next(iter(pending))
            raise BackendError(f"instance {inst.name}: node {node} ({inst.plan.nodes[node].kind}) was not ready in "
                               f"{timeout:.0f}s (`{' '.join(pending[(inst, node)].argv)}` did not say so); its log "
                               f"ends with:\n{inst.log_tail(node)}")
        if pending:
            time.sleep(0.1)


def down_states(states: Sequence[State], purge_homes: bool = False, keep_hubs: bool = False) -> None:
    """Stop and remove instances, whatever phase they reached: helpers, daemons, namespaces,
    then the trainees' leftover processes, cgroups, users and working areas (``purge_homes``:
    their homes too), and the hub of a class left without instances (unless ``keep_hubs``)."""
    from . import confine, hub, procs
    by_backend: dict[str, list[State]] = {}
    for s in states:
        s.data["phase"] = "stopping"
        s.data["owner_pid"] = os.getpid()  # a `gc` running meanwhile leaves an instance being stopped alone
        if s.dir.exists():
            s.save()
        by_backend.setdefault(s.data["backend"], []).append(s)
    procs.stop_recorded(states)  # broker, Jupyter servers, forwarders: by recorded PID
    for name, group in by_backend.items():
        backends.get(name).destroy(group)
    confine.teardown(states, purge_homes)
    for s in states:
        s.remove()
    if not keep_hubs:
        hub.stop_orphaned()  # a class's hub goes with its last instance


def reset(inst: Instance, progress: Progress = lambda msg: None) -> Instance:
    """The instance brought down and up again as it was first made: the same lab, seed (so the
    same values), trainee, limits and faults; her home (notebooks) is kept, her edits to the
    lab's files are not. Her Jupyter server stops with it (a class's hub starts it again).

    :raises BackendError: it did not come up again (nothing of it is left)
    """
    from . import cgroups
    st = inst.state
    name, lab_dir, backend = st.name, st.lab_dir, st.data["backend"]
    meta, seed, keys = st.data.get("meta", {}), st.data.get("seed"), st.data.get("dnssec")
    faults = st.data.get("faults_up", st.data.get("faults", []))
    lim = st.data.get("limits")
    limits = cgroups.Limits(memory=lim["memory"], pids=lim["pids"], cpu_weight=lim["cpu_weight"]) if lim else None
    with tempfile.TemporaryDirectory(prefix="dnslab-reset-") as tmp:  # its copy of the lab goes with it
        copy = Path(tmp) / lab_dir.name
        shutil.copytree(lab_dir, copy)
        down_states([st], keep_hubs=True)
        return up(copy, [name], backend, progress, meta={name: meta}, faults=faults, trainees=lim is not None,
                  limits=limits, home_size=lim["home"] if lim else None, seeds={name: seed},
                  dnssec_keys={name: keys} if keys else None)[0]


def down(names: Sequence[str], purge_homes: bool = False) -> list[str]:
    states = [State.open(n) for n in names]
    down_states(states, purge_homes)
    return [s.name for s in states]


def instances() -> list[State]:
    return all_states()


def gc(everything: bool = False) -> list[str]:
    """Remove what crashed runs left: instances never made ready whose ``up`` is gone,
    and namespaces or files with our prefix that no instance claims. ``everything``
    removes every instance too. Returns what was removed."""
    removed = []
    stale = [s for s in all_states()
             if everything or (s.data.get("phase") != "ready" and not s.owner_alive())]
    if stale:
        down_states(stale)
        removed += [f"instance {s.name}" for s in stale]
    def claimed() -> set[str]:
        return {n for s in all_states() for _, n in s.data["resources"]}

    for name, cls in backends.BACKENDS.items():
        be = cls()
        found = be.leftovers(claimed())
        if found:
            # An instance records a resource before making it: what existed at the first look and
            # is still unclaimed at the second is left over, not one a concurrent `up` just made.
            found = sorted(set(found) & set(be.leftovers(claimed())))
        if found:
            be.remove_leftovers(found)
            removed += found
    from . import accounts, cgroups, homes
    live = {s.name for s in all_states()}
    removed += accounts.gc(live)
    for name in cgroups.leftovers(live):
        cgroups.Group(name).remove()
        removed.append(f"cgroup {name}")
    removed += [f"home mount {m}" for m in homes.gc_mounts(live)]
    return removed


__all__ = ["Instance", "LabError", "down", "find_lab", "gc", "up"]
