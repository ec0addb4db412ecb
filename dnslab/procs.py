"""Processes known by their recorded PID: tell a PID from a reused one, start the helper
processes an instance records in its state (broker, Jupyter server, forwarder), stop them.

Nothing is ever killed by name: callers pass PIDs they recorded (with the start time they
saw) or found inside namespaces or cgroups of their own.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .state import State


def stat(pid: int | str) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a process, None if there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks: tells a PID from a reused one.
    None once it has exited, zombies included (nobody may ever reap a daemon's zombie)."""
    st = stat(pid)
    return None if st is None or st[0] in ("Z", "X") else st[1]


def terminate(pids: set[int], grace: float = 2.0, group: bool = False) -> None:
    """SIGTERM ``pids`` (their process groups with ``group``: each leads its own session), wait up
    to ``grace`` seconds, then SIGKILL what is left and wait for it to be gone; those that are
    children of this process are reaped (a long-lived parent, like a class's helper, would keep
    their zombies, and with them their users' uids, busy)."""
    pids = set(pids) - {os.getpid()}
    try:
        _terminate(pids, grace, group)
    finally:
        for pid in pids:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


def _terminate(pids: set[int], grace: float, group: bool) -> None:
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        for pid in pids:
            try:
                if not group:
                    raise PermissionError
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if start_time(p) is not None}
            if pids:
                time.sleep(0.01)
        if not pids:
            return


def spawn(state: State, key: str, argv: Sequence[str], log: Path, **popen) -> subprocess.Popen:
    """Start a helper process (broker, Jupyter server, forwarder) recorded in the state:
    intent first, then its PID and start time (also written by the child itself, before it
    execs, into a root-only file: an ``up`` killed right after the fork leaves nothing unknown).
    Its output goes to ``log``, a file of root's run dir, opened here."""
    state.intend("proc", key)
    _pid_dir(state).mkdir(mode=0o700, exist_ok=True)
    pidfile = os.fsencode(_pid_dir(state) / f"{key}.pid")

    def write_own_pid() -> None:  # in the child, before exec
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, b"%d %d" % (os.getpid(), stat(os.getpid())[1]))
        os.close(fd)

    popen.setdefault("cwd", "/")
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=write_own_pid, **popen)
    finally:
        os.close(fd)
    state.data.setdefault("procs", {})[key] = {"pid": proc.pid, "start": start_time(proc.pid)}
    state.save()
    return proc


def _pid_dir(state: State) -> Path:
    return state.dir / "pids"


def _self_recorded(state: State) -> set[int]:
    """Live helpers that wrote their own PID and start time (see :func:`spawn`)."""
    pids = set()
    for f in _pid_dir(state).glob("*.pid") if _pid_dir(state).is_dir() else []:
        try:
            pid, started = map(int, f.read_text().split())
        except (OSError, ValueError):
            continue
        if start_time(pid) == started:
            pids.add(pid)
    return pids


def recorded_alive(state: State, key: str) -> bool:
    rec = state.data.get("procs", {}).get(key)
    return bool(rec) and rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]


def stop_recorded(states: Sequence[State], grace: float = 2.0) -> None:
    """SIGTERM the helper processes recorded in these states (PID and start time), then SIGKILL."""
    pids = set()
    for s in states:
        for rec in s.data.get("procs", {}).values():
            if rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]:
                pids.add(rec["pid"])
        recorded = {rec["pid"] for rec in s.data.get("procs", {}).values()}
        pids |= _self_recorded(s) - recorded
    terminate(pids, grace, group=True)


def stop_keys(state: State, keys: Sequence[str], grace: float = 2.0) -> None:
    """Stop the helpers recorded under ``keys`` (e.g. a trainee's notebook server) and forget them."""
    pids = set()
    for key in keys:
        rec = state.data.get("procs", {}).pop(key, None)
        if rec and rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]:
            pids.add(rec["pid"])
        try:
            pid, started = map(int, (_pid_dir(state) / f"{key}.pid").read_text().split())
            if start_time(pid) == started:
                pids.add(pid)
            (_pid_dir(state) / f"{key}.pid").unlink()
        except (OSError, ValueError):
            pass
    terminate(pids, grace, group=True)
    state.save()
