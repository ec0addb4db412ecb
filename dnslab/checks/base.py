"""The shape every check shares: a strict, typed spec with a ``run`` against a live instance."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import dns.exception
import dns.message
from pydantic import BaseModel, ConfigDict, Field

from .result import CheckResult, Evidence

if TYPE_CHECKING:
    from ..lab import Instance
    from ..plan import LabPlan


class Check(BaseModel):
    """A check as written in ``checks.yaml``; subclasses add their fields and ``run``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    check_type: ClassVar[str]  # what `check:` says in checks.yaml
    id: str | None = Field(default=None, description="a name for this check (default: its type)")
    source: str | None = Field(default=None, alias="from",
                               description="node the queries are sent from (default: the client)")

    def run(self, inst: Instance) -> CheckResult:
        raise NotImplementedError

    def targets(self, lab: LabPlan) -> list[str]:
        """The nodes this check queries (``validate`` makes sure its vantage point reaches them)."""
        return []

    @property
    def name_id(self) -> str:
        return self.id or self.check_type

    def result(self, passed: bool, key: str, evidence: list[Evidence], **params) -> CheckResult:
        return CheckResult(self.check_type, self.name_id, passed, f"{self.check_type}.{key}", params, evidence)


def ask(inst: Instance, server: str, qname: str, qtype: str, *, source: str | None = None,
        rd: bool = False, dnssec: bool = False, tcp: bool = False,
        rdclass: str = "IN") -> tuple[dns.message.Message | None, Evidence]:
    """One query, never raising: the reply (or None) and its evidence."""
    source = source or inst.default_vantage()
    text = f"{qname} {rdclass} {qtype} {'+rd' if rd else '+norec'}{' +dnssec' if dnssec else ''}{' +tcp' if tcp else ''}"
    try:
        reply = inst.query(qname, qtype, server=server, source=source, rd=rd, dnssec=dnssec, tcp=tcp, rdclass=rdclass)
        return reply, Evidence.of(server, text, source, reply)
    except (dns.exception.DNSException, OSError) as exc:
        return None, Evidence.of(server, text, source, None, error=str(exc) or type(exc).__name__)
