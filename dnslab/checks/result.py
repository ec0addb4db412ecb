"""What a check returns: pass/fail, a trainee-readable message keyed for translation,
and the evidence it saw (queries, answers, flags, which server answered)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import dns.edns
import dns.flags
import dns.message
import dns.rcode

from .messages import render


@dataclass
class Evidence:
    server: str                   # node name or address asked
    query: str                    # "www.example.test. IN A +rd"
    source: str = ""              # node the query was sent from
    rcode: str = ""
    flags: str = ""
    answer: list[str] = field(default_factory=list)
    authority: list[str] = field(default_factory=list)
    additional: list[str] = field(default_factory=list)
    error: str = ""
    ede: list[str] = field(default_factory=list)  # Extended DNS Errors (RFC 8914): "6 DNSSEC Bogus: ..."

    @classmethod
    def of(cls, server: str, query: str, source: str, reply: dns.message.Message | None,
           error: str = "") -> Evidence:
        if reply is None:
            return cls(server, query, source, error=error)

        def rrs(section):
            return [rr for rrset in section for rr in rrset.to_text().splitlines()]
        return cls(server, query, source, dns.rcode.to_text(reply.rcode()), dns.flags.to_text(reply.flags),
                   rrs(reply.answer), rrs(reply.authority), rrs(reply.additional), ede=extended_errors(reply))


def extended_errors(reply: dns.message.Message) -> list[str]:
    """The Extended DNS Errors of a reply as text: code, its name, and the server's words."""
    out = []
    for opt in reply.options:
        if opt.otype == dns.edns.EDE:
            name = dns.edns.EDECode.to_text(opt.code).replace("_", " ").title().replace("Dnssec", "DNSSEC").replace(
                "Dnskey", "DNSKEY").replace("Rrsigs", "RRSIGs").replace("Nsec", "NSEC")
            out.append(f"{opt.code} {name}" + (f": {opt.text}" if opt.text else ""))
    return out


@dataclass
class CheckResult:
    check: str                    # the check's type, e.g. "resolves"
    id: str                       # its id in checks.yaml (or the type)
    passed: bool
    key: str                      # message key, e.g. "resolves.wrong_answer"
    params: dict = field(default_factory=dict)
    evidence: list[Evidence] = field(default_factory=list)

    def message(self, lang: str = "en") -> str:
        return render(self.key, self.params, lang)

    def to_dict(self, lang: str = "en") -> dict:
        return {**asdict(self), "message": self.message(lang)}

    def __bool__(self) -> bool:
        return self.passed
