"""Captured command output, bounded in bytes and seconds (dnslab.backends.bounded): root reads what
a trainee's nodes print, so neither a flood of output nor a command that never ends costs root
more than the bound, and what the command started is killed with it."""
from __future__ import annotations

import os
import subprocess
import time

import pytest

from dnslab.backends import bounded
from dnslab.errors import LabError


def test_output_is_captured_as_text_with_the_exit_status():
    res = bounded.run(["sh", "-c", "echo out; echo err >&2; exit 3"], "node n: `sh`", None)
    assert (res.returncode, res.stdout, res.stderr) == (3, "out\n", "err\n")


def test_endless_output_stops_at_the_limit(monkeypatch):
    monkeypatch.setattr(bounded, "LIMIT", 1 << 20)
    t0 = time.monotonic()
    with pytest.raises(LabError, match=r"node n: `yes` printed more than 1 MiB; stopped"):
        bounded.run(["yes"], "node n: `yes`", 30)
    assert time.monotonic() - t0 < 10


def test_a_command_past_its_deadline_is_killed_with_what_it_started(tmp_path):
    pids = tmp_path / "pids"
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        bounded.run(["sh", "-c", f"sleep 60 & echo $! > {pids}; sleep 60"], "node n: `sh`", 1)
    assert isinstance(caught.value, LabError) and "did not end within 1 s" in str(caught.value)
    assert time.monotonic() - t0 < 10
    child = int(pids.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
        try:
            if open(f"/proc/{child}/stat").read().split()[2] == "Z":
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        assert not os.path.exists(f"/proc/{child}"), "the background child outlived the deadline"
