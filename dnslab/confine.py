"""A trainee's confinement: their lab, files and processes, and running things as them.

:func:`setup` gives an instance its trainee before any of its daemons starts: the Unix user
(:mod:`dnslab.accounts`), a cgroup with the class's limits (:mod:`dnslab.cgroups`), a
size-capped home (:mod:`dnslab.homes`) and a size-capped tmpfs of the trainee's own as the
lab's working area (``work/``), all recorded in the state first. The backend then runs the
lab's daemons as the trainee, inside a user namespace the trainee owns (:mod:`dnslab.userns`).

Everything that acts for a trainee starts from root through :func:`enter_argv`: joins the
trainee's cgroup, enters a node's network namespace (``ip netns exec``: a mount namespace of
its own, with private ``/tmp``, ``/var/tmp``, ``/dev/shm`` and the checkout at ``CODE``), a
clean environment, then ``setpriv`` to the trainee's uid/gid with no supplementary groups,
no capabilities and no_new_privs; only then, as the trainee, it changes to its working
directory. Root itself never opens, walks, changes or runs anything in a place the trainee
can write: what it must read from there it reads as the trainee (:func:`read_as`) or through
:mod:`dnslab.safeio`; what it must put there it writes as the trainee (:func:`write_as`,
:func:`unpack_as`).
"""
from __future__ import annotations

import io
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import accounts, cgroups, homes
from .accounts import Trainee, user_name
from .errors import EnvError

if TYPE_CHECKING:
    from .state import State

REPO = Path(__file__).resolve().parent.parent
CODE = Path("/var/lib/dnslab/code")           # where trainee processes see REPO (a bind mount of theirs)
PROTECTED = ("exercises", "grader", ".git")  # hidden tests, solutions, course config, history
NPROC = 1024                                 # tasks per trainee uid (the cgroup bounds them per trainee)
TMP_SIZE = "64m"                             # each private /tmp, /var/tmp, /dev/shm (RAM, charged to the trainee)
WORK_SIZE = 64 << 20                         # the lab's working area of a trainee
SBIN = "/usr/sbin:/usr/bin:/sbin:/bin"


def find_trainee(instance: str) -> Trainee | None:
    return accounts.find(instance)


def home_of(instance: str) -> Path:
    return homes.home_of(instance)


def protect_sources(repo: Path = REPO) -> list[Path]:
    """Make the exercise sources, the course config and the history root-only (0700)."""
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


# ---------------------------------------------------------------- an instance's trainee

def setup(state: State, limits: cgroups.Limits | None = None, home_size: int = homes.DEFAULT_SIZE) -> list[str]:
    """Give a new instance its trainee (user, cgroup, home, working area), intent recorded first.
    Returns warnings: what stays unbounded on this host.

    :raises EnvError: the user, cgroup or file systems could not be made
    """
    import ctypes
    limits = limits or cgroups.Limits()
    warnings = []
    state.intend("user", user_name(state.name))
    t = accounts.ensure(state.name)
    state.data["owner"] = {"uid": t.uid, "gid": t.gid, "user": t.user}
    state.data["limits"] = {"memory": limits.memory, "pids": limits.pids, "cpu_weight": limits.cpu_weight,
                            "home": home_size, "work": WORK_SIZE}
    drv = cgroups.driver()
    if drv.version:
        state.intend("cgroup", state.name)
        cgroups.Group(state.name, drv).create(limits)
    else:
        warnings.append(f"{drv.problem}: memory, processes and CPU of trainees are not bounded")
    state.intend("home", state.name)
    state.data["home_made"] = not homes.image_of(state.name).exists() and not homes.home_of(state.name).exists()
    try:
        warning = homes.mount(state.name, t.uid, t.gid, home_size)
    except OSError as exc:
        raise EnvError(f"the home of {t.user}: {exc}") from None
    if warning:
        warnings.append(warning)
    state.intend("mount", str(state.work_dir))
    opts = f"size={WORK_SIZE},nr_inodes=16384,mode=0700,uid={t.uid},gid={t.gid}"
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(b"dnslab-work", os.fsencode(state.work_dir), b"tmpfs", 0x2 | 0x4, opts.encode()) != 0:  # nosuid,nodev
        err = ctypes.get_errno()
        raise EnvError(f"cannot mount the working area of {state.name}: {os.strerror(err)}")
    os.chown(state.dir, 0, t.gid)
    os.chmod(state.dir, 0o750)  # the trainee reads nodes.json, reaches control.sock and work/
    state.save()
    protect_sources()
    return warnings


def trainee_of(state: State) -> Trainee | None:
    """The trainee of an instance that has one (recorded in its state)."""
    if not state.owner:
        return None
    t = accounts.find(state.name)
    return t if t is not None and (t.uid, t.gid) == state.owner else None


def require_trainee(state: State) -> Trainee:
    t = trainee_of(state)
    if t is None:
        from .errors import InputError
        raise InputError(f"instance {state.name} has no trainee: bring it up with --trainees (or --jupyter)")
    return t


def group(state: State) -> cgroups.Group | None:
    return cgroups.Group(state.name) if state.resources("cgroup") else None


def join(state: State, leaf: str) -> list[str]:
    """The argv prefix that puts a command in the trainee's cgroup leaf (nothing without one)."""
    g = group(state)
    return g.join_prefix(leaf) if g else []


def teardown(states: Sequence[State], purge_home: bool = False) -> list[str]:
    """After the lab is stopped: the trainees' leftover processes, cgroups, working areas,
    users and (``purge_home``) homes; a home that an ``up`` made and that never saw its lab
    ready (the ``up`` failed or was killed) goes too. Returns the users removed."""
    removed = []
    for s in states:
        purge = purge_home or (s.data.get("home_made", False) and not s.data.get("was_ready", False))
        if s.resources("cgroup"):
            cgroups.Group(s.name).remove()
        if s.resources("user") and accounts.remove(s.name, purge):
            removed.append(user_name(s.name))
        elif s.resources("home") and purge:
            homes.purge(s.name, None)
        elif s.resources("home"):
            homes.unmount(s.name)
    return removed


# ---------------------------------------------------------------- as the trainee

def become(t: Trainee, setpriv: str = "setpriv") -> list[str]:
    """The ``setpriv`` prefix that runs a command as the trainee: their uid and gid only, no
    capabilities (none inheritable, none in the bounding set), no-new-privs."""
    return [setpriv, f"--reuid={t.uid}", f"--regid={t.gid}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def _as(t: Trainee, argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*become(t), *argv], capture_output=True, cwd="/", env=_plain_env(t), **kw)


def _plain_env(t: Trainee) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(t.home), "LANG": "C.UTF-8"}


def read_as(t: Trainee, path: Path, limit: int = 20 << 20) -> bytes:
    """Read a file of the trainee's with their own rights (a symlink to a root-only file fails).

    :raises EnvError: unreadable, or larger than ``limit``
    """
    res = _as(t, ["head", "-c", str(limit + 1), "--", str(path)], stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise EnvError(f"cannot read {path} as {t.user}: {res.stderr.decode(errors='replace').strip()}")
    if len(res.stdout) > limit:
        raise EnvError(f"{path} is larger than {limit >> 20} MiB")
    return res.stdout


def write_as(t: Trainee, path: Path, data: bytes, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` with the trainee's own rights. ``exclusive``: never replace a
    file. Returns whether it was written.

    :raises EnvError: the trainee's rights do not allow it (a read-only home, a full disk)
    """
    script = ('set -e; mkdir -p -- "$(dirname -- "$1")"; '
              + ('[ -e "$1" ] && exit 3; ' if exclusive else "")
              + 'cat > "$1.dnslab-new"; mv -f -- "$1.dnslab-new" "$1"')
    res = _as(t, ["sh", "-c", script, "sh", str(path)], input=data)
    if res.returncode == 3 and exclusive:
        return False
    if res.returncode != 0:
        raise EnvError(f"cannot write {path} as {t.user}: {res.stderr.decode(errors='replace').strip()}")
    return True


def unpack_as(owner: tuple[int, int] | None, dest: Path, files: dict[str, str | bytes], mode: int = 0o644) -> None:
    """Write ``files`` (paths relative to ``dest``; a path ending in ``/`` is a directory) as
    ``owner`` (uid, gid), through one ``tar`` run with their rights; as root when ``owner`` is
    None (a lab without a trainee)."""
    buf, now = io.BytesIO(), time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for rel, content in sorted(files.items()):
            info = tarfile.TarInfo(rel.rstrip("/"))
            info.mtime = now
            if rel.endswith("/"):
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
                continue
            data = content.encode() if isinstance(content, str) else content
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    prefix = [] if owner is None else ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups",
                                       "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
    res = subprocess.run([*prefix, "tar", "-x", "--no-same-owner", "--no-same-permissions", "-C", str(dest), "-f", "-"],
                         input=buf.getvalue(), capture_output=True, cwd="/", env={"PATH": "/usr/bin:/bin"})
    if res.returncode != 0:
        from .backends import BackendError
        raise BackendError(f"writing the lab's files in {dest} failed: {res.stderr.decode(errors='replace').strip()}")


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
            "PATH": f"{CODE / 'tools'}:{bindir}:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
            "LANG": "C.UTF-8", "DNSLAB_INSTANCE": state.name, "PYTHONPATH": str(CODE)}
    base.update(env or {})
    return base


def _tool(name: str) -> str:
    path = shutil.which(name, path=SBIN)
    if path is None:
        raise EnvError(f"{name} is missing: apt-get install {'iproute2' if name == 'ip' else 'util-linux'}")
    return path


def enter_argv(state: State, node: str, t: Trainee, argv: Sequence[str], env: dict[str, str] | None = None,
               leaf: str = "session", cwd: str | None = None) -> list[str]:
    """A root-run command line that runs ``argv`` in ``node``'s network namespace as the
    trainee, in their cgroup ``leaf``, with only ``clean_env(...)`` (plus ``env``), from ``cwd``
    (default: their home), changed to *as the trainee*. Start it with ``cwd="/"``."""
    from .backends.netns import node_ns
    ip, sh, mount, env_, prlimit, setpriv = map(_tool, ("ip", "sh", "mount", "env", "prlimit", "setpriv"))
    CODE.mkdir(parents=True, exist_ok=True, mode=0o755)
    # `ip netns exec` gives the command a mount namespace of its own: the checkout at CODE, and
    # private /tmp, /var/tmp, /dev/shm (no channel between trainees, no look at root's temp files)
    private = (f"{mount} --bind {shlex.quote(str(REPO))} {CODE} || exit 1; "
               "for d in /tmp /var/tmp /dev/shm; do "
               f"{mount} -t tmpfs -o mode=1777,nosuid,nodev,size={TMP_SIZE} dnslab-tmp \"$d\" || exit 1; done; "
               'exec "$@"')
    chdir = ["/bin/sh", "-c", 'cd "$1" 2>/dev/null || cd || exit 1; shift; exec "$@"', "sh", cwd or str(t.home)]
    return [*join(state, leaf), ip, "netns", "exec", node_ns(state.name, node), sh, "-c", private, "sh",
            env_, "-i", *(f"{k}={v}" for k, v in clean_env(state, t, env).items()),
            prlimit, f"--nproc={NPROC}:{NPROC}", "--", *become(t, setpriv), *chdir, *argv]
