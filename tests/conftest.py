"""Small, generic fixtures shared by the tests (the live tests' helpers are in tests/livelab.py).

``write_lab(yaml_text, files={}, checks=None)`` writes a lab folder under the test's tmp_path;
``dnslab(*args, env=None, preexec=None)`` runs the real CLI (``python -m dnslab.cli``) as a subprocess;
``backend`` parametrises a live test over the backends: "netns", and "docker", which skips
with the reason when this machine has no Docker engine or no dnslab images, unless
``DNSLAB_TEST_DOCKER=require`` (set by .ci/run) makes that a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable


def make_lab(root: Path, yaml_text: str, files: dict[str, str | bytes] | None = None, name: str = "lab") -> Path:
    """A lab folder ``root/name`` with a ``lab.yaml`` (dedented) and extra files beside it."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "lab.yaml").write_text(textwrap.dedent(yaml_text).lstrip("\n"))
    for rel, content in (files or {}).items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            (d / rel).write_bytes(content)
        else:
            (d / rel).write_text(textwrap.dedent(content).lstrip("\n"))
    return d


def run_dnslab(*args: str | Path, env: dict[str, str] | None = None, replace_env: bool = False,
               prefix: list[str] | None = None, cwd: Path = REPO, timeout: float = 60,
               python: str = PYTHON) -> subprocess.CompletedProcess:
    """Run ``dnslab *args``; ``env`` is added to (or with ``replace_env``, replaces) the environment;
    ``prefix`` goes before the interpreter (e.g. a setpriv command line)."""
    full_env = dict(env or {}) if replace_env else {**os.environ, **(env or {})}
    argv = [*(prefix or []), python, "-m", "dnslab.cli", *map(str, args)]
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def explain(res: subprocess.CompletedProcess) -> str:
    """What a failed assertion on a CLI run should show."""
    return f"`{' '.join(map(str, res.args))}` -> {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"


@pytest.fixture(scope="module", params=["netns", "docker"])
def backend(request):
    """The backend a live test runs on; module scope, so a module's shared instance is made
    once per backend (all of a module's netns tests run, then its docker tests)."""
    if request.param == "docker":
        try:
            from . import livelab
        except ImportError:
            import livelab
        livelab.require_docker()
    return request.param


def pytest_configure(config):
    """Each test process (xdist worker) grades into an nbgrader course of its own (``up
    --jupyter`` releases the exercise into one), never the machine's /var/lib/dnslab/course.
    Set before test modules are imported, so they see it too; removed at the end."""
    if os.geteuid() != 0:
        return
    import tempfile
    base = Path("/var/lib/dnslab")  # not /tmp: trainee processes have a private /tmp
    base.mkdir(parents=True, exist_ok=True)
    os.environ["DNSLAB_COURSE"] = tempfile.mkdtemp(prefix=f"test-course-{os.getpid()}-", dir=base)


def pytest_unconfigure(config):
    import shutil
    course = os.environ.get("DNSLAB_COURSE", "")
    if Path(course).name.startswith(f"test-course-{os.getpid()}-"):
        shutil.rmtree(course, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _nothing_left_by_this_process():
    """After the session (per xdist worker): no namespace, run dir or container of an instance
    this process named remains, whichever test made it."""
    yield
    if os.geteuid() != 0:
        return
    try:
        from . import livelab
    except ImportError:
        import livelab
    left = livelab.leftovers_of_process(os.getpid())
    assert not left, f"the tests of process {os.getpid()} left: {left}"


@pytest.fixture
def write_lab(tmp_path):
    """``write_lab(yaml_text, files={}, name="lab") -> Path`` of a lab folder in tmp_path."""
    return lambda yaml_text, files=None, name="lab": make_lab(tmp_path, yaml_text, files, name)


@pytest.fixture
def dnslab():
    """``dnslab(*args, env=None, ...) -> CompletedProcess`` of the real CLI."""
    return run_dnslab
