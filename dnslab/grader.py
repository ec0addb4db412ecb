"""Grade a class: nbgrader course, parallel execution inside each trainee's lab as that trainee,
verdicts from the live lab, one gradebook. One notebook can cost the class its own budget, no more.

The flow (``dnslab grade <lab>``):

1. **prepare**: build the source notebook of each language from ``exercises/<lab>/`` into the
   course (``/var/lib/dnslab/course``, root only) and ``nbgrader generate_assignment`` it;
2. **collect**: read each trainee's notebook with the trainee's own rights, at most
   ``Budget.size`` bytes; unreadable, too big or not a notebook: a note, and the blank copy of
   the assignment is graded instead. Then :func:`dnslab.sanitize.normalize` makes it canonical
   (locked and test cells as the source has them, the trainee's answers in solution cells,
   anything else plain cells; at most ``Budget.cells``): nbgrader can always record it;
3. **execute, in parallel**: each notebook runs in :mod:`dnslab.gradrun`, started *as its
   trainee* in their client node and their cgroup, with a fixed budget (``Budget``: per cell,
   per notebook, output bytes) that the notebook cannot stretch; at the end everything it
   started is killed (its cgroup leaf). Root reads its results as untrusted, bounded input,
   keeps only inert outputs (:func:`dnslab.sanitize.safe_outputs`), then judges each test
   cell from outside: its lab checks run on the live lab, its answer is compared with what
   the lab says;
4. **record**: as each notebook is done, one recorder process runs ``nbgrader autograde`` with
   its execution step replaced by a replay of step 3, then ``generate_feedback`` with hidden
   tests cleared, the page hardened (no script runs in it); a notebook nbgrader still refuses
   is recorded again from the clean assignment with the trainee's answers, or scores 0 with
   a note;
5. **export**: ``grades.csv`` in the course and a table (or ``--json``); feedback is written
   into each home with the trainee's rights (a home that refuses it gets a note).

Every failure is one trainee's note: everyone else is always graded and gets feedback.
nbgrader's sqlite gradebook takes one writer: every execution runs in parallel and only the
recorder writes the gradebook.
"""
from __future__ import annotations

import dataclasses

import csv
import json
import multiprocessing
import os
import subprocess
import shutil
import signal
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import nbformat
from nbgrader.converters.autograde import Autograde
from nbgrader.preprocessors import Execute
from nbgrader.preprocessors.base import NbGraderPreprocessor
from traitlets import Unicode

from . import confine
from . import exercise as _exercise
from . import sanitize, testcells
from .errors import InputError, LabError
from .names import zone_name

CONFIG = Path(__file__).resolve().parent.parent / "grader" / "nbgrader_config.py"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Budget:
    """What one submission may cost, set by the instructor, never by the notebook."""

    cell: float | None = None   # seconds of one cell (then it is interrupted, the next runs); None:
                                # the exercise's cell_timeout, else 30
    notebook: float = 300.0     # seconds of the whole run, start-up included (then it is killed)
    output: int = 2 << 20       # bytes of output kept (then the run is stopped)
    cells: int = 200            # cells run and kept
    size: int = 20 << 20        # bytes of the submitted file


def course_root() -> Path:
    return Path(os.environ.get("DNSLAB_COURSE", "/var/lib/dnslab/course"))


@dataclass
class Submission:
    """One trainee's notebook for one exercise."""

    instance: str
    trainee: str
    lang: str
    notebook: Path                      # where it was collected from
    assignment: str = ""
    notes: list[str] = field(default_factory=list)   # what went wrong, for the gradebook

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


@dataclass
class Grade:
    instance: str
    trainee: str
    lang: str
    score: float
    max_score: float
    tasks: dict[str, float]
    note: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Course:
    """An nbgrader course directory that dnslab drives."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or course_root()

    def prepare(self, source: _exercise.Source, langs: Sequence[str]) -> None:
        """Write the config and the source notebooks, and generate each language's assignment."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.root, 0o700)  # hidden tests, solutions and the gradebook: root only
        shutil.copyfile(CONFIG, self.root / "nbgrader_config.py")
        api = self.api()
        for lang in langs:
            aid = source.assignment(lang)
            path = self.root / "source" / aid / f"{source.name}.ipynb"
            path.parent.mkdir(parents=True, exist_ok=True)
            nb = source.notebook(lang)
            text = nbformat.writes(nb)
            release = self.root / "release" / aid / path.name
            if path.is_file() and path.read_text() == text and release.is_file():
                continue
            path.write_text(text)
            result = api.generate_assignment(aid, force=True, create=True)
            if not result["success"]:
                raise LabError(f"nbgrader could not generate {aid}:\n{result['log']}{result.get('error', '')}")

    def released(self, source: _exercise.Source, lang: str) -> Path:
        return self.root / "release" / source.assignment(lang) / f"{source.name}.ipynb"

    def source_notebook(self, source: _exercise.Source, lang: str) -> nbformat.NotebookNode:
        return nbformat.read(self.root / "source" / source.assignment(lang) / f"{source.name}.ipynb", as_version=4)

    def collect(self, source: _exercise.Source, sub: Submission, trainee, budget: Budget) -> nbformat.NotebookNode:
        """Read a submission (with the trainee's rights when it is in their home), keep the bytes
        as handed in (``collected/``, for the instructor), and put its canonical form where
        nbgrader expects it (``submitted/``). Whatever is wrong with it becomes a note."""
        raw = None
        try:
            if trainee is not None:
                raw = confine.read_as(trainee, sub.notebook, budget.size)
            elif sub.notebook.stat().st_size > budget.size:
                raise LabError(f"{sub.notebook} is larger than {budget.size >> 20} MiB")
            else:
                raw = sub.notebook.read_bytes()
        except (LabError, OSError) as exc:
            sub.note(f"notebook not read ({str(exc).splitlines()[0][:200]}): graded on a blank copy")
        nb = None
        if raw is not None:
            kept = self.root / "collected" / sub.instance / sub.assignment / f"{source.name}.ipynb"
            kept.parent.mkdir(parents=True, exist_ok=True)
            kept.write_bytes(raw)
            try:
                nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
                nbformat.validate(nb)
            except Exception as exc:  # anything at all: JSON, encoding, schema
                sub.note(f"not a valid notebook ({type(exc).__name__}): graded on a blank copy")
                nb = None
        nb = nb if nb is not None else nbformat.read(self.released(source, sub.lang), as_version=4)
        clean, notes = sanitize.normalize(nb, self.source_notebook(source, sub.lang), max_cells=budget.cells,
                                          released=nbformat.read(self.released(source, sub.lang), as_version=4))
        for n in notes:
            sub.note(n)
        dest = self.submitted(sub, source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(clean, dest)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        (dest.parent / "timestamp.txt").write_text(stamp)
        return clean

    def submitted(self, sub: Submission, source: _exercise.Source) -> Path:
        return self.root / "submitted" / sub.instance / sub.assignment / f"{source.name}.ipynb"

    def executed(self, sub: Submission, source: _exercise.Source) -> Path:
        return self.root / "executed" / sub.instance / sub.assignment / f"{source.name}.ipynb"

    def api(self, **config):
        bindir = str(Path(sys.executable).parent)  # nbgrader runs `alembic` from PATH for its gradebook
        if bindir not in os.environ.get("PATH", "").split(os.pathsep):
            os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
        from nbgrader.apps import NbGraderAPI
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config import Config
        from traitlets.config.loader import PyFileConfigLoader
        cfg = PyFileConfigLoader("nbgrader_config.py", path=str(self.root)).load_config()
        cfg.merge(Config(config))
        cfg.CourseDirectory.root = str(self.root)
        return NbGraderAPI(coursedir=CourseDirectory(config=cfg), config=cfg)


def release(source: _exercise.Source, instances: Sequence) -> None:
    """Put each trainee's language version of the exercise in their home (never over their work)."""
    langs = {inst.name: _exercise.lang_of(inst.state.data.get("meta") or {}) for inst in instances}
    course = Course()
    course.prepare(source, sorted(set(langs.values())))
    for inst in instances:
        t = confine.require_trainee(inst.state)
        released = course.released(source, langs[inst.name]).read_bytes()
        confine.write_as(t, t.home / source.name / f"{source.name}.ipynb", released, exclusive=True)


def grade(lab_name: str, instances: Sequence, *, from_dir: Path | None = None, jobs: int | None = None,
          budget: Budget | None = None, course: Course | None = None,
          progress: Progress = lambda msg: None) -> list[Grade]:
    """Grade every given instance of ``lab_name``; see the module docstring for the flow.

    :raises InputError: an instance has no trainee (its notebook would have nobody to run as)
    """
    source = _exercise.find(lab_name)
    budget = budget or Budget()
    if budget.cell is None:
        budget = dataclasses.replace(budget, cell=source.exercise.cell_timeout or 30.0)
    course = course or Course()
    trainees = {inst.name: confine.require_trainee(inst.state) for inst in instances}
    subs = [_submission(inst, source, from_dir) for inst in instances]
    by_name = {inst.name: inst for inst in instances}
    progress(f"preparing the course for {len(subs)} submission(s) in {', '.join(sorted({s.lang for s in subs}))}")
    source.check_languages({s.instance: s.lang for s in subs}, None)
    course.prepare(source, sorted({s.lang for s in subs}))
    notebooks = {}
    for sub in subs:
        if from_dir is None and not _exists_as(trainees[sub.instance], sub.notebook):
            sub.note(f"no notebook at {sub.notebook}: graded on a blank copy")
            sub.notebook = course.released(source, sub.lang)
            notebooks[sub.instance] = course.collect(source, sub, None, budget)
        else:
            notebooks[sub.instance] = course.collect(source, sub, None if from_dir else trainees[sub.instance], budget)
    t0 = time.monotonic()
    jobs = jobs or 2 * (os.cpu_count() or 1) + 2
    # Notebooks run in parallel (threads here: each mostly waits on its trainee's runner). A process
    # of its own (not sharing our GIL), warmed up meanwhile, records each one as soon as it is done:
    # it is nbgrader's only gradebook writer, and writes the feedback too.
    spawn = multiprocessing.get_context("spawn")
    with ThreadPoolExecutor(max_workers=jobs) as pool, ProcessPoolExecutor(1, mp_context=spawn) as recorder:
        recorder.submit(_warm)
        futures = {pool.submit(_execute, course, source, sub, notebooks[sub.instance], by_name[sub.instance],
                               trainees[sub.instance], budget): sub for sub in subs}
        recorded = {}
        for done, fut in enumerate(as_completed(futures), 1):
            sub = futures[fut]
            try:
                fut.result()
            except Exception as exc:  # this trainee's note, never the class's
                sub.note(f"not executed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
                _write_unexecuted(course, source, sub, notebooks[sub.instance])
            recorded[sub.instance] = recorder.submit(_record_one, str(course.root), sub.assignment, sub.instance,
                                                     source.name)
            progress(f"executed {done}/{len(subs)} in {time.monotonic() - t0:.1f}s")
        for sub in subs:
            for note in recorded[sub.instance].result():
                sub.note(note)
        progress(f"recorded {len(subs)} with nbgrader (grades, feedback), {time.monotonic() - t0:.1f}s after the start")
    grades = _grades(course, source, subs)
    _export(course, grades)
    if from_dir is None:
        _deliver_feedback(course, source, subs, trainees)
        grades = [Grade(**{**g.to_dict(), "note": "; ".join(sub.notes)}) for g, sub in zip(grades, subs)]
        _export(course, grades)
    return grades


def _exists_as(t, path: Path) -> bool:
    """Whether the trainee has something at ``path``, a link included (tested with their rights)."""
    return subprocess.run([*confine.become(t), "sh", "-c", '[ -e "$1" ] || [ -L "$1" ]', "sh", str(path)], cwd="/",
                          capture_output=True, env={"PATH": "/usr/bin:/bin"}).returncode == 0


def _deliver_feedback(course: Course, source: _exercise.Source, subs: Sequence[Submission], trainees: dict) -> None:
    """Each trainee finds their feedback beside their notebook: ``feedback.html`` (no hidden tests,
    no script), written with their own rights; a home that refuses it gets a note."""
    for sub in subs:
        html = course.root / "feedback" / sub.instance / sub.assignment / f"{source.name}.html"
        if not html.is_file():
            continue
        target = confine.home_of(sub.instance) / source.name / "feedback.html"
        try:
            confine.write_as(trainees[sub.instance], target, html.read_bytes())
        except LabError as exc:
            sub.note(f"feedback not delivered ({str(exc).splitlines()[0][:160]}); it is in the course's feedback/")


def _submission(inst, source: _exercise.Source, from_dir: Path | None) -> Submission:
    meta = inst.state.data.get("meta") or {}
    lang = _exercise.lang_of(meta)
    if from_dir is not None:
        path = from_dir / f"{inst.name}.ipynb"
    else:
        path = confine.home_of(inst.name) / source.name / f"{source.name}.ipynb"
    return Submission(inst.name, meta.get("trainee", inst.name), lang, path, source.assignment(lang))


def _execute(course: Course, source: _exercise.Source, sub: Submission, nb: nbformat.NotebookNode, inst,
             trainee, budget: Budget) -> None:
    """Run one (normalized) submission inside its trainee's lab, as that trainee, within
    ``budget``; judge its test cells; write it to the executed dir."""
    from . import broker
    broker.ensure(inst.state)
    tests = source.tests()
    for cell in nb.cells:
        if _grade_id(cell) in tests:
            cell.source = source.grading_code(_grade_id(cell))
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    results = _run_in_lab(code, inst, trainee, budget, sub, cwd=sub.notebook.parent if sub.notebook.is_relative_to(
        confine.home_of(sub.instance)) else trainee.home)
    left = budget.output
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        res = results.get(i, {})
        cell.outputs = sanitize.safe_outputs(res.get("outputs", []), max_bytes=max(left, 0))
        left -= sum(len(json.dumps(o)) for o in cell.outputs)
        cell.execution_count = res.get("execution_count") if isinstance(res.get("execution_count"), int) else None
        if _grade_id(cell) in tests:
            cell.outputs = _judge(tests[_grade_id(cell)], cell, inst, sub.lang)
    out = course.executed(sub, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def _write_unexecuted(course: Course, source: _exercise.Source, sub: Submission, nb: nbformat.NotebookNode) -> None:
    out = course.executed(sub, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def _grade_id(cell) -> str | None:
    """The nbgrader id of a cell, None for a cell nbgrader does not know."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _run_in_lab(code: list[tuple[int, str]], inst, trainee, budget: Budget, sub: Submission,
                cwd: Path) -> dict[int, dict]:
    """Execute cells with :mod:`dnslab.gradrun` in ``inst``'s client node, as its trainee, in the
    trainee's ``grade`` cgroup leaf; returns cell index -> result. Root reads the results as
    untrusted input: at most ``budget.output`` bytes, until ``budget.notebook`` seconds; then the
    run and everything it started are killed."""
    import selectors
    from . import gradrun
    argv = confine.enter_argv(inst.state, inst.default_vantage(), trainee,
                              [confine.trainee_python(), "-P", "-m", "dnslab.gradrun"], leaf="grade", cwd=str(cwd))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd="/", start_new_session=True)
    results: dict[int, dict] = {}
    deadline = time.monotonic() + budget.notebook
    received, buf, finished = 0, b"", False
    try:
        try:
            proc.stdin.write(gradrun.request(code, budget.cell, budget.output))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                sub.note(f"stopped after the notebook's budget of {budget.notebook:.0f}s")
                break
            if not sel.select(min(left, 1.0)):
                continue
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                break
            received += len(chunk)
            if received > 8 * budget.output + (1 << 20):  # JSON escaping may inflate output up to 6x
                sub.note(f"stopped after more than {budget.output >> 10} KiB of output")
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                msg = gradrun.parse_line(line)
                if msg is None:
                    continue
                if msg.get("done"):
                    finished = True
                elif msg["id"] in dict(code) and msg["id"] not in results:
                    results[msg["id"]] = msg
        if not finished and not any("stopped after" in n for n in sub.notes):
            sub.note("the notebook ended its own process before its last cell")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        proc.stdout.close()
        g = confine.group(inst.state)
        if g is not None:
            g.kill("grade")  # whatever the notebook started, daemonized or not
    return results


def _judge(test: _exercise.TestCell, cell, inst, lang: str) -> list:
    """A test cell's verdict, decided here on the live lab, as the cell's outputs: an error
    (nbgrader gives no points) saying what is not yet right, or what passed."""
    from . import checks
    lines, failures = [], []
    for check_id in test.checks:
        try:
            result = checks.run(inst, only=check_id)[0]
            passed, message = result.passed, result.message(lang)
        except LabError as exc:
            passed, message = False, str(exc)
        (lines if passed else failures).append(message)
    if test.answer:
        given = testcells.reported(cell.get("outputs", [])).get(test.answer.name)
        if given is not None and _normal(given) in _accepted(inst.plan, test.answer):
            lines.append(f"{test.answer.name} = {given}")
        else:
            failures.append(f"{test.answer.name} = {given}" if given is not None else f"{test.answer.name} is not set")
    if failures:
        return [nbformat.v4.new_output("error", ename="NotYet", evalue="; ".join(failures),
                                       traceback=[f"NotYet: {m}" for m in failures])]
    return [nbformat.v4.new_output("stream", name="stdout", text="".join(f"PASS  {m}\n" for m in lines))]


def _normal(value: str) -> str:
    return value.strip().rstrip(".").lower()


def _accepted(plan, answer: _exercise.Answer) -> set[str]:
    """What the live lab's plan accepts for an answer."""
    if answer.accept == "server-of":
        nodes = plan.servers_of(zone_name(answer.zone))
        return {_normal(n.hostname) for n in nodes if n.hostname} | {a.lower() for n in nodes for a in n.addresses}
    if answer.accept == "data-of":
        return {_normal(d) for d in plan.data_of(answer.owner, answer.type)}
    if answer.accept == "value-of":
        value = _normal(plan.values.get(answer.value, ""))
        return {value, _normal(f"{value}.{zone_name(answer.zone)}")} if answer.zone else {value}
    zone = plan.zones[zone_name(answer.zone)]
    if answer.accept in ("ksk-tag-of", "zsk-tag-of"):
        return {str(k.tag) for k in zone.keys if k.role == answer.accept[:3]}
    if answer.accept == "nsec3-salt-of":
        return {zone.salt.lower()} if zone.dnssec and zone.dnssec.nsec3 else set()
    raise InputError(f"unknown answer type {answer.accept!r}")


_APIS: dict[str, object] = {}  # a recorder process's nbgrader API per course, made on its first submission


def _api(root: str):
    if root not in _APIS:
        from sqlalchemy.exc import SAWarning
        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's own session handling, harmless
        course = Course(Path(root))
        _APIS[root] = course.api(Autograde={"autograde_preprocessors": _replaying_preprocessors()},
                                 ReplayExecution={"executed_root": str(course.root / "executed")})
    return _APIS[root]


def _warm() -> None:
    """Run first in the recorder process: its imports overlap the notebooks' execution. It works
    from ``/``, whatever directory the instructor started from (nothing relative is read there)."""
    os.chdir("/")


def _record_one(root: str, assignment: str, student: str, notebook: str) -> list[str]:
    """In the recorder process: nbgrader records one judged notebook (its execution replayed) and
    writes its feedback (hidden tests cleared, the page hardened). If nbgrader refuses the
    notebook, it records the clean assignment with the trainee's answers instead; if it refuses
    that too, nothing is recorded (a score of 0). Returns notes, never raises."""
    notes = []
    api = _api(root)
    result = api.autograde(assignment, student, force=True, create=True)
    if not result["success"]:
        course = Course(Path(root))
        try:
            _fall_back_to_answers(course, assignment, student, notebook)
            result = api.autograde(assignment, student, force=True, create=True)
        except Exception as exc:  # a notebook nbgrader cannot handle at all
            result = {"success": False, "log": f"{type(exc).__name__}: {exc}"}
        if not result["success"]:
            return [f"nbgrader could not record this notebook: scored 0 ({_last_line(result)})"]
        notes.append("nbgrader refused the notebook as handed in: recorded from the clean assignment "
                     "with its answers")
    result = api.generate_feedback(assignment, student, force=True)
    html = Path(root) / "feedback" / student / assignment / f"{notebook}.html"
    if not result["success"] or not html.is_file():
        return notes + [f"no feedback ({_last_line(result)})"]
    html.write_text(sanitize.harden_html(html.read_text(errors="replace")))
    return notes


def _last_line(result: dict) -> str:
    text = (result.get("error") or result.get("log") or "").strip().splitlines()
    return text[-1][:200] if text else "no reason given"


def _fall_back_to_answers(course: Course, assignment: str, student: str, notebook: str) -> None:
    """Replace a submitted notebook by the clean released one with the solution cells' text of
    the submission, and its executed twin by the same cells with the executed outputs."""
    released = nbformat.read(course.root / "release" / assignment / f"{notebook}.ipynb", as_version=4)
    submitted = course.root / "submitted" / student / assignment / f"{notebook}.ipynb"
    executed = course.root / "executed" / student / assignment / f"{notebook}.ipynb"
    answers = {_grade_id(c): c for c in nbformat.read(submitted, as_version=4).cells if _grade_id(c)}
    ran = {_grade_id(c): c for c in nbformat.read(executed, as_version=4).cells if _grade_id(c)}
    for i, cell in enumerate(released.cells):
        gid = _grade_id(cell)
        if gid in answers and cell.get("metadata", {}).get("nbgrader", {}).get("solution"):
            cell.source = answers[gid].source
    nbformat.write(released, submitted)
    for cell in released.cells:
        twin = ran.get(_grade_id(cell))
        if cell.cell_type == "code" and twin is not None:
            cell.outputs, cell.execution_count = twin.get("outputs", []), twin.get("execution_count")
    nbformat.write(released, executed)


def _grades(course: Course, source: _exercise.Source, subs: Sequence[Submission]) -> list[Grade]:
    from nbgrader.api import Gradebook, MissingEntry
    grades = []
    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gb:
        max_score = sum(t.points for t in source.tests().values())
        for sub in subs:
            try:
                s = gb.find_submission(sub.assignment, sub.instance)
                nb = gb.find_submission_notebook(source.name, sub.assignment, sub.instance)
            except MissingEntry:
                grades.append(Grade(sub.instance, sub.trainee, sub.lang, 0.0, float(max_score), {}, "; ".join(sub.notes)))
                continue
            tasks = {g.name: g.score for g in nb.grades if g.cell_type == "code" and g.max_score}
            grades.append(Grade(sub.instance, sub.trainee, sub.lang, s.score, s.max_score, tasks, "; ".join(sub.notes)))
    return grades


def _export(course: Course, grades: Sequence[Grade]) -> Path:
    path = course.root / "grades.csv"
    tasks = sorted({t for g in grades for t in g.tasks})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainee", "instance", "lang", "score", "max_score", *tasks, "note"])
        for g in grades:
            w.writerow([_cell(g.trainee), g.instance, g.lang, g.score, g.max_score, *(g.tasks.get(t, 0) for t in tasks),
                        _cell(g.note)])
    return path


def _cell(text: str) -> str:
    """A CSV cell a spreadsheet will not take for a formula (a roster name is anyone's input)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class ReplayExecution(NbGraderPreprocessor):
    """nbgrader's Execute step, replaced: take the outputs dnslab produced in the trainee's lab."""

    executed_root = Unicode("").tag(config=True)

    def preprocess(self, nb, resources):
        meta = resources["nbgrader"]
        path = Path(self.executed_root) / meta["student"] / meta["assignment"] / f"{meta['notebook']}.ipynb"
        done = nbformat.read(path, as_version=4)
        by_id = {_grade_id(c): c for c in done.cells if _grade_id(c)}
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            gid = _grade_id(cell)
            twin = by_id.get(gid) if gid else (done.cells[i] if i < len(done.cells) else None)
            if twin is not None and twin.cell_type == "code" and (gid or twin.source == cell.source):
                cell.outputs = twin.outputs
                cell.execution_count = twin.get("execution_count")
        return nb, resources


def _replaying_preprocessors() -> list:
    return [ReplayExecution if p is Execute else p for p in Autograde.class_traits()["autograde_preprocessors"].default()]
