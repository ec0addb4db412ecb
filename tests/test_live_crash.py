"""Crashes and failures of `dnslab up`: killed at a random moment, `gc` (or `down`, for an
instance that reached ready) leaves nothing; a taken name is refused without harm; a daemon
that cannot start fails `up` with its node and log, and leaves nothing. On each backend
(the ``backend`` fixture); for docker also: `gc` removes containers whose instance state is
gone, and never a container that does not carry our label.

`up` runs as a real subprocess and is killed with SIGKILL. This test process makes itself
a child subreaper while it runs, so what the killed `up` had in flight (its `ip` batches,
`named-checkzone`, daemons) is adopted here: the test waits for the short-lived helpers to
finish before calling `gc`, and reaps the zombies afterwards. Random delays come from a
seed printed by each test; set DNSLAB_CRASH_SEED to replay one.
"""
from __future__ import annotations

import fcntl
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import cli as dnslab_cli
from dnslab import kinds
from dnslab.state import run_root

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces)", allow_module_level=True)

SEED = int(os.environ.get("DNSLAB_CRASH_SEED") or random.SystemRandom().randrange(2**32))
MAX_DELAY = 0.6


@pytest.fixture(autouse=True)
def _one_at_a_time():
    """`gc` removes every crashed instance, not only this test's: tests of this module take
    turns across xdist workers (they share one worker anyway under --dist loadscope)."""
    with open(Path(tempfile.gettempdir()) / "dnslab-live-crash.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture
def adopt():
    """Adopt the orphans of killed processes while the test runs; reap them at the end."""
    livelab.set_subreaper(True)
    try:
        yield
    finally:
        livelab.set_subreaper(False)
        livelab.reap_children()


@pytest.fixture
def name():
    """An instance name of this test, removed at the end whatever happened."""
    n = livelab.unique_name("cr")
    yield n
    livelab.remove(n)
    livelab.reap_children()


def up_then_kill(name: str, backend: str, *, delay: float = 0.0, when=None) -> subprocess.Popen:
    """Start `dnslab up dns-basics --name NAME --backend BACKEND`; SIGKILL it ``delay`` seconds after
    its state file satisfies ``when`` (default: at once). Returns the killed process, not reaped yet."""
    proc = subprocess.Popen(livelab.dnslab_argv() + ["up", "dns-basics", "--name", name, "--backend", backend],
                            cwd=livelab.REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if when is not None:
            livelab.wait_for(lambda: when(livelab.read_state(name)) or proc.poll() is not None,
                             timeout=60, interval=0.002, what=f"up {name} to reach the moment to kill it")
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        pass
    finally:
        proc.kill()
    return proc


def settle(proc: subprocess.Popen, name: str, reap: bool = True) -> tuple[str | None, set[int]]:
    """After the kill: reap `up` (unless told not to), wait for its in-flight helpers, and
    return the phase it reached (None: no state) and the inodes of its namespaces."""
    if reap:
        proc.wait(timeout=10)
    livelab.settle_orphans()
    livelab.settle_containers(name)  # docker: requests the killed `up` had sent the engine
    state = livelab.read_state(name)
    phase = state["phase"] if state else ("broken" if (run_root() / name).exists() else None)
    return phase, livelab.ns_inodes(name)


def assert_gone(name: str, inodes: set[int], context: str = "") -> None:
    left = livelab.leftovers(name, inodes)
    assert left == [], f"{context}: left behind: {left}"


def gc_or_down(name: str, phase: str | None, inodes: set[int], context: str) -> None:
    """What a person does after a crash: `gc`; and `down` for an instance that was ready."""
    res = livelab.cli("gc")
    assert res.returncode == 0, f"{context}\n{livelab.explain(res)}"
    if phase == "ready":
        # gc keeps ready instances by design: `up` had finished, the lab is in use
        assert f"instance {name}" not in res.stdout, context
        assert (run_root() / name / "state.json").exists(), context
        res = livelab.cli("status", name, "--json")
        assert res.returncode == 0, f"{context}\n{livelab.explain(res)}"
        assert all(n["running"] for n in json.loads(res.stdout)["nodes"]), context
        res = livelab.cli("down", name)
        assert res.returncode == 0, f"{context}\n{livelab.explain(res)}"
    elif phase is not None:
        assert f"removed instance {name}" in res.stdout.splitlines(), f"{context}\n{livelab.explain(res)}"
    livelab.reap_children()
    assert_gone(name, inodes, context)


@pytest.mark.parametrize("run", range(5))
def test_up_killed_at_random_moment_then_gc_leaves_nothing(adopt, name, backend, run):
    """Runs 0-1 count the delay from the start of the command (it may die before touching
    anything), runs 2-4 from the moment its state file appears (mid-way through making the lab,
    or after it is ready)."""
    rng = random.Random(SEED * 10 + run)
    delay = rng.uniform(0, MAX_DELAY if run < 2 else 0.4)
    anchor = "start" if run < 2 else "state file"
    context = (f"seed {SEED} (DNSLAB_CRASH_SEED={SEED}), {backend}, run {run}: "
               f"up killed {delay:.3f}s after its {anchor}")
    print(context)
    proc = up_then_kill(name, backend, delay=delay, when=None if run < 2 else (lambda s: s is not None))
    phase, inodes = settle(proc, name)
    print(f"{context}: phase reached: {phase}, {len(inodes)} namespaces")
    gc_or_down(name, phase, inodes, f"{context}, phase {phase}")


def started(state: dict | None, at_least: int = 1) -> bool:
    """The state file shows ``up`` starting, with at least that many daemons (netns) or
    containers (docker) recorded."""
    return bool(state) and state["phase"] == "starting" and sum(
        "pid" in r or "container" in r for r in state["nodes"].values()) >= at_least


def test_up_killed_while_starting_then_gc_leaves_nothing(adopt, name, backend):
    """Killed with daemons running but the lab not ready: gc removes the whole instance."""
    proc = up_then_kill(name, backend, when=lambda s: started(s, 3))
    phase, inodes = settle(proc, name)
    assert phase == "starting"
    if backend == "netns":
        assert len(inodes) == 10  # the bridge namespace and 9 nodes
        pids = [r["pid"] for r in livelab.read_state(name)["nodes"].values() if "pid" in r]
        assert all((livelab.proc_stat(p) or "Z")[0] not in "ZX" for p in pids), "daemons died with up"
    else:  # killed between starting the containers and attaching their namespaces, or after
        running = [c for c in livelab.containers(name) if c.status == "running"]
        assert len(running) >= 3, [(c.name, c.status) for c in livelab.containers(name)]
    gc_or_down(name, phase, inodes, f"{backend}: killed while starting")


def test_up_killed_after_ready_survives_gc_until_down(adopt, name, backend):
    proc = up_then_kill(name, backend, when=lambda s: s and s["phase"] == "ready")
    phase, inodes = settle(proc, name)
    assert phase == "ready"
    gc_or_down(name, phase, inodes, "killed after ready")


def test_gc_sees_through_a_zombie_owner(adopt, name, backend):
    """A killed `up` nobody reaps is a zombie, and dead for gc: like one whose parent is gone
    on a machine whose init does not reap orphans. Here its parent, this test, does not reap it."""
    proc = up_then_kill(name, backend, when=started)
    try:
        phase, inodes = settle(proc, name, reap=False)
        assert livelab.proc_stat(proc.pid)[0] == "Z"
        assert phase == "starting"
        gc_or_down(name, phase, inodes, "zombie owner")
    finally:
        proc.wait(timeout=10)


def test_up_of_existing_name_fails_and_leaves_it_intact(name, backend):
    with livelab.instance(name, backend=backend) as inst:
        before = livelab.read_state(name)
        res = livelab.cli("up", "dns-basics", "--name", name, "--backend", backend)
        assert res.returncode == 2, livelab.explain(res)
        assert f"instance {name!r} already exists" in res.stderr
        assert livelab.read_state(name) == before
        for node in inst.plan.nodes:
            assert inst.backend.running(inst.state, node), node
        res = livelab.cli("check", name, "--json")
        assert res.returncode == 0, livelab.explain(res)


def test_daemon_exiting_shortly_after_start_fails_up(monkeypatch, capsys, name, backend):
    """In-process, with a kind's command replaced: the last daemon started dies 0.3 s in.
    `up` must say which node and show its log at once, not wait for the 30 s ready timeout."""
    monkeypatch.setattr(kinds.KINDS["unbound"], "argv", lambda node, d: (
        "sh", "-c", "sleep 0.3; echo 'unbound[1:0] fatal error: could not open ports' >&2; exit 1"))
    t0 = time.monotonic()
    rc = dnslab_cli.main(["up", "dns-basics", "--name", name, "--backend", backend])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 3, err
    assert f"instance {name}: node resolver-unbound (unbound) exited; its log ends with:" in err
    assert "fatal error: could not open ports" in err
    assert took < 15, f"up took {took:.1f}s to notice a dead daemon"
    assert livelab.leftovers(name) == []


def test_daemon_with_broken_config_fails_up(tmp_path, name):
    """The real `dnslab up` with a real knotd that rejects its configuration (a wrapper
    first in PATH adds an unknown option to the rendered knot.conf, then runs knotd).
    netns only: the wrapper is a host file, which no container sees."""
    knotd = shutil.which("knotd")
    assert knotd, "knotd not found"
    shim = tmp_path / "knotd"
    shim.write_text(f"#!/bin/sh\nprintf 'server:\\n  no-such-option: 1\\n' >> \"$2\"\nexec {knotd} \"$@\"\n")
    shim.chmod(0o755)
    res = livelab.cli("up", "dns-basics", "--name", name, env={"PATH": f"{tmp_path}:{os.environ['PATH']}"})
    assert res.returncode == 3, livelab.explain(res)
    m = re.search(rf"instance {name}: node (b-root|sld-knot) \(knot\) exited; its log ends with:", res.stderr)
    assert m, res.stderr
    assert f"{run_root() / name / 'work' / 'nodes' / m[1] / 'knot.conf'}" in res.stderr
    assert "invalid item" in res.stderr and "no-such-option" in res.stderr
    assert livelab.leftovers(name) == []


def test_gc_removes_containers_whose_state_is_gone_and_only_ours(name):
    """Docker: an instance whose run dir was deleted under it (its containers and their attached
    namespaces remain), and a labelled container no state ever claimed, are removed by `gc`;
    containers without our label survive it, even one whose name looks like ours."""
    livelab.require_docker()
    engine = livelab.docker_client()
    res = livelab.cli("up", "dns-basics", "--name", name, "--backend", "docker")
    assert res.returncode == 0, livelab.explain(res)
    inodes = livelab.ns_inodes(name)
    assert len(inodes) == 10 and len(livelab.containers(name)) == 9
    orphan_name = livelab.unique_name("co")  # a label value no instance state claims
    common = dict(image="dnslab/base:bookworm", command=["sleep", "infinity"], init=True,
                  network_mode="none", detach=True)
    foreign = []
    try:
        engine.containers.run(name=f"dnslab-{orphan_name}-x", labels={livelab.LABEL: orphan_name}, **common)
        foreign = [
            engine.containers.run(name=f"dnslab-{name}-not-ours", **common),  # our name pattern, no label
            engine.containers.run(name=f"{name}-other-label", labels={"dnslab.lab": "dns-basics",
                                                                      "owner": name}, **common),
        ]
        shutil.rmtree(run_root() / name)
        res = livelab.cli("gc")
        assert res.returncode == 0, livelab.explain(res)
        removed = res.stdout.splitlines()
        assert f"removed container:dnslab-{orphan_name}-x" in removed, res.stdout
        for node in ("client", "tld"):
            assert f"removed container:dnslab-{name}-{node}" in removed, res.stdout
            assert f"removed dnslab-{name}-{node}" in removed, res.stdout  # its attached namespace
        assert livelab.containers(orphan_name) == []
        for c in foreign:
            c.reload()
            assert c.status == "running", f"gc touched {c.name}: {c.status}"
        livelab.reap_children()
        assert_gone(name, inodes, "state dir deleted, then gc")
    finally:
        for c in foreign:
            c.remove(force=True)
        livelab.remove(orphan_name)
