"""Backends, chosen by name from an explicit table."""
from __future__ import annotations

from ..errors import InputError
from .base import Backend, BackendError
from .docker import DockerBackend
from .netns import NetnsBackend

BACKENDS: dict[str, type] = {"netns": NetnsBackend, "docker": DockerBackend}


def get(name: str) -> Backend:
    try:
        return BACKENDS[name]()
    except KeyError:
        raise InputError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})") from None


__all__ = ["BACKENDS", "Backend", "BackendError", "get"]
