"""A class at a glance: per trainee, her lab's checks and exercise tasks, its health, her
server and kernels, and who is stuck. The instructor's live view and ``dnslab class status``
show the same snapshot.

:func:`snapshot` (root) reads the live labs: it runs every check of each trainee's lab (from
outside her lab, as grading does) and reads processes only from her cgroup and recorded PIDs,
never a path she could write. A task judged by checks shows its points when they pass; a task
judged by an answer shows ``None`` until grading (answers live in her notebook). Progress is
any change of what passes; a trainee whose lab is not yet all green and who made no progress
for :data:`STUCK_AFTER` seconds is *stuck*.
"""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

from . import hub, procs
from .errors import LabError

STUCK_AFTER = 600.0
WORKERS = 8


def path(klass: str):
    return hub.class_dir(klass) / "status.json"


def read(klass: str) -> dict | None:
    """The last snapshot written for the class (by its helper), None if none yet."""
    try:
        return json.loads(path(klass).read_text())
    except (OSError, ValueError):
        return None


def snapshot(klass: str, previous: dict | None = None, now: float | None = None) -> dict:
    """The class's status now; ``previous`` (the last snapshot) carries when each trainee last
    made progress."""
    from . import exercise, faults
    from .lab import Instance
    now = time.time() if now is None else now
    st = hub.open_class(klass)
    if st is None:
        raise LabError(f"no class {klass} (classes with a hub: {', '.join(hub.classes()) or 'none'})")
    users = st.data["hub"]["users"]
    before = {t["instance"]: t for t in (previous or {}).get("trainees", [])}
    insts = {}
    for name in users:
        try:
            insts[name] = Instance.open(name)
        except LabError:
            continue
    first = next(iter(insts.values()), None)
    lab_name = first.plan.name if first else None
    ex = None
    if lab_name and (exercise.exercises_root() / lab_name).is_dir():
        ex = exercise.find(lab_name)
    tests = ex.tests() if ex else {}
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        rows = list(pool.map(lambda n: _trainee(n, insts.get(n), tests, before.get(n), now), users))
    check_ids = list(next((r["checks"] for r in rows if r["checks"]), {}))
    return {"class": klass, "at": now, "lab": lab_name, "exercise": ex.name if ex else None,
            "url": st.data["hub"]["url"], "stuck_after": STUCK_AFTER, "checks": check_ids,
            "tasks": [{"id": t.test, "points": t.points, "judged": "answer" if t.answer else "lab"}
                      for t in tests.values()],
            "faults": faults.available(first.state.lab_dir) if first else [], "trainees": rows}


def _trainee(name: str, inst, tests: dict, before: dict | None, now: float) -> dict:
    from . import checks
    row: dict = {"instance": name, "trainee": None, "health": "gone", "nodes_down": [], "checks": {},
                 "tasks": {}, "faults": [], "server": False, "kernels": 0}
    if inst is None:
        return {**row, "progress_at": now, "stuck": False}
    state = inst.state
    row.update(trainee=state.data.get("meta", {}).get("trainee") or name, faults=list(state.data.get("faults", [])),
               server=procs.recorded_alive(state, "jupyter"), kernels=_kernels(state))
    if state.data.get("phase") != "ready":
        row["health"] = state.data.get("phase", "unknown")
    else:
        try:
            down = [n.name for n in inst.status(probe=False) if not n.running]
            results = checks.run(inst)
            row["checks"] = {r.id: r.passed for r in results}
            row["health"] = "down" if len(down) == len(inst.plan.nodes) else "degraded" if down else "ok"
            row["nodes_down"] = down
        except LabError as exc:
            row["health"], row["error"] = "error", str(exc)
    row["tasks"] = {t.test: (None if t.answer else t.points if all(row["checks"].get(c) for c in t.checks) else 0)
                    for t in tests.values()}
    return {**row, **progress(row, before, now)}


def progress(row: dict, before: dict | None, now: float) -> dict:
    """When she last made progress (what passes, or her lab's faults, changed) and whether she is
    stuck: something still fails and nothing changed for :data:`STUCK_AFTER` seconds."""
    moved = before is None or before.get("checks") != row["checks"] or before.get("faults") != row["faults"]
    at = now if moved else before.get("progress_at", now)
    done = bool(row["checks"]) and all(row["checks"].values())
    return {"progress_at": at, "stuck": not done and now - at >= STUCK_AFTER}


def _kernels(state) -> int:
    """Her running kernels: processes of her cgroup that are ipykernel (their command line, read
    from /proc, bounded)."""
    from . import confine
    group = confine.group(state)
    if group is None:
        return 0
    count = 0
    for pid in group.pids():
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read(4096).split(b"\0")
        except OSError:
            continue
        count += any(a in (b"ipykernel_launcher", b"ipykernel") or a.endswith(b"/ipykernel_launcher.py")
                     for a in argv)
    return count


def table(snap: dict) -> str:
    """The snapshot as text: one line per trainee."""
    lines = [f"class {snap['class']} ({snap['lab']}, {snap['url']}), at {time.strftime('%H:%M:%S', time.localtime(snap['at']))}"]
    lab_max = sum(t["points"] for t in snap["tasks"] if t["judged"] == "lab")
    answers = sum(t["judged"] == "answer" for t in snap["tasks"])
    for t in snap["trainees"]:
        ok = sum(t["checks"].values())
        pts = sum(v for v in t["tasks"].values() if v)
        failing = [c for c, v in t["checks"].items() if not v]
        lines.append(f"  {t['trainee'] or t['instance']:<16} {t['instance']:<20} {t['health']:<8} "
                     f"checks {ok}/{len(t['checks'])}  lab tasks {pts}/{lab_max} pts"
                     + (f" (+{answers} answer tasks at grading)" if answers else "")
                     + f"  server {'up' if t['server'] else 'off'}"
                     f" ({t['kernels']} kernel{'s' if t['kernels'] != 1 else ''})"
                     + ("  STUCK" if t["stuck"] else "")
                     + (f"  failing: {', '.join(failing[:4])}{' ...' if len(failing) > 4 else ''}" if failing else ""))
    return "\n".join(lines)
