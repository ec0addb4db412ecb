"""Trainees are Unix users: confined to their own instance's client namespace and files.

Per instance, ``trainee(instance)`` makes the system user ``dnslab-<instance>`` (home
``/var/lib/dnslab/home/<instance>``, mode 0700, shell nologin). Everything a trainee runs
(JupyterLab, kernels, terminals, graded kernels) starts from root through
:func:`enter_argv`: ``ip netns exec <client namespace>`` (the node's resolv.conf applies),
a clean environment, an nproc limit, then ``setpriv`` to the trainee's uid/gid with no
supplementary groups, no capabilities (inheritable, bounding) and no_new_privs.

What a trainee may touch: its home, its instance's run dir (read; group of the trainee,
mode 0750), its zone files (group-writable, their dirs group-writable and sticky so a
root-owned zone file cannot be swapped for a symlink), its ``ipc/`` dir (kernels' ZMQ
sockets) and its broker's ``control.sock``. Nothing of other instances (their dirs are
0750 of another group, or 0700 root), nor the exercise sources (:func:`protect_sources`).

A user is "ours" when its GECOS field is ``dnslab trainee <instance>``: only such users
are reused, removed by ``down`` or collected by ``gc``.

``python -m dnslab.confine kernel ...`` is the root-side kernel launcher of the
kernelspec from :func:`kernel_argv` (stdlib only, it runs at every kernel start).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pwd
import grp
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from .procs import start_time, terminate

if TYPE_CHECKING:
    from .state import State

HOMES = Path("/var/lib/dnslab/home")
REPO = Path(__file__).resolve().parent.parent
CODE = Path("/var/lib/dnslab/code")           # where trainee processes see REPO (a bind mount of theirs)
PROTECTED = ("exercises", "grader", ".git")  # hidden tests, solutions, course config, history
MARKER = "dnslab trainee "                    # GECOS of the users we make: MARKER + instance
NOLOGIN = "/usr/sbin/nologin"
UID_BASE, UID_COUNT = 2_000_000, 100_000   # trainees' uids/gids: far from system, login and subuid ranges
NPROC = 1024                                 # tasks (threads count) per trainee uid
KERNEL_LAUNCH = "kernel"
_lock = threading.Lock()


class ConfineError(Exception):
    pass


def _lab_error(msg: str):
    from .errors import EnvError
    return EnvError(msg)


@dataclass(frozen=True)
class Trainee:
    user: str
    uid: int
    gid: int
    home: Path


def user_name(instance: str) -> str:
    """``dnslab-<instance>``; over 32 characters, a prefix of the name and a hash."""
    name = f"dnslab-{instance}"
    if len(name) > 32:
        name = f"dnslab-{instance[:18].rstrip('-')}-{hashlib.sha1(instance.encode()).hexdigest()[:6]}"
    return name


def home_of(instance: str) -> Path:
    return HOMES / instance


@contextmanager
def _users_lock() -> Iterator[None]:
    """One maker of users at a time: threads of this process and other dnslab processes."""
    from .state import run_root
    root = run_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    with _lock, lock_file(root / ".users.lock"):
        yield


@contextmanager
def lock_file(path: Path) -> Iterator[None]:
    """An exclusive flock on a root-only file (a trainee could hold a lock on a file it can open)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _ours(pw: pwd.struct_passwd, instance: str | None = None) -> bool:
    return pw.pw_gecos == MARKER + instance if instance is not None else pw.pw_gecos.startswith(MARKER)


def _run(argv: list[str]) -> None:
    """Run a shadow tool, retrying while another program holds /etc/passwd's lock."""
    for attempt in range(20):
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if res.returncode == 0:
            return
        if "lock" not in res.stderr.lower() or attempt == 19:
            raise _lab_error(f"`{' '.join(argv)}` failed: {res.stderr.strip()}")
        time.sleep(0.05 * (attempt + 1))


def _chown_tree(top: Path, uid: int, gid: int) -> None:
    """chown a tree without following symlinks (a kept home of an earlier user)."""
    os.lchown(top, uid, gid)
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            os.lchown(os.path.join(dirpath, n), uid, gid)


def trainee(instance: str) -> Trainee:
    """The trainee user of ``instance``, made if absent (idempotent, thread- and process-safe).

    :raises EnvError: a user of that name exists that dnslab did not make
    """
    from .state import check_name
    check_name(instance)
    name, home = user_name(instance), home_of(instance)
    with _users_lock():
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            pw = None
        if pw is not None and not _ours(pw, instance):
            raise _lab_error(f"user {name} exists and was not made by dnslab for instance {instance} "
                             f"(GECOS {pw.pw_gecos!r}); remove it or choose another instance name")
        if pw is None:
            if shutil.which("useradd") is None or shutil.which("setpriv") is None:
                raise _lab_error("trainee users need useradd (package passwd) and setpriv (util-linux)")
            uid = _free_id()
            _run(["groupadd", "--system", "--gid", str(uid), name])
            _run(["useradd", "--system", "--uid", str(uid), "--gid", str(uid), "--shell", NOLOGIN,
                  "--home-dir", str(home), "--no-create-home", "--comment", MARKER + instance, name])
            pw = pwd.getpwnam(name)
        for d in (HOMES.parent, HOMES):
            d.mkdir(mode=0o711, exist_ok=True)
            if os.stat(d).st_mode & 0o111 != 0o111:  # others must reach their own home
                os.chmod(d, os.stat(d).st_mode | 0o111)
        try:
            home.mkdir(mode=0o700)
        except FileExistsError:
            if home.is_symlink() or not home.is_dir():
                raise _lab_error(f"{home} is not a directory") from None
            if os.stat(home).st_uid != pw.pw_uid:  # kept from an earlier class (chowned to root then)
                _chown_tree(home, pw.pw_uid, pw.pw_gid)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
        protect_sources()
    return Trainee(name, pw.pw_uid, pw.pw_gid, home)


def _free_id() -> int:
    """A uid (and gid of the same number) from our own range that no user, group or process
    has: a trainee must not share a uid with anything (a container's process, say), since a
    uid may signal and ptrace every process of that uid."""
    busy = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            busy |= _uids(pid)
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        if uid in busy:
            continue
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        try:
            grp.getgrgid(uid)
            continue
        except KeyError:
            return uid
    raise _lab_error(f"no free uid in {UID_BASE}..{UID_BASE + UID_COUNT - 1} for a trainee")


def find_trainee(instance: str) -> Trainee | None:
    """The trainee of ``instance`` if dnslab made one, without making it."""
    try:
        pw = pwd.getpwnam(user_name(instance))
    except KeyError:
        return None
    return Trainee(pw.pw_name, pw.pw_uid, pw.pw_gid, home_of(instance)) if _ours(pw, instance) else None


def remove_trainee(instance: str, purge_home: bool = False) -> bool:
    """Remove the trainee user of ``instance`` (only one dnslab made) and its stray processes.
    A kept home is chowned to root, so a later user with the same uid does not inherit it.
    Returns whether a user was removed."""
    name, home = user_name(instance), home_of(instance)
    removed = False
    with _users_lock():
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            pw = None
        if pw is not None and _ours(pw, instance):
            _kill_uid(pw.pw_uid)
            _run(["userdel", name])
            try:
                grp.getgrnam(name)
                _run(["groupdel", name])
            except KeyError:
                pass
            removed = True
        elif pw is not None:
            return False  # not ours: leave it and its home alone
        if home.is_dir() and not home.is_symlink():
            if purge_home:
                shutil.rmtree(home, ignore_errors=True)
            elif os.stat(home).st_uid != 0:
                _chown_tree(home, 0, 0)
    return removed


def _uids(pid: str) -> set[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return {int(x) for x in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def _kill_uid(uid: int, timeout: float = 5.0) -> None:
    """SIGKILL every process running as ``uid`` (a user we made and are removing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and uid in _uids(p)
                and _state(int(p)) not in (None, "Z", "X")]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def protect_sources(repo: Path = REPO) -> list[Path]:
    """Make the exercise sources, the course and the history root-only (0700)."""
    done = []
    for rel in PROTECTED:
        p = repo / rel
        try:
            st = os.lstat(p)
        except OSError:
            continue
        if p.is_dir() and not p.is_symlink() and st.st_uid == 0:
            if st.st_mode & 0o777 != 0o700:
                os.chmod(p, 0o700)
            done.append(p)
    return done


# ---------------------------------------------------------------- an instance's files

def ipc_dir(state: State) -> Path:
    """Where kernels of this instance put their ZMQ ipc sockets (owned by the trainee, 0700)."""
    return state.dir / "ipc"


def client_node(state: State) -> str:
    from .lab import Instance
    return Instance(state).default_vantage()


def grant(state: State, t: Trainee) -> None:
    """Open the instance's run dir to its trainee: read all, write the zone files, own ipc/."""
    os.chown(state.dir, 0, t.gid)
    os.chmod(state.dir, 0o750)
    for zones in sorted((state.dir / "nodes").glob("*/zones")):
        if zones.is_symlink() or not zones.is_dir():
            continue
        for top, dirs, files in os.walk(zones):  # never follows symlinks
            for p in [top, *(os.path.join(top, f) for f in files)]:
                _grant_one(p, t.gid)
    d = ipc_dir(state)
    d.mkdir(mode=0o700, exist_ok=True)
    os.chown(d, t.uid, t.gid)
    os.chmod(d, 0o700)


def _grant_one(path: str, gid: int) -> None:
    """chgrp + g+w one root-owned file or dir (dirs also sticky: only root may unlink or rename
    root's zone files in them). Through an O_NOFOLLOW descriptor: the trainee may be swapping
    names in these dirs while we do this (a later setup), and must not redirect us elsewhere."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return  # a symlink (ELOOP) or gone
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            return  # the trainee's own files need nothing from us
        os.fchown(fd, -1, gid)
        os.fchmod(fd, (st.st_mode & 0o7777) | (0o1070 if stat.S_ISDIR(st.st_mode) else 0o060))
    finally:
        os.close(fd)


def setup(state: State) -> Trainee:
    """Make (or reuse) the trainee of an instance, recorded in its state first, and grant it its files."""
    state.intend("user", user_name(state.name))
    t = trainee(state.name)
    grant(state, t)
    return t


def _become(t: Trainee, setpriv: str = "setpriv") -> list[str]:
    """The ``setpriv`` prefix that runs a command as the trainee: their uid and gid only, no
    capabilities (none inheritable, none in the bounding set), no-new-privs."""
    return [setpriv, f"--reuid={t.uid}", f"--regid={t.gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def read_as(t: Trainee, path: Path, limit: int = 20 << 20) -> bytes:
    """Read a file of the trainee's with their own rights (a symlink to a root-only file fails)."""
    res = subprocess.run([*_become(t), "head", "-c", str(limit + 1), "--", str(path)],
                         capture_output=True, cwd="/", stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise _lab_error(f"cannot read {path} as {t.user}: {res.stderr.decode(errors='replace').strip()}")
    if len(res.stdout) > limit:
        raise _lab_error(f"{path} is larger than {limit >> 20} MiB")
    return res.stdout


def write_as(t: Trainee, path: Path, data: bytes, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` with the trainee's own rights (their home is theirs: a symlink
    planted there must not make root write elsewhere). ``exclusive``: never replace a file.
    Returns whether it was written."""
    script = ('set -e; mkdir -p -- "$(dirname -- "$1")"; '
              + ('[ -e "$1" ] && exit 3; ' if exclusive else "")
              + 'cat > "$1.dnslab-new"; mv -f -- "$1.dnslab-new" "$1"')
    res = subprocess.run([*_become(t), "sh", "-c", script, "sh", str(path)],
                         input=data, capture_output=True, cwd="/")
    if res.returncode == 3 and exclusive:
        return False
    if res.returncode != 0:
        raise _lab_error(f"cannot write {path} as {t.user}: {res.stderr.decode(errors='replace').strip()}")
    return True


# ---------------------------------------------------------------- entering a node as the trainee

def trainee_python() -> str:
    """This Python as a trainee's process sees it. The checkout (and its .venv) may sit where
    other users cannot reach (/root/dnslab, a private /tmp): trainee processes see it through
    a bind mount at ``CODE`` in their own mount namespace (see :func:`enter_argv`)."""
    try:
        return str(CODE / Path(sys.executable).relative_to(REPO))
    except ValueError:  # a Python outside the checkout: seen where it is
        return sys.executable


def clean_env(state: State, t: Trainee, env: dict[str, str] | None = None) -> dict[str, str]:
    bindir = str(Path(trainee_python()).parent)
    base = {"HOME": str(t.home), "USER": t.user, "LOGNAME": t.user, "SHELL": "/bin/bash",
            "PATH": f"{bindir}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8", "DNSLAB_INSTANCE": state.name, "PYTHONPATH": str(CODE)}
    base.update(env or {})
    return base


def enter_argv(state: State, node: str, t: Trainee, argv: Sequence[str],
               env: dict[str, str] | None = None) -> list[str]:
    """A root-run command line that runs ``argv`` in ``node``'s namespace as the trainee,
    with only ``clean_env(...)`` (plus ``env``) as its environment."""
    from .backends.netns import node_ns
    ns = node_ns(state.name, node)
    tools = {}
    for tool in ("ip", "sh", "mount", "env", "prlimit", "setpriv"):
        path = shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin")
        if path is None:
            raise _lab_error(f"{tool} is missing: apt-get install {'iproute2' if tool == 'ip' else 'util-linux'}")
        tools[tool] = path
    # `ip netns exec` gives the command a mount namespace of its own: mount a private /tmp,
    # /var/tmp and /dev/shm there (no channel between trainees, no look at root's temp files)
    CODE.mkdir(parents=True, exist_ok=True, mode=0o755)
    private_tmp = (f"{tools['mount']} --bind {shlex.quote(str(REPO))} {CODE} || exit 1; "
                   "for d in /tmp /var/tmp /dev/shm; do "
                   f"{tools['mount']} -t tmpfs -o mode=1777,nosuid,nodev,size=256m dnslab-tmp \"$d\" || exit 1; done; "
                   'exec "$@"')
    return [tools["ip"], "netns", "exec", ns, tools["sh"], "-c", private_tmp, "sh",
            tools["env"], "-i", *(f"{k}={v}" for k, v in clean_env(state, t, env).items()),
            tools["prlimit"], f"--nproc={NPROC}:{NPROC}", "--",
            *_become(t, tools["setpriv"]), *argv]


def kernel_argv(state: State, t: Trainee | None = None) -> list[str]:
    """A kernelspec argv: an ipykernel in the instance's client node, as its trainee.

    The kernel manager writes its connection file root-only; the launcher (``python -m
    dnslab.confine kernel``, root, stdlib only) copies it into :func:`ipc_dir` for the
    trainee, then execs :func:`enter_argv`. Start such kernels with ``transport="ipc"`` and an
    absolute ``ip`` inside ``ipc_dir(state)``.
    """
    t = t or find_trainee(state.name)
    if t is None:
        raise _lab_error(f"instance {state.name} has no trainee user yet (dnslab.confine.setup)")
    inner = enter_argv(state, client_node(state), t,
                       [trainee_python(), "-m", "ipykernel_launcher", "-f", "{connection_file}"])
    return [sys.executable, "-m", "dnslab.confine", KERNEL_LAUNCH, str(ipc_dir(state)), str(t.uid), str(t.gid),
            str(t.home), "{connection_file}", "--", *inner]


def kernel_name(state: State) -> str:
    return f"dnslab-{state.name}"


def write_kernelspec(state: State, dest_dir: Path, t: Trainee | None = None) -> Path:
    """Write the kernelspec ``dnslab-<instance>`` under ``dest_dir`` (a ``kernels`` dir of a
    Jupyter data path, or any dir given to a KernelSpecManager); returns the spec's dir."""
    d = Path(dest_dir) / kernel_name(state)
    d.mkdir(parents=True, exist_ok=True)
    spec = {"argv": kernel_argv(state, t), "display_name": f"DNS lab {state.name}", "language": "python",
            "interrupt_mode": "signal", "metadata": {"dnslab": {"instance": state.name}}}
    (d / "kernel.json").write_text(json.dumps(spec, indent=1))
    return d


def _can_enter(path: str, uid: int, gid: int) -> bool:
    """Whether uid/gid (no other groups) may search every directory up to ``path``."""
    p = Path(path)
    for d in [*reversed(p.parents), p]:
        try:
            st = os.stat(d)
        except OSError:
            return False
        bits = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
        if not st.st_mode & bits:
            return False
    return True


def _launch_kernel(args: list[str]) -> None:
    ipc, uid, gid, home, conn, sep, *inner = args
    if sep != "--" or not inner:
        raise SystemExit("usage: python -m dnslab.confine kernel IPC_DIR UID GID HOME CONNECTION_FILE -- ARGV...")
    uid_i, gid_i = int(uid), int(gid)
    copy = os.path.join(ipc, os.path.basename(conn))
    if os.path.abspath(conn) != os.path.abspath(copy):
        # ipc/ is the trainee's: a fresh name, O_EXCL|O_NOFOLLOW, and chown through the descriptor
        data = Path(conn).read_bytes()
        tmp = f"{copy}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchown(f.fileno(), uid_i, gid_i)
        os.replace(tmp, copy)
    argv = [copy if a == conn else a for a in inner]
    try:
        cwd = os.getcwd()
    except OSError:
        cwd = "/"
    if not _can_enter(cwd, uid_i, gid_i):
        os.chdir(home)
    os.execv(argv[0], argv)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# ---------------------------------------------------------------- processes recorded in the state

def spawn(state: State, key: str, argv: Sequence[str], log: Path, **popen) -> subprocess.Popen:
    """Start a helper process (broker, Jupyter server, forwarder) recorded in the state:
    intent first, then its PID and start time."""
    state.intend("proc", key)
    pidfile = os.fsencode(_pid_dir(state) / f"{key}.pid")
    _pid_dir(state).mkdir(mode=0o700, exist_ok=True)

    def write_own_pid() -> None:  # in the child, before exec: recorded even if we are killed right now
        fd = os.open(b"/proc/self/stat", os.O_RDONLY)
        stat = os.read(fd, 4096)
        os.close(fd)
        started = stat.rsplit(b")", 1)[1].split()[19]
        fd = os.open(pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        os.write(fd, b"%d %s" % (os.getpid(), started))
        os.close(fd)

    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=write_own_pid, **popen)
    state.data.setdefault("procs", {})[key] = {"pid": proc.pid, "start": start_time(proc.pid)}
    state.save()
    return proc


def _pid_dir(state: State) -> Path:
    return state.dir / "pids"


def _self_recorded(state: State) -> set[int]:
    """Live helpers that wrote their own PID and start time (see :func:`spawn`): what an ``up``
    killed between starting a helper and recording it leaves."""
    pids = set()
    for f in _pid_dir(state).glob("*.pid") if _pid_dir(state).is_dir() else []:
        try:
            pid, started = map(int, f.read_text().split())
        except (OSError, ValueError):
            continue
        if start_time(pid) == started:
            pids.add(pid)
    return pids


def proc_alive(state: State, key: str) -> bool:
    rec = state.data.get("procs", {}).get(key)
    return bool(rec) and rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]


def stop_recorded(states: Sequence[State], grace: float = 2.0) -> None:
    """SIGTERM the helper processes recorded in these states (PID and start time), then SIGKILL."""
    pids = set()
    for s in states:
        for rec in s.data.get("procs", {}).values():
            if rec.get("start") is not None and start_time(rec["pid"]) == rec["start"]:
                pids.add(rec["pid"])
        recorded = {rec["pid"] for rec in s.data.get("procs", {}).values()}
        pids |= _self_recorded(s) - recorded
    terminate(pids, grace, group=True)


def remove_users(states: Sequence[State], purge_home: bool = False) -> list[str]:
    """Remove the trainee users recorded in these states."""
    removed = []
    for s in states:
        if s.resources("user") and remove_trainee(s.name, purge_home):
            removed.append(user_name(s.name))
    return removed


def gc_users(live_instances: set[str]) -> list[str]:
    """Remove users dnslab made whose instance is gone (homes are kept, chowned to root)."""
    removed = []
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("dnslab-") and _ours(pw):
            inst = pw.pw_gecos[len(MARKER):]
            if inst not in live_instances and user_name(inst) == pw.pw_name:
                from .state import run_root
                if (run_root() / inst).exists():  # made since live_instances was read
                    continue
                if remove_trainee(inst, purge_home=False):
                    removed.append(f"user {pw.pw_name}")
    return removed


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == KERNEL_LAUNCH:
        _launch_kernel(sys.argv[2:])
    else:
        raise SystemExit("usage: python -m dnslab.confine kernel ...")
