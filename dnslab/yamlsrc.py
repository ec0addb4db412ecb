"""YAML loading that remembers where every value came from, and costs a bounded amount.

PyYAML loses positions and silently keeps the last of two equal keys; a lab author
needs ``lab.yaml:12:3`` and an error for a duplicated node name, so this loader
records the line and column of every mapping value and sequence item by its path.
A file is at most ``MAX_BYTES``, and its values (aliases expanded) at most ``MAX_VALUES``,
nested at most ``MAX_DEPTH`` deep: a few kilobytes of aliases cannot expand to gigabytes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import InputProblems, Problem, not_utf8

Loc = tuple[int | str, ...]
MAX_BYTES = 1 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 40
HINTS = {  # PyYAML's words, and what a lab author usually did to get them
    "mapping values are not allowed here": "check the indentation of this line and the one above, "
                                           "or quote a value that contains ': '",
    "could not find expected ':'": "a key needs ': ' after it; check the line above too",
    "expected <block end>, but found '<block mapping start>'": "check the indentation of this line: it should "
                                                               "line up with the keys around it",
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
}


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


def read_text(path: Path, limit: int = MAX_BYTES) -> str:
    """A lab input file as text: at most ``limit`` bytes, UTF-8; :class:`InputProblems` otherwise."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise InputProblems([Problem(str(path), f"cannot read: {exc.strerror}")]) from None
    if len(data) > limit:
        raise InputProblems([Problem(str(path), f"larger than {limit >> 10} KiB: a lab's files are small")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputProblems([not_utf8(path)]) from None


def _syntax(path: Path, exc: yaml.MarkedYAMLError, what: str) -> InputProblems:
    mark = exc.problem_mark or exc.context_mark
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
    hint = HINTS.get(str(exc.problem), "")
    return InputProblems([Problem(where, f"{what}: {exc.problem}" + (f" ({hint})" if hint else ""))])


def load(path: Path) -> Source:
    """Parse one YAML file; syntax errors, duplicate keys and oversized input raise :class:`InputProblems`."""
    text = read_text(path)
    try:  # libyaml's parser when PyYAML has it (several times faster); PyYAML's own words for a mistake
        node = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            raise _syntax(path, exc, "YAML syntax error") from None
    marks: dict[Loc, tuple[int, int]] = {}
    problems: list[Problem] = []
    constructor = yaml.SafeLoader("")

    count = 0

    def build(n: yaml.Node | None, loc: Loc) -> Any:
        nonlocal count
        if n is None:
            return None
        count += 1
        if count > MAX_VALUES or len(loc) > MAX_DEPTH:
            what = f"more than {MAX_VALUES} values" if count > MAX_VALUES else f"nested more than {MAX_DEPTH} deep"
            raise _TooBig(f"{path}:{n.start_mark.line + 1}:{n.start_mark.column + 1}",
                          f"the file expands to {what} (YAML aliases?): a lab file is small")
        marks[loc] = (n.start_mark.line + 1, n.start_mark.column + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in n.value:
                if not isinstance(key_node, yaml.ScalarNode):  # never built: it could be an alias bomb
                    problems.append(Problem(
                        f"{path}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}",
                        "a key must be a plain name, not a list or mapping"))
                    continue
                key = constructor.construct_object(key_node, deep=True)
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
        raise _syntax(path, exc, "YAML error") from None
    except _TooBig as exc:
        raise InputProblems([Problem(*exc.args)]) from None
    if problems:
        raise InputProblems(problems)
    return Source(path, data, marks)


class _TooBig(Exception):
    """The document expands past the loader's bounds (where, message)."""
