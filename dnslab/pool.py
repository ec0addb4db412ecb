"""What dnslab makes ahead so that ``up`` need not: DNSSEC keys (an RSA key takes 20-150 ms to make,
and making any key loads a cryptography library), the next plan of a validated lab folder. Each
pool is a directory of root's cache (:mod:`dnslab.cache`); ``up`` takes what it needs and makes
again what it took once its lab answers.

Each item is given once: a taker reads an item's file and then unlinks it, and only the taker whose
unlink succeeds uses it (two ``up`` at once never share one). Nothing is kept of an item once taken
but what its taker keeps. Without root (no cache) there is no pool: everything is made on the spot.
"""
from __future__ import annotations

import os
import secrets
import time
from typing import Callable

from . import cache

_STALE_TMP = 60.0  # seconds after which a half-written item (a filler killed mid-write) is removed


def take(name: str) -> bytes | None:
    """An item of pool ``name`` (a cache directory), now no longer in it; None when there is none."""
    d = cache.directory(name)
    if d is None:
        return None
    for path in sorted(d.glob("*.item")):
        try:
            data = path.read_bytes()
            path.unlink()  # the claim: one taker's unlink succeeds
        except FileNotFoundError:  # taken meanwhile by another up
            continue
        except OSError:
            return None
        return data
    return None


def fill(name: str, size: int, make: Callable[[], bytes | None]) -> None:
    """Top pool ``name`` up to ``size`` items made by ``make`` (which returns None when it has
    nothing to give)."""
    d = cache.directory(name)
    if d is None:
        return
    try:
        for other in d.iterdir():  # a half-written item, or one in an earlier dnslab's form
            if other.suffix != ".item" and (other.suffix != ".tmp" or time.time() - other.stat().st_mtime > _STALE_TMP):
                other.unlink(missing_ok=True)
        for _ in range(size):  # counted again each time: two ups filling at once stop at size (give or take one)
            if len(list(d.glob("*.item"))) >= size:
                break
            data = make()
            if data is None:
                break
            tmp = d / f"{secrets.token_hex(8)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, tmp.with_suffix(".item"))
    except OSError:  # a full disk or a removed cache costs only time at the next up
        pass
