"""Grade a class: nbgrader course, parallel execution inside each trainee's lab, verdicts
from the live lab, one gradebook.

The flow (``dnslab grade <lab>``):

1. **prepare**: build the source notebook of each language from ``exercises/<lab>/`` into the
   course (``/var/lib/dnslab/course``, root only) and ``nbgrader generate_assignment`` it;
2. **collect**: copy each trainee's notebook into ``submitted/<instance>/<lab>-<lang>/``;
3. **execute, in parallel**: restore the locked and test cells from the source (a trainee's edits
   to them are ignored; deleted ones stay deleted and score zero), run the notebook with a
   kernel inside *that trainee's* lab, as that trainee, with a per-cell timeout; then judge
   each test cell from here, outside the kernel: its lab checks run on the live lab, its
   answer is compared with what the lab says. The test cell's outputs become that verdict;
4. **record**: as each notebook is done, one recorder process runs ``nbgrader autograde`` with
   its execution step replaced by a replay of step 3, then ``generate_feedback`` with hidden
   tests cleared;
5. **export**: ``grades.csv`` in the course and a table (or ``--json``).

nbgrader's own autograde executes serially and its sqlite gradebook takes one writer: here
every execution runs in parallel and only the recorder writes the gradebook.
"""
from __future__ import annotations

import asyncio
import csv
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import nbformat
from nbgrader.converters.autograde import Autograde
from nbgrader.preprocessors import Execute
from nbgrader.preprocessors.base import NbGraderPreprocessor
from traitlets import Unicode

from . import exercise as _exercise
from . import grading
from .errors import InputError, LabError
from .topology import zone_name

CONFIG = Path(__file__).resolve().parent.parent / "grader" / "nbgrader_config.py"
CELL_TIMEOUT = 30.0
Progress = Callable[[str], None]


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
    kernel_error: str = ""              # why execution stopped early, if it did


@dataclass
class Grade:
    instance: str
    trainee: str
    lang: str
    score: float
    max_score: float
    tasks: dict[str, float]
    kernel_error: str = ""

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

    def collect(self, source: _exercise.Source, sub: Submission, trainee=None) -> Path:
        """Copy a submission into the course (read with the trainee's rights when it is in their home)."""
        from . import confine
        dest = self.submitted(sub, source)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(confine.read_as(trainee, sub.notebook) if trainee else sub.notebook.read_bytes())
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
        (dest.parent / "timestamp.txt").write_text(stamp)
        return dest

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
    from . import confine
    langs = {inst.name: _exercise.lang_of(inst.state.data.get("meta") or {}) for inst in instances}
    course = Course()
    course.prepare(source, sorted(set(langs.values())))
    for inst in instances:
        t = confine.setup(inst.state)
        released = course.released(source, langs[inst.name]).read_bytes()
        confine.write_as(t, t.home / source.name / f"{source.name}.ipynb", released, exclusive=True)


def grade(lab_name: str, instances: Sequence, *, from_dir: Path | None = None, jobs: int | None = None,
          timeout: float = CELL_TIMEOUT, course: Course | None = None,
          progress: Progress = lambda msg: None) -> list[Grade]:
    """Grade every given instance of ``lab_name``; see the module docstring for the flow."""
    source = _exercise.find(lab_name)
    course = course or Course()
    subs, skipped = [], []
    for inst in instances:
        sub = _submission(inst, source, from_dir)
        (subs if sub.notebook.is_file() else skipped).append(sub)
    for sub in skipped:
        progress(f"not graded: instance {sub.instance} has no notebook at {sub.notebook}")
    if not subs:
        raise InputError(f"no notebook to grade among {len(skipped)} instance(s) of {lab_name}")
    by_name = {inst.name: inst for inst in instances}
    progress(f"preparing the course for {len(subs)} submission(s) in {', '.join(sorted({s.lang for s in subs}))}")
    source.check_languages({s.instance: s.lang for s in subs}, None)
    course.prepare(source, sorted({s.lang for s in subs}))
    for sub in subs:
        course.collect(source, sub, None if from_dir else _trainee_of(sub))
    t0 = time.monotonic()
    jobs = jobs or 2 * (os.cpu_count() or 1) + 2
    # Notebooks run in parallel (threads: each mostly waits on its kernel). A process of its own
    # (not sharing our GIL), warmed up meanwhile, records each one as soon as it is done: it is
    # nbgrader's only gradebook writer, and writes the feedback too.
    spawn = multiprocessing.get_context("spawn")
    with ThreadPoolExecutor(max_workers=jobs) as pool, ProcessPoolExecutor(1, mp_context=spawn) as recorder:
        recorder.submit(_warm)
        futures = {pool.submit(_execute, course, source, sub, by_name[sub.instance], timeout): sub for sub in subs}
        recorded = []
        for done, fut in enumerate(as_completed(futures), 1):
            fut.result()
            sub = futures[fut]
            recorded.append(recorder.submit(_record_one, str(course.root), sub.assignment, sub.instance))
            progress(f"executed {done}/{len(subs)} in {time.monotonic() - t0:.1f}s")
        for rec in recorded:
            if rec.result():
                raise LabError(rec.result())
        progress(f"recorded {len(subs)} with nbgrader (grades, feedback), {time.monotonic() - t0:.1f}s after the start")
    grades = _grades(course, source, subs)
    _export(course, grades)
    if from_dir is None:
        _deliver_feedback(course, source, subs)
    return grades


def _deliver_feedback(course: Course, source: _exercise.Source, subs: Sequence[Submission]) -> None:
    """Each trainee finds their feedback beside their notebook: ``feedback.html`` (no hidden tests)."""
    from . import confine
    for sub in subs:
        t = confine.find_trainee(sub.instance)
        html = course.root / "feedback" / sub.instance / sub.assignment / f"{source.name}.html"
        if t is None or not html.is_file():
            continue
        confine.write_as(t, sub.notebook.parent / "feedback.html", html.read_bytes())


def _trainee_of(sub: Submission):
    from . import confine
    t = confine.find_trainee(sub.instance)
    if t is None:
        raise InputError(f"instance {sub.instance} has no trainee user: bring it up with --jupyter, or grade "
                         "notebooks from a folder with --from DIR")
    return t


def _submission(inst, source: _exercise.Source, from_dir: Path | None) -> Submission:
    meta = inst.state.data.get("meta") or {}
    lang = _exercise.lang_of(meta)
    if from_dir is not None:
        path = from_dir / f"{inst.name}.ipynb"
    else:
        from . import confine
        path = confine.home_of(inst.name) / source.name / f"{source.name}.ipynb"
    return Submission(inst.name, meta.get("trainee", inst.name), lang, path, source.assignment(lang))


def _execute(course: Course, source: _exercise.Source, sub: Submission, inst, timeout: float) -> None:
    """Run one submission inside its trainee's lab and write it, judged, to the executed dir."""
    submitted = course.submitted(sub, source)
    try:
        nb = nbformat.read(submitted, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # not a notebook: grade the lab on the blank one, keep what came
        sub.kernel_error = f"not a valid notebook ({type(exc).__name__}): graded on a blank copy"
        submitted.replace(submitted.with_suffix(".invalid"))
        shutil.copyfile(course.released(source, sub.lang), submitted)
        nb = nbformat.read(submitted, as_version=4)
    nb = _restored(nb, course.source_notebook(source, sub.lang))
    tests = source.tests()
    for cell in nb.cells:
        if _grade_id(cell) in tests:
            cell.source = source.grading_code(_grade_id(cell))
    out = course.executed(sub, source)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        _run_in_lab(nb, inst, timeout, out.with_suffix(".kernel.log"))
    except Exception as exc:  # a dead or hung kernel ends this run, not the class's
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        sub.kernel_error = "; ".join(filter(None, [sub.kernel_error, f"{type(exc).__name__}: {first}".rstrip(": ")]))
    for cell in nb.cells:
        if _grade_id(cell) in tests:
            cell.outputs = _judge(tests[_grade_id(cell)], cell, inst, sub.lang)
    nbformat.write(nb, out)


def _grade_id(cell) -> str | None:
    """The nbgrader id of a cell, None for a cell nbgrader does not know."""
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def _restored(nb: nbformat.NotebookNode, src: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The submission with every locked cell (setup, tests) as the source has it, outputs cleared."""
    locked = {_grade_id(c): c for c in src.cells if c.get("metadata", {}).get("nbgrader", {}).get("locked")}
    for i, cell in enumerate(nb.cells):
        if _grade_id(cell) in locked:
            nb.cells[i] = nbformat.from_dict(dict(locked[_grade_id(cell)]))
        if nb.cells[i].cell_type == "code":
            nb.cells[i].outputs = []
            nb.cells[i].execution_count = None
    return nb


def _run_in_lab(nb: nbformat.NotebookNode, inst, timeout: float, log: Path) -> None:
    """Execute ``nb`` with a kernel inside ``inst``'s client node, as its trainee.

    Every cell has ``timeout`` seconds (then the kernel is interrupted and the next cell runs);
    the whole run has ``timeout`` per code cell plus start-up; a kernel that dies ends the run
    at once (nbclient alone can wait forever for output from a dead kernel)."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    from . import broker, confine
    trainee = confine.setup(inst.state)  # idempotent: the trainee user, its files, its ipc dir
    broker.ensure(inst.state)
    with tempfile.TemporaryDirectory(prefix="dnslab-kernel-") as specs, open(log, "ab") as out:
        confine.write_kernelspec(inst.state, Path(specs), trainee)
        name = confine.kernel_name(inst.state)
        ipc = confine.ipc_dir(inst.state) / f"k{uuid.uuid4().hex[:8]}"
        km = AsyncKernelManager(kernel_spec_manager=KernelSpecManager(kernel_dirs=[specs]), kernel_name=name,
                                transport="ipc", ip=str(ipc))
        client = NotebookClient(nb, km=km, timeout=timeout, allow_errors=True, interrupt_on_timeout=True,
                                startup_timeout=30, kernel_name=name, record_timing=False,
                                resources={"metadata": {"path": str(trainee.home)}})
        budget = 30 + timeout * sum(c.cell_type == "code" for c in nb.cells)
        asyncio.run(_supervised(client, km, budget, out))


async def _supervised(client, km, budget: float, out) -> None:
    run = asyncio.ensure_future(client.async_execute(stdout=out, stderr=subprocess.STDOUT))

    async def kernel_died() -> None:
        started = False
        while True:
            await asyncio.sleep(0.25)
            started = started or km.has_kernel
            if started and not await km.is_alive():
                return

    watch = asyncio.ensure_future(kernel_died())
    try:
        done, _ = await asyncio.wait({run, watch}, timeout=budget, return_when=asyncio.FIRST_COMPLETED)
        if run in done:
            run.result()
        elif watch in done:
            raise KernelDied("the kernel died (the notebook killed it or ran out of memory)")
        else:
            raise TimeoutError(f"the notebook ran longer than {budget:.0f}s")
    finally:
        for task in (run, watch):
            task.cancel()
        await asyncio.gather(run, watch, return_exceptions=True)
        if km.has_kernel:  # nbclient leaves a kernel manager it was given running
            await km.shutdown_kernel(now=True)


class KernelDied(Exception):
    """The trainee's kernel stopped before the notebook ended."""


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
        given = grading.reported(cell.get("outputs", [])).get(test.answer.name)
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
    raise InputError(f"unknown answer kind {answer.accept!r}")


_API = None  # a recorder process's nbgrader API, made on its first submission


def _api(root: str):
    global _API
    if _API is None:
        from sqlalchemy.exc import SAWarning
        warnings.filterwarnings("ignore", category=SAWarning)  # nbgrader's own session handling, harmless
        course = Course(Path(root))
        _API = course.api(Autograde={"autograde_preprocessors": _replaying_preprocessors()},
                          ReplayExecution={"executed_root": str(course.root / "executed")})
    return _API


def _warm() -> None:
    """Run first in the recorder process: its imports overlap the notebooks' execution."""


def _record_one(root: str, assignment: str, student: str) -> str | None:
    """In the recorder process: nbgrader records one judged notebook (its execution replayed)
    and writes its feedback (hidden tests cleared). Returns an error message, or None."""
    result = _api(root).autograde(assignment, student, force=True, create=True)
    if not result["success"]:
        return f"nbgrader could not record {student}:\n{result['log']}{result.get('error', '')}"
    result = _api(root).generate_feedback(assignment, student, force=True)
    return None if result["success"] else f"nbgrader could not write feedback for {student}:\n{result['log']}"


def _grades(course: Course, source: _exercise.Source, subs: Sequence[Submission]) -> list[Grade]:
    from nbgrader.api import Gradebook
    grades = []
    with Gradebook(f"sqlite:///{course.root / 'gradebook.db'}") as gb:
        for sub in subs:
            s = gb.find_submission(sub.assignment, sub.instance)
            nb = gb.find_submission_notebook(source.name, sub.assignment, sub.instance)
            tasks = {g.name: g.score for g in nb.grades if g.cell_type == "code" and g.max_score}
            grades.append(Grade(sub.instance, sub.trainee, sub.lang, s.score, s.max_score, tasks, sub.kernel_error))
    return grades


def _export(course: Course, grades: Sequence[Grade]) -> Path:
    path = course.root / "grades.csv"
    tasks = sorted({t for g in grades for t in g.tasks})
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trainee", "instance", "lang", "score", "max_score", *tasks, "kernel_error"])
        for g in grades:
            w.writerow([g.trainee, g.instance, g.lang, g.score, g.max_score, *(g.tasks.get(t, 0) for t in tasks),
                        g.kernel_error])
    return path


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
