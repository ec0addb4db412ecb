#!/usr/bin/env python3
"""Classroom benchmark: a class of N trainees at one JupyterHub against the per-trainee URLs
it replaces, in one run.

    .venv/bin/python bench/classroom.py [--trainees 40] [--logins 10] [--no-write]      (as root)

1. **peer**: ``dnslab up dns-basics --trainees R --jupyter`` (a JupyterLab started per trainee
   at ``up``, one URL each: the way a class came up before the hub), timed until it returns
   (every URL answers), then ``down --purge``;
2. ``dnslab up dns-basics --trainees R --hub``: the hub starts first, the labs meanwhile.
   From its start, every trainee's login form is posted, 8 at a time (again, until the hub's
   session cookie comes back): *up -> every trainee can log in*; and ``up`` timed until it returns (every lab
   ready). The servers start in the background once each lab is ready (:mod:`dnslab.prestart`);
3. *login -> running kernel*, for ``--logins`` trainees one after another, while the rest of
   the class's servers are still starting: her login form, her server answering through the
   hub, a new kernel, ``1+1`` executed there (a trainee's browser does the same over the same
   APIs); the same again once every server is up;
4. memory: each trainee's cgroup (``memory.current``: her lab's daemons, her server, her
   kernel, their tmpfs pages) for those with a kernel and those without, plus the class's own
   processes (the hub's tree: hub, proxy, services; the class helper; RSS) shared over the class: *memory per trainee with a running kernel*, and so
   trainees per 24 GiB;
5. ``dnslab grade dns-basics --class C`` of the whole class (untouched released notebooks in
   the homes), timed; ``bench/grading.py`` compares ``dnslab grade`` with plain nbgrader;
6. ``down --purge`` of the class (hub included), timed.

Writes bench/results/classroom.md (a Markdown table and the load before and after). Everything
it brings up is removed in a finally block, by name.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import traineeclient  # noqa: E402  (the tests' trainee: a login form, her APIs)

from dnslab import accounts, cgroups, hub  # noqa: E402

DNSLAB = [str(ROOT / ".venv" / "bin" / "dnslab")]
RESULTS = ROOT / "bench" / "results" / "classroom.md"
PREFIX, CLASS = "cr", "classbench"
GIB = 1 << 30


def sh(*args: str, timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.monotonic()
    res = subprocess.run([*DNSLAB, *args], capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"dnslab {' '.join(args)} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return took, res


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def login_only(url: str, user: str, password: str) -> bool:
    """Post her login form without following the redirect to her server: accepted?"""
    import http.cookiejar
    import urllib.error
    import urllib.parse
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), NoRedirect)
    opener.open(f"{url}/hub/login", timeout=30).read()
    xsrf = next(c.value for c in jar if c.name == "_xsrf")
    form = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": xsrf}).encode()
    try:
        opener.open(urllib.request.Request(f"{url}/hub/login", data=form), timeout=30)
    except urllib.error.HTTPError as exc:
        return exc.code == 302 and any(c.name == "jupyterhub-session-id" for c in jar)
    return False


def log_in_all(url: str, names: list[str], pw: dict[str, str], t0: float, at_once: int = 8) -> tuple[float, float]:
    """Every trainee's login posted until accepted (the hub may not answer yet), ``at_once`` at a
    time as a class arriving does; returns the times since ``t0`` of the first and the last
    accepted login."""
    from concurrent.futures import ThreadPoolExecutor

    def one(name: str) -> float:
        while True:
            try:
                if login_only(url, name, pw[name]):
                    return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.1)
    with ThreadPoolExecutor(at_once) as pool:
        times = list(pool.map(one, names))
    return min(times), max(times)


def to_kernel(url: str, user: str, password: str) -> float:
    t0 = time.monotonic()
    t = traineeclient.HubTrainee(url, user, password)
    assert t.status == 200, (user, t.status)
    t.wait_server(120)
    out, errors = t.execute("print(1+1)", timeout=60, keep=True)  # her kernel stays, as in class
    if out.strip() != "2" or errors:
        log = Path(f"/run/dnslab/{user}/jupyter.log")
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise SystemExit(f"{user}: no answer from a new kernel ({out!r}, {errors}); her server's log ends:\n{tail}")
    return time.monotonic() - t0


def servers_ready(url: str, password: str) -> int:
    ins = traineeclient.HubTrainee(url, "instructor", password)
    status, body = ins.hub_api("/users")
    return sum(1 for u in json.loads(body) if (u.get("servers") or {}).get("", {}).get("ready"))


def class_rss(klass: str) -> int:
    """RSS of the class's own processes: the hub's tree (hub, proxy, services, in a PID namespace
    of their own) and the class helper itself (what it starts for a trainee, her server and the
    relay to the hub, runs in her cgroup and is counted there)."""
    procs = hub.open_class(klass).data["procs"]
    top = procs["hub"]["pid"]
    parent = {}
    for pid in os.listdir("/proc"):
        try:
            parent[int(pid)] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue

    def under(pid: int) -> bool:
        while pid in parent and pid != top:
            pid = parent[pid]
        return pid == top
    total = 0
    for pid in [p for p in parent if under(p)] + [procs["classd"]["pid"]]:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) << 10
        except OSError:
            continue
    return total


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trainees", type=int, default=40)
    ap.add_argument("--logins", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root")
    n = args.trainees
    names = [f"{PREFIX}-{i}" for i in range(1, n + 1)]
    tmp = Path(tempfile.mkdtemp(prefix="dnslab-classbench-"))
    roster = tmp / f"{CLASS}.csv"
    roster.write_text("trainee\n" + "".join(f"{x}\n" for x in names))
    before, r = uptime(), {}
    try:
        # 1. the peer: a JupyterLab per trainee, started at up
        r["peer_up"], _ = sh("up", "dns-basics", "--trainees", str(roster), "--class", "classpeer", "--jupyter")
        r["peer_down"], _ = sh("down", "--purge", *names)
        time.sleep(20)  # the peer's 40 servers and labs are gone; let the machine settle
        # 2. the hub
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        t0 = time.monotonic()
        up = subprocess.Popen([*DNSLAB, "up", "dns-basics", "--trainees", str(roster), "--hub", "--hub-port",
                               str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        logins = hub.class_dir(CLASS) / "logins.csv"
        while not logins.exists() and up.poll() is None:
            time.sleep(0.05)
        time.sleep(0.1)  # written whole right after it is created
        with open(logins) as f:
            pw = {row["user"]: row["password"] for row in csv.DictReader(f)}
        r["first_login"], r["all_logged_in"] = log_in_all(url, names, pw, t0)
        out, err = up.communicate(timeout=900)
        r["hub_up"] = time.monotonic() - t0
        if up.returncode != 0:
            raise SystemExit(f"dnslab up --hub failed ({up.returncode}):\n{err[-3000:]}")
        # 3. login -> kernel, while the other servers start, then once all are up
        r["cold"] = [to_kernel(url, x, pw[x]) for x in reversed(names[-args.logins:])]
        deadline = time.monotonic() + 600
        while servers_ready(url, pw["instructor"]) < n and time.monotonic() < deadline:
            time.sleep(2)
        r["all_servers"] = time.monotonic() - t0
        r["warm"] = [to_kernel(url, x, pw[x]) for x in names[:args.logins]]
        # 4. memory
        with_k = {x for x in names[:args.logins]} | set(names[-args.logins:])
        mem = {x: cgroups.Group(x).usage().get("memory", 0) for x in names}
        r["mem_kernel"] = statistics.mean(mem[x] for x in with_k)
        r["mem_server"] = statistics.mean(mem[x] for x in names if x not in with_k) if n > len(with_k) else 0
        r["hub_rss"] = class_rss(CLASS)
        # 5. grade of the class
        r["grade"], res = sh("grade", "dns-basics", "--class", CLASS, "--json")
        grades = json.loads(res.stdout)
        r["graded"] = sum(1 for g in grades if g.get("max_score"))
    finally:
        t1 = time.monotonic()
        subprocess.run([*DNSLAB, "down", "--purge", *names], capture_output=True)
        r["down"] = time.monotonic() - t1
        for x in names:
            accounts.remove(x, purge_home=True)
    after = uptime()
    per = r["mem_kernel"] + r["hub_rss"] / n
    fits = int(24 * GIB // per)
    med = statistics.median
    rows = [
        ("class up until every trainee can log in", f"{r['peer_up']:.1f} s (all {n} URLs answer)",
         f"{r['all_logged_in']:.1f} s (first login {r['first_login']:.1f} s; 8 at a time)",
         f"{r['peer_up'] / r['all_logged_in']:.1f}x faster"),
        ("class up until every lab is ready (`up` returns)", f"{r['peer_up']:.1f} s", f"{r['hub_up']:.1f} s",
         f"{r['peer_up'] / r['hub_up']:.1f}x faster"),
        ("every trainee's server running", f"{r['peer_up']:.1f} s", f"{r['all_servers']:.1f} s (in the background)", ""),
        (f"login -> running kernel, {args.logins} trainees one by one, servers still starting",
         "(a URL, no login)", f"median {med(r['cold']):.1f} s, max {max(r['cold']):.1f} s", ""),
        (f"login -> running kernel, {args.logins} trainees one by one, every server up", "",
         f"median {med(r['warm']):.1f} s, max {max(r['warm']):.1f} s", ""),
        ("memory per trainee: lab + server + kernel (cgroup)", "", f"{r['mem_kernel'] / 2**20:.0f} MiB", ""),
        ("memory per trainee: lab + server, no kernel (cgroup)", "", f"{r['mem_server'] / 2**20:.0f} MiB", ""),
        ("the class's hub, proxy, services and helper (RSS); per trainee", "", f"{r['hub_rss'] / 2**20:.0f} MiB; "
                                                                  f"{r['hub_rss'] / n / 2**20:.1f} MiB", ""),
        ("trainees with a running kernel per 24 GiB", "", f"{fits}", ""),
        (f"`dnslab grade` of the class ({r['graded']} notebooks)", "", f"{r['grade']:.1f} s", ""),
        ("`down --purge` of the class", f"{r['peer_down']:.1f} s", f"{r['down']:.1f} s", ""),
    ]
    table = ["| class of %d, dns-basics | peer: `up --jupyter` (a URL each) | `up --hub` | |" % n,
             "|---|---:|---:|---:|"] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    text = "\n".join([
        "# Classroom benchmark (bench/classroom.py)", "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.node()}, {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}.",
        f"Load before: `{before}`  ", f"Load after: `{after}`", "", *table, "",
        f"Login -> kernel, servers starting: {', '.join(f'{x:.1f}' for x in r['cold'])} s; "
        f"every server up: {', '.join(f'{x:.1f}' for x in r['warm'])} s.", ""])
    print(text)
    if not args.no_write:
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
