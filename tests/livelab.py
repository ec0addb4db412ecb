"""Helpers for the live-lab tests (tests/test_live_*.py): a plain module, not a conftest.

Everything here talks to the real machine: network namespaces, daemons, /proc, and for the
docker backend the local Docker engine. The tests that import it are marked ``lab`` and skip
themselves when not run as root. Tests take the backend from the ``backend`` fixture
(tests/conftest.py): "netns" always, "docker" when an engine and the images are there
(``DNSLAB_TEST_DOCKER=require``, as ``.ci/run`` sets, makes their absence a failure instead).
"""
from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

from dnslab import lab
from dnslab.state import run_root

REPO = Path(__file__).resolve().parent.parent
DNS_BASICS = REPO / "labs" / "dns-basics"
NETNS_DIR = Path("/run/netns")
ETC_NETNS = Path("/etc/netns")

BACKENDS = ("netns", "docker")
LABEL = "dnslab.instance"  # the docker backend's container label (dnslab.backends.docker.LABEL)

T = TypeVar("T")
_serial = itertools.count()


def unique_name(prefix: str) -> str:
    """An instance name no other xdist worker (or test of this one) uses: prefix, PID, counter."""
    return f"{prefix}{os.getpid()}x{next(_serial)}"


def dnslab_argv() -> list[str]:
    exe = Path(sys.executable).with_name("dnslab")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dnslab.cli"]


def cli(*args: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real ``dnslab`` command; output captured as text."""
    return subprocess.run(dnslab_argv() + list(args), capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def explain(res: subprocess.CompletedProcess) -> str:
    return f"`{' '.join(map(str, res.args))}` -> {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


def wait_for(pred: Callable[[], T], timeout: float = 15.0, interval: float = 0.02, what: str = "a condition") -> T:
    """Poll ``pred`` until it returns something true, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = pred()
        except Exception as exc:  # e.g. a query timing out while a daemon reloads
            last = exc
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def wait_steady(pred: Callable[[], object], times: int = 5, timeout: float = 15.0, what: str = "a condition") -> None:
    """Poll until ``pred`` holds ``times`` polls in a row: after a reload, NSD answers from its
    old server process and its new one for a moment, so one good answer proves little."""
    streak = 0

    def steady():
        nonlocal streak
        try:
            ok = pred()
        except Exception:
            ok = False
        streak = streak + 1 if ok else 0
        return streak >= times
    wait_for(steady, timeout=timeout, what=what)


# ---------------------------------------------------------------- the docker engine

_docker_client = None
_docker_problem: str | None = None


def docker_problem() -> str | None:
    """Why the docker backend cannot run here (no SDK, no engine, an image missing), or None."""
    global _docker_client, _docker_problem
    if _docker_client is None and _docker_problem is None:
        try:
            import docker
            import docker.errors
        except ImportError:
            _docker_problem = "the docker SDK is not installed (pip install docker)"
            return _docker_problem
        try:
            c = docker.from_env(timeout=60)
            c.ping()
        except Exception as exc:
            _docker_problem = (f"no Docker engine answers ({exc.__class__.__name__}); "
                               "start one with scripts/docker-engine.sh start")
            return _docker_problem
        from dnslab.images import kinds_with_images
        from dnslab.backends.docker import image
        missing = []
        for kind in kinds_with_images():
            try:
                c.images.get(image(kind))
            except docker.errors.ImageNotFound:
                missing.append(image(kind))
        if missing:
            _docker_problem = f"images missing: {', '.join(missing)} (build them with `dnslab images build`)"
        else:
            _docker_client = c
    return _docker_problem


def require_docker() -> None:
    """Skip the calling test when the docker backend cannot run here, saying why; fail instead
    when ``DNSLAB_TEST_DOCKER=require`` (CI must run the docker tests)."""
    import pytest
    problem = docker_problem()
    if problem:
        if os.environ.get("DNSLAB_TEST_DOCKER") == "require":
            pytest.fail(f"docker backend required (DNSLAB_TEST_DOCKER=require) but {problem}", pytrace=False)
        pytest.skip(f"docker backend: {problem}")


def docker_client():
    """The docker SDK client of the test process, or None when there is no usable engine."""
    return None if docker_problem() else _docker_client


def containers(name: str | None = None, *, pid: int | None = None) -> list:
    """Containers labelled by dnslab for instance ``name`` (or, with ``pid``, for any instance
    named by :func:`unique_name` in process ``pid``); [] without an engine."""
    c = docker_client()
    if c is None:
        return []
    flt = f"{LABEL}={name}" if name else LABEL
    found = c.containers.list(all=True, filters={"label": flt}, ignore_removed=True)
    if pid is not None:
        found = [x for x in found if re.fullmatch(rf"[a-z]+{pid}x\d+", x.labels.get(LABEL, ""))]
    return found


def settle_containers(name: str, timeout: float = 15.0) -> None:
    """Wait until the engine has finished what a killed ``up`` asked of it for instance ``name``:
    the set of its containers and their states stay the same for a few polls (a create or start
    request in flight completes in the engine even when its client is gone)."""
    if docker_client() is None:
        return
    seen, streak = None, 0

    def stable():
        nonlocal seen, streak
        now = sorted((x.id, x.status) for x in containers(name))
        streak = streak + 1 if now == seen else 0
        seen = now
        return streak >= 4
    wait_for(stable, timeout=timeout, interval=0.1, what=f"the engine to settle the containers of {name}")


# ---------------------------------------------------------------- instances

def remove(name: str) -> None:
    """Remove instance ``name`` whatever state it is in (best effort, for finalizers)."""
    states = [s for s in lab.instances() if s.name == name]  # a run dir without state.json too
    if states:
        lab.down_states(states, purge_homes=True)
    from dnslab import accounts
    accounts.remove(name, purge_home=True)
    from dnslab.backends.netns import NetnsBackend
    mine = [n for n in NetnsBackend().leftovers(set()) if _is_ours(Path(n).name, name)]
    if mine:
        NetnsBackend().remove_leftovers(mine)
    for c in containers(name):
        c.remove(force=True)


@contextmanager
def instances(names: Sequence[str], lab_dir: Path = DNS_BASICS, backend: str = "netns",
              faults: Sequence[str] = (), trainees: bool = False) -> Iterator[list[lab.Instance]]:
    """Bring instances up in this process on ``backend`` (with ``trainees``: each a trainee's of
    its own name, her daemons and files hers); always take them down, then check nothing is left
    (namespaces, files, run dirs, processes in their namespaces, containers, trainees)."""
    for n in names:  # a name with our PID in it can only be a leftover of a dead process
        remove(n)
    inodes: set[int] = set()
    meta = {n: {"trainee": n, "lang": "en"} for n in names} if trainees else None
    try:
        insts = lab.up(lab_dir, list(names), backend, faults=faults, meta=meta, trainees=trainees)
        for n in names:
            inodes |= ns_inodes(n)
        yield insts
    finally:
        errors = []
        for n in names:
            try:
                remove(n)
            except Exception as exc:  # remove the others all the same
                errors.append(exc)
        if errors:
            raise errors[0]
    for n in names:
        left = leftovers(n, inodes)
        assert not left, f"instance {n} left: {left}"


@contextmanager
def instance(name: str, lab_dir: Path = DNS_BASICS, backend: str = "netns",
             faults: Sequence[str] = (), trainees: bool = False) -> Iterator[lab.Instance]:
    with instances([name], lab_dir, backend, faults, trainees) as insts:
        yield insts[0]


def read_state(name: str) -> dict | None:
    try:
        return json.loads((run_root() / name / "state.json").read_text())
    except (OSError, ValueError):
        return None


def break_and_repair(inst: lab.Instance, lab_dir: Path, fault: str, repair: Callable[[lab.Instance], None],
                     settle: float = 20) -> None:
    """A break-and-fix drill on a running instance: `dnslab break` applies ``fault``, and exactly
    the checks its ``seen_by`` names fail (Unbound saying why, with an Extended DNS Error, where it
    finds a name bogus); ``repair`` (done as the trainee would) and the resolvers reloaded, every
    check passes within ``settle`` seconds (a resolver may still end a lookup begun before)."""
    from dnslab import checks, faults
    seen_by = faults.load(lab_dir, fault)[0].seen_by
    failed = [r.message() for r in checks.run(inst) if not r.passed]
    assert not failed, failed
    res = cli("break", inst.name, fault)
    assert res.returncode == 0, explain(res)
    inst = lab.Instance.open(inst.name)
    failed = {r.id: r for r in checks.run(inst) if not r.passed}
    assert set(failed) == set(seen_by), {k: r.message() for k, r in failed.items()}  # exactly those
    bogus = [r for r in failed.values() if r.key == "validates.bogus" and r.params["via"] == "resolver-unbound"]
    assert all("EDE" in r.message() for r in bogus)
    repair(inst)
    for node in inst.plan.by_role("resolver"):
        inst.reload(node.name)
    wait_for(lambda: all(r.passed for r in checks.run(inst)), timeout=settle, what=f"every check passing after "
                                                                                   f"{fault} is repaired")


def edit_conf(inst: lab.Instance, node: str, conf: str, *subs: tuple[str, str]) -> None:
    """Change a node's config file as its operator would (each pattern, a regex, must match),
    then reload the node."""
    path = inst.state.node_dir(node) / conf
    text = path.read_text()
    for pattern, repl in subs:
        text, n = re.subn(pattern, repl, text)
        assert n, (node, conf, pattern)
    path.write_text(text)
    inst.reload(node)


def bump_serial(zone_text: str, by: int = 1) -> tuple[str, int]:
    """The zone text with its SOA serial raised by ``by``, and the new serial."""
    m = re.search(r"(\sIN\s+SOA\s+\S+\s+\S+\s+)(\d+)", zone_text)
    assert m, "no SOA in zone text"
    serial = int(m.group(2)) + by
    return zone_text[:m.start(2)] + str(serial) + zone_text[m.end(2):], serial


# ---------------------------------------------------------------- what is left on the machine

def repair_glue(inst) -> None:
    """What a trainee does to fix dns-basics' lame-glue fault, done as her: the glue of both
    name servers in the test. zone of node tld, a new serial, tld and the resolvers reloaded."""
    from dnslab import confine
    zone = inst.state.node_dir("tld") / "zones" / "test.zone"
    text = zone.read_text()
    for host, node in (("ns1.lab.test.", "sld-nsd"), ("ns1.example.test.", "sld-knot")):
        v4, v6 = inst.node(node).addresses
        text = re.sub(rf"(?m)^({re.escape(host)}\s+IN\s+A\s+)\S+$", rf"\g<1>{v4}", text)
        text = re.sub(rf"(?m)^({re.escape(host)}\s+IN\s+AAAA\s+)\S+$", rf"\g<1>{v6}", text)
    confine.write_as(confine.trainee_of(inst.state), zone, bump_serial(text)[0].encode())
    for node in ("tld", "resolver-unbound", "resolver-bind"):
        inst.reload(node)


def _is_ours(entry: str, name: str) -> bool:
    return entry == f"dnslab-{name}" or entry.startswith(f"dnslab-{name}-")


def ns_inodes(name: str) -> set[int]:
    """Inodes of the instance's network namespaces that exist now."""
    out = set()
    for p in NETNS_DIR.glob(f"dnslab-{name}*"):
        if _is_ours(p.name, name):
            try:
                out.add(os.stat(p).st_ino)
            except OSError:
                pass
    return out


def proc_stat(pid: int | str) -> tuple[str, int, str] | None:
    """(state, ppid, comm) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    head, tail = stat.rsplit(")", 1)
    fields = tail.split()
    return fields[0], int(fields[1]), head.split("(", 1)[1]


def leftovers(name: str, inodes: set[int] = frozenset()) -> list[str]:
    """Everything of instance ``name`` still on the machine: namespaces, /etc/netns dirs,
    its run dir, its containers, its trainee's user, home and cgroup, live (non-zombie)
    processes whose command line names its run dir or that sit in one of ``inodes`` (its
    namespaces, as seen while it was up)."""
    found = [f"container {c.name} ({c.status})" for c in containers(name)]
    found += trainee_leftovers(re.compile(rf"^{re.escape(name)}$"))
    for d, what in ((NETNS_DIR, "namespace"), (ETC_NETNS, "/etc/netns dir")):
        if d.is_dir():
            found += [f"{what} {p.name}" for p in d.iterdir() if _is_ours(p.name, name)]
    rundir = run_root() / name
    if rundir.exists():
        found.append(f"run dir {rundir}")
    needle = f"{rundir}/".encode()
    mounted: dict[int, str] = {}
    for p in [*NETNS_DIR.glob("*"), *Path("/run/docker/netns").glob("*")]:  # docker's: never ours
        try:
            mounted[os.stat(p).st_ino] = p.name
        except OSError:
            pass
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        st = proc_stat(entry.name)
        if st is None or st[0] in ("Z", "X"):
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")
            found.append(f"process {entry.name} ({st[2]}): {shown}")
            continue
        if inodes:
            try:
                ino = os.stat(f"/proc/{entry.name}/ns/net").st_ino
            except OSError:
                continue
            # a freed namespace inode can be reused by a namespace made later (another worker's, or
            # a container's that runc is still making: not yet mounted where docker keeps them)
            if ino in inodes and (ino not in mounted or _is_ours(mounted[ino], name)) and not st[2].startswith("runc"):
                found.append(f"process {entry.name} ({st[2]}) in a namespace of {name}")
    return found


# ---------------------------------------------------------------- orphans of a killed `up`

_PR_SET_CHILD_SUBREAPER = 36


def set_subreaper(on: bool) -> None:
    """Make this process adopt its orphaned descendants (a killed ``up``'s daemons and helpers)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def children(parent: int | None = None) -> dict[int, tuple[str, str]]:
    """The children of ``parent`` (default: this process): pid -> (state, comm)."""
    me = os.getpid() if parent is None else parent
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            st = proc_stat(entry.name)
            if st is not None and st[1] == me:
                out[int(entry.name)] = (st[0], st[2])
    return out


def settle_orphans(timeout: float = 15.0) -> None:
    """Wait until every adopted child still alive is a daemon (its command line names a node's
    files under the run root): the ``ip``, ``nsenter`` and ``named-checkzone`` a killed ``up``
    had in flight have finished what they were doing."""
    def helpers() -> dict[int, str]:
        out = {}
        for pid, (state, comm) in children().items():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if state not in ("Z", "X") and (comm == "nsenter" or f"{run_root()}/".encode() not in cmdline):
                out[pid] = f"{comm} ({state}): {cmdline.decode(errors='replace')}"
        return out
    deadline = time.monotonic() + timeout
    while found := helpers():
        assert time.monotonic() < deadline, f"helpers of a killed up still running after {timeout}s: {found}"
        time.sleep(0.01)


def reap_children(keep: Sequence[int] = ()) -> None:
    """Reap this process's zombie children (adopted orphans), except ``keep``."""
    for pid, (state, _) in children().items():
        if state == "Z" and pid not in keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


# ---------------------------------------------------------------- the host

def ip_json(*args: str, netns: str | None = None) -> list[dict]:
    argv = ["ip", *(["-n", netns] if netns else []), "-j", *args]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    assert res.returncode == 0, f"{argv}: {res.stderr}"
    return json.loads(res.stdout or "[]")


def host_addresses() -> list[str]:
    """Addresses of the host itself: the source of its route towards 192.0.2.1 (its
    default-route interface, or whatever interface reaches there), then its other global ones."""
    found = []
    res = subprocess.run(["ip", "-j", "route", "get", "192.0.2.1"], capture_output=True, text=True, timeout=10)
    if res.returncode == 0:
        found += [r["prefsrc"] for r in json.loads(res.stdout or "[]") if r.get("prefsrc")]
    for link in ip_json("addr"):
        for a in link.get("addr_info", []):
            if a.get("scope") == "global" and a["local"] not in found:
                found.append(a["local"])
    return found


def leftovers_of_process(pid: int) -> list[str]:
    """What instances named by :func:`unique_name` in process ``pid`` left anywhere: namespaces,
    /etc/netns dirs, run dirs, containers (the whole-session check of tests/conftest.py)."""
    mine = re.compile(rf"^(dnslab-)?[a-z]+{pid}x\d+(-.*)?$")
    found = [f"container {c.name} ({c.status})" for c in containers(pid=pid)]
    for d, what in ((NETNS_DIR, "namespace"), (ETC_NETNS, "/etc/netns dir")):
        if d.is_dir():
            found += [f"{what} {p.name}" for p in d.iterdir() if p.name.startswith("dnslab-") and mine.match(p.name)]
    if run_root().is_dir():
        found += [f"run dir {p}" for p in run_root().iterdir() if mine.match(p.name)]
    found += trainee_leftovers(mine)
    return found


def trainee_leftovers(mine: re.Pattern) -> list[str]:
    """Trainee users, homes, home images and cgroups of instances whose names match ``mine``."""
    import pwd
    from dnslab import accounts, cgroups, homes
    found = [f"user {pw.pw_name}" for pw in pwd.getpwall()
             if pw.pw_gecos.startswith(accounts.MARKER) and mine.match(pw.pw_gecos[len(accounts.MARKER):])]
    for d, what in ((homes.HOMES, "home"), (homes.DISKS, "home image")):
        if d.is_dir():
            found += [f"{what} {p}" for p in d.iterdir() if mine.match(p.name.split(".")[0])]
    for mount in cgroups.driver().mounts.values():
        top = mount / cgroups.TOP
        if top.is_dir():
            found += [f"cgroup {p}" for p in top.iterdir() if p.is_dir() and mine.match(p.name)]
    return found
