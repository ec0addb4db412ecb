"""An exercise written once, built into one nbgrader source notebook per language.

``exercises/<lab>/exercise.yaml`` holds the cells: code, solutions, tests and points, written
once; ``exercises/<lab>/i18n/<lang>.yaml`` holds the prose, one entry per ``text:`` key.
To add a language, copy ``en.yaml`` to ``<lang>.yaml`` and translate the values: a missing or
extra key is an error naming the file. Test cells carry no test code of their own: they name
the lab checks that must pass or the answer variable to compare, and the grader judges
them on the live lab from outside the trainee's kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import yamlsrc
from .labfolder import exercises_root  # (where exercises live: the folder's fingerprint reads them too)
from .errors import InputError, InputProblems, Problem
from .topology import schema_problems

ANSWER_TYPES = ("server-of", "data-of", "ksk-tag-of", "zsk-tag-of", "nsec3-salt-of", "value-of")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Answer(_Strict):
    """A value the trainee reports in a variable, compared with what her own lab says:
    ``server-of`` a server of ``zone`` (host name or address); ``data-of`` the data of the
    ``owner``/``type`` records in her lab (per-instance values make it hers alone);
    ``ksk-tag-of`` (``zsk-tag-of``) the key tag of signed ``zone``'s KSK (ZSK), ``nsec3-salt-of`` its NSEC3 salt in hex
    (keys are made per instance: both are hers alone); ``value-of`` the instance's drawn
    ``value`` (a name of the lab's ``vary:``), alone or as a name in ``zone`` if given."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    accept: Literal[ANSWER_TYPES]  # type: ignore[valid-type]
    zone: str | None = None
    owner: str | None = None
    type: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9]{0,9}$")] | None = None
    value: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Answer:
        need = {"data-of": ("owner", "type"), "value-of": ("value",)}.get(self.accept, ("zone",))
        optional = ("zone",) if self.accept == "value-of" else ()
        extra = [f for f in ("zone", "owner", "type", "value") if f not in need + optional and getattr(self, f) is not None]
        missing = [f for f in need if getattr(self, f) is None]
        if missing or extra:
            raise ValueError(f"accept: {self.accept} takes {' and '.join(need)}"
                             + (f" (missing {', '.join(missing)})" if missing else "")
                             + (f" (not {', '.join(extra)})" if extra else ""))
        return self


class TextCell(_Strict):
    text: str


class CodeCell(_Strict):
    code: str


class SolutionCell(_Strict):
    solution: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    code: str


class TestCell(_Strict):
    test: Annotated[str, Field(pattern=r"^[a-z0-9-]+$")]
    points: Annotated[int, Field(gt=0)]
    checks: list[str] = []
    answer: Answer | None = None

    @model_validator(mode="after")
    def _judges_something(self) -> TestCell:
        if not self.checks and self.answer is None:
            raise ValueError("a test cell names lab checks (checks:) or an answer (answer:) to judge")
        return self


class Exercise(_Strict):
    lab: str
    faults: list[str] = []
    cell_timeout: Annotated[float, Field(ge=10, le=600)] | None = Field(
        default=None, description="seconds a cell may take when graded (default 30): a rollover waits longer")
    cells: Annotated[list[Union[TextCell, CodeCell, SolutionCell, TestCell]], Field(min_length=1)]


@dataclass
class Source:
    """A loaded exercise and its catalogs."""

    directory: Path
    exercise: Exercise
    catalogs: dict[str, dict[str, str]]
    yaml: yamlsrc.Source            # exercise.yaml as read: where each value came from
    @property
    def name(self) -> str:
        return self.directory.name

    @property
    def languages(self) -> list[str]:
        return sorted(self.catalogs)

    def check_languages(self, langs: dict[str, str], roster: str | None) -> None:
        """Every trainee's language has a version of this exercise (``langs``: instance -> lang)."""
        bad = sorted({lang for lang in langs.values() if lang not in self.catalogs})
        if bad:
            where = f"{roster}: " if roster else ""
            raise InputError(f"{where}column lang: exercise {self.name} exists in {', '.join(self.languages)}, "
                             f"not in {', '.join(bad)} (to add one: exercises/{self.name}/i18n/<lang>.yaml)")

    def tests(self) -> dict[str, TestCell]:
        return {c.test: c for c in self.exercise.cells if isinstance(c, TestCell)}

    def grading_code(self, grade_id: str) -> str:
        """What a test cell runs when graded: only its answer reporting (the grader judges the
        lab itself, from outside the kernel; showing the checks to the trainee would be wasted)."""
        test = self.tests()[grade_id]
        return _answer_code(test) if test.answer else "pass"

    def assignment(self, lang: str) -> str:
        """The nbgrader assignment of one language: ``<exercise>-<lang>``."""
        return f"{self.name}-{lang}"

    def notebook(self, lang: str):
        """The nbgrader *source* notebook in ``lang`` (solutions and hidden tests included)."""
        import nbformat
        if lang not in self.catalogs:
            raise InputError(f"exercise {self.name} has no language {lang!r} (languages: {', '.join(self.languages)}); "
                             f"add exercises/{self.name}/i18n/{lang}.yaml")
        text = self.catalogs[lang]
        cells = []
        for c in self.exercise.cells:
            if isinstance(c, TextCell):
                cells.append(nbformat.v4.new_markdown_cell(text[c.text].rstrip("\n")))
            elif isinstance(c, CodeCell):
                cells.append(_graded(nbformat.v4.new_code_cell(c.code.rstrip("\n")), f"code-{len(cells)}",
                                     locked=True))
            elif isinstance(c, SolutionCell):
                cells.append(_graded(nbformat.v4.new_code_cell(c.code.rstrip("\n")), c.solution, solution=True))
            else:
                cells.append(_graded(nbformat.v4.new_code_cell(_test_code(c, text["test_note"], lang)), c.test,
                                     locked=True, points=c.points))
        nb = nbformat.v4.new_notebook(cells=cells)
        nb.metadata.update({
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
            "dnslab": {"exercise": self.name, "lab": self.exercise.lab, "lang": lang}})
        return nb


def lang_of(meta: dict) -> str:
    """A trainee's language from their roster row (column ``lang``; English by default)."""
    return meta.get("lang") or "en"


def load(directory: Path) -> Source:
    """Read ``exercise.yaml`` and every ``i18n/*.yaml``; every problem names its file and place."""
    path = directory / "exercise.yaml"
    if not path.is_file():
        raise InputError(f"no exercise {directory.name!r}: {path} does not exist")
    src = yamlsrc.load(path)
    try:
        exercise = Exercise.model_validate(src.data)
    except ValidationError as exc:
        raise InputProblems(schema_problems(exc, src, Exercise)) from None
    keys = {"test_note"} | {c.text for c in exercise.cells if isinstance(c, TextCell)}
    catalogs: dict[str, dict[str, str]] = {}
    problems: list[Problem] = []
    for cat in sorted((directory / "i18n").glob("*.yaml")):
        csrc = yamlsrc.load(cat)
        data = csrc.data if isinstance(csrc.data, dict) else {}
        if not isinstance(csrc.data, dict):
            problems.append(Problem(csrc.where(()), "a language catalog maps each text key to its prose"))
        for k in sorted(keys - set(data)):
            problems.append(Problem(csrc.where(()), f"missing text {k!r} (exercise.yaml uses it)"))
        for k in sorted(set(data) - keys):
            problems.append(Problem(csrc.where((k,)), f"text {k!r} is not used by exercise.yaml"))
        for k, v in data.items():
            if not isinstance(v, str):
                problems.append(Problem(csrc.where((k,)), f"text {k!r} must be a string"))
        catalogs[cat.stem] = data
    if "en" not in catalogs:
        problems.append(Problem(str(directory / "i18n"), "every exercise has English prose: i18n/en.yaml"))
    if problems:
        raise InputProblems(problems)
    return Source(directory, exercise, catalogs, src)


def find(name: str) -> Source:
    return load(exercises_root() / name)


def _graded(cell, grade_id: str, *, solution: bool = False, locked: bool = False, points: int | None = None):
    meta = {"grade_id": grade_id, "schema_version": 3, "solution": solution, "locked": locked,
            "grade": points is not None, "task": False}
    if points is not None:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def _test_code(cell: TestCell, note: str, lang: str) -> str:
    """A test cell: its visible part shows the trainee the lab checks it is about (a hint once
    they fail); its hidden part reports the answer. The grade is decided by dnslab.grader on the
    live lab, outside the kernel; when grading, only :meth:`Source.grading_code` runs here."""
    lines = [f"# {note}"]
    if cell.checks:
        lines += ["import dnslab.testcells", f"dnslab.testcells.show({cell.checks!r}, lang={lang!r})"]
    lines += ["### BEGIN HIDDEN TESTS", _answer_code(cell) if cell.answer else "pass", "### END HIDDEN TESTS"]
    return "\n".join(lines)


def _answer_code(cell: TestCell) -> str:
    assert cell.answer is not None
    return f"import dnslab.testcells\ndnslab.testcells.answer({cell.answer.name!r}, {cell.answer.name})"
