"""Processes known by their recorded PID: tell a PID from a reused one, and stop a set of them.

Nothing is ever killed by name: callers pass PIDs they recorded (with the start time they
saw) or found inside namespaces of their own.
"""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The process start time in clock ticks: tells a PID from a reused one.
    None once it has exited, zombies included (nobody may ever reap a daemon's zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def terminate(pids: set[int], grace: float = 2.0, group: bool = False) -> None:
    """SIGTERM ``pids`` (their process groups with ``group``: each leads its own session), wait up
    to ``grace`` seconds, then SIGKILL what is left and wait for it to be gone."""
    pids = set(pids) - {os.getpid()}
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
