"""Trainees are Unix users: one system user per instance, made and removed by dnslab only.

``ensure(instance)`` makes ``dnslab-<instance>`` (uid = gid, from a range of its own, shell
nologin, home ``/var/lib/dnslab/home/<instance>``). A user is "ours" when its GECOS field is
``dnslab trainee <instance>``: only such users are reused, removed by ``down`` or collected by
``gc``. A uid is never shared: not with a user or group, not with a running process, not with
a kept home of another instance (:func:`dnslab.homes.reserved_uids`); an instance whose home
was kept gets its old uid back, so its files are its own again without any chown.
"""
from __future__ import annotations

import fcntl
import grp
import hashlib
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from . import homes
from .errors import EnvError
from .procs import start_time

MARKER = "dnslab trainee "                    # GECOS of the users we make: MARKER + instance
NOLOGIN = "/usr/sbin/nologin"
UID_BASE, UID_COUNT = 2_000_000, 100_000      # far from system, login and subuid ranges
_lock = threading.Lock()


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


@contextmanager
def _users_lock() -> Iterator[None]:
    """One maker of users at a time: threads of this process and other dnslab processes."""
    from .state import run_root
    root = run_root()
    root.mkdir(parents=True, exist_ok=True, mode=0o711)
    with _lock, lock_file(root / ".users.lock"):
        yield


def _user(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def _ours(pw: pwd.struct_passwd, instance: str | None = None) -> bool:
    return pw.pw_gecos == MARKER + instance if instance is not None else pw.pw_gecos.startswith(MARKER)


def _shadow(argv: list[str]) -> None:
    """Run a shadow tool, retrying while another program holds /etc/passwd's lock."""
    for attempt in range(20):
        res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
        if res.returncode == 0:
            return
        if "lock" not in res.stderr.lower() or attempt == 19:
            raise EnvError(f"`{' '.join(argv)}` failed: {res.stderr.strip()}")
        time.sleep(0.05 * (attempt + 1))


def ensure(instance: str) -> Trainee:
    """The trainee user of ``instance``, made if absent (idempotent, thread- and process-safe).

    :raises EnvError: a user of that name exists that dnslab did not make, or no uid is free
    """
    from .state import check_name
    check_name(instance)
    name = user_name(instance)
    with _users_lock():
        pw = _user(name)
        if pw is not None and not _ours(pw, instance):
            raise EnvError(f"user {name} exists and was not made by dnslab for instance {instance} "
                           f"(GECOS {pw.pw_gecos!r}); remove it or choose another instance name")
        if pw is None:
            if shutil.which("useradd") is None or shutil.which("setpriv") is None:
                raise EnvError("trainee users need useradd (package passwd) and setpriv (util-linux)")
            uid = _free_id(instance)
            _shadow(["groupadd", "--system", "--gid", str(uid), name])
            _shadow(["useradd", "--system", "--uid", str(uid), "--gid", str(uid), "--shell", NOLOGIN,
                     "--home-dir", str(homes.home_of(instance)), "--no-create-home",
                     "--comment", MARKER + instance, name])
            pw = pwd.getpwnam(name)
    return Trainee(name, pw.pw_uid, pw.pw_gid, homes.home_of(instance))


def service_user(name: str, home: Path, what: str) -> tuple[int, int]:
    """(uid, gid) of a system user of dnslab's own that is no trainee (a class's hub): made if
    absent, kept afterwards (one per host).

    :raises EnvError: a user of that name exists that dnslab did not make
    """
    comment = f"dnslab {what}"
    with _users_lock():
        pw = _user(name)
        if pw is not None and pw.pw_gecos != comment:
            raise EnvError(f"user {name} exists and was not made by dnslab (GECOS {pw.pw_gecos!r})")
        if pw is None:
            _shadow(["useradd", "--system", "--user-group", "--shell", NOLOGIN, "--home-dir", str(home),
                     "--no-create-home", "--comment", comment, name])
            pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def _free_id(instance: str) -> int:
    """The uid (and gid) of a kept home of this instance if it is free; otherwise one that no
    user, group, process or kept home has (a uid may signal and ptrace its processes and owns
    its files)."""
    from .procs import start_time
    # zombies aside: they hold nothing, and an init that is slow to reap would keep a uid busy forever
    busy = {uid for pid in os.listdir("/proc") if pid.isdigit() and start_time(int(pid)) is not None
            for uid in uids_of(pid)}
    reserved = homes.reserved_uids()
    kept = homes.recorded_uid(instance)

    def free(uid: int) -> bool:
        if uid in busy or reserved.get(uid, instance) != instance:
            return False
        for db in (pwd.getpwuid, grp.getgrgid):
            try:
                db(uid)
                return False
            except KeyError:
                pass
        return True
    if kept is not None:
        if free(kept):
            return kept
        by = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and kept in uids_of(p)
                    and start_time(int(p)) is not None)
        holder = (f" (process {by[0]}: {_comm(by[0])})" if by else "")
        raise EnvError(f"the kept home of {instance} belongs to uid {kept}, which is now taken{holder}; "
                       f"purge it (dnslab down --purge {instance}) or free that uid")
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        if free(uid):
            return uid
    raise EnvError(f"no free uid in {UID_BASE}..{UID_BASE + UID_COUNT - 1} for a trainee")


def find(instance: str) -> Trainee | None:
    """The trainee of ``instance`` if dnslab made one, without making it."""
    pw = _user(user_name(instance))
    if pw is None:
        return None
    return Trainee(pw.pw_name, pw.pw_uid, pw.pw_gid, homes.home_of(instance)) if _ours(pw, instance) else None


def remove(instance: str, purge_home: bool = False) -> bool:
    """Remove the trainee user of ``instance`` (only one dnslab made), its processes and, with
    ``purge_home``, its home; a kept home is only unmounted. Returns whether a user was removed."""
    name = user_name(instance)
    with _users_lock():
        pw = _user(name)
        if pw is not None and not _ours(pw, instance):
            return False  # not ours: leave it and its home alone
        uid = pw.pw_uid if pw else homes.recorded_uid(instance)
        if uid is not None:
            kill_uid(uid)
        if purge_home:
            homes.purge(instance, uid)
        else:
            homes.unmount(instance)
        if pw is None:
            return False
        _shadow(["userdel", name])
        try:
            grp.getgrnam(name)
            _shadow(["groupdel", name])
        except KeyError:
            pass
        return True


def _comm(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return f"{stat.split('(', 1)[1].rsplit(')', 1)[0][:32]}, state {fields[0]}, parent {fields[1]}"
    except (OSError, IndexError):
        return "?"


def uids_of(pid: str) -> set[int]:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return {int(x) for x in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()




def kill_uid(uid: int, timeout: float = 5.0) -> None:
    """SIGKILL every process running as ``uid`` (a trainee we are removing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and uid in uids_of(p) and start_time(int(p)) is not None]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def gc(live_instances: set[str]) -> list[str]:
    """Remove users dnslab made whose instance is gone (homes are kept, unmounted)."""
    from .state import run_root
    removed = []
    for pw in pwd.getpwall():
        if pw.pw_name.startswith("dnslab-") and _ours(pw):
            inst = pw.pw_gecos[len(MARKER):]
            if inst not in live_instances and user_name(inst) == pw.pw_name:
                if (run_root() / inst).exists():  # made since live_instances was read
                    continue
                if remove(inst, purge_home=False):
                    removed.append(f"user {pw.pw_name}")
    return removed
