"""The root of dnslab's errors; each module adds its own subclasses beside its code.

The CLI turns any :class:`LabError` into one line on stderr and its ``exit_code``:
2 for bad input, 3 for an environment that cannot run the lab.
"""
from __future__ import annotations


class LabError(Exception):
    """Anything dnslab reports to a person as one clear message."""

    exit_code = 2


class InputError(LabError):
    """Bad input (lab file, zone file, argument): nothing was created."""


class Problem:
    """One problem found in an input, with the place it was found."""

    __slots__ = ("where", "message")

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


def not_utf8(path) -> Problem:
    """The problem for a file that is not UTF-8, placed at the line of its first bad byte."""
    line = 1
    try:
        with open(path, "rb") as f:
            data = f.read()
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
    except OSError:
        pass
    return Problem(f"{path}:{line}", "not UTF-8 text: save the file as UTF-8")


class InputProblems(InputError):
    """Several problems in one input, all reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class EnvError(LabError):
    """The machine cannot run this: not root, a binary missing, a kernel feature absent."""

    exit_code = 3
