"""Root's caches of what dnslab derives from files that rarely change, and of what it makes ahead:
the lab folders that passed validation, the kinds' compiled templates, DNSSEC keys. Under
``/var/cache/dnslab`` (``$DNSLAB_CACHE``), root's only (0700): an entry trusted there was written
by root. Deleting it costs time, nothing else."""
from __future__ import annotations

import os
from pathlib import Path


def directory(name: str) -> Path | None:
    """``<cache>/<name>``, made if missing; None when not root or it cannot be made."""
    if os.geteuid() != 0:
        return None
    path = Path(os.environ.get("DNSLAB_CACHE", "/var/cache/dnslab")) / name
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.mkdir(exist_ok=True, mode=0o700)
    except OSError:
        return None
    return path
