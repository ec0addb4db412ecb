"""Captured output of a command run in a lab, bounded in bytes and seconds.

Root reads what commands on a trainee's nodes print (her daemons' control tools, cache dumps):
she controls what they print and how long they take, so a capture stops at :data:`LIMIT` bytes
per stream and at its deadline, and the command is killed (its process group) either way.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from typing import Callable, Iterable, Sequence

from .base import BackendError

LIMIT = 32 << 20       # bytes per stream
TIMEOUT = 300.0        # seconds, when the caller names none


class ExecTimeout(BackendError, subprocess.TimeoutExpired):
    """A command that ran past its deadline (and was killed): a :class:`BackendError` for whoever
    reports lab errors, a :class:`subprocess.TimeoutExpired` for whoever waits on commands."""

    def __init__(self, argv: Sequence[str], what: str, timeout: float) -> None:
        subprocess.TimeoutExpired.__init__(self, list(argv), timeout)
        self.message = f"{what} did not end within {timeout:g} s; stopped"
        BackendError.__init__(self, self.message)

    def __str__(self) -> str:
        return self.message


class Output:
    """stdout and stderr as they arrive, refusing more than :data:`LIMIT` bytes of either."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.parts: tuple[list[bytes], list[bytes]] = ([], [])
        self.sizes = [0, 0]

    def add(self, stream: int, data: bytes) -> None:
        self.sizes[stream] += len(data)
        if self.sizes[stream] > LIMIT:
            raise BackendError(f"{self.what} printed more than {LIMIT >> 20} MiB; stopped")
        self.parts[stream].append(data)

    def result(self, argv: Sequence[str], rc: int) -> subprocess.CompletedProcess:
        out, err = (b"".join(p).decode(errors="replace") for p in self.parts)
        return subprocess.CompletedProcess(list(argv), rc, out, err)


def run(argv: Sequence[str], what: str, timeout: float | None) -> subprocess.CompletedProcess:
    """Run ``argv`` (in a session of its own) and capture its output as text.

    :raises ExecTimeout: it ran past ``timeout`` (killed)
    :raises BackendError: it printed more than :data:`LIMIT` bytes on a stream (killed)
    """
    timeout = TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    out = Output(what)
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/", start_new_session=True)
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, 0)
            sel.register(proc.stderr, selectors.EVENT_READ, 1)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ExecTimeout(argv, what, timeout)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        out.add(key.data, data)
                    else:
                        sel.unregister(key.fileobj)
        rc = proc.wait(max(deadline - time.monotonic(), 0.001))
    except BaseException:
        kill(proc)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return out.result(argv, rc)


def kill(proc: subprocess.Popen) -> None:
    """The command and everything it started in its session, by its process group."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def collect(chunks: Iterable[tuple[bytes | None, bytes | None]], argv: Sequence[str], what: str,
            rc: Callable[[], int]) -> subprocess.CompletedProcess:
    """A demultiplexed stream of (stdout, stderr) chunks as one captured result (the command
    bounds its own time); ``rc()`` gives its exit status once the stream ends."""
    out = Output(what)
    for chunk in chunks:
        for stream, data in enumerate(chunk):
            if data:
                out.add(stream, data)
    return out.result(argv, rc())
