"""Recording with nbgrader, offline (no lab): a notebook nbgrader refuses as handed in is recorded
from the clean assignment with the trainee's answers, with a note; one it cannot record at all
scores 0 with a note. Either way the call returns notes and never raises."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat

from dnslab import exercise, grader

SOURCE = exercise.find("dns-basics")
AID = SOURCE.assignment("en")


def _course(tmp: Path) -> grader.Course:
    course = grader.Course(tmp / "course")
    course.prepare(SOURCE, ["en"])
    return course


def _hand_in(course: grader.Course, student: str, nb: nbformat.NotebookNode) -> None:
    for kind in ("submitted", "executed"):
        path = course.root / kind / student / AID / f"{SOURCE.name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
    (course.root / "submitted" / student / AID / "timestamp.txt").write_text("2026-12-01 10:00:00.000000 UTC")


def test_a_refused_notebook_is_recorded_from_the_clean_assignment(tmp_path):
    course = _course(tmp_path)
    nb = nbformat.read(course.released(SOURCE, "en"), as_version=4)
    answer = next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "explain")
    answer.source = 'AUTHORITATIVE = "ns1.lab.test"  # my answer'
    rogue = nbformat.from_dict(json.loads(json.dumps(answer)))  # a second cell claiming the same grade id
    rogue.id = "rogue"
    nb.cells.append(rogue)
    _hand_in(course, "stu", nb)
    notes = grader._record_one(str(course.root), AID, "stu", SOURCE.name)
    assert any("recorded from the clean assignment" in n for n in notes), notes
    kept = nbformat.read(course.root / "autograded" / "stu" / AID / f"{SOURCE.name}.ipynb", as_version=4)
    assert "# my answer" in next(c.source for c in kept.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "explain")
    assert (course.root / "feedback" / "stu" / AID / f"{SOURCE.name}.html").is_file()


def test_a_notebook_nbgrader_cannot_record_at_all_scores_zero_with_a_note(tmp_path):
    course = _course(tmp_path)
    nb = nbformat.read(course.released(SOURCE, "en"), as_version=4)
    _hand_in(course, "stu", nb)
    (course.root / "release" / AID / f"{SOURCE.name}.ipynb").write_text("{ not a notebook")  # no fallback either
    broken = course.root / "submitted" / "stu" / AID / f"{SOURCE.name}.ipynb"
    broken.write_text("{ not a notebook")
    notes = grader._record_one(str(course.root), AID, "stu", SOURCE.name)
    assert notes and "scored 0" in notes[0], notes
