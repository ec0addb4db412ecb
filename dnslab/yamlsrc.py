"""YAML loading that remembers where every value came from.

PyYAML loses positions and silently keeps the last of two equal keys; a lab author
needs ``lab.yaml:12:3`` and an error for a duplicated node name, so this loader
records the line and column of every mapping value and sequence item by its path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputProblems, Problem, not_utf8

Loc = tuple[int | str, ...]


class Source:
    """A parsed YAML document and the ``file:line:col`` of each path inside it."""

    def __init__(self, path: Path, data: Any, marks: dict[Loc, tuple[int, int]]) -> None:
        self.path = path
        self.data = data
        self.marks = marks

    def where(self, loc: Loc) -> str:
        """The closest known place for a path such as ``("nodes", "tld", "kind")``."""
        loc = tuple(loc)
        while loc not in self.marks and loc:
            loc = loc[:-1]
        line, col = self.marks.get(loc, (1, 1))
        return f"{self.path}:{line}:{col}"


def load(path: Path) -> Source:
    """Parse one YAML file; syntax errors and duplicate keys raise :class:`InputProblems`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputProblems([Problem(str(path), f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError:
        raise InputProblems([not_utf8(path)]) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputProblems([Problem(where, f"YAML syntax error: {exc.problem}")]) from None
    marks: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []
    constructor = yaml.SafeLoader("")

    def build(n: yaml.Node | None, loc: Loc) -> Any:
        if n is None:
            return None
        marks[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                key = constructor.construct_object(key_node, deep=True)
                if isinstance(key, (list, dict)):
                    problems.append(Problem(
                        f"{path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}",
                        "a key must be a plain name, not a list or mapping"))
                    continue
                if key in out:
                    first = marks[loc + (key,)][0]
                    problems.append(Problem(
                        f"{path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}",
                        f"duplicate key {key!r} (first defined on line {first})"))
                    continue
                marks[loc + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = build(value_node, loc + (key,))
                marks[loc + (key,)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            return out
        if isinstance(n, yaml.SequenceNode):
            return [build(item, loc + (i,)) for i, item in enumerate(n.value)]
        return constructor.construct_object(n, deep=True)

    try:
        data = build(node, ())
    except yaml.MarkedYAMLError as exc:  # an unknown tag (!!python/...), a merge key (<<)
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise InputProblems([Problem(where, f"YAML error: {exc.problem}")]) from None
    if problems:
        raise InputProblems(problems)
    return Source(path, data, marks)
