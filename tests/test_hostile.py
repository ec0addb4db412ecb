"""The hostile trainee: one test per class of attack, each acting only through what a trainee
has (her JupyterLab's HTTP API: kernels, terminals, files; her notebook; her uid on her own
nodes), each asserting that the attack failed and that nothing outside her reach changed.

A class of two (``eve``, the attacker, and ``bob``, her neighbour) is brought up by the real
CLI with JupyterLab and tight limits, on each backend (on docker, her nodes are containers that
she reaches through the broker, with her rights; she has no shell on them); sentinels (a root-only file, directory and listening
Unix socket in a root-only directory) stand for everything of root's she may try to reach.
The classes of attack, from the trust boundary in the README:
  1. root runs or imports something of hers;
  2. root acts on a path she can write or rename (symlink swaps);
  3. root connects where her socket points;
  4. her lab's daemons read what she could not;
  5. a notebook stretches or stops grading for the class;
  6. she takes more than her share (memory, processes, disk, CPU);
  7. something she wrote runs in someone else's browser;
  8. a secret shows on a command line;
  9. grading takes in instances that are not the class's;
 10. her hands reach beyond her own lab (another lab, the host).
"""
from __future__ import annotations

import json
import os
import re
import resource
import secrets
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import nbformat
import pytest

try:
    from . import livelab, traineeclient
except ImportError:
    import livelab
    import traineeclient

from dnslab import accounts, cgroups, confine, exercise, jupyter
from dnslab.state import State, run_root

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces, users)", allow_module_level=True)

COURSE = Path(os.environ.get("DNSLAB_COURSE", "/var/lib/dnslab/course"))  # tests/conftest.py: our own
SOURCE = exercise.find("dns-basics")
LIMITS = ["--trainee-memory", "512M", "--trainee-pids", "256", "--home-size", "128M"]


class Sentinels:
    """Root's things a trainee may name but must never reach: a file, a directory with a file,
    a listening Unix socket that counts connections, all in a root-only directory."""

    def __init__(self) -> None:
        self.dir = Path(f"/var/lib/dnslab-sentinel-{os.getpid()}")
        self.dir.mkdir(mode=0o700)
        self.secret = "SENTINEL-" + secrets.token_hex(8)
        self.file = self.dir / "secret"
        self.file.write_text(self.secret + "\n")
        os.chmod(self.file, 0o600)
        self.subdir = self.dir / "sub"
        self.subdir.mkdir(mode=0o700)
        (self.subdir / "inner").write_text(self.secret)
        self.sock = self.dir / "sock"
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(self.sock))
        self.listener.listen(16)
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()
        self.before = self.snapshot()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def snapshot(self) -> dict:
        out = {}
        for p in (self.dir, self.file, self.subdir, self.subdir / "inner", self.sock):
            st = os.lstat(p)
            out[str(p)] = (st.st_mode, st.st_uid, st.st_gid, p.read_text() if p.is_file() else None)
        return out

    def unchanged(self) -> None:
        assert self.snapshot() == self.before
        assert self.connections == 0, "something connected to root's sentinel socket"

    def close(self) -> None:
        self.listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Class:
    def __init__(self, tmp: Path, sentinels: Sentinels, backend: str) -> None:
        self.backend = backend
        self.names = {"eve": livelab.unique_name("he"), "bob": livelab.unique_name("hb")}
        self.klass = f"hostile{os.getpid()}"
        self.roster = tmp / "roster.csv"
        self.roster.write_text("trainee,lang\n" + "".join(f"{n},en\n" for n in self.names.values()))
        self.sentinels = sentinels
        self.base = 20000 + (os.getpid() * 53) % 30000

    def __getitem__(self, who: str) -> traineeclient.Trainee:
        return traineeclient.Trainee(jupyter.info(State.open(self.names[who]))["url"])

    def state(self, who: str) -> State:
        return State.open(self.names[who])

    def trainee(self, who: str) -> accounts.Trainee:
        return confine.trainee_of(self.state(who))


@pytest.fixture(scope="module")
def sentinels():
    s = Sentinels()
    yield s
    s.close()


@pytest.fixture(scope="module")
def klass(tmp_path_factory, sentinels, backend):
    k = Class(tmp_path_factory.mktemp("hostile"), sentinels, backend)
    for n in k.names.values():
        livelab.remove(n)
    try:
        res = livelab.cli("up", "dns-basics", "--trainees", str(k.roster), "--class", k.klass, "--jupyter",
                          "--jupyter-port", str(k.base), "--backend", backend, *LIMITS, timeout=300)
        assert res.returncode == 0, livelab.explain(res)
        yield k
    finally:
        for n in k.names.values():
            livelab.remove(n)
        for n in k.names.values():
            assert livelab.leftovers(n) == [], n
        sentinels.unchanged()


def grade(k: Class, *extra: str, timeout: float = 600) -> dict[str, dict]:
    res = livelab.cli("grade", "dns-basics", "--class", k.klass, "--json", *extra, timeout=timeout)
    assert res.returncode == 0, livelab.explain(res)
    return {g["instance"]: g for g in json.loads(res.stdout)}


def solution(lang: str = "en") -> str:
    return nbformat.writes(SOURCE.notebook(lang))


def pid_uid_files(uid: int) -> list[str]:
    """Command lines of the live processes of ``uid``."""
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit() and uid in accounts.uids_of(p):
            st = livelab.proc_stat(p)
            if st and st[0] not in ("Z", "X"):
                try:
                    out.append(Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    pass
    return out


# ---------------------------------------------------------------- 1. root runs nothing of hers

PLANT = """
import os, textwrap
home = os.environ["HOME"]
payload = textwrap.dedent('''
    import os
    open(os.path.join({home!r}, "pwned-%d" % os.geteuid()), "w").close()
    try:
        open("/root/pwned-by-trainee", "w").close()
    except OSError:
        pass
''').format(home=home)
for d in (home, os.path.join(home, "dns-basics")):
    for mod in ("dnslab/__init__.py", "nbformat.py", "nbgrader.py", "jupyter_client.py", "sitecustomize.py",
                "usercustomize.py", "traitlets.py", "json.py"):
        path = os.path.join(d, mod)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write(payload)
print("RESULT" + "{}")
"""


def test_1_root_never_imports_or_runs_her_files(klass):
    """She plants modules everywhere root might import from (her home, her notebook's dir);
    then the instructor grades, checks, reads logs and status. Root never runs any of them."""
    eve = klass["eve"]
    eve.run(PLANT)
    grade(klass)
    for args in (["status"], ["check", klass.names["eve"]], ["logs", klass.names["eve"], "tld"],
                 ["exec", klass.names["eve"], "tld", "--", "true"], ["status", klass.names["eve"]]):
        livelab.cli(*args, timeout=120)
    home = confine.home_of(klass.names["eve"])
    assert not (home / "pwned-0").exists()
    assert not Path("/root/pwned-by-trainee").exists()
    out, _ = eve.execute("import os; print(sorted(f for f in os.listdir() if f.startswith('pwned')))")
    assert "pwned-0" not in out, out
    eve.terminal("rm -rf ~/dnslab ~/dns-basics/dnslab ~/*.py ~/dns-basics/*.py ~/pwned-*")


# ---------------------------------------------------------------- 2. no symlink redirects root

def test_2_symlinks_in_her_areas_redirect_nothing(klass, sentinels):
    """She swaps what root might touch for links to root's sentinels: her daemon log, her zone
    dir, her notebook, her feedback file, her home's notebook dir. The instructor's commands
    then read, write, change and reveal nothing of them."""
    eve, name = klass["eve"], klass.names["eve"]
    work = klass.state("eve").work_dir
    s = sentinels
    eve.terminal(f"cd {work}/nodes && mv tld/daemon.log tld/daemon.log.real && ln -s {s.file} tld/daemon.log && "
                 f"mv sld-knot/zones sld-knot/zones.real && ln -s {s.subdir} sld-knot/zones && "
                 f"cd ~/dns-basics && mv dns-basics.ipynb real.ipynb && ln -s {s.file} dns-basics.ipynb && "
                 f"ln -sf {s.file} feedback.html && ln -sf {s.file} feedback.html.dnslab-new")
    logs = livelab.cli("logs", name, "tld")
    assert s.secret not in logs.stdout + logs.stderr and logs.returncode != 0, livelab.explain(logs)
    grades = grade(klass)
    assert "notebook not read" in grades[name]["note"], grades[name]
    assert "feedback not delivered" in grades[name]["note"], grades[name]
    for args in (["status", name], ["check", name], ["exec", name, "sld-knot", "--", "ls", "zones"]):
        res = livelab.cli(*args, timeout=120)
        assert s.secret not in res.stdout + res.stderr
    found = subprocess.run(["grep", "-rl", s.secret, str(COURSE)], capture_output=True, text=True)
    assert found.stdout == "", f"the sentinel's secret reached the course: {found.stdout}"
    s.unchanged()
    eve.terminal(f"cd {work}/nodes && rm tld/daemon.log sld-knot/zones && mv tld/daemon.log.real tld/daemon.log && "
                 f"mv sld-knot/zones.real sld-knot/zones && cd ~/dns-basics && rm -f dns-basics.ipynb feedback.html* && "
                 f"mv real.ipynb dns-basics.ipynb")


# ---------------------------------------------------------------- 3. no connect where her socket points

def test_3_her_socket_points_root_nowhere(klass, sentinels):
    """She replaces her JupyterLab's socket with links to root's sentinel socket and to her
    neighbour's broker, then calls her own URL: the forwarder (hers) connects with her rights,
    so nothing of root's or of the neighbour's is ever reached."""
    eve = klass["eve"]
    sock = jupyter.sock_path(klass.state("eve"))
    other_broker = run_root() / klass.names["bob"] / "control.sock"
    for target in (sentinels.sock, other_broker):
        # from her kernel, a swap that undoes itself after a while (her server is unreachable meanwhile)
        eve.run(f"import subprocess\nsubprocess.Popen(['sh', '-c', 'mv {sock} {sock}.real && ln -s {target} {sock} "
                f"&& sleep 3 && rm {sock} && mv {sock}.real {sock}'], start_new_session=True)\n"
                "import time\ntime.sleep(0.5)\nprint('RESULT' + '{}')")
        for _ in range(3):
            status, _ = traineeclient.http(f"{eve.base}/api/status?token={eve.token}", timeout=5)
            assert status != 200 or not os.path.islink(sock), "her URL answered while her socket was a link"
        livelab.wait_for(lambda: eve.api("/api/status")[0] == 200, timeout=20, what="her server back")
    assert sentinels.connections == 0
    log = (run_root() / klass.names["bob"] / "broker.log").read_text()
    assert f"uid {klass.trainee('eve').uid}" not in log  # the neighbour's broker never heard from her
    sentinels.unchanged()


# ---------------------------------------------------------------- 4. her daemons read only what she can

INCLUDE = r"""
import dnslab, json, re
lab = dnslab.attach()
good = lab.read_zone("tld", "test")
bump = lambda t: re.sub(r"(SOA\s+\S+\s+\S+\s+)(\d+)", lambda m: m.group(1) + str(int(m.group(2)) + 1), t, count=1)
out = {}
path = lab.zone_file("tld", "test")
path.write_text(bump(good) + "$INCLUDE " + OTHER_ZONE + "\n")
try:
    lab.reload("tld", wait=2); out["include_other"] = "reloaded"
except Exception as e:
    out["include_other"] = str(e)
path.write_text(good)
named_conf = lab.node_dir("tld") / "named.conf"
conf = named_conf.read_text()
named_conf.write_text(conf + 'include "/etc/shadow";\n')
try:
    lab.exec(["rndc", "-c", "rndc.conf", "reconfig"], node="tld"); out["include_shadow"] = "reconfigured"
except Exception as e:
    out["include_shadow"] = str(e)
named_conf.write_text(conf)
lab.exec(["rndc", "-c", "rndc.conf", "reconfig"], node="tld")
lab.reload("tld")
out["log"] = lab.exec(["tail", "-n", "40", "daemon.log"], node="tld")
out["glue"] = [str(r) for r in lab.dig("ns1.lab.test", "A", at="tld", rd=False).additional]
print("RESULT" + json.dumps(out))
"""


def test_4_her_daemons_read_only_what_she_could(klass, sentinels):
    """$INCLUDE of her neighbour's repaired zone, ``include "/etc/shadow"`` in her named.conf: her
    daemons run as her, so both fail; she serves neither, and scores nothing for it."""
    bob = klass.state("bob")
    other = bob.node_dir("tld") / "zones" / "test.zone"
    r = klass["eve"].run(f"OTHER_ZONE = {str(other)!r}\n" + INCLUDE)
    assert "did not serve" in r["include_other"] or "failed" in r["include_other"], r
    assert "reconfigured" not in r["include_shadow"], r
    assert "permission denied" in r["log"].lower(), r["log"]
    assert "root:" not in r["log"] and sentinels.secret not in r["log"]
    res = livelab.cli("check", klass.names["eve"], "--only", "lab-delegation")
    assert res.returncode == 1, livelab.explain(res)  # still the fault she has to repair


# ---------------------------------------------------------------- 5. one notebook costs its own budget

HANG = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\n" \
       "while True:\n    try:\n        pass\n    except BaseException:\n        pass"
FLOOD = "import sys\nfor _ in range(200):\n    sys.stdout.write('x' * (1 << 20))"
FORKS = ("import subprocess, os\n"
         "for _ in range(4):\n    subprocess.Popen(['setsid', 'sleep', '1000'], start_new_session=True)\n"
         "for _ in range(4):\n    subprocess.Popen(['sh', '-c', 'while :; do :; done'], start_new_session=True)\n")


def _variant(change) -> str:
    nb = nbformat.reads(solution(), as_version=4)
    change(nb)
    return nbformat.writes(nb)


def _cell(nb, gid):
    return next(c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid)


@pytest.fixture(scope="module")
def grading_class(tmp_path_factory):
    """Nine trainees (no JupyterLab: they hand in notebooks), each with an attack, one honest."""
    kinds = ["honest", "extra", "unreadable", "huge", "readonly", "hang", "flood", "cells", "forks"]
    names = {k: livelab.unique_name("hg") for k in kinds}
    roster = tmp_path_factory.mktemp("grading") / "roster.csv"
    roster.write_text("trainee\n" + "".join(f"{n}\n" for n in names.values()))
    klass = f"dos{os.getpid()}"
    for n in names.values():
        livelab.remove(n)
    try:
        res = livelab.cli("up", "dns-basics", "--trainees", str(roster), "--class", klass, "--fault", "lame-glue",
                          *LIMITS, timeout=300)
        assert res.returncode == 0, livelab.explain(res)
        yield klass, names
    finally:
        for n in names.values():
            livelab.remove(n)


def _as_her(name: str, script: str, data: bytes | None = None) -> None:
    """Run a shell script with the trainee's rights in her client node (what her terminal does)."""
    st = State.open(name)
    argv = confine.enter_argv(st, "client", confine.trainee_of(st), ["/bin/sh", "-c", script])
    res = subprocess.run(argv, input=data, capture_output=True, cwd="/", timeout=120)
    assert res.returncode == 0, res.stderr


def test_5_one_notebook_costs_the_class_only_its_own_budget(grading_class, backend):
    if backend != "netns":
        pytest.skip("grading runs notebooks the same way on both backends (in the trainee's client node): once")
    klass, names = grading_class
    nb_path = "dns-basics/dns-basics.ipynb"

    def extra(nb):  # a cell claiming an existing grade id, and one claiming an unknown one with points
        dup = nbformat.from_dict(json.loads(json.dumps(_cell(nb, "fix-delegation"))))
        dup.id = "dup"
        nb.cells.append(dup)
        odd = nbformat.v4.new_code_cell("print('mine')")
        odd.metadata["nbgrader"] = {"grade_id": "bonus", "grade": True, "points": 100, "locked": True,
                                    "solution": False, "schema_version": 3}
        nb.cells.append(odd)

    def many(nb):
        nb.cells += [nbformat.v4.new_code_cell("x = 1") for _ in range(5000)]

    notebooks = {
        "honest": solution(),
        "extra": _variant(extra),
        "unreadable": solution(),
        "huge": solution().replace('"cells": [', '"padding": "' + "y" * (21 << 20) + '", "cells": [', 1),
        "readonly": solution(),
        "hang": _variant(lambda nb: setattr(_cell(nb, "explain"), "source", HANG)),
        "flood": _variant(lambda nb: setattr(_cell(nb, "explain"), "source", FLOOD)),
        "cells": _variant(many),
        "forks": _variant(lambda nb: setattr(_cell(nb, "explain"), "source", FORKS + 'AUTHORITATIVE = "ns1.lab.test"')),
    }
    for kind, text in notebooks.items():
        _as_her(names[kind], f"mkdir -p ~/dns-basics && cat > ~/{nb_path}", text.encode())
    _as_her(names["unreadable"], f"chmod 000 ~/{nb_path}")
    _as_her(names["readonly"], "chmod 500 ~/dns-basics ~")
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.monotonic()
    res = livelab.cli("grade", "dns-basics", "--class", klass, "--json", "--budget", "25", "--timeout", "3",
                      "--max-output", "1M", "--max-cells", "100", timeout=600)
    took = time.monotonic() - t0
    assert res.returncode == 0, livelab.explain(res)
    g = {k: next(x for x in json.loads(res.stdout) if x["instance"] == names[k]) for k in names}
    # everyone is graded; each problem is that trainee's note, nobody else's
    assert set(g) == set(names)
    assert g["honest"]["score"] == 10.0 and g["honest"]["note"] == "", g["honest"]
    assert g["extra"]["score"] == 10.0 and "second time" in g["extra"]["note"], g["extra"]
    assert "notebook not read" in g["unreadable"]["note"], g["unreadable"]
    assert "notebook not read" in g["huge"]["note"] and "larger than" in g["huge"]["note"], g["huge"]
    assert g["readonly"]["score"] == 10.0 and "feedback not delivered" in g["readonly"]["note"], g["readonly"]
    assert "budget of 25s" in g["hang"]["note"], g["hang"]
    flooded = COURSE / "executed" / names["flood"] / SOURCE.assignment("en") / "dns-basics.ipynb"
    assert "truncated" in flooded.read_text(), "the flood was cut"
    assert "beyond the limit of 100" in g["cells"]["note"], g["cells"]
    # the hung notebook costs its own budget, not the class's (the old grader took 306 s for a
    # hang in a 9 s class; a coarse bound, not a speed measure: those are in bench/)
    assert took < 300, f"grading took {took:.0f}s"
    # 200 MiB printed never reached the grader's memory (its children's peak, in KiB)
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss - before < 1024 * 1024
    # whatever the notebooks started is gone with their grading
    for kind in ("forks", "hang", "flood"):
        t = accounts.find(names[kind])
        assert not [c for c in pid_uid_files(t.uid) if "sleep 1000" in c or "while :" in c], kind
        assert cgroups.Group(names[kind]).pids("grade") == set()
    # every readable home got its feedback, written as the trainee
    for kind in ("honest", "extra", "hang", "flood", "cells", "forks"):
        fb = confine.home_of(names[kind]) / "dns-basics" / "feedback.html"
        assert fb.is_file() and fb.stat().st_uid == accounts.find(names[kind]).uid, (kind, g[kind]["note"])


# ---------------------------------------------------------------- 6. bounded

BOUNDS = r"""
import errno, json, os, subprocess, sys
out = {}
r = subprocess.run([sys.executable, "-c", "x = bytearray(3 << 30); x[::4096] = b'x' * len(x[::4096])"],
                   capture_output=True)
out["memory"] = r.returncode
def fill(path, limit):
    written = 0
    try:
        with open(path, "wb") as f:
            while written < limit:
                f.write(b"z" * (1 << 20)); f.flush(); written += 1 << 20
        return "filled", written
    except OSError as e:
        return errno.errorcode.get(e.errno), written
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
out["home"] = fill(os.path.join(os.environ["HOME"], "big"), 1 << 30)
out["work"] = fill(WORK + "/big", 1 << 30)
out["tmp"] = fill("/tmp/big", 1 << 30)
procs, err = [], None
try:
    for _ in range(2000):
        procs.append(subprocess.Popen(["sleep", "30"]))
except OSError as e:
    err = errno.errorcode.get(e.errno)
out["procs"] = [len(procs), err]
for p in procs:
    p.kill(); p.wait()
print("RESULT" + json.dumps(out))
"""


def test_6_she_takes_no_more_than_her_share(klass):
    """Memory, processes, home, working area and temporary space are all capped for her; hitting
    a cap fails her own command, and her neighbour's lab and server go on unaffected."""
    eve = klass["eve"]
    r = eve.run(f"WORK = {str(klass.state('eve').work_dir)!r}\n" + BOUNDS, timeout=300)
    assert r["memory"] != 0, r  # killed by her cgroup's OOM killer (or MemoryError)
    assert r["home"][0] in ("ENOSPC", "EDQUOT") and r["home"][1] <= 128 << 20, r
    assert r["work"][0] == "ENOSPC" and r["work"][1] <= 64 << 20, r
    assert r["tmp"][0] == "ENOSPC" and r["tmp"][1] <= 64 << 20, r
    assert r["procs"][1] == "EAGAIN" and r["procs"][0] < 256, r
    limits = cgroups.Group(klass.names["eve"]).usage()
    assert limits, "eve's cgroup reports its usage"
    assert klass["bob"].run("import dnslab, json\nprint('RESULT' + json.dumps(dnslab.attach()"
                            ".check('test-delegation').passed))") is True


TALKER = r"""
import dnslab, json, os, socket, threading, time
lab = dnslab.attach()
d = lab.node_dir("resolver-unbound")
ctl, real = d / "unbound.ctl", d / "unbound.ctl.real"
os.rename(ctl, real)  # her resolver's control socket swapped for one that never stops talking
srv = socket.socket(socket.AF_UNIX)
srv.bind(str(ctl))
srv.listen(4)
stop = threading.Event()
def talk():
    while not stop.is_set():
        try:
            c, _ = srv.accept()
        except OSError:
            return
        try:
            while not stop.is_set():
                c.sendall(b"x" * 65535 + b"\n")
        except OSError:
            pass
        c.close()
threading.Thread(target=talk, daemon=True).start()
t0 = time.monotonic()
try:
    lab.reload("resolver-unbound"); out = "reloaded"
except Exception as e:
    out = str(e)
took = time.monotonic() - t0
stop.set(); srv.shutdown(socket.SHUT_RDWR); srv.close(); os.unlink(ctl); os.rename(real, ctl)
lab.reload("resolver-unbound")
print("RESULT" + json.dumps({"reload": out, "took": took}))
"""


def test_6_what_root_reads_of_hers_is_bounded(klass):
    """Her resolver's control socket answers with an endless stream: the reload she asks the
    broker (root) for reads a bounded part of it, fails with the reason, and her lab goes on."""
    if klass.backend == "netns":
        pytest.skip("on netns she runs her daemons' control tools herself, in her lab: root reads none of it")
    r = klass["eve"].run(TALKER, timeout=180)
    assert "printed more than 32 MiB; stopped" in r["reload"], r
    assert r["took"] < 60, r
    assert klass["bob"].run("import dnslab, json\nprint('RESULT' + json.dumps(dnslab.attach()"
                            ".check('test-delegation').passed))") is True


# ---------------------------------------------------------------- 7. nothing of hers runs in a browser

XSS_CELL = r"""
from IPython.display import HTML, SVG, Javascript, display
display(HTML("<script>document.title='pwned-html'</script><img src=x onerror=alert(1)>"))
display(SVG('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(2)</script></svg>'))
display(Javascript("alert(3)"))
print("<script>alert(4)</script>")
AUTHORITATIVE = "ns1.lab.test"
"""


def test_7_her_output_runs_in_no_browser(klass):
    """Script in her outputs and markdown: the feedback page and the notebook the instructor's
    formgrader renders carry none of it, and the page forbids scripts (CSP)."""
    eve, name = klass["eve"], klass.names["eve"]
    nb = nbformat.reads(solution(), as_version=4)
    _cell(nb, "explain").source = XSS_CELL
    nb.cells.append(nbformat.v4.new_markdown_cell("<script>alert(5)</script><img src=x onerror=alert(6)> "
                                                  "[x](javascript:alert(7))"))
    nb.cells.append(nbformat.v4.new_raw_cell("<script>alert(8)</script>"))
    assert eve.put("dns-basics/dns-basics.ipynb", nbformat.writes(nb)) in (200, 201)
    grade(klass)
    status, html = eve.get("dns-basics/feedback.html")
    assert status == 200
    page = html.decode()
    assert "Content-Security-Policy" in page
    assert not re.search(r"<script", page, re.I), "a script element in the feedback page"
    assert not re.search(r"<[^>]+\son\w+\s*=", page, re.I), "an event handler in the feedback page"
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", page, re.I)
    autograded = COURSE / "autograded" / name / SOURCE.assignment("en") / "dns-basics.ipynb"
    recorded = nbformat.read(autograded, as_version=4)
    for c in recorded.cells:
        for o in c.get("outputs", []):
            assert set(o.get("data", {})) <= {"text/plain", "image/png"}, o
        if c.cell_type == "markdown" and "alert(5)" in c.source:
            assert "<script" not in c.source and "javascript:" not in c.source.replace("&lt;", "<")


# ---------------------------------------------------------------- 8. no secret on a command line

def test_8_no_secret_on_any_command_line(klass):
    """Every trainee can read every process's command line: none holds a token or a key."""
    secrets_ = set()
    for who in ("eve", "bob"):
        st = klass.state(who)
        secrets_.add(jupyter.info(st)["url"].split("token=")[1])
        for node in ("tld", "resolver-bind"):
            conf = (st.node_dir(node) / "rndc.conf").read_text()
            secrets_.add(re.search(r'secret "([^"]+)"', conf)[1])
    r = klass["eve"].run("import os, json\nout = []\nfor p in os.listdir('/proc'):\n    if p.isdigit():\n"
                         "        try:\n            out.append(open(f'/proc/{p}/cmdline', 'rb').read()"
                         ".decode(errors='replace'))\n        except OSError:\n            pass\n"
                         "print('RESULT' + json.dumps(out))")
    assert len(r) > 10
    for cmdline in r:
        for s in secrets_:
            assert s not in cmdline, cmdline


# ---------------------------------------------------------------- 9. grading takes a class

def test_9_grade_takes_the_class_never_the_host(klass, grading_class):
    """Two classes of the same lab on one host: `grade` asks which; given one, it grades that one
    (the other class is on the netns backend, so on docker this mixes backends too)."""
    res = livelab.cli("grade", "dns-basics", "--json", timeout=120)
    others = {s.data.get("meta", {}).get("class") for s in livelab.lab.instances()
              if s.data.get("lab") == "dns-basics"} - {None}
    if len(others) > 1:
        assert res.returncode == 2 and "which class" in res.stderr, livelab.explain(res)
    graded = grade(klass)
    assert set(graded) == set(klass.names.values())


# ---------------------------------------------------------------- 10. her hands, on her lab only

HANDS = r"""
dnslab-node tld rndc -c rndc.conf status | head -1
dnslab-node sld-knot knotc -c knot.conf zone-status example.test | head -1
dnslab-node sld-nsd nsd-control -c nsd.conf status | head -1
dnslab-node resolver-unbound unbound-control -c unbound.conf status | head -1
dnslab-node sld-knot keymgr -c knot.conf example.test generate algorithm=ecdsap256sha256 >/dev/null && echo KEYMGR-O""K
dnslab-node tld dnssec-keygen -a ECDSAP256SHA256 -K /tmp test >/dev/null && echo KEYGEN-O""K
nsenter --user=/run/dnslab/OTHER/userns --net=/run/netns/dnslab-OTHER-tld true 2>/dev/null || echo NEIGHBOUR-REFUSE""D
nsenter --net=/proc/1/ns/net true 2>/dev/null || echo HOST-REFUSE""D
ip link add dummy0 type veth peer name dummy1 netns 1 2>/dev/null || echo HOST-LINK-REFUSE""D
"""


def test_10_her_hands_on_every_node_of_her_lab_and_nowhere_else(klass):
    """From her terminal: each daemon's control tool and key tools on each node; never another
    trainee's lab, never the host's network."""
    if klass.backend != "netns":
        pytest.skip("on docker a trainee has a shell on her client node only (other nodes: lab.exec, "
                    "through the broker; tested in test_4)")
    out = klass["eve"].terminal(HANDS.replace("OTHER", klass.names["bob"]).strip().replace("\n", "; "), timeout=120)
    assert "version: BIND 9" in out, out
    assert "serial:" in out and "version: 4." in out, out
    assert "KEYMGR-OK" in out and "KEYGEN-OK" in out, out
    for refused in ("NEIGHBOUR-REFUSED", "HOST-REFUSED", "HOST-LINK-REFUSED"):
        assert refused in out, out
