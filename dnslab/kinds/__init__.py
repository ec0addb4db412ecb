"""Node kinds, one small module each; a module registers its kind by defining it.

Adding a kind is adding a module here with a :class:`Kind` subclass: no central switch.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..nodespec import NodeSpec
from .base import Kind, Probe, Readiness, new_secret, resigned, tsig_keys

KINDS: dict[str, Kind] = {}


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{mod.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Kind) and obj is not Kind and obj.__module__ == module.__name__:
                KINDS[obj.name] = obj()


_discover()

__all__ = ["KINDS", "Kind", "NodeSpec", "Probe", "Readiness", "new_secret", "resigned", "tsig_keys"]
