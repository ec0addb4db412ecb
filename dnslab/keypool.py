"""DNSSEC keys made ahead: an RSA key takes 20-150 ms to make (a search for primes), and making any
key loads a cryptography library (~40 ms) that ``up`` otherwise does without. ``up`` takes ready
ones from root's cache (:mod:`dnslab.cache`) and makes the ones it took again once its lab answers.

Each key is given once: a taker reads a key's file and then unlinks it, and only the taker whose
unlink succeeds uses it (two ``up`` at once never share a key). Nothing is kept of a key once taken
but what the instance's state keeps. Without root (no cache) keys are made on the spot.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Callable, Iterable

from . import cache

POOLED = frozenset({8, 13, 14, 15})  # the algorithms dnslab signs with
SIZE = 4  # keys kept per algorithm: the keys of two zones of one instance
_STALE_TMP = 60.0  # seconds after which a half-written key (a filler killed mid-write) is removed


def _dir(algorithm: int) -> Path | None:
    return cache.directory(f"keys-{algorithm}") if algorithm in POOLED else None


def take(algorithm: int) -> str | None:
    """A ready key of ``algorithm`` (as ``make`` wrote it), now no longer in the pool; None when there
    is none."""
    d = _dir(algorithm)
    if d is None:
        return None
    for path in sorted(d.glob("*.key")):
        try:
            text = path.read_text()
            path.unlink()  # the claim: one taker's unlink succeeds
        except FileNotFoundError:  # taken meanwhile by another up
            continue
        except OSError:
            return None
        return text
    return None


def fill(algorithms: Iterable[int], make: Callable[[int], str]) -> None:
    """Top the pool of each of ``algorithms`` (those pooled) up to :data:`SIZE` keys made by ``make``."""
    for algorithm in set(algorithms) & POOLED:
        d = _dir(algorithm)
        if d is None:
            continue
        try:
            for other in d.iterdir():  # a half-written key, or a key in an earlier dnslab's form
                if other.suffix != ".key" and (other.suffix != ".tmp" or time.time() - other.stat().st_mtime > _STALE_TMP):
                    other.unlink(missing_ok=True)
            for _ in range(SIZE):  # counted again each time: two ups filling at once stop at SIZE (give or take one)
                if len(list(d.glob("*.key"))) >= SIZE:
                    break
                name = secrets.token_hex(8)
                fd = os.open(d / f"{name}.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(make(algorithm))
                os.replace(d / f"{name}.tmp", d / f"{name}.key")
        except OSError:  # a full disk or a removed cache costs only time at the next up
            continue
