#!/usr/bin/env python3
"""Start-up benchmark: dnslab against bare bash floor scripts, in one run so ratios are fair.

    .venv/bin/python bench/startup.py [--runs N] [--instances 10]      (as root)

Figures (each the median of N runs, with min and max):

- dns-basics, 1 instance: wall time from launching ``dnslab up dns-basics --name benchx`` (the
  whole CLI process, Python start-up included) until ``up`` returns, and until the first answer
  ``www.example.test A 192.0.2.80`` from resolver-unbound asked from the client namespace;
  against ``bench/floor-dns-basics.sh up C``, measured the same way;
- dns-basics, N instances at once (``--instances``) against N floor copies started in parallel:
  until every ``up`` returned and until every instance answered;
- the shared floor's 5-node lab: ``dnslab up bench/labs/floor5`` against
  ``/work/shared/bench/floor-lab.sh up C 0``;
- memory per instance: the sum of PSS over every process inside the instance's namespaces,
  with one instance up and with N up (divided by N), and how many fit in 24 GiB;
- ``down`` of 1 and of N instances (the whole command) against the floor's ``down``.

The first answer is polled by this process itself, from a UDP socket opened inside the client's
network namespace (setns(2) in one thread, no process spawned per query): a query every 10 ms
from the moment the command is launched, any matching reply counts. That is cheaper than a
``ip netns exec ... dig`` loop and has no 1 s timeout that could hide the moment the answer
becomes available.

Prints a Markdown table and writes it to bench/results/startup.md. Everything it makes is
removed in a finally block (Ctrl-C and SIGTERM included): its dnslab instances by name, the
floor copies by their own ``down``.
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import fcntl
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdatatype

ROOT = Path(__file__).resolve().parent.parent
DNSLAB = [str(ROOT / ".venv" / "bin" / "dnslab")]
FLOOR_B = ROOT / "bench" / "floor-dns-basics.sh"
FLOOR_5 = Path("/work/shared/bench/floor-lab.sh")
FLOOR5_LAB = ROOT / "bench" / "labs" / "floor5"
RESULTS = ROOT / "bench" / "results" / "startup.md"
NETNS = Path("/run/netns")
RUN_DNSLAB = Path(os.environ.get("DNSLAB_RUN", "/run/dnslab"))

QNAME, WANT = "www.example.test", "192.0.2.80"
FLOORB_RESOLVER = "198.18.0.7"   # floor-dns-basics.sh: the Unbound resolver
FLOOR5_RESOLVER = "198.18.0.4"   # floor-lab.sh: the Unbound resolver
POLL_EVERY = 0.010
TIMEOUT = 90.0
GIB = 1 << 30
SETTLE = 0.5          # after a down: let the kernel finish tearing namespaces down
SETTLE_MANY = 2.0

# ---------------------------------------------------------------- namespaces and probes
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def socket_in(netns: str) -> socket.socket:
    """A UDP socket made inside network namespace ``netns`` (by name); the thread goes back home."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS / netns, os.O_RDONLY)
        try:
            _setns(target)
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            finally:
                _setns(own)
        finally:
            os.close(target)
    finally:
        os.close(own)
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


class Poller:
    """Ask ``www.example.test A`` every 10 ms from each (client namespace, resolver) until it answers."""

    def __init__(self, targets: list[tuple[str, str]]) -> None:
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
                if not (NETNS / ns).exists():
                    continue
                try:
                    self.socks[i] = socket_in(ns)
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


def launch(cmds: list[list[str]], targets: list[tuple[str, str]], env: dict | None = None) -> tuple[float, float]:
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


# ---------------------------------------------------------------- memory
def pss_kib(namespaces: list[str]) -> int:
    """Sum of Pss (KiB) over every process whose network namespace is one of ``namespaces``."""
    inodes = set()
    for n in namespaces:
        try:
            inodes.add(os.stat(NETNS / n).st_ino)
        except OSError:
            pass
    total = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/net").st_ino not in inodes:
                continue
            with open(f"/proc/{entry.name}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def dnslab_namespaces(instance: str) -> list[str]:
    data = json.loads((RUN_DNSLAB / instance / "state.json").read_text())
    return [n for kind, n in data["resources"] if kind == "netns"]


def floor_namespaces(prefix: str) -> list[str]:
    return [p.name for p in NETNS.glob(prefix + "*")]


# ---------------------------------------------------------------- the benchmark
class Bench:
    def __init__(self, n_inst: int) -> None:
        self.n = n_inst
        self.dnslab_made: set[str] = set()
        self.floorb_made: set[int] = set()
        self.floor5_made: set[int] = set()
        self.single, self.many = "benchx", "bench"
        self.many_names = [f"{self.many}-{i}" for i in range(1, n_inst + 1)]
        self.f5_name = "benchf5"

    def setup(self) -> None:
        """After preflight: the temp dir for the floors' run dirs, the resolvers' addresses."""
        self.tmp = Path(tempfile.mkdtemp(prefix="dnslab-bench-"))
        self.floorb_env = {**os.environ, "FLOOR_DIR": str(self.tmp / "floorb")}
        self.floor5_env = {**os.environ, "FLOOR_DIR": str(self.tmp / "floor5")}
        self.f5_copy = next(c for c in range(40, 100) if not (NETNS / f"floor-c{c}-sw").exists())
        self.res = {}
        for lab in ("dns-basics", str(FLOOR5_LAB)):
            out = subprocess.run(DNSLAB + ["validate", lab, "--json"], capture_output=True, text=True, check=True)
            nodes = json.loads(out.stdout)["nodes"]
            self.res[lab] = next(n["addresses"][0] for n in nodes.values() if n["kind"] == "unbound")
        self.clients = {"dns-basics": "client", str(FLOOR5_LAB): "cli"}

    def preflight(self) -> None:
        if os.geteuid() != 0:
            sys.exit("startup.py: run it as root (it makes network namespaces)")
        self.lock = open("/run/lock/dnslab-bench-startup.lock", "w")  # two runs at once would share names
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.exit("startup.py: another run of this benchmark is going on")
        mine = [self.single, self.f5_name, *self.many_names]
        taken = [n for n in mine if (RUN_DNSLAB / n).exists() or (NETNS / f"dnslab-{n}").exists()]
        taken += [f"floorb-c{c}" for c in range(self.n) if floor_namespaces(f"floorb-c{c}-")]
        if taken:
            sys.exit(f"startup.py: already there (left by an earlier run? remove them first): {', '.join(taken)}")

    # -- dnslab
    def dnslab_up(self, lab: str, names: list[str], many: bool) -> tuple[float, float]:
        self.dnslab_made.update(names)
        cmd = DNSLAB + ["up", lab] + (["--instances", str(self.n), "--name", self.many] if many else ["--name", names[0]])
        targets = [(f"dnslab-{n}-{self.clients[lab]}", self.res[lab]) for n in names]
        return launch([cmd], targets)

    def dnslab_down(self, names: list[str]) -> float:
        took = timed([DNSLAB + ["down", *names]])
        self.dnslab_made.difference_update(names)
        return took

    # -- floor for dns-basics
    def floorb_up(self, copies: list[int]) -> tuple[float, float]:
        self.floorb_made.update(copies)
        return launch([["bash", str(FLOOR_B), "up", str(c)] for c in copies],
                      [(f"floorb-c{c}-cli", FLOORB_RESOLVER) for c in copies], env=self.floorb_env)

    def floorb_down(self, copies: list[int]) -> float:
        took = timed([["bash", str(FLOOR_B), "down", str(c)] for c in copies], env=self.floorb_env)
        self.floorb_made.difference_update(copies)
        return took

    # -- the shared 5-node floor
    def floor5_up(self) -> tuple[float, float]:
        c = self.f5_copy
        self.floor5_made.add(c)
        return launch([["bash", str(FLOOR_5), "up", str(c), "0"]], [(f"floor-c{c}-cli", FLOOR5_RESOLVER)],
                      env=self.floor5_env)

    def floor5_down(self) -> float:
        c = self.f5_copy
        took = timed([["bash", str(FLOOR_5), "down", str(c)]], env=self.floor5_env)
        self.floor5_made.discard(c)
        return took

    def one_run(self, r: dict[str, list[float]]) -> None:
        def add(key: str, value: float) -> None:
            r.setdefault(key, []).append(value)

        up, ans = self.dnslab_up("dns-basics", [self.single], many=False)
        add("d1_up", up), add("d1_ans", ans)
        add("d1_mem", pss_kib(dnslab_namespaces(self.single)))
        add("d1_down", self.dnslab_down([self.single]))
        time.sleep(SETTLE)

        up, ans = self.floorb_up([0])
        add("f1_up", up), add("f1_ans", ans)
        add("f1_mem", pss_kib(floor_namespaces("floorb-c0-")))
        add("f1_down", self.floorb_down([0]))
        time.sleep(SETTLE)

        up, ans = self.dnslab_up(str(FLOOR5_LAB), [self.f5_name], many=False)
        add("d5_up", up), add("d5_ans", ans)
        self.dnslab_down([self.f5_name])
        time.sleep(SETTLE)

        up, ans = self.floor5_up()
        add("f5_up", up), add("f5_ans", ans)
        self.floor5_down()
        time.sleep(SETTLE)

        up, ans = self.dnslab_up("dns-basics", self.many_names, many=True)
        add("dn_up", up), add("dn_ans", ans)
        add("dn_mem", sum(pss_kib(dnslab_namespaces(n)) for n in self.many_names) / self.n)
        add("dn_down", self.dnslab_down(self.many_names))
        time.sleep(SETTLE_MANY)

        copies = list(range(self.n))
        up, ans = self.floorb_up(copies)
        add("fn_up", up), add("fn_ans", ans)
        add("fn_mem", sum(pss_kib(floor_namespaces(f"floorb-c{c}-")) for c in copies) / self.n)
        add("fn_down", self.floorb_down(copies))
        time.sleep(SETTLE_MANY)

    def warm_up(self) -> None:
        """One untimed pass of each, so binaries and libraries are in the page cache."""
        self.dnslab_up("dns-basics", [self.single], many=False)
        self.dnslab_down([self.single])
        self.floorb_up([0])
        self.floorb_down([0])
        time.sleep(SETTLE)

    def cleanup(self) -> None:
        for p in list(LIVE):          # an up still starting its daemons: let it finish, then remove it
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        left = sorted(n for n in self.dnslab_made if (RUN_DNSLAB / n).exists())
        if left:
            subprocess.run(DNSLAB + ["down", *left], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in sorted(self.floorb_made):
            subprocess.run(["bash", str(FLOOR_B), "down", str(c)], env=self.floorb_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for c in sorted(self.floor5_made):
            subprocess.run(["bash", str(FLOOR_5), "down", str(c)], env=self.floor5_env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if getattr(self, "tmp", None):
            subprocess.run(["rm", "-rf", "--one-file-system", str(self.tmp)])


# ---------------------------------------------------------------- the table
def cell(xs: list[float], fmt: str) -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def table(r: dict[str, list[float]], n: int, runs: int) -> str:
    sec, mib = "{:.2f} s", "{:.1f} MiB"
    mem = {k: [v / 1024 for v in r[k]] for k in ("d1_mem", "f1_mem", "dn_mem", "fn_mem")}
    fit = {k: [int(24 * 1024 // v) for v in mem[k]] for k in ("dn_mem", "fn_mem")}
    rows = [
        ("dns-basics, 1 instance: `up` returned", r["d1_up"], r["f1_up"], sec),
        ("dns-basics, 1 instance: first answer", r["d1_ans"], r["f1_ans"], sec),
        (f"dns-basics, {n} instances at once: every `up` returned", r["dn_up"], r["fn_up"], sec),
        (f"dns-basics, {n} instances at once: first answer in every one", r["dn_ans"], r["fn_ans"], sec),
        ("5-node floor lab (floor5), 1 instance: `up` returned", r["d5_up"], r["f5_up"], sec),
        ("5-node floor lab (floor5), 1 instance: first answer", r["d5_ans"], r["f5_ans"], sec),
        ("memory per dns-basics instance, PSS, 1 up", mem["d1_mem"], mem["f1_mem"], mib),
        (f"memory per dns-basics instance, PSS, {n} up", mem["dn_mem"], mem["fn_mem"], mib),
        (f"dns-basics instances in 24 GiB (from PSS with {n} up)", fit["dn_mem"], fit["fn_mem"], "{:.0f}"),
        ("`down`, 1 instance", r["d1_down"], r["f1_down"], sec),
        (f"`down`, {n} instances", r["dn_down"], r["fn_down"], sec),
    ]
    out = ["| figure | dnslab | floor | ratio |", "| --- | --- | --- | --- |"]
    for name, d, f, fmt in rows:
        out.append(f"| {name} | {cell(d, fmt)} | {cell(f, fmt)} | "
                   f"{statistics.median(d) / statistics.median(f):.2f}x |")
    kernel = platform.release()
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out += ["",
            f"Median (min–max) of {runs} runs. Machine: {os.cpu_count()} CPUs (nproc), kernel {kernel}, "
            f"Python {platform.python_version()}; {when}.",
            "Floors: `bench/floor-dns-basics.sh` (same 8 nodes as dns-basics, IPv4 only; dnslab's dns-basics "
            "also has IPv6) and `/work/shared/bench/floor-lab.sh up C 0` against `bench/labs/floor5` "
            "(IPv4 only on both sides). Times run from launching the command (dnslab: the whole CLI process, "
            "Python start-up included); the first answer is `www.example.test A` = 192.0.2.80 from the "
            "Unbound resolver, asked from the client namespace every 10 ms from launch. "
            "Ratio = dnslab median / floor median."]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (the median is reported); default 5")
    ap.add_argument("--instances", type=int, default=10, help="instances for the 'at once' figures; default 10")
    args = ap.parse_args()
    if args.runs < 1 or not 1 <= args.instances <= 99:
        ap.error("--runs must be >= 1 and --instances 1..99")

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    bench = Bench(args.instances)
    bench.preflight()
    r: dict[str, list[float]] = {}
    t0 = time.monotonic()
    try:
        bench.setup()
        bench.warm_up()
        for i in range(args.runs):
            bench.one_run(r)
            print(f"run {i + 1}/{args.runs} done ({time.monotonic() - t0:.0f}s)", file=sys.stderr, flush=True)
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
        signal.signal(signal.SIGINT, signal.default_int_handler)
    text = table(r, args.instances, args.runs)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("# dnslab start-up benchmark (bench/startup.py)\n\n" + text + "\n")
    print(f"\n(written to {RESULTS.relative_to(ROOT)}; took {time.monotonic() - t0:.0f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
