#!/usr/bin/env python3
"""Grading benchmark: plain serial ``nbgrader autograde`` against ``dnslab grade``, same submissions, one run.

    .venv/bin/python bench/grading.py [--classes 8,40] [--runs 2] [--no-write]      (as root)

What it does, in this order:

1. a roster of N trainees named ``gb-1 .. gb-N`` (N the largest class; the instance of a trainee
   is named after her, so the instances are ``gb-1 .. gb-N``), then
   ``dnslab up dns-basics --trainees ROSTER --class gradingbench --fault lame-glue`` (timed on its
   own: it is not part of grading): per instance a trainee user, cgroup, size-capped home and
   working area, the lab's daemons running as the trainee in a user namespace she owns;
2. the submissions: instance ``gb-i`` gets the reference solution when i is odd, the untouched
   student notebook when i is even. The solution is the released (student) notebook with each
   solution cell filled in with the source's solution code (what a trainee who solved it
   hands in); the untouched one is the released notebook as is. A class of n is gb-1 .. gb-n,
   so an even instance (untouched) never had its lab repaired by an earlier class;
3. per class size, both graders on the same notebooks:

   (a) **peer**: the usual way, one ``nbgrader autograde dns-basics-en --force`` call for the whole
       class in a course dir (submissions copied into ``submitted/<student>/dns-basics-en/``),
       with nbgrader's own Execute and the normal ``python3`` kernel of the venv, on the host,
       serial, NOT inside the labs. That kernel cannot reach a lab (``dnslab.attach()`` fails), so
       every lab task scores zero there even for the solution: the scores are reported, not hidden;
   (b) ``dnslab grade dns-basics --instances gb-1,.. --from DIR`` (the CLI process, timed whole):
       each notebook executed by ``dnslab.gradrun`` (an in-process IPython runner, no Jupyter
       kernel) started as its trainee in her client node, in parallel, judged from outside on the
       live lab, then recorded by one nbgrader process. Its progress lines on stderr
       (``preparing the course``, ``executed i/n``, ``recorded n with nbgrader``) are timestamped
       to split the wall time into phases (start-up, execute, record).

   Both course dirs are prepared (``dnslab.grader.Course.prepare``: source, release, gradebook)
   before timing, as they are in real use (``up --jupyter`` prepares the course); each is its own
   dir under a root-only temp dir (``DNSLAB_COURSE`` points ``dnslab grade`` at its own). Likewise
   each instance's lab helper (``dnslab.broker``, which runs the checks that judge test cells) is
   started right after ``up``, before any timing, as ``up --jupyter`` starts it; otherwise the
   first ``dnslab grade`` of each trainee would start it and only the first run would pay for it.
   The time to start them (one after another) is reported on its own.

There is no longer a peer "(a2)" (serial ``nbgrader autograde --student X`` with a kernel inside
each trainee's lab). It needed a kernel that root launches inside the trainee's lab (a kernelspec
running as her, ZMQ over ipc sockets in her namespace). dnslab no longer has root start kernels
in a trainee's space: her lab's namespaces belong to a user namespace she owns, and anything
root runs there would act on what is hers with root's hand, which is exactly what the trust
boundary forbids (``dnslab grade`` instead starts its runner *as* her, in her cgroup, and reads
its results as untrusted input). A fair (a2) would have to do that forbidden thing, so it is
not measured; (a) stays as the plain-nbgrader baseline.

Prints a Markdown table and writes bench/results/grading.md, with the machine's load (uptime)
before and after, since other work may share the machine. Everything it brings up is removed
in a finally block: ``dnslab down --purge gb-1 .. gb-N`` (by name: daemons, namespaces, trainee
users, homes and their images), and the temp dir.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / ".venv" / "bin"
DNSLAB = [str(BIN / "dnslab")]
RESULTS = ROOT / "bench" / "results" / "grading.md"
RUN = Path(os.environ.get("DNSLAB_RUN", "/run/dnslab"))   # instances' run dirs
HOMES = Path("/var/lib/dnslab/home")                     # trainees' homes (dnslab.homes.HOMES)
LAB = "dns-basics"
LANG = "en"
PREFIX = "gb"
CLASS = "gradingbench"
FAULT = "lame-glue"
TEST_IDS = ("trace-answer", "fix-delegation", "fix-resolution", "report-answer", "explain-answer")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def env_with_venv(**extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(BIN) + os.pathsep + env.get("PATH", "")   # nbgrader runs `alembic` from PATH
    env.pop("DNSLAB_INSTANCE", None)                             # the peer's kernel is a plain one
    env.update(extra)
    return env


def run_timed(cmd: list[str], **kw) -> dict:
    """Run cmd: wall seconds, CPU seconds of it and its waited-for descendants (wait4), stdout,
    and each stderr line with the second it arrived."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(p.stdout.read()))
    reader.start()
    stamps = [(time.monotonic() - t0, line.rstrip("\n")) for line in p.stderr]
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    reader.join()
    return {"wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "rc": p.returncode, "stdout": "".join(out),
            "stamps": stamps}


# ---------------------------------------------------------------- submissions

def build_notebooks(tmp: Path) -> tuple[bytes, bytes, dict, int]:
    """(solution, untouched) notebook bytes, the test cells' points, and the max score."""
    import nbformat

    from dnslab import exercise, grader
    src = exercise.find(LAB)
    prep = grader.Course(tmp / "course-prep")
    prep.prepare(src, [LANG])
    released = nbformat.read(prep.released(src, LANG), as_version=4)
    source = src.notebook(LANG)
    sols = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")}
    solved = nbformat.from_dict(json.loads(nbformat.writes(released)))
    for cell in solved.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in sols:  # what a trainee writes: the solution code, without nbgrader's markers
            cell.source = "\n".join(line for line in sols[gid].splitlines()
                                    if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
    points = {t: c.points for t, c in src.tests().items()}
    return (nbformat.writes(solved).encode(), nbformat.writes(released).encode(), points, sum(points.values()))


def kind_of(i: int) -> str:
    return "solution" if i % 2 == 1 else "untouched"


# ---------------------------------------------------------------- (a) plain nbgrader

def peer(tmp: Path, n: int, notebooks: dict[str, bytes], run: int = 1) -> dict:
    from dnslab import exercise, grader
    course = grader.Course(tmp / f"course-a-{n}-{run}")
    course.prepare(exercise.find(LAB), [LANG])          # source, release, gradebook: before timing
    aid = f"{LAB}-{LANG}"
    for i in range(1, n + 1):
        d = course.root / "submitted" / f"{PREFIX}-{i}" / aid
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{LAB}.ipynb").write_bytes(notebooks[kind_of(i)])
        (d / "timestamp.txt").write_text(datetime.datetime.now(datetime.timezone.utc)
                                         .strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
    res = run_timed([str(BIN / "nbgrader"), "autograde", aid, "--force"], cwd=course.root, env=env_with_venv())
    if res["rc"] != 0:
        err = "\n".join(line for _, line in res["stamps"])
        raise SystemExit(f"nbgrader autograde failed ({res['rc']}):\n{res['stdout'][-3000:]}\n{err[-3000:]}")
    return {"wall": res["wall"], "cpu": res["cpu"], "scores": gradebook_scores(course.root, aid, n)}


def gradebook_scores(root: Path, aid: str, n: int) -> dict[str, dict]:
    from nbgrader.api import Gradebook
    out = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        for i in range(1, n + 1):
            name = f"{PREFIX}-{i}"
            s = gb.find_submission(aid, name)
            nb = gb.find_submission_notebook(LAB, aid, name)
            tasks = {g.name: g.score for g in nb.grades if g.cell_type == "code" and g.max_score}
            out[name] = {"score": s.score, "max": s.max_score, "tasks": tasks}
    return out


# ---------------------------------------------------------------- (b) dnslab grade

def dnslab_grade(tmp: Path, n: int, notebooks: dict[str, bytes], run: int = 1) -> dict:
    from dnslab import exercise, grader
    course = tmp / f"course-b-{n}-{run}"
    grader.Course(course).prepare(exercise.find(LAB), [LANG])   # as `up --jupyter` would have
    subs = tmp / f"subs-{n}-{run}"
    subs.mkdir()
    names = [f"{PREFIX}-{i}" for i in range(1, n + 1)]
    for i, name in enumerate(names, 1):
        (subs / f"{name}.ipynb").write_bytes(notebooks[kind_of(i)])
    cmd = DNSLAB + ["grade", LAB, "--instances", ",".join(names), "--from", str(subs), "--json"]
    res = run_timed(cmd, env=env_with_venv(DNSLAB_COURSE=str(course)))
    wall, stamps = res["wall"], res["stamps"]
    if res["rc"] != 0:
        raise SystemExit(f"dnslab grade failed ({res['rc']}):\n" + "\n".join(l for _, l in stamps)[-3000:])
    data = json.loads(res["stdout"])
    scores = {g["instance"]: {"score": g["score"], "max": g["max_score"], "tasks": g["tasks"],
                              "note": g.get("note", "")} for g in data}

    def first(pattern: str) -> float | None:
        return next((t for t, line in stamps if re.search(pattern, line)), None)
    # dnslab/grader.py's progress(...) lines, "dnslab: " in front (cli._progress)
    t_prep, t_rec = first(r"preparing the course for \d+ submission"), first(r"recorded \d+ with nbgrader")
    execs = [t for t, line in stamps if re.search(r"executed \d+/\d+ in ", line)]
    phases = {"startup": t_prep, "collect": None, "execute": None, "record": None}
    if t_prep is not None and execs and t_rec is not None:
        phases["execute"] = execs[-1] - t_prep  # prepare (no-op: prepared) + collect + parallel execution
        phases["record"] = t_rec - execs[-1]    # the recorder's lag behind the last notebook
        phases["first_done"] = execs[0] - t_prep
    return {"wall": wall, "cpu": res["cpu"], "scores": scores, "phases": phases, "stderr": [f"{t:7.2f}s {l}" for t, l in stamps]}


def judge(scores: dict[str, dict], maxs: int) -> tuple[str, str]:
    sol = [v["score"] for k, v in scores.items() if kind_of(int(k.rsplit("-", 1)[1])) == "solution"]
    unt = [v["score"] for k, v in scores.items() if kind_of(int(k.rsplit("-", 1)[1])) == "untouched"]

    def fmt(xs, want):
        ok = all(x == want for x in xs)
        vals = sorted(set(xs))
        return f"{'ok' if ok else 'NOT'} {'/'.join(f'{v:g}' for v in vals)}/{maxs}"
    return fmt(sol, maxs), fmt(unt, 0)


def tasks_line(scores: dict[str, dict], kind: str) -> str:
    sums: dict[str, set] = defaultdict(set)
    for k, v in scores.items():
        if kind_of(int(k.rsplit("-", 1)[1])) == kind:
            for t, s in v["tasks"].items():
                sums[t].add(s)
    return " ".join(f"{t}={'/'.join(f'{s:g}' for s in sorted(v))}" for t, v in sorted(sums.items()))


def report(args, up_wall, up_n, up_warnings, brokers_wall, runs, load_before, load_after, maxs, points) -> str:
    host = f"{platform.node()}, {os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}"
    lines = [
        "# Grading benchmark (bench/grading.py)",
        "",
        f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {host}, nbgrader {_nbgrader_version()}.",
        f"Load before: `{load_before}`  ",
        f"Load after: `{load_after}`  ",
        "Other work may share this machine (other engineers' tests and benchmarks): the load above counts",
        "it and ours, and every figure below was measured under that load.",
        "",
        f"Lab: {LAB} with fault {FAULT}; `dnslab up {LAB} --trainees ROSTER --class {CLASS} --fault {FAULT}`"
        f" (a roster of {up_n} trainees {PREFIX}-1 .. {PREFIX}-{up_n}, instances named after them; per instance a"
        f" trainee user, cgroup, size-capped home, working area, daemons as the trainee in her user namespace)"
        f" took **{up_wall:.1f} s** ({up_wall / up_n:.2f} s per instance; not part of grading)"
        + (f"; it warned: {'; '.join(up_warnings)}." if up_warnings else ".")
        + f" Then each instance's lab helper (broker) was started, as `up --jupyter` does: {brokers_wall:.1f} s for"
          f" {up_n}, one after another (not part of grading either; without it the first `dnslab grade` of each"
          " trainee starts hers).",
        f"Submissions: odd instances the reference solution, even ones the untouched student notebook"
        f" (max {maxs} points: " + ", ".join(f"{t} {p}" for t, p in points.items()) + ").",
        "",
        "| class | grader | total s | s / submission | ratio (a / this) | CPU s / submission | solutions | untouched |",
        "|---:|---|---:|---:|---:|---:|---|---|",
    ]
    import statistics
    med = statistics.median
    for n in sorted({n for n, _ in runs}):
        rs = [r for m, r in runs if m == n]
        aw, bw = med([r["a"]["wall"] for r in rs]), med([r["b"]["wall"] for r in rs])
        ac, bc = med([r["a"]["cpu"] for r in rs]), med([r["b"]["cpu"] for r in rs])
        okA = [judge(r["a"]["scores"], maxs) for r in rs]
        okB = [judge(r["b"]["scores"], maxs) for r in rs]
        sa, ua = okA[0] if len(set(okA)) == 1 else ("differ across runs", "")
        sb, ub = okB[0] if len(set(okB)) == 1 else ("differ across runs", "")
        lines.append(f"| {n} | (a) peer: serial `nbgrader autograde` (one call, own Execute, plain python3 kernel on "
                     f"the host, NOT in the labs) | {aw:.1f} | {aw / n:.2f} | 1.00 | {ac / n:.2f} | {sa} | {ua} |")
        lines.append(f"| {n} | (b) `dnslab grade --from DIR` (runner as each trainee in her own lab, "
                     f"parallel, recorded by one nbgrader process meanwhile) | {bw:.1f} | {bw / n:.2f} | **{aw / bw:.2f}x** | {bc / n:.2f} | {sb} | {ub} |")
    lines += ["", f"Medians of {len(runs) // max(1, len({n for n, _ in runs}))} run(s) per class; every run"
              " (total s, (a) / (b), ratio, who went first):", ""]
    for i, (n, r) in enumerate(runs):
        lines.append(f"- class {n}: {r['a']['wall']:.1f} / {r['b']['wall']:.1f} s, {r['a']['wall'] / r['b']['wall']:.2f}x,"
                     f" ({r['order'][0]}) first")
    lines += ["", "Scores per task (the set of values seen over the class; `ok` above = all solutions full"
              " marks / all untouched zero):", ""]
    for n, r in runs[:len({m for m, _ in runs})]:   # the first run of each class (every run checked above)
        for g in ("a", "b"):
            for kind in ("solution", "untouched"):
                lines.append(f"- class {n}, ({g}), {kind}: {tasks_line(r[g]['scores'], kind)}")
    notes = defaultdict(int)
    for n, r in runs:
        for v in r["b"]["scores"].values():
            if v["note"]:
                notes[v["note"]] += 1
    lines += ["", "Notes in `dnslab grade`'s rows (`note`: a notebook stopped, unreadable, not executed ...): "
              + ("; ".join(f"{k!r} x{c}" for k, c in sorted(notes.items())) if notes else "none, in every run.")]
    lines += ["", "(a)'s kernel is a plain python3 kernel on the host: `dnslab.attach()` cannot find *its* lab"
              " (no `DNSLAB_INSTANCE`, many instances running), so every cell using `lab` raises and every"
              " task scores 0, the reference solution included. It also means (a) does *less* work per"
              " notebook than (b) (no DNS query, no zone rewrite, no reload, no check): its time is a"
              " lower bound for serial nbgrader executing this notebook for real.",
              "CPU s / submission: user+system CPU of the grading process and its waited-for descendants"
              " ((a)'s kernel, (b)'s `dnslab.gradrun` runners, started as the trainees, included; the lab daemons'"
              " reload work and dnslab's per-instance broker are not descendants and are not counted)."
              " On 2 cores, wall >= CPU / 2.", ""]
    lines += ["## Where dnslab grade's time goes", "",
              "Phases of the `dnslab grade` CLI run, from its timestamped progress lines (seconds):", "",
              "| class | total | CLI start-up, load instances | collect + parallel execution + verdicts | "
              "first notebook done | nbgrader record lag after the last notebook (autograde replay + feedback run while notebooks execute) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for n, r in runs:
        ph = r["b"]["phases"]
        f = lambda x: "?" if x is None else f"{x:.1f}"
        lines.append(f"| {n} | {r['b']['wall']:.1f} | {f(ph.get('startup'))} | {f(ph.get('execute'))} | "
                     f"{f(ph.get('first_done'))} | {f(ph.get('record'))} |")
    lines.append("")
    return "\n".join(lines)


def _nbgrader_version() -> str:
    try:
        import nbgrader
        return nbgrader.__version__
    except Exception:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--classes", default="8,40", help="class sizes (default 8,40)")
    ap.add_argument("--runs", type=int, default=2, help="runs per class size, order (a)/(b) alternating (default 2)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench/grading.py runs as root (labs, namespaces, trainee users)", file=sys.stderr)
        return 3
    sizes = sorted(int(x) for x in args.classes.split(","))
    n_max = sizes[-1]
    names = [f"{PREFIX}-{i}" for i in range(1, n_max + 1)]
    taken = [n for n in names if (RUN / n).exists() or (HOMES / n).exists()]
    if taken:   # `down --purge` at the end would remove them: never touch what this run did not make
        print(f"bench/grading.py: already there (instances or kept homes): {', '.join(taken)}; "
              "remove them first (dnslab down --purge ...)", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="dnslab-gradingbench-"))   # 0700: courses hold solutions and tests
    os.chmod(tmp, 0o700)
    load_before = uptime()
    runs = []
    try:
        solution, untouched, points, maxs = build_notebooks(tmp)
        notebooks = {"solution": solution, "untouched": untouched}
        roster = tmp / f"{CLASS}.csv"
        roster.write_text("trainee,lang\n" + "".join(f"{n},{LANG}\n" for n in names))
        print(f"# up {n_max} trainee instances ... ({load_before})", flush=True)
        t0 = time.monotonic()
        up = subprocess.run(DNSLAB + ["up", LAB, "--trainees", str(roster), "--class", CLASS, "--fault", FAULT],
                            capture_output=True, text=True, env=env_with_venv())
        up_wall = time.monotonic() - t0
        if up.returncode != 0:
            raise SystemExit(f"dnslab up failed ({up.returncode}):\n{up.stderr[-3000:]}")
        up_warnings = sorted({line.split("warning:", 1)[1].strip() for line in up.stderr.splitlines()
                              if "warning:" in line})
        print(f"# up: {up_wall:.1f}s" + "".join(f"\n# up warning: {w}" for w in up_warnings), flush=True)
        from dnslab import broker
        from dnslab.state import State
        t0 = time.monotonic()
        for name in names:
            broker.ensure(State.open(name))
        brokers_wall = time.monotonic() - t0
        print(f"# brokers: {brokers_wall:.1f}s", flush=True)
        for run in range(1, args.runs + 1):
            for n in sizes:
                order = ["a", "b"] if run % 2 == 1 else ["b", "a"]   # alternate who goes first
                res = {}
                graders = {"a": peer, "b": dnslab_grade}
                for g in order:
                    print(f"# run {run}, class {n}: ({g}) ...", flush=True)
                    res[g] = graders[g](tmp, n, notebooks, run)
                    print(f"#   ({g}) {res[g]['wall']:.1f}s", flush=True)
                for line in res["b"]["stderr"]:
                    print("#     " + line)
                sys.stdout.flush()
                res["order"] = order
                runs.append((n, res))
        text = report(args, up_wall, n_max, up_warnings, brokers_wall, runs, load_before, uptime(), maxs, points)
        print(text)
        if not args.no_write:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(text)
            print(f"wrote {RESULTS}")
        return 0
    finally:
        made = [n for n in names if (RUN / n).exists()]   # a failed `up` removed its own (all or nothing)
        if made:
            d = subprocess.run(DNSLAB + ["down", "--purge", *made], capture_output=True, text=True,
                               env=env_with_venv())
            if d.returncode != 0:
                print(f"dnslab down --purge failed ({d.returncode}): {d.stderr.strip()[-2000:]}", file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
