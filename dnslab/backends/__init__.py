"""Backends, chosen by name from an explicit table; a backend's module is imported when used."""
from __future__ import annotations

import importlib

from ..errors import InputError
from .base import Backend, BackendError

# name -> (module, class); imported on first use, so `down` of a netns instance never loads the docker SDK
_TABLE: dict[str, tuple[str, str]] = {"netns": (".netns", "NetnsBackend"), "docker": (".docker", "DockerBackend")}


def backend_class(name: str) -> type:
    try:
        module, cls = _TABLE[name]
    except KeyError:
        raise InputError(f"unknown backend {name!r} (known: {', '.join(_TABLE)})") from None
    return getattr(importlib.import_module(module, __name__), cls)


def get(name: str) -> Backend:
    return backend_class(name)()


def __getattr__(attr: str):
    if attr == "BACKENDS":  # every backend class by name (imports them all)
        return {n: backend_class(n) for n in _TABLE}
    for n, (_, cls) in _TABLE.items():
        if attr == cls:
            return backend_class(n)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


__all__ = ["BACKENDS", "Backend", "BackendError", "backend_class", "get"]
