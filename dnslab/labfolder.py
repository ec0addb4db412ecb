"""A lab folder as a whole: ``lab.yaml`` and its zones, ``checks.yaml``, ``faults/`` and the
lab's exercise with its translations, validated together, every problem of every file at once.

What ``validate`` and ``up`` both go through: a mistake anywhere (a fault naming a check
that does not exist, an exercise test naming a check id with a typo) is found before
anything runs, named by its own file and line. A folder that passed is remembered by its
fingerprint (every byte of it and of its exercise, and dnslab's own files), so that ``up`` of
the same folder again loads the lab file alone; better, each ``up`` leaves the plan of the next
one made (fresh keys of its own), which that one takes as it is.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import cache, pool
from . import plan as _plan
from .errors import InputError, InputProblems, LabError, Problem
from .names import suggest, zone_name

if TYPE_CHECKING:
    from . import exercise as _exercise
    from .checks import Check

MEMO_LIMIT = 16 << 20  # a folder larger than this is validated whole each time
PLANS_KEPT = 16  # folders (fingerprints) whose next plan is kept made
PACKAGE = Path(__file__).resolve().parent


@dataclass
class Folder:
    """A lab folder that passed validation."""

    path: Path
    plan: _plan.LabPlan
    checks: list[Check] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)
    exercise: _exercise.Source | None = None

    @property
    def warnings(self) -> list[Problem]:
        return list(self.plan.warnings)


def validate(lab_dir: Path, with_faults: tuple[str, ...] = ()) -> Folder:
    """Check the whole folder (``with_faults`` applied to the plan it returns), and remember that
    it passed.

    :raises InputProblems: every problem found, in every file
    """
    # fingerprinted before it is read: a file changed meanwhile is validated again next time
    return _validate(lab_dir, with_faults, *_memo(lab_dir))


def _validate(lab_dir: Path, with_faults: tuple[str, ...], memo: Path | None, key: str | None) -> Folder:
    from . import faults as _faults
    problems: list[Problem] = []

    def attempt(fn):
        try:
            return fn()
        except InputProblems as exc:
            problems.extend(exc.problems)
        except InputError as exc:
            problems.append(Problem("", str(exc)))
        return None

    lab = attempt(lambda: _plan.load(lab_dir, with_faults))
    keys = lab.keys if lab is not None else None  # made once (an RSA key takes tens of ms), for every variant
    base = lab if not with_faults else attempt(lambda: _plan.load(lab_dir, keys=keys))
    checks, ids = _checks(lab_dir, base, attempt)
    names = _faults.available(lab_dir)
    loaded = [(name, attempt(lambda name=name: _faults.load(lab_dir, name))) for name in names]
    if base is not None:  # each fault's records are valid zone data (zone checks run as subprocesses: in parallel)
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(lambda name: attempt(lambda: _plan.load(lab_dir, [name], keys=keys)),
                          [name for name, fault in loaded if fault is not None]))
    for name, fault in loaded:
        if fault is None:
            continue
        spec, src = fault
        for i, check_id in enumerate(spec.seen_by):
            if ids is not None and check_id not in ids:
                problems.append(Problem(src.where(("seen_by", i)), f"seen_by[{i}]: no check {check_id!r} in "
                                        f"checks.yaml" + suggest(check_id, ids)))
    ex = _exercise_of(lab_dir, base, ids, names, attempt, problems) if base is not None else None
    if problems:
        raise InputProblems(problems)
    assert lab is not None
    if memo is not None and key is not None:
        try:
            (memo / key).touch()
        except OSError:
            pass
    return Folder(lab_dir, lab, checks or [], names, ex)


def plan_for_up(lab_dir: Path, with_faults: tuple[str, ...] = (), made: bool = True) -> _plan.LabPlan:
    """The plan ``up`` brings up, from a folder ``validate`` accepts: when this very folder passed
    before (nothing in it, in its exercise or in dnslab changed since), the plan an earlier ``up``
    made ahead (with ``made``, and no faults), else the lab file's plan alone, without checking the
    whole folder again."""
    memo, key = _memo(lab_dir)
    if memo is not None and key is not None and (memo / key).is_file():
        return (_made_plan(key) if made and not with_faults else None) or \
            _plan.load(lab_dir, with_faults, validated=True)
    return _validate(lab_dir, with_faults, memo, key).plan


def _made_plan(key: str) -> _plan.LabPlan | None:
    """The plan :func:`prepare` made for the folder of fingerprint ``key``, now taken; None if none."""
    data = pool.take(f"plans/{key}")
    try:
        return pickle.loads(data) if data else None  # written by root in root's cache, as the templates are
    except Exception:  # an entry it cannot read: made again by the next prepare
        return None


def prepare(lab_dir: Path) -> None:
    """Make the plan the next ``up`` of this folder takes (keys of its own), if the folder passed
    validation as it is now and draws nothing per instance (each instance derives its values)."""
    memo, key = _memo(lab_dir)
    if memo is None or key is None or not (memo / key).is_file():
        return

    def make() -> bytes | None:
        try:
            made = _plan.load(lab_dir, validated=True)
        except (InputProblems, LabError, OSError):
            return None
        # fingerprinted again: a folder changed meanwhile gets no plan under its old fingerprint
        return None if made.values or _fingerprint(lab_dir) != key else pickle.dumps(made)
    pool.fill(f"plans/{key}", 1, make)
    plans = cache.directory("plans")
    try:
        kept = sorted(plans.iterdir(), key=lambda d: d.stat().st_mtime, reverse=True) if plans else []
    except OSError:  # another up pruning at once
        return
    for old in kept[PLANS_KEPT:]:
        shutil.rmtree(old, ignore_errors=True)


def _memo(lab_dir: Path) -> tuple[Path | None, str | None]:
    """Root's record of folders that passed, and this folder's fingerprint (neither when there is
    no record to keep: not root)."""
    memo = cache.directory("validated")
    return memo, _fingerprint(lab_dir) if memo is not None else None


def exercises_root() -> Path:
    """Where exercises live: ``exercises/`` beside the package, or ``$DNSLAB_EXERCISES``."""
    return Path(os.environ.get("DNSLAB_EXERCISES", PACKAGE.parent / "exercises"))


def _fingerprint(lab_dir: Path) -> str | None:
    """A digest of the folder and of its exercise (where they are, every file's name and bytes) and
    of dnslab's own files (names, sizes, times); None when the folder cannot be read whole or is
    too large."""
    digest, total = hashlib.sha256(), 0
    try:
        name = re.search(r"(?m)^name:\s*[\"']?([A-Za-z0-9_.-]+)", (lab_dir / "lab.yaml").read_text(errors="replace"))
        trees = [lab_dir, *([exercises_root() / name.group(1)] if name else [])]
        for tree in trees:
            digest.update(f"{tree.resolve()}\0".encode())
            for path in sorted(p for p in tree.rglob("*") if p.is_file()):
                total += path.stat().st_size
                if total > MEMO_LIMIT:
                    return None
                digest.update(f"{path.relative_to(tree)}\0".encode() + path.read_bytes() + b"\0")
        for path in sorted(PACKAGE.rglob("*")):
            if path.suffix in (".py", ".j2", ".yaml"):
                st = path.stat()
                digest.update(f"{path.relative_to(PACKAGE)} {st.st_size} {st.st_mtime_ns}\0".encode())
    except OSError:
        return None
    return digest.hexdigest()


def _checks(lab_dir: Path, lab: _plan.LabPlan | None, attempt) -> tuple[list[Check] | None, set[str] | None]:
    """The lab's checks (against the plan when there is one) and their ids."""
    from . import checks
    path = lab_dir / "checks.yaml"
    if not path.is_file():
        return [], set()
    parsed = attempt(lambda: checks.parse(path))
    if parsed is None:
        return None, None
    if lab is not None:
        attempt(lambda: checks.load(path, lab))
    return parsed[0], {c.name_id for c in parsed[0]}


def _exercise_of(lab_dir: Path, lab: _plan.LabPlan, ids: set[str] | None, faults: list[str], attempt,
                 problems: list[Problem]) -> _exercise.Source | None:
    """The lab's exercise, if it has one, and what it names checked against the lab."""
    from . import exercise as _exercise
    directory = exercises_root() / lab.name
    try:
        if not directory.is_dir():
            return None
    except PermissionError:  # exercises are root's (hidden tests): checked when run as root
        return None
    ex = attempt(lambda: _exercise.load(directory))
    if ex is None:
        return None
    src = ex.yaml
    if ex.exercise.lab != lab.name:
        problems.append(Problem(src.where(("lab",)), f"lab: {ex.exercise.lab!r}, but the lab is {lab.name!r}"))
    for i, name in enumerate(ex.exercise.faults):
        if name not in faults:
            problems.append(Problem(src.where(("faults", i)), f"faults[{i}]: no fault {name!r} in {lab_dir / 'faults'}"
                                    + suggest(name, set(faults))))
    for i, cell in enumerate(ex.exercise.cells):
        for j, check_id in enumerate(getattr(cell, "checks", [])):
            if ids is not None and check_id not in ids:
                problems.append(Problem(src.where(("cells", i, "checks", j)),
                                        f"cells[{i}].checks[{j}]: no check {check_id!r} in the lab's checks.yaml"
                                        + suggest(check_id, ids)))
        answer = getattr(cell, "answer", None)
        if answer is not None and answer.zone is not None and zone_name(answer.zone) not in lab.zones:
            problems.append(Problem(src.where(("cells", i, "answer", "zone")),
                                    f"cells[{i}].answer.zone: no zone {zone_name(answer.zone)} in the lab"))
        elif answer is not None and answer.accept in ("ksk-tag-of", "zsk-tag-of", "nsec3-salt-of"):
            policy = lab.zones[zone_name(answer.zone)].dnssec
            if policy is None or (answer.accept == "nsec3-salt-of" and policy.nsec3 is None):
                what = "signed with NSEC3" if answer.accept == "nsec3-salt-of" else "signed"
                problems.append(Problem(src.where(("cells", i, "answer", "zone")),
                                        f"cells[{i}].answer.zone: {zone_name(answer.zone)} is not {what} in the lab"))
        if answer is not None and answer.value is not None and answer.value not in lab.values:
            problems.append(Problem(src.where(("cells", i, "answer", "value")),
                                    f"cells[{i}].answer.value: the lab draws no value {answer.value!r} (vary:)"
                                    + suggest(answer.value, set(lab.values))))
        if answer is not None and answer.owner is not None and not lab.data_of(answer.owner, answer.type):
            problems.append(Problem(src.where(("cells", i, "answer", "owner")),
                                    f"cells[{i}].answer: the lab has no {answer.type} record at {answer.owner}"))
    return ex


__all__ = ["Folder", "LabError", "validate"]
