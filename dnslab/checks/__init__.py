"""The checks engine: questions about a live instance, answered with evidence.

``labs/<name>/checks.yaml`` lists checks, validated by the same schema machinery as
the lab file; the CLI, the grader and the tests all run them through :func:`run`.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import vary, yamlsrc
from ..errors import InputProblems, LabError, Problem
from ..names import suggest, zone_name
from ..topology import schema_problems
from . import anycast as _anycast
from . import dns as _dns
from . import dnssec as _dnssec
from . import reflection as _reflection
from . import resolver as _resolver
from .base import Check
from .result import CheckResult, Evidence

if TYPE_CHECKING:
    from ..lab import Instance
    from ..plan import LabPlan

CHECKS: dict[str, type[Check]] = {c.check_type: c for c in (*_dns.CHECKS, *_dnssec.CHECKS, *_resolver.CHECKS,
                                                            *_reflection.CHECKS, *_anycast.CHECKS)}  # by name


class CheckError(LabError):
    """A check could not be run (not a failed check: that is a result)."""


class ChecksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: list[Annotated[Union[tuple(CHECKS.values())], Field(discriminator="check")]]  # type: ignore[valid-type]


def parse(path: Path, values: dict[str, str] | None = None) -> tuple[list[Check], yamlsrc.Source]:
    """Read a checks file strictly (types, fields, unique ids), without a lab to check it against;
    ``values`` fill its ``{{ name }}`` (an instance's drawn values, :mod:`dnslab.vary`)."""
    src = yamlsrc.load(path)
    if values is not None and isinstance(src.data, dict) and isinstance(src.data.get("checks"), list):
        src.data["checks"] = [vary.render_data(c, values, src.where(("checks", i)))
                              for i, c in enumerate(src.data["checks"])]
    try:
        parsed = ChecksFile.model_validate(src.data)
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src, ChecksFile)) from None
    problems, first = [], {}
    for i, check in enumerate(parsed.checks):
        if check.name_id in first:
            problems.append(Problem(src.where(("checks", i, "id")),
                                    f"checks[{i}]: id {check.name_id!r} is already the id of checks[{first[check.name_id]}]"
                                    + ("" if check.id else ": give this one an id")))
        first.setdefault(check.name_id, i)
    if problems:
        raise InputProblems(problems)
    return list(parsed.checks), src


def load(path: Path, lab: LabPlan) -> list[Check]:
    """Read a checks file and make sure every zone and node it names exists in ``lab``, and
    that every check's vantage point (``from:``, default the client) reaches what it asks."""
    checks, src = parse(path, lab.values)
    problems = []
    for i, check in enumerate(checks):
        def bad(field: str, msg: str) -> None:
            problems.append(Problem(src.where(("checks", i, field)), f"checks[{i}].{field}: {msg}"))
        value = getattr(check, "zone", None)
        if value is not None and zone_name(value) not in lab.zones:
            bad("zone", f"no zone {zone_name(value)} in lab {lab.name}" + suggest(zone_name(value), set(lab.zones)))
            continue
        unknown = False
        for field in ("server", "via", "source", "resolver", "router", "peer", "site"):
            value = getattr(check, field, None)
            if isinstance(value, str) and value not in lab.nodes and not _is_address(value):
                bad("from" if field == "source" else field, f"no node {value!r} in lab {lab.name}"
                    + suggest(value, set(lab.nodes)))
                unknown = True
        if unknown:
            continue
        source = lab.nodes[check.source or lab.default_vantage()]
        for target in check.targets(lab):
            if target in lab.nodes and not source.gateway and not source.reachable(lab.nodes[target]):
                bad("from" if check.source else "check",
                    f"{source.name} has no network (and IP family) in common with {target}, which this check "
                    f"asks: name a node that does with from:")
                break
    if problems:
        raise InputProblems(problems)
    return checks


def for_instance(inst: Instance) -> list[Check]:
    path = inst.state.lab_dir / "checks.yaml"
    if not path.is_file():
        raise CheckError(f"lab {inst.plan.name} declares no checks (no checks.yaml)")
    return load(path, inst.plan)


def run(inst: Instance, checks: list[Check] | None = None, only: str | None = None) -> list[CheckResult]:
    """Run checks (default: the lab's checks.yaml) against a live instance, in order."""
    checks = for_instance(inst) if checks is None else checks
    if only is not None:
        known = [c.name_id for c in checks]
        checks = [c for c in checks if c.name_id == only]
        if not checks:
            raise CheckError(f"no check {only!r} in lab {inst.plan.name}" + suggest(only, set(known))
                             + f" (checks: {', '.join(known)})")
    return [c.run(inst) for c in checks]


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


__all__ = ["CHECKS", "Check", "CheckError", "CheckResult", "Evidence", "load", "parse", "run"]
