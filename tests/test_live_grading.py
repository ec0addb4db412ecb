"""Grading on live labs, for real: dns-basics with its lame-glue fault (and every other shipped
exercise, for full marks and zero), one instance per
submission, each notebook executed by `dnslab grade` with a kernel inside its own lab as its
own trainee, nbgrader recording the grades.

Proves: the reference solution scores full marks and the untouched notebook zero, in every
language; the same notebook text scores differently on a fixed and an unfixed lab; notebooks
that hang, kill their kernel, delete or edit a test cell, cheat in the kernel, break their lab,
or are not notebooks at all are graded without hanging; feedback holds no hidden test; a
trainee's code running during grading cannot read the hidden tests, the gradebook or another
trainee's notebook.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

try:
    from . import livelab
except ImportError:
    import livelab

from dnslab import confine, exercise, grader, lab

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces, users)", allow_module_level=True)

SOURCE = exercise.find("dns-basics")
LANGS = SOURCE.languages
FULL = 10.0


class Class:
    """Instances of an exercise's lab (dns-basics unless said) with the exercise's faults, graded
    through the real CLI."""

    def __init__(self, tmp: Path, prefix: str, count: int, langs: list[str] | None = None,
                 source: exercise.Source = SOURCE) -> None:
        self.tmp, self.source = tmp, source
        self.course = tmp / "course"
        self.subs = tmp / "subs"
        self.subs.mkdir()
        self.names = [livelab.unique_name(prefix) for _ in range(count)]
        meta = {n: {"trainee": n, "lang": (langs or ["en"] * count)[i]} for i, n in enumerate(self.names)}
        for n in self.names:
            livelab.remove(n)
        self.insts = lab.up(lab.labs_root() / source.exercise.lab, self.names, meta=meta,
                            faults=source.exercise.faults, trainees=True)
        grader.Course(self.course).prepare(source, sorted({m["lang"] for m in meta.values()}))

    def notebook(self, lang: str, version: str) -> nbformat.NotebookNode:
        """``source`` (the reference solution) or ``release`` (the untouched student notebook)."""
        return nbformat.read(self.course / version / self.source.assignment(lang) / f"{self.source.name}.ipynb",
                             as_version=4)

    def submit(self, name: str, nb: nbformat.NotebookNode | str) -> None:
        path = self.subs / f"{name}.ipynb"
        path.write_text(nb) if isinstance(nb, str) else nbformat.write(nb, path)

    def grade(self, *extra: str) -> dict[str, dict]:
        res = livelab.cli("grade", self.insts[0].plan.name, "--from", str(self.subs), "--json",
                          "--instances", ",".join(self.names), *extra, timeout=600,
                          env={"DNSLAB_COURSE": str(self.course)})
        assert res.returncode == 0, livelab.explain(res)
        return {g["instance"]: g for g in json.loads(res.stdout)}

    def executed(self, name: str, lang: str = "en") -> nbformat.NotebookNode:
        return nbformat.read(self.course / "executed" / name / SOURCE.assignment(lang) / "dns-basics.ipynb",
                             as_version=4)

    def close(self) -> None:
        states = [s for s in lab.instances() if s.name in self.names]
        lab.down_states(states, purge_homes=True)
        for n in self.names:
            left = livelab.leftovers(n)
            assert not left, f"instance {n} left: {left}"


@pytest.fixture
def make_class(tmp_path):
    made: list[Class] = []

    def make(prefix: str, count: int, langs: list[str] | None = None, source: exercise.Source = SOURCE) -> Class:
        made.append(Class(tmp_path, prefix, count, langs, source))
        return made[-1]
    yield make
    for c in made:
        c.close()


def cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


SOURCES = [exercise.find(p.name) for p in sorted(exercise.exercises_root().iterdir()) if (p / "exercise.yaml").is_file()]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.name)
def test_solution_full_marks_untouched_zero_in_every_language(make_class, source):
    langs = [lang for lang in source.languages for _ in range(2)]
    cls = make_class("gl", len(langs), langs, source)
    for i, (name, lang) in enumerate(zip(cls.names, langs)):
        cls.submit(name, cls.notebook(lang, "source" if i % 2 == 0 else "release"))
    grades = cls.grade()
    for i, (name, lang) in enumerate(zip(cls.names, langs)):
        g = grades[name]
        assert g["lang"] == lang
        assert g["max_score"] == FULL
        assert g["score"] == (FULL if i % 2 == 0 else 0.0), g
        assert g["note"] == ""
    # feedback in the trainee's language, without any hidden test
    for name, lang in zip(cls.names, langs):
        html = (cls.course / "feedback" / name / source.assignment(lang) / f"{source.name}.html").read_text()
        assert "BEGIN HIDDEN TESTS" not in html and "testcells.answer" not in html
        assert source.catalogs[lang]["test_note"].split(".")[0] in html


def test_same_notebook_scores_by_each_trainees_own_lab(make_class):
    cls = make_class("gs", 2)
    fixed, broken = cls.names
    mine, theirs = (lab.Instance.open(n).plan.values["www_lab"] for n in cls.names)
    assert mine != theirs, "each instance draws its own address for www.lab.test"
    # the same text for both, copied from the first trainee: answers given, no code that repairs the lab
    nb = cls.notebook("en", "release")
    cell(nb, "trace").source = 'TLD_SERVER = "ns1.nic.test"\nprint("TLD_SERVER =", TLD_SERVER)'
    cell(nb, "report").source = f'WWW_LAB = "{mine}"'
    cell(nb, "explain").source = 'AUTHORITATIVE = "ns1.lab.test."'
    for n in cls.names:
        cls.submit(n, nb)
    # one trainee repaired the glue in a terminal, before grading
    livelab.repair_glue(lab.Instance.open(fixed))
    grades = cls.grade()
    assert grades[fixed]["tasks"] == {"trace-answer": 2.0, "fix-delegation": 2.0, "fix-resolution": 2.0,
                                      "report-answer": 2.0, "explain-answer": 2.0}
    # the neighbour's correct address is wrong in her own lab
    assert grades[broken]["tasks"] == {"trace-answer": 2.0, "fix-delegation": 0.0, "fix-resolution": 0.0,
                                       "report-answer": 0.0, "explain-answer": 2.0}


PROBE_FILES = """
import json, os, glob
seen = {}
for p in OTHERS:
    try:
        with open(p) as f:
            f.read(1)
        seen[p] = "read"
    except IsADirectoryError:
        try:
            os.listdir(p)
            seen[p] = "listed"
        except OSError as e:
            seen[p] = type(e).__name__
    except OSError as e:
        seen[p] = type(e).__name__
print("PROBE " + json.dumps(seen))
"""


def test_bad_notebooks_are_graded_without_hanging(make_class):
    kinds = ["hang", "killer", "deleted", "edited", "cheater", "breaker", "garbage", "prober"]
    cls = make_class("gb", len(kinds))
    who = dict(zip(kinds, cls.names))
    solution = cls.notebook("en", "source")

    def variant(change) -> nbformat.NotebookNode:
        nb = nbformat.from_dict(json.loads(json.dumps(solution)))
        change(nb)
        return nb

    def hang(nb):  # loops forever after the fix: the per-cell timeout ends it
        cell(nb, "explain").source = "while True:\n    pass"

    def killer(nb):  # fixes the lab, then kills its own kernel
        cell(nb, "explain").source = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"

    def deleted(nb):
        nb.cells.remove(cell(nb, "fix-delegation"))

    def edited(nb):  # an edited test cell is restored from the source: the lab is judged all the same
        cell(nb, "fix-resolution").source = "print('all good')"
        cell(nb, "trace-answer").source = "pass"

    def cheater(nb):  # no repair; the checks' kernel-side helpers are replaced by no-ops
        cell(nb, "fix").source = ("import dnslab.testcells\ndnslab.testcells.show = lambda *a, **k: None\n"
                                  "print('dnslab-answer {\"name\": \"AUTHORITATIVE\", \"value\": \"ns1.lab.test\"}')")
        cell(nb, "explain").source = 'AUTHORITATIVE = "ns1.nic.test"  # serves test., not lab.test'

    def breaker(nb):  # repairs, then breaks the delegation again on purpose
        cell(nb, "explain").source += (
            '\ntext = lab.read_zone("tld", "test")\n'
            'text = re.sub(r"(?m)^(ns1\\.(lab|example)\\.test\\.\\s+IN\\s+A\\s+)\\S+$", r"\\g<1>198.51.100.3", text)\n'
            'text = re.sub(r"(?m)^(ns1\\.(lab|example)\\.test\\.\\s+IN\\s+AAAA\\s+)\\S+$", r"\\g<1>2001:db8:5100::3", text)\n'
            'text = re.sub(r"(SOA\\s+\\S+\\s+\\S+\\s+)(\\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 1), text)\n'
            'lab.write_zone("tld", "test", text)\nlab.reload("tld")\nlab.reload("resolver-unbound")')

    others = [str(livelab.run_root() / who["hang"] / "state.json"),                 # another trainee's lab
              f"/var/lib/dnslab/home/{who['hang']}/dns-basics/dns-basics.ipynb",   # another trainee's notebook
              str(cls.course / "gradebook.db"), str(cls.course / "source"),        # the gradebook, hidden tests
              "/var/lib/dnslab/course", "/var/lib/dnslab/home",
              str(livelab.REPO / "exercises" / "dns-basics" / "exercise.yaml"), str(livelab.REPO / ".git" / "config"),
              str(confine.CODE / "exercises" / "dns-basics" / "exercise.yaml")]      # the checkout as they see it

    def prober(nb):
        cell(nb, "explain").source = "OTHERS = " + repr(others) + PROBE_FILES + '\nAUTHORITATIVE = "ns1.lab.test"'

    for kind, change in [("hang", hang), ("killer", killer), ("deleted", deleted), ("edited", edited),
                         ("cheater", cheater), ("breaker", breaker), ("prober", prober)]:
        cls.submit(who[kind], variant(change))
    cls.submit(who["garbage"], "{ this is not a notebook")
    grades = cls.grade("--timeout", "4")
    t = {k: grades[who[k]]["tasks"] for k in kinds}

    assert t["hang"] == {"trace-answer": 2.0, "fix-delegation": 2.0, "fix-resolution": 2.0, "report-answer": 2.0,
                         "explain-answer": 0.0}
    hung = json.dumps(cell(cls.executed(who["hang"]), "explain").outputs)
    assert "CellTimeout" in hung, hung
    assert t["killer"] == {"trace-answer": 2.0, "fix-delegation": 2.0, "fix-resolution": 2.0, "report-answer": 2.0,
                           "explain-answer": 0.0}
    assert "ended its own process" in grades[who["killer"]]["note"], "a dead run is noted for the instructor"
    assert "fix-delegation" not in t["deleted"] or t["deleted"]["fix-delegation"] == 0.0
    assert grades[who["deleted"]]["score"] == FULL - 2
    assert grades[who["edited"]]["score"] == FULL
    assert t["cheater"] == {"trace-answer": 2.0, "fix-delegation": 0.0, "fix-resolution": 0.0, "report-answer": 0.0,
                            "explain-answer": 0.0}
    assert t["breaker"]["fix-delegation"] == 0.0 and t["breaker"]["fix-resolution"] == 0.0
    assert grades[who["garbage"]]["score"] == 0.0 and "not a valid notebook" in grades[who["garbage"]]["note"]
    assert grades[who["prober"]]["score"] == FULL

    # what the trainee's code could read while being graded
    out = "".join(o.get("text", "") for o in cell(cls.executed(who["prober"]), "explain").outputs
                  if o.get("output_type") == "stream")
    probe = json.loads(out.split("PROBE ", 1)[1].splitlines()[0])
    assert set(probe) == set(others)
    for path, seen in probe.items():
        assert seen in ("PermissionError", "FileNotFoundError"), (path, seen)
    assert probe[others[1]] == "PermissionError"  # the other trainee's home exists: closed, not absent
    assert probe[others[-1]] == "PermissionError"  # the hidden tests are there, closed

    # feedback never shows hidden test code, whatever the notebook did
    for n in cls.names:
        for html in (cls.course / "feedback" / n).rglob("*.html"):
            text = html.read_text()
            assert "BEGIN HIDDEN TESTS" not in text and "dnslab.testcells.answer" not in text, n
