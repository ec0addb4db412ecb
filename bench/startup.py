#!/usr/bin/env python3
"""Start-up benchmark: dnslab (netns and docker backends, plain and trainee labs) and docker-compose against bare bash floors, in one run.

    .venv/bin/python bench/startup.py [--runs N] [--instances 10] [--no-docker] [--no-compose]
                                      [--start-engine] [--build-images] [--no-write]      (as root)

Two labs, each on every system that can run it:

- dns-basics (9 nodes): the floor ``bench/floor-dns-basics.sh up C``, ``dnslab up dns-basics``
  (netns backend), the same as trainee labs, ``dnslab up dns-basics --trainees ROSTER`` (a roster of
  1 or N trainees ``benchtx`` / ``benchtr-1 ..``, no --jupyter: per instance a trainee Unix user, a
  cgroup, a size-capped ext4 home on a loop device, a tmpfs working area, and the daemons run as
  the trainee in a user namespace she owns; its ``down`` is ``dnslab down --purge``, which also
  removes users, homes and their images), and ``dnslab up dns-basics --backend docker``;
- floor5 (5 nodes, ``bench/labs/floor5``): the shared floor ``/work/shared/bench/floor-lab.sh up C 0``,
  dnslab on both backends, and the same lab as a docker-compose project (``bench/compose.py``:
  dnslab's rendered configs and images, one internal bridge network per copy on 198.18.C.0/24,
  ``docker-compose -p benchcC up -d``), the peer users know. Compose rows exist for floor5 only
  (compose.py renders one IPv4 network; dns-basics also has IPv6).

Figures (each the median of N runs, with min and max), for 1 instance and for N at once:
wall time from launching the command(s) (the whole CLI process, Python start-up included) until
it returned and until the first answer ``www.example.test A 192.0.2.80`` from the Unbound
resolver asked from the client's network namespace; memory per instance, the sum of PSS over
every process inside the instance's network namespaces plus each container's containerd-shim
(dockerd and containerd themselves are shared by all and not counted); how many instances fit
in 24 GiB at that PSS; ``down`` (``dnslab down`` of all names in one command, the floors' and
``docker-compose down`` one command per copy, all at once). The order of the systems rotates
from run to run.

The first answer is polled by this process itself, from a UDP socket opened inside the client's
network namespace (setns(2) in one thread, no process spawned per query): a query every 10 ms
from the moment the command is launched, any matching reply counts. Compose's client container
is found through the engine's start events (its /proc/PID/ns/net as soon as it runs). Trainee
labs are measured exactly as plain ones (same lab, same probe, same PSS sum over the instance's
namespaces, which hold every daemon of the lab), so "trainees ÷ netns" is what the trainee
machinery costs at start-up; it is also summed up in a paragraph under the table.

Docker rows are skipped with a note when no engine answers (``--start-engine`` starts one with
scripts/docker-engine.sh and stops it at the end; an engine already running is left alone).
Prints a Markdown table and writes it to bench/results/startup.md. Everything it makes is
removed in a finally block (Ctrl-C and SIGTERM included): its dnslab instances by name, the
floor copies by their own ``down``, its compose projects by ``docker-compose down``.
"""
from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import platform
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import dns.message
import dns.rcode
import dns.rdatatype

from dnslab.backends import nsutil

ROOT = Path(__file__).resolve().parent.parent
DNSLAB = [str(ROOT / ".venv" / "bin" / "dnslab")]
FLOOR_B = ROOT / "bench" / "floor-dns-basics.sh"
FLOOR_5 = Path("/work/shared/bench/floor-lab.sh")
FLOOR5_LAB = ROOT / "bench" / "labs" / "floor5"
RESULTS = ROOT / "bench" / "results" / "startup.md"
ENGINE_SCRIPT = ROOT / "scripts" / "docker-engine.sh"
KINDS_FLOOR = ("nsd", "bind9", "knot", "unbound", "client")   # the images both labs need
NETNS = Path("/run/netns")
RUN_DNSLAB = Path(os.environ.get("DNSLAB_RUN", "/run/dnslab"))

QNAME, WANT = "www.example.test", "192.0.2.80"
FLOORB_RESOLVER = "198.18.0.8"   # floor-dns-basics.sh: the Unbound resolver
FLOOR5_RESOLVER = "198.18.0.4"   # floor-lab.sh: the Unbound resolver
POLL_EVERY = 0.010
TIMEOUT = 90.0
GIB = 1 << 30
SETTLE = 0.5          # after a down: let the kernel finish tearing namespaces down
SETTLE_MANY = 2.0
QUIET = 0.30          # ... then wait (at most QUIET_MAX s) until the CPUs are busy less than this fraction,
QUIET_MAX = 10.0      # so the engine's clean-up after 80 containers does not land in the next figure

# ---------------------------------------------------------------- namespaces and probes
def socket_in(path: str | Path) -> socket.socket:
    """A non-blocking UDP socket made inside the network namespace at ``path`` (as dnslab's probes)."""
    s = nsutil.socket_in(str(path), socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    return s


def _query(qid: int) -> bytes:
    q = dns.message.make_query(QNAME, "A")
    q.id = qid
    return q.to_wire()


def _answered(reply: bytes) -> bool:
    """NOERROR with A 192.0.2.80 for www.example.test in the answer section."""
    try:
        m = dns.message.from_wire(reply)
    except Exception:
        return False
    return m.rcode() == dns.rcode.NOERROR and any(
        rrset.rdtype == dns.rdatatype.A and rd.address == WANT for rrset in m.answer for rd in rrset)


Where = str | Callable[[], str | None]   # a name under /run/netns, or a function giving a namespace path


def ns_path(where) -> str | None:
    """The namespace file of a poll target, or None while it does not exist yet."""
    if callable(where):
        return where()
    p = NETNS / where
    return str(p) if p.exists() else None


class Poller:
    """Ask ``www.example.test A`` every 10 ms from each (client namespace, resolver) until it answers.

    A namespace is a name under /run/netns (netns and docker backends, floors) or a function
    giving a path such as /proc/PID/ns/net once it is known (docker-compose's client container)."""

    def __init__(self, targets: list[tuple[Where, str]]) -> None:
        self.targets = targets
        self.socks: dict[int, socket.socket] = {}
        self.answered: dict[int, float] = {}
        self.next_send = [0.0] * len(targets)
        self.qid = 1

    def step(self, now: float) -> None:
        for i, (ns, server) in enumerate(self.targets):
            if i in self.answered or now < self.next_send[i]:
                continue
            self.next_send[i] = now + POLL_EVERY
            if i not in self.socks:
                path = ns_path(ns)
                if path is None:
                    continue
                try:
                    self.socks[i] = socket_in(path)
                except OSError:   # the name exists before its bind mount: try again next round
                    continue
            self.qid = (self.qid + 1) & 0xFFFF
            try:
                self.socks[i].sendto(_query(self.qid), (server, 53))
            except OSError:       # no address or route yet
                pass
        live = {s.fileno(): i for i, s in self.socks.items() if i not in self.answered}
        pending = [t for i, t in enumerate(self.next_send) if i not in self.answered] or [now]
        wait = min(max(0.001, min(pending) - now), POLL_EVERY)
        if not live:
            time.sleep(wait)
            return
        ready, _, _ = select.select(list(live), [], [], wait)
        t = time.monotonic()
        for fd in ready:
            i = live[fd]
            while True:
                try:
                    data = self.socks[i].recv(4096)
                except OSError:   # EAGAIN, or ICMP port unreachable from a resolver not listening yet
                    break
                if _answered(data):
                    self.answered.setdefault(i, t)

    def done(self) -> bool:
        return len(self.answered) == len(self.targets)

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


# ---------------------------------------------------------------- running commands
class Failed(RuntimeError):
    pass


LIVE: list[subprocess.Popen] = []   # launched and maybe not finished: waited for before cleanup


def launch(cmds: list[list[str]], targets: list[tuple[Where, str]], env: dict | None = None) -> tuple[float, float]:
    """Launch commands at once, poll the targets; (all commands returned, all targets answered), in s."""
    poller = Poller(targets)
    done_at: list[float] = []
    outputs: list[tuple[list[str], int, str]] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, env=env, start_new_session=True) for c in cmds]
    LIVE.extend(procs)

    def wait(p: subprocess.Popen, cmd: list[str]) -> None:
        out, _ = p.communicate()
        with lock:
            done_at.append(time.monotonic())
            outputs.append((cmd, p.returncode, out))

    waiters = [threading.Thread(target=wait, args=(p, c), daemon=True) for p, c in zip(procs, cmds)]
    for w in waiters:
        w.start()
    try:
        while not (poller.done() and len(done_at) == len(procs)):
            now = time.monotonic()
            if now - t0 > TIMEOUT:
                raise Failed(f"no answer after {TIMEOUT:.0f}s from {[t for i, t in enumerate(targets) if i not in poller.answered]}")
            with lock:
                bad = [o for o in outputs if o[1] != 0]
            if bad:
                cmd, rc, out = bad[0]
                raise Failed(f"{' '.join(cmd)} exited {rc}:\n{out[-2000:]}")
            if poller.done():
                time.sleep(0.005)
            else:
                poller.step(now)
    finally:
        poller.close()
    for w in waiters:
        w.join()
    for p in procs:
        LIVE.remove(p)
    return max(done_at) - t0, max(poller.answered.values()) - t0


def timed(cmds: list[list[str]], env: dict | None = None) -> float:
    """Run commands at once; the wall time until the last returns (an error if one fails)."""
    t0 = time.monotonic()
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, env=env, start_new_session=True) for c in cmds]
    LIVE.extend(procs)
    outs = [p.communicate()[0] for p in procs]
    took = time.monotonic() - t0
    for p in procs:
        LIVE.remove(p)
    for c, p, out in zip(cmds, procs, outs):
        if p.returncode:
            raise Failed(f"{' '.join(c)} exited {p.returncode}:\n{out[-2000:]}")
    return took


def _cpu_busy() -> tuple[int, int]:
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(f) - f[3] - f[4], sum(f)   # (busy, total) jiffies: idle and iowait are not busy


def quiesce() -> float:
    """Sleep until the machine is quiet (CPU busy < QUIET over 0.5 s), at most QUIET_MAX s; the wait."""
    t0 = time.monotonic()
    b0, a0 = _cpu_busy()
    while time.monotonic() - t0 < QUIET_MAX:
        time.sleep(0.5)
        b1, a1 = _cpu_busy()
        if a1 > a0 and (b1 - b0) / (a1 - a0) < QUIET:
            break
        b0, a0 = b1, a1
    return time.monotonic() - t0


# ---------------------------------------------------------------- memory
def _pss(pid: str) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _ppid_comm(pid: str) -> tuple[str, str]:
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    return stat.rsplit(")", 1)[1].split()[1], comm


def pss_kib(namespaces: list[str] | None = None, inodes: set[int] | None = None) -> int:
    """Sum of Pss (KiB) over every process whose network namespace is one of ``namespaces`` (names
    under /run/netns) or ``inodes``, plus the containerd-shim that is the parent of any of them
    (one per container: the container's share of the engine that exists only because of it)."""
    inodes = set(inodes or ())
    for n in namespaces or ():
        try:
            inodes.add(os.stat(NETNS / n).st_ino)
        except OSError:
            pass
    total, parents = 0, set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino not in inodes:
                continue
            total += _pss(entry.name)
            parents.add(_ppid_comm(entry.name)[0])
        except OSError:
            continue
    for pid in parents:
        try:
            if _ppid_comm(pid)[1].startswith("containerd-shim"):
                total += _pss(pid)
        except OSError:
            continue
    return total


def dnslab_namespaces(instance: str) -> list[str]:
    data = json.loads((RUN_DNSLAB / instance / "state.json").read_text())
    return [n for kind, n in data["resources"] if kind == "netns"]


def floor_namespaces(prefix: str) -> list[str]:
    return [p.name for p in NETNS.glob(prefix + "*")]


# ---------------------------------------------------------------- docker and docker-compose
COMPOSE_LABEL = "com.docker.compose.project"


def docker_engine():
    """A docker SDK client if an engine answers, else None."""
    try:
        import docker
        c = docker.from_env(timeout=120)
        c.ping()
        return c
    except Exception:
        return None


class ComposeClients:
    """Watches the engine's start events of compose ``cli`` services while a launch polls: the
    client container's network namespace (/proc/PID/ns/net) by project, as soon as it runs."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.paths: dict[str, str] = {}
        self.stream = engine.api.events(decode=True, filters={"event": "start", "label": "com.docker.compose.service=cli"})
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for ev in self.stream:
                project = ev.get("Actor", {}).get("Attributes", {}).get(COMPOSE_LABEL)
                if project:
                    pid = self.engine.api.inspect_container(ev["id"])["State"]["Pid"]
                    self.paths[project] = f"/proc/{pid}/ns/net"
        except Exception:   # the stream closed
            pass

    def where(self, project: str) -> Callable[[], str | None]:
        return lambda: self.paths.get(project)

    def close(self) -> None:
        try:
            self.stream.close()
        except Exception:
            pass


# ---------------------------------------------------------------- the benchmark
SYSTEMS = ("floor", "netns", "trainees", "docker", "compose")   # trainees: dnslab netns, up --trainees
TRAINEE_CLASS = "startupbench"
HOMES, DISKS = Path("/var/lib/dnslab/home"), Path("/var/lib/dnslab/disks")   # dnslab.homes
LABS = {"basics": "dns-basics", "floor5": str(FLOOR5_LAB)}


class Bench:
    """Every system on every lab it can run: 1 instance, then N at once; memory; down."""

    def __init__(self, n_inst: int, docker: bool, compose: bool) -> None:
        self.n = n_inst
        self.docker, self.compose = docker, compose
        self.dnslab_made: set[str] = set()
        self.trainee_made: set[str] = set()   # of those, brought up with --trainees (removed with --purge)
        self.floorb_made: set[int] = set()
        self.floor5_made: set[int] = set()
        self.compose_made: set[int] = set()
        self.waits: list[float] = []   # how long each quiesce() waited
        # dnslab instance names: (lab, backend) -> (single, prefix of the N)
        self.names = {("basics", "netns"): ("benchx", "bench"), ("floor5", "netns"): ("benchf5", "benchf5n"),
                      ("basics", "docker"): ("benchdx", "benchd"), ("floor5", "docker"): ("benchd5", "benchd5n"),
                      ("basics", "trainees"): ("benchtx", "benchtr")}   # trainees named as their instances

    def many(self, lab: str, backend: str) -> list[str]:
        return [f"{self.names[(lab, backend)][1]}-{i}" for i in range(1, self.n + 1)]

    def all_names(self) -> list[str]:
        out = []
        for (lab, be), (single, _) in self.names.items():
            out += [single, *self.many(lab, be)]
        return out

    def preflight(self) -> None:
        if os.geteuid() != 0:
            sys.exit("startup.py: run it as root (it makes network namespaces)")
        self.lock = open("/run/lock/dnslab-bench-startup.lock", "w")  # two runs at once would share names
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit("startup.py: another run of this benchmark is going on")
        taken = [n for n in self.all_names() if (RUN_DNSLAB / n).exists() or (NETNS / f"dnslab-{n}").exists()]
        taken += [f"kept home {n}" for n in self.all_names()   # down --purge would delete it
                  if (HOMES / n).exists() or (DISKS / f"{n}.img").exists()]
        taken += [f"floorb-c{c}" for c in range(self.n) if floor_namespaces(f"floorb-c{c}-")]
        if self.compose:
            taken += [f"compose project benchc{c}" for c in range(self.n)
                      if self.engine.containers.list(all=True, filters={"label": f"{COMPOSE_LABEL}=benchc{c}"})]
        if taken:
            sys.exit(f"startup.py: already there (left by an earlier run? remove them first): {', '.join(taken)}")

    def setup(self) -> None:
        """After preflight: the temp dir for the floors' run dirs, the resolvers' addresses, compose projects."""
        self.tmp = Path(tempfile.mkdtemp(prefix="dnslab-bench-"))
        self.floorb_env = {**os.environ, "FLOOR_DIR": str(self.tmp / "floorb")}
        self.floor5_env = {**os.environ, "FLOOR_DIR": str(self.tmp / "floor5")}
        free = [c for c in range(40, 100) if not floor_namespaces(f"floor-c{c}-")]
        if len(free) < self.n:
            sys.exit("startup.py: not enough free floor-lab.sh copies (floor-c40.. floor-c99)")
        self.f5_copies = free[:self.n]
        self.res, self.clients = {}, {}
        for key, lab in LABS.items():
            out = subprocess.run(DNSLAB + ["validate", lab, "--json"], capture_output=True, text=True, check=True)
            nodes = json.loads(out.stdout)["nodes"]
            self.res[key] = next(n["addresses"][0] for n in nodes.values() if n["kind"] == "unbound")
            self.clients[key] = next(name for name, n in nodes.items() if n["kind"] == "client")
        if self.compose:
            self.compose_files = {c: self.write_compose(c) for c in range(self.n)}

    def write_compose(self, c: int) -> tuple[Path, str]:
        """floor5 as compose project benchcC on 198.18.C.0/24 (docker networks on one engine may not
        overlap, so each copy gets its own /24); returns (compose file, the resolver's address)."""
        import yaml
        from compose import write_project
        lab_dir = self.tmp / f"floor5-c{c}"
        lab_dir.mkdir()
        doc = yaml.safe_load((FLOOR5_LAB / "lab.yaml").read_text())
        doc["networks"]["lan"]["ipv4"] = f"198.18.{c}.0/24"
        (lab_dir / "lab.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        path = write_project(lab_dir, self.tmp / f"compose-c{c}")
        out = subprocess.run(DNSLAB + ["validate", str(lab_dir), "--json"], capture_output=True, text=True, check=True)
        res = next(n["addresses"][0] for n in json.loads(out.stdout)["nodes"].values() if n["kind"] == "unbound")
        return path, res

    # -- dnslab, either backend, or netns with trainees ("trainees")
    def dnslab_up(self, lab: str, backend: str, many: bool) -> tuple[list[str], tuple[float, float]]:
        single, prefix = self.names[(lab, backend)]
        names = self.many(lab, backend) if many else [single]
        self.dnslab_made.update(names)
        if backend == "trainees":
            self.trainee_made.update(names)
            roster = self.tmp / f"roster-{len(names)}.csv"
            roster.write_text("trainee\n" + "".join(f"{n}\n" for n in names))
            cmd = DNSLAB + ["up", LABS[lab], "--backend", "netns", "--trainees", str(roster), "--class", TRAINEE_CLASS]
        else:
            cmd = DNSLAB + ["up", LABS[lab], "--backend", backend]
            cmd += ["--instances", str(self.n), "--name", prefix] if many else ["--name", single]
        return names, launch([cmd], [(f"dnslab-{n}-{self.clients[lab]}", self.res[lab]) for n in names])

    def dnslab_down(self, names: list[str], purge: bool = False) -> float:
        took = timed([DNSLAB + ["down", *(["--purge"] if purge else []), *names]])
        self.dnslab_made.difference_update(names)
        self.trainee_made.difference_update(names)
        return took

    # -- the floors
    def floor_up(self, lab: str, copies: list[int]) -> tuple[float, float]:
        if lab == "basics":
            self.floorb_made.update(copies)
            return launch([["bash", str(FLOOR_B), "up", str(c)] for c in copies],
                          [(f"floorb-c{c}-cli", FLOORB_RESOLVER) for c in copies], env=self.floorb_env)
        self.floor5_made.update(copies)
        return launch([["bash", str(FLOOR_5), "up", str(c), "0"] for c in copies],
                      [(f"floor-c{c}-cli", FLOOR5_RESOLVER) for c in copies], env=self.floor5_env)

    def floor_mem(self, lab: str, copies: list[int]) -> float:
        pre = "floorb-c{}-" if lab == "basics" else "floor-c{}-"
        return sum(pss_kib(floor_namespaces(pre.format(c))) for c in copies) / len(copies)

    def floor_down(self, lab: str, copies: list[int]) -> float:
        script, env, made = ((FLOOR_B, self.floorb_env, self.floorb_made) if lab == "basics"
                             else (FLOOR_5, self.floor5_env, self.floor5_made))
        took = timed([["bash", str(script), "down", str(c)] for c in copies], env=env)
        made.difference_update(copies)
        return took

    # -- docker-compose (floor5 only)
    def compose_cmd(self, c: int, *args: str) -> list[str]:
        path, _ = self.compose_files[c]
        return ["docker-compose", "-p", f"benchc{c}", "-f", str(path), *args]

    def compose_up(self, copies: list[int]) -> tuple[float, float]:
        self.compose_made.update(copies)
        watch = ComposeClients(self.engine)
        try:
            return launch([self.compose_cmd(c, "up", "-d") for c in copies],
                          [(watch.where(f"benchc{c}"), self.compose_files[c][1]) for c in copies])
        finally:
            watch.close()

    def compose_mem(self, copies: list[int]) -> float:
        total = 0
        for c in copies:
            inodes = set()
            for ct in self.engine.containers.list(filters={"label": f"{COMPOSE_LABEL}=benchc{c}"}):
                inodes.add(os.stat(f"/proc/{ct.attrs['State']['Pid']}/ns/net").st_ino)
            total += pss_kib(inodes=inodes)
        return total / len(copies)

    def compose_down(self, copies: list[int]) -> float:
        took = timed([self.compose_cmd(c, "down") for c in copies])
        self.compose_made.difference_update(copies)
        return took

    # -- one system, 1 then N
    def measure(self, lab: str, system: str, add: Callable[[str, float], None]) -> None:
        for many in (False, True):
            tag = "n" if many else "1"
            if system in ("netns", "docker", "trainees"):
                names, (up, ans) = self.dnslab_up(lab, system, many)
                mem = sum(pss_kib(dnslab_namespaces(n)) for n in names) / len(names)
                down = self.dnslab_down(names, purge=system == "trainees")
            elif system == "floor":
                copies = (list(range(self.n)) if many else [0]) if lab == "basics" else \
                         (self.f5_copies if many else self.f5_copies[:1])
                up, ans = self.floor_up(lab, copies)
                mem = self.floor_mem(lab, copies)
                down = self.floor_down(lab, copies)
            else:
                copies = list(range(self.n)) if many else [0]
                up, ans = self.compose_up(copies)
                mem = self.compose_mem(copies)
                down = self.compose_down(copies)
            for k, v in (("up", up), ("ans", ans), ("mem", mem), ("down", down)):
                add(f"{lab}.{system}.{k}{tag}", v)
            time.sleep(SETTLE_MANY if many else SETTLE)
            self.waits.append(quiesce())

    def systems(self, lab: str) -> list[str]:
        out = ["floor", "netns"] + (["trainees"] if lab == "basics" else []) + (["docker"] if self.docker else [])
        return out + (["compose"] if self.compose and lab == "floor5" else [])

    def one_run(self, r: dict[str, list[float]], run: int) -> None:
        def add(key: str, value: float) -> None:
            r.setdefault(key, []).append(value)
        for lab in LABS:
            systems = self.systems(lab)
            k = run % len(systems)          # rotate the order from run to run
            for system in systems[k:] + systems[:k]:
                self.measure(lab, system, add)

    def warm_up(self) -> None:
        """One untimed pass of each system on one instance, so binaries, libraries and images are in the page cache."""
        for lab in LABS:
            for system in self.systems(lab):
                if system in ("netns", "docker", "trainees"):
                    names, _ = self.dnslab_up(lab, system, False)
                    self.dnslab_down(names, purge=system == "trainees")
                elif system == "floor":
                    copies = [0] if lab == "basics" else self.f5_copies[:1]
                    self.floor_up(lab, copies)
                    self.floor_down(lab, copies)
                else:
                    self.compose_up([0])
                    self.compose_down([0])
                time.sleep(SETTLE)

    def cleanup(self) -> None:
        for p in list(LIVE):          # an up still starting its daemons: let it finish, then remove it
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        left = sorted(n for n in self.dnslab_made - self.trainee_made if (RUN_DNSLAB / n).exists())
        if left:
            subprocess.run(DNSLAB + ["down", *left], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        left = sorted(n for n in self.trainee_made if (RUN_DNSLAB / n).exists())
        if left:   # users, homes and their images too
            subprocess.run(DNSLAB + ["down", "--purge", *left], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in sorted(self.floorb_made):
            subprocess.run(["bash", str(FLOOR_B), "down", str(c)], env=self.floorb_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in sorted(self.floor5_made):
            subprocess.run(["bash", str(FLOOR_5), "down", str(c)], env=self.floor5_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in sorted(self.compose_made):
            subprocess.run(self.compose_cmd(c, "down", "-t", "1"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if getattr(self, "tmp", None):
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.tmp)])


# ---------------------------------------------------------------- the table
def med(xs: list[float] | None) -> float | None:
    return statistics.median(xs) if xs else None


def cell(xs: list[float] | None, fmt: str) -> str:
    if not xs:
        return "–"
    if len(xs) == 1:
        return fmt.format(xs[0])
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def ratio(a: list[float] | None, b: list[float] | None) -> str:
    return f"{med(a) / med(b):.2f}x" if a and b and med(b) else "–"


def table(r: dict[str, list[float]], n: int) -> str:
    sec, mib = "{:.2f} s", "{:.1f} MiB"
    lab_title = {"basics": "dns-basics (9 nodes)", "floor5": "floor5 (5 nodes)"}
    metrics = [("ans1", "1 instance: first answer", sec), ("up1", "1 instance: command returned", sec),
               ("ansn", f"{n} at once: first answer in every one", sec),
               ("upn", f"{n} at once: every command returned", sec),
               ("mem1", "PSS per instance, 1 up", mib), ("memn", f"PSS per instance, {n} up", mib),
               ("fit", f"instances in 24 GiB (PSS with {n} up)", "{:.0f}"),
               ("down1", "down, 1 instance", sec), ("downn", f"down, {n} instances", sec)]
    d = {k: ([x / 1024 for x in v] if ".mem" in k else v) for k, v in r.items()}   # KiB -> MiB
    for k in [k for k in d if k.endswith(".memn")]:
        d[k.replace(".memn", ".fit")] = [int(24 * 1024 // x) for x in d[k]]
    pairs = (("netns", "floor"), ("trainees", "netns"), ("docker", "floor"), ("compose", "floor"),
             ("docker", "netns"), ("compose", "docker"))
    out = ["| lab: figure | floor | dnslab netns | dnslab netns, `--trainees` | dnslab docker | docker-compose "
           "| netns ÷ floor | trainees ÷ netns | docker ÷ floor | compose ÷ floor | docker ÷ netns | compose ÷ docker |",
           "| --- " * (1 + len(SYSTEMS) + len(pairs)) + "|"]
    for lab in LABS:
        for m, name, fmt in metrics:
            v = {s: d.get(f"{lab}.{s}.{m}") for s in SYSTEMS}
            out.append(f"| {lab_title[lab]}: {name} | " + " | ".join(cell(v[s], fmt) for s in SYSTEMS) + " | "
                       + " | ".join(ratio(v[a], v[b]) for a, b in pairs) + " |")
    return "\n".join(out)


def trainee_summary(r: dict[str, list[float]], n: int) -> str:
    """One paragraph: what trainee labs cost against plain ones (dns-basics, same runs)."""
    if not r.get("basics.trainees.ansn"):
        return ""

    def rr(m: str) -> str:
        return ratio(r.get(f"basics.trainees.{m}"), r.get(f"basics.netns.{m}"))

    def v(system: str, m: str) -> str:
        xs = r.get(f"basics.{system}.{m}")
        if not xs:
            return "–"
        return f"{med(xs) / 1024:.1f} MiB" if m.startswith("mem") else f"{med(xs):.2f} s"
    return (f"Trainee labs, dns-basics (trainees ÷ plain, medians of the same runs): {n} at once with "
            f"`--trainees` (a {n}-row roster, no --jupyter) reach the first answer in every one in "
            f"{v('trainees', 'ansn')} against {v('netns', 'ansn')} with `--instances {n}`, **{rr('ansn')}**; "
            f"one instance {v('trainees', 'ans1')} against {v('netns', 'ans1')}, {rr('ans1')}; "
            f"`down --purge` of {n} {v('trainees', 'downn')} against `down` {v('netns', 'downn')}, {rr('downn')} "
            f"(one: {v('trainees', 'down1')} against {v('netns', 'down1')}, {rr('down1')}); PSS per instance "
            f"with {n} up {v('trainees', 'memn')} against {v('netns', 'memn')}, {rr('memn')}.")


def machine() -> str:
    model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    mem = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal")) / (1 << 20)
    return (f"{os.cpu_count()} CPUs (nproc; {model}), {mem:.1f} GiB RAM, no swap, kernel {platform.release()}, "
            f"Python {platform.python_version()}")


def versions() -> str:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip().splitlines()[0]
        except Exception:
            return "n/a"
    return (f"dockerd {out(['docker', 'version', '--format', '{{.Server.Version}}'])}, "
            f"{out(['docker-compose', 'version', '--short']) and 'docker-compose ' + out(['docker-compose', 'version', '--short'])}")


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (the median is reported); default 5")
    ap.add_argument("--instances", type=int, default=10, help="instances for the 'at once' figures; default 10")
    ap.add_argument("--no-docker", action="store_true", help="skip the docker backend and docker-compose")
    ap.add_argument("--no-compose", action="store_true", help="skip docker-compose")
    ap.add_argument("--start-engine", action="store_true",
                    help="start a Docker engine (scripts/docker-engine.sh) if none answers, and stop it at the end")
    ap.add_argument("--build-images", action="store_true", help="run `dnslab images build` first (cached layers: quick)")
    ap.add_argument("--no-write", action="store_true", help=f"print the table only, do not write {RESULTS.name}")
    args = ap.parse_args()
    if args.runs < 1 or not 1 <= args.instances <= 30:
        ap.error("--runs must be >= 1 and --instances 1..30")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    notes, started_engine, engine = [], False, None
    if args.no_docker:
        notes.append("Docker and docker-compose rows skipped (--no-docker).")
    else:
        engine = docker_engine()
        if engine is None and args.start_engine:
            subprocess.run(["bash", str(ENGINE_SCRIPT), "start"], check=False)
            engine = docker_engine()
            started_engine = engine is not None
        if engine is None:
            notes.append("Docker rows skipped: no Docker engine answered (scripts/docker-engine.sh start).")
        elif args.build_images or not all(engine.images.list(name=f"dnslab/{k}") for k in KINDS_FLOOR):
            subprocess.run(DNSLAB + ["images", "build"], check=True)
    compose = engine is not None and not args.no_compose
    if compose and not shutil.which("docker-compose"):
        notes.append("docker-compose rows skipped: no docker-compose (apt-get install docker-compose).")
        compose = False
    bench = Bench(args.instances, docker=engine is not None, compose=compose)
    bench.engine = engine
    r: dict[str, list[float]] = {}
    t0 = time.monotonic()
    loads = [load()]
    started = datetime.datetime.now(datetime.timezone.utc)
    try:
        bench.preflight()
        bench.setup()
        bench.warm_up()
        quiesce()
        for i in range(args.runs):
            bench.one_run(r, i)
            loads.append(load())
            print(f"run {i + 1}/{args.runs} done ({time.monotonic() - t0:.0f}s, load {loads[-1]})",
                  file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("startup.py: interrupted; cleaning up", file=sys.stderr)
        return 130
    except Failed as exc:
        print(f"startup.py: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.cleanup()
        if started_engine:
            subprocess.run(["bash", str(ENGINE_SCRIPT), "stop"], check=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    took = time.monotonic() - t0
    text = "\n".join([
        table(r, args.instances), "",
        *([trainee_summary(r, args.instances), ""] if trainee_summary(r, args.instances) else []),
        f"Median (min–max) of {args.runs} run(s), {started:%Y-%m-%d %H:%M} UTC, {took / 60:.0f} min. "
        f"Machine: {machine()}; {versions() if engine is not None else 'no Docker engine'}. "
        f"Load average (1/5/15 min) before and after each run: {'; '.join(loads)} "
        f"(it counts the benchmark's own containers). Before each figure the machine was let settle until "
        f"its CPUs were less than {QUIET:.0%} busy over 0.5 s (at most {QUIET_MAX:.0f} s): median wait "
        f"{med(bench.waits) or 0:.1f} s, longest {max(bench.waits or [0]):.1f} s"
        f"{f', {sum(w >= QUIET_MAX for w in bench.waits)} figure(s) started without reaching it' if any(w >= QUIET_MAX for w in bench.waits) else ''}.",
        *notes])
    print(text)
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text("# dnslab start-up benchmark (bench/startup.py)\n\n" + text + "\n")
        print(f"\n(written to {RESULTS.relative_to(ROOT)}; took {took:.0f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
