"""What a notebook's test cells run in the trainee's kernel.

These helpers *show* the trainee the state of their lab and *report* their answers; they
decide nothing. The grade is decided by :mod:`dnslab.grader`, outside the kernel, from the
live lab and the reported values, so code in the notebook cannot change a verdict.
"""
from __future__ import annotations

import json
from typing import Sequence

MARK = "dnslab-answer "


def answer(name: str, value: object) -> None:
    """Report the value of an answer variable to the grader."""
    print(MARK + json.dumps({"name": name, "value": None if value is None else str(value)}))


def show(ids: Sequence[str], lang: str = "en") -> None:
    """Show the trainee how their live lab fares on these checks (graded from outside, later)."""
    from .trainee import attach
    lab = attach()
    for check_id in ids:
        result = lab.check(check_id)
        print(("PASS  " if result.passed else "FAIL  ") + result.message(lang))


def reported(outputs: list[dict]) -> dict[str, str | None]:
    """The answers a test cell's outputs report (read by the grader)."""
    found: dict[str, str | None] = {}
    for out in outputs:
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            for line in "".join(out.get("text", "")).splitlines():
                if line.startswith(MARK):
                    try:
                        data = json.loads(line[len(MARK):])
                        found[str(data["name"])] = data["value"]
                    except (ValueError, KeyError, TypeError):
                        continue
    return found
