"""Faults for break-and-fix: small files under ``labs/<name>/faults/`` that an instance
can be brought up with (``dnslab up <lab> --fault NAME``).

A fault adds records to zones of the lab, after the author's; an added record replaces the
derived or authored RRset of the same owner and type, as any author record does. Each
fault names the checks that see it, so a lab's tests can prove the fault is visible.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import yamlsrc
from .errors import InputError, InputProblems, Problem
from .topology import DnsName, Topology, schema_problems, zone_name


class _ZoneEdit(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    records: Annotated[list[str], Field(min_length=1)]


class Fault(BaseModel):
    """One fault file."""

    model_config = ConfigDict(extra="forbid", strict=True)
    summary: str = Field(description="what it breaks, for the instructor")
    seen_by: Annotated[list[str], Field(min_length=1)] = Field(description="ids of checks that fail while it is there")
    zones: Annotated[dict[DnsName, _ZoneEdit], Field(min_length=1)]


def available(lab_dir: Path) -> list[str]:
    d = lab_dir / "faults"
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load(lab_dir: Path, name: str) -> Fault:
    path = lab_dir / "faults" / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available(lab_dir)) or "none"
        raise InputError(f"lab {lab_dir.name} has no fault {name!r} (faults: {known})")
    src = yamlsrc.load(path)
    try:
        return Fault.model_validate(src.data)
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src)) from None


def apply(topo: Topology, lab_dir: Path, names: Sequence[str]) -> Topology:
    """The topology with the named faults' records added to its zones."""
    if not names:
        return topo
    zones = dict(topo.zones)
    by_name = {zone_name(k): k for k in zones}
    for name in names:
        fault = load(lab_dir, name)
        for z, edit in fault.zones.items():
            key = by_name.get(zone_name(z))
            if key is None:
                raise InputProblems([Problem(str(lab_dir / "faults" / f"{name}.yaml"),
                                             f"zones: no zone {zone_name(z)} in lab {topo.name}")])
            zones[key] = zones[key].model_copy(update={"records": [*zones[key].records, *edit.records]})
    return topo.model_copy(update={"zones": zones})
