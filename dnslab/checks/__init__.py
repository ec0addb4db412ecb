"""The checks engine: questions about a live instance, answered with evidence.

``labs/<name>/checks.yaml`` lists checks, validated by the same schema machinery as
the lab file; the CLI, the grader and the tests all run them through :func:`run`.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import yamlsrc
from ..errors import InputProblems, LabError, Problem
from ..topology import schema_problems, zone_name
from . import dns as _dns
from .base import Check
from .result import CheckResult, Evidence

if TYPE_CHECKING:
    from ..lab import Instance
    from ..plan import LabPlan

CHECKS: dict[str, type[Check]] = {c.kind: c for c in Check.__subclasses__()}


class CheckError(LabError):
    """A check could not be run (not a failed check: that is a result)."""


class ChecksFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    checks: list[Annotated[Union[tuple(CHECKS.values())], Field(discriminator="check")]]  # type: ignore[valid-type]


def load(path: Path, lab: LabPlan) -> list[Check]:
    """Read a checks file and make sure every zone and node it names exists in ``lab``."""
    src = yamlsrc.load(path)
    try:
        parsed = ChecksFile.model_validate(src.data)
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src)) from None
    problems = []
    for i, check in enumerate(parsed.checks):
        for field in ("zone",):
            value = getattr(check, field, None)
            if value is not None and zone_name(value) not in lab.zones:
                problems.append(Problem(src.where(("checks", i, field)),
                                        f"checks[{i}].{field}: no zone {zone_name(value)} in lab {lab.name}"))
        for field in ("server", "via", "source"):
            value = getattr(check, field, None)
            if value is not None and value not in lab.nodes and not _is_address(value):
                problems.append(Problem(src.where(("checks", i, field)),
                                        f"checks[{i}].{field}: no node {value!r} in lab {lab.name}"))
    if problems:
        raise InputProblems(problems)
    return list(parsed.checks)


def for_instance(inst: Instance) -> list[Check]:
    path = inst.state.lab_dir / "checks.yaml"
    if not path.is_file():
        raise CheckError(f"lab {inst.plan.name} declares no checks (no checks.yaml)")
    return load(path, inst.plan)


def run(inst: Instance, checks: list[Check] | None = None, only: str | None = None) -> list[CheckResult]:
    """Run checks (default: the lab's checks.yaml) against a live instance, in order."""
    checks = for_instance(inst) if checks is None else checks
    if only is not None:
        checks = [c for c in checks if (c.id or c.kind) == only]
        if not checks:
            raise CheckError(f"no check named {only!r}")
    return [c.run(inst) for c in checks]


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        return False


__all__ = ["CHECKS", "Check", "CheckError", "CheckResult", "Evidence", "load", "run"]
