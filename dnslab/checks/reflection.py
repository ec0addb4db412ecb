"""How much a server amplifies a reflection attack: the bytes of its answers over the bytes of
the questions, asked as an attacker asks them with a victim's address (here from the victim's
own node, which a server cannot tell apart)."""
from __future__ import annotations

import select
import socket
import time
from typing import Literal

import dns.flags
import dns.message
from pydantic import Field

from .base import Check
from .result import Evidence

SETTLE = 1.0  # seconds to collect answers after the last question


class Amplification(Check):
    """``queries`` identical questions for ``name``/``type`` (EDNS, a 4096-byte buffer, as an
    attacker asks) sent from the vantage point to ``server`` at ``rate`` a second; passes if the
    answers' bytes are at most ``max`` times the questions' (response rate limiting drops most
    answers, and sends some truncated, so a victim gets little)."""

    check_type = "amplification"
    check: Literal["amplification"]
    server: str
    name: str
    type: str = "TXT"
    queries: int = Field(default=100, ge=10, le=1000)
    rate: int = Field(default=200, ge=10, le=2000, description="questions a second")
    max: float = Field(gt=0, description="the largest factor that passes")

    def targets(self, lab):
        return [self.server]

    def run(self, inst):
        source = self.source or inst.default_vantage()
        address = inst.address_of(self.server)
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        wire = dns.message.make_query(self.name, self.type, use_edns=0, payload=4096).to_wire()
        sock = inst.sockets(source)(family, socket.SOCK_DGRAM)
        answers: list[bytes] = []
        try:
            sock.connect((address, 53))
            t0 = time.monotonic()
            for i in range(self.queries):
                while time.monotonic() < t0 + i / self.rate:
                    self._drain(sock, answers, t0 + i / self.rate - time.monotonic())
                sock.send(wire)
            end = time.monotonic() + SETTLE
            while time.monotonic() < end:
                self._drain(sock, answers, end - time.monotonic())
        except OSError as exc:
            return self.result(False, "error", [Evidence(self.server, f"{self.name} IN {self.type}", source,
                                                         error=str(exc))], server=self.server, error=str(exc))
        finally:
            sock.close()
        truncated = sum(1 for a in answers if len(a) > 2 and a[2] & 0x02)  # TC
        out, back = len(wire) * self.queries, sum(len(a) for a in answers)
        factor = round(back / out, 2)
        ev = Evidence(self.server, f"{self.queries} x {self.name} IN {self.type} +edns=4096, {self.rate}/s", source,
                      answer=[f"{len(answers)} answers ({truncated} truncated), {back} bytes for {out} bytes asked"])
        p = {"server": self.server, "source": source, "name": self.name, "type": self.type, "queries": self.queries,
             "answered": len(answers), "truncated": truncated, "bytes_in": back, "bytes_out": out, "factor": factor,
             "max": self.max}
        return self.result(factor <= self.max, "pass" if factor <= self.max else "amplifies", [ev], **p)

    @staticmethod
    def _drain(sock: socket.socket, answers: list[bytes], wait: float) -> None:
        if select.select([sock], [], [], max(0.0, wait))[0]:
            try:
                answers.append(sock.recv(65535))
            except OSError:  # e.g. ICMP unreachable from a stopped server
                pass


CHECKS = (Amplification,)
