"""Per-instance values: what makes each trainee's lab, and so her answers, her own.

A lab file declares named values under ``vary:`` (an address from a prefix, a word, a number,
one of a list); zone records and zone files, fault records and checks use them as
``{{ name }}``. Each instance draws them from its seed (random at ``up``, kept in its state),
so two trainees' labs differ where the author said, and an answer copied from a neighbour is
wrong in one's own lab. Without a seed (``validate``, ``graph``), seed 0 stands in: the lab is
checked as one concrete instance.
"""
from __future__ import annotations

import hashlib
import random
import re
from typing import Any, Callable

from .errors import InputProblems, Problem
from .names import suggest
from .topology import Vary

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
CONSONANTS, VOWELS = "bdfgkmnprstvz", "aeiou"


Values = dict[str, str]


def draw(specs: dict[str, Vary], seed: int | None) -> Values:
    """Every value for one instance: the same seed, the same values; addresses of one prefix differ."""
    seed = seed or 0
    out: Values = {}
    used: set[Any] = set()
    for name in sorted(specs):
        spec = specs[name]
        rnd = random.Random(hashlib.sha256(f"{seed}:{name}".encode()).digest())
        if spec.address is not None:
            net = spec.address
            hosts = net.num_addresses - 2
            while True:
                a = net.network_address + 1 + rnd.randrange(min(hosts, 1 << 62))
                if a not in used or len(used) >= hosts:
                    break
            used.add(a)
            out[name] = str(a)
        elif spec.word is not None:
            out[name] = "".join(rnd.choice(CONSONANTS if i % 2 == 0 else VOWELS) for i in range(spec.word))
        elif spec.number is not None:
            out[name] = str(rnd.randint(*spec.number))
        else:
            out[name] = rnd.choice(spec.choice)
    return out


def render(text: str, values: Values, place: str | Callable[[int], str]) -> str:
    """``text`` with every ``{{ name }}`` replaced; an unknown name is a problem at ``place``
    (a string, or for a text of several lines, a function of the 0-based line index)."""
    if "{{" not in text:
        return text
    problems = []
    lines = text.split("\n")
    for i, line in enumerate(lines):
        for m in PLACEHOLDER.finditer(line):
            if m.group(1) not in values:
                where = place(i) if callable(place) else place
                problems.append(Problem(where, f"unknown value {{{{ {m.group(1)} }}}}"
                                        + suggest(m.group(1), set(values))
                                        + f" (vary: {', '.join(sorted(values)) or 'none declared'})"))
    if problems:
        raise InputProblems(problems)
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def render_data(data: Any, values: Values, place: str) -> Any:
    """Every string in nested lists and dicts rendered (a check as parsed from YAML)."""
    if isinstance(data, str):
        return render(data, values, place)
    if isinstance(data, list):
        return [render_data(v, values, place) for v in data]
    if isinstance(data, dict):
        return {k: render_data(v, values, place) for k, v in data.items()}
    return data
