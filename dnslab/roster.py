"""Trainee rosters: a CSV with a ``trainee`` column (more columns are kept)."""
from __future__ import annotations

import csv
import re
from pathlib import Path

from .errors import InputProblems, Problem, not_utf8


def instance_name(trainee: str) -> str:
    """``María López`` -> ``mar-a-l-pez``: lower case, [a-z0-9-], at most 32 characters."""
    name = re.sub(r"[^a-z0-9]+", "-", trainee.strip().lower()).strip("-")
    return name[:32].rstrip("-")


def load(path: Path) -> dict[str, dict[str, str]]:
    """Instance name -> the trainee's row; every problem named with its line."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, row) for row in reader]  # blank lines are skipped: keep real numbers
            fields = reader.fieldnames or []
    except OSError as exc:
        raise InputProblems([Problem(str(path), f"cannot read roster: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise InputProblems([not_utf8(path)]) from None
    if "trainee" not in fields:
        raise InputProblems([Problem(f"{path}:1", "a roster needs a 'trainee' column")])
    out: dict[str, dict[str, str]] = {}
    problems = []
    for i, row in rows:
        name = instance_name(row.get("trainee") or "")
        if not name:
            problems.append(Problem(f"{path}:{i}", "empty trainee name"))
        elif name in out:
            problems.append(Problem(f"{path}:{i}", f"trainee {row['trainee']!r} gives instance name {name!r}, "
                                                   f"already used by {out[name]['trainee']!r}"))
        else:
            out[name] = {k: v for k, v in row.items() if k is not None}
    if not out and not problems:
        problems.append(Problem(str(path), "the roster lists no trainee"))
    if problems:
        raise InputProblems(problems)
    return out
