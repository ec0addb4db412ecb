"""Faults for break-and-fix: ``labs/<name>/faults/<fault>.yaml``, applied with ``dnslab up --fault NAME``.

A fault breaks what the lab serves or how its nodes behave, and names the checks that see it
(``seen_by``: ids of the lab's ``checks.yaml``, checked by ``validate``):

- ``zones.<zone>.records``: records added to the zone; an added record replaces the RRset of
  the same owner and type, derived or authored (a delegation's glue, an address);
- ``zones.<zone>.remove``: RRsets removed, as ``"<owner> <type>"`` (``"ns1.lab A"``);
- ``zones.<zone>.serial``: the zone's SOA serial (rolled back below what secondaries hold);
- ``zones.<zone>.transfers``: who may copy the zone (AXFR): ``any`` (every server of it gives
  it to anyone), ``address`` (transfers by address only, its TSIG key dropped on both sides);
- ``zones.<zone>.signed``: what an offline signer (``dnssec-signzone`` on an NSD primary) does
  wrong: ``expires`` its signatures that many seconds from now (valid from a minute ago; negative:
  expired, valid the day before),
  ``remove`` records from the signed zone, as ``"<owner> <type> [<first field>]"`` (``"* NSEC3"``,
  ``"@ DNSKEY 256"``); written into the node's ``sign.sh``, where the trainee can see and mend it;
- ``nodes.<node>.options``: lines added to the daemon's main options, in its own syntax (with
  the instance's ``{{ name }}`` values);
- ``nodes.<node>.stop``: the node's daemon is stopped once the lab is up;
- ``nodes.<node>.validate``: ``false``: a resolver does not validate (DNSSEC), its trust anchor
  left in its config for the trainee to turn back on;
- ``nodes.<node>.rrl``: ``false``: an authoritative server limits no response rate (RRL off);
- ``nodes.<node>.open``: ``true``: a resolver answers anyone, whatever its ``clients`` (open);
- ``nodes.<node>.policy``: a resolver's response policy (RPZ records) replaced (``[]``: none);
- ``nodes.<node>.block``: traffic dropped inside the node: ``tcp/53``, ``udp/53``,
  ``fragments`` (IP fragments), ``udp/53>1232`` (DNS over UDP larger than 1232 bytes),
  ``udp/53~90`` (90% of the NXDOMAIN answers the node sends from UDP port 53, at random);
- ``nodes.<node>.ports``: the node's kernel gives every connection it opens a source port from
  this range only (``"P"``, ``"P-Q"`` or ``"P+N"``: P and the N ports after it; with the
  instance's ``{{ name }}`` values): a resolver that leaves its query ports to the kernel (Knot
  Resolver) then asks from those ports only.

Zone edits are rendered among the derived records, with nothing that tells them apart; node
edits become part of the node's plan (options) or are applied once the lab answers (stop,
block, ports). Every problem names the fault file and line.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import rpz, vary, yamlsrc
from .errors import InputError, InputProblems, Problem
from .names import zone_name
from .topology import DnsName, schema_problems

PORTS = re.compile(r"^(\d{1,5})(?:([-+])(\d{1,5}))?$")
BLOCK = re.compile(r"^(?:(tcp|udp)/(\d{1,5})(?:>(\d{1,5})|~(\d{1,2}))?|fragments|all)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ZoneEdit(_Strict):
    records: list[str] = Field(default_factory=list, description="records added (replacing the same owner and type)")
    remove: list[Annotated[str, Field(pattern=r"^\S+\s+[A-Za-z0-9]+$")]] = Field(
        default_factory=list, description='RRsets removed: "<owner> <type>"')
    serial: Annotated[int, Field(ge=0, le=2**32 - 1)] | None = Field(default=None, description="the zone's serial")
    signed: SignedEdit | None = Field(default=None, description="what the offline signer does wrong")
    transfers: Literal["any", "address"] | None = Field(
        default=None, description="any: every server gives the zone to anyone; address: no TSIG, addresses only")


SIGNED_REMOVE = r"^(\*|@|[A-Za-z0-9_.-]+)\s+([A-Za-z0-9]+)(?:\s+(\S+))?$"
TEN_YEARS = 10 * 366 * 86400


class SignedEdit(_Strict):
    expires: Annotated[int, Field(ge=-TEN_YEARS, le=TEN_YEARS)] | None = Field(
        default=None, description="signatures expire this many seconds from now (negative: expired)")
    remove: list[Annotated[str, Field(pattern=SIGNED_REMOVE)]] = Field(
        default_factory=list, description='records removed after signing: "<owner> <type> [<first field>]"')


class NodeEdit(_Strict):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    options: list[str] = Field(default_factory=list, description="lines added to the daemon's main options")
    stop: bool = Field(default=False, description="stop the node's daemon once the lab is up")
    validate_: bool = Field(default=True, alias="validate", description="false: a resolver does not validate DNSSEC")
    rrl: bool = Field(default=True, description="false: an authoritative server limits no response rate")
    open: bool = Field(default=False, description="a resolver answers anyone (an open resolver)")
    policy: list[str] | None = Field(default=None, description="a resolver's response policy, replaced")
    block: list[str] = Field(default_factory=list,
                             description="dropped inside the node: tcp/53, udp/53, fragments, udp/53>1232, "
                                         "all (every packet on its links, forwarded ones too: a live link gone "
                                         "silent)")
    ports: str | None = Field(default=None, description="the only source ports the node's kernel gives out: "
                                                         "P, P-Q or P+N ({{ name }} values allowed)")

    @field_validator("block")
    @classmethod
    def _blocks(cls, rules: list[str]) -> list[str]:
        for rule in rules:
            m = BLOCK.match(rule)
            if not m or (m.group(2) and not 0 < int(m.group(2)) < 65536):
                raise ValueError(f"{rule!r}: write tcp/PORT, udp/PORT, udp/PORT>BYTES, fragments or all")
        return rules


class Fault(_Strict):
    """One fault file."""

    summary: str = Field(description="what it breaks, for the instructor")
    seen_by: Annotated[list[str], Field(min_length=1)] = Field(description="ids of checks that fail while it is there")
    zones: dict[DnsName, ZoneEdit] = Field(default_factory=dict)
    nodes: dict[str, NodeEdit] = Field(default_factory=dict)


@dataclass
class Applied:
    """What a set of faults does to a lab, with the place each record came from."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # zone -> [(record, file:line)]
    remove: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # zone -> [(owner, type, place)]
    serials: dict[str, int] = field(default_factory=dict)
    signed: dict[str, tuple[SignedEdit, str]] = field(default_factory=dict)  # zone -> (edit, file:line)
    transfers: dict[str, str] = field(default_factory=dict)  # zone -> any | address
    nodes: dict[str, NodeEdit] = field(default_factory=dict)


def available(lab_dir: Path) -> list[str]:
    d = lab_dir / "faults"
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load(lab_dir: Path, name: str) -> tuple[Fault, yamlsrc.Source]:
    """A fault file, parsed strictly; :class:`InputProblems` names its file and line."""
    path = lab_dir / "faults" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available(lab_dir)) or "none"
        raise InputError(f"lab {lab_dir.name} has no fault {name!r} (faults: {known})")
    src = yamlsrc.load(path)
    if not isinstance(src.data, dict):
        raise InputProblems([Problem(src.where(()), "a fault is a mapping with summary, seen_by, zones or nodes")])
    try:
        return Fault.model_validate(src.data), src
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src, Fault)) from None


def port_range(text: str) -> tuple[int, int]:
    """``"P"``, ``"P-Q"`` or ``"P+N"`` (P and the N ports after it) as (first, last), each port
    1024-65535."""
    m = PORTS.match(text.strip())
    first = int(m.group(1)) if m else 0
    last = first if not m or not m.group(2) else int(m.group(3)) + (first if m.group(2) == "+" else 0)
    if not m or not 1024 <= first <= last <= 65535:
        raise ValueError(f"{text!r}: write a port or a range of ports from 1024 to 65535: P, P-Q, or P+N (P and "
                         "the N ports after it)")
    return first, last


def collect(lab_dir: Path, names: Sequence[str], zones: set[str], nodes: set[str],
            values: dict[str, str] | None = None) -> Applied:
    """Load the named faults and check what they name exists in the lab (``zones`` canonical);
    ``values`` fill the ``{{ name }}`` of their records (:mod:`dnslab.vary`).

    :raises InputProblems: every problem of every fault, each with its file and line
    """
    applied = Applied()
    problems: list[Problem] = []
    for name in names:
        try:
            fault, src = load(lab_dir, name)
        except InputProblems as exc:
            problems += exc.problems
            continue
        for z, edit in fault.zones.items():
            zone = zone_name(z)
            if zone not in zones:
                problems.append(Problem(src.where(("zones", z)), f"zones.{z}: no zone {zone} in the lab "
                                                                  f"(zones: {', '.join(sorted(zones))})"))
                continue
            for i, r in enumerate(edit.records):
                where = src.where(("zones", z, "records", i))
                try:
                    applied.records.setdefault(zone, []).append((vary.render(r, values or {}, where), where))
                except InputProblems as exc:
                    problems += exc.problems
            applied.remove.setdefault(zone, []).extend(
                (*r.split(), src.where(("zones", z, "remove", i))) for i, r in enumerate(edit.remove))
            if edit.serial is not None:
                applied.serials[zone] = edit.serial
            if edit.transfers is not None:
                applied.transfers[zone] = edit.transfers
            if edit.signed is not None:  # several faults on one zone: all their removals, the last expiry
                prev = applied.signed.get(zone, (SignedEdit(), ""))[0]
                merged = SignedEdit(expires=edit.signed.expires if edit.signed.expires is not None else prev.expires,
                                    remove=[*prev.remove, *edit.signed.remove])
                applied.signed[zone] = (merged, src.where(("zones", z, "signed")))
        for n, edit in fault.nodes.items():
            if n not in nodes:
                problems.append(Problem(src.where(("nodes", n)), f"nodes.{n}: no node {n!r} in the lab"))
                continue
            prev = applied.nodes.get(n, NodeEdit())
            for i, record in enumerate(edit.policy or ()):
                why = rpz.record_problem(record)
                if why:
                    problems.append(Problem(src.where(("nodes", n, "policy", i)), f"nodes.{n}.policy[{i}]: {why}"))
            options = []
            for i, line in enumerate(edit.options):
                try:
                    options.append(vary.render(line, values or {}, src.where(("nodes", n, "options", i))))
                except InputProblems as exc:
                    problems += exc.problems
            ports = prev.ports
            if edit.ports is not None:
                where = src.where(("nodes", n, "ports"))
                try:
                    ports = vary.render(edit.ports, values or {}, where)
                    port_range(ports)
                except InputProblems as exc:
                    problems += exc.problems
                except ValueError as exc:
                    problems.append(Problem(where, f"nodes.{n}.ports: {exc}"))
            applied.nodes[n] = NodeEdit(options=[*prev.options, *options], stop=prev.stop or edit.stop, ports=ports,
                                        block=[*prev.block, *edit.block], validate_=prev.validate_ and edit.validate_,
                                        rrl=prev.rrl and edit.rrl, open=prev.open or edit.open,
                                        policy=edit.policy if edit.policy is not None else prev.policy)
    if problems:
        raise InputProblems(problems)
    return applied
