"""Trainees' homes: a size-capped file system per trainee, kept between classes.

Each home is an ext4 image, ``/var/lib/dnslab/disks/<instance>.img`` (sparse: it costs
the disk only what the trainee writes, never more than its size), mounted ``nosuid,nodev``
at ``/var/lib/dnslab/home/<instance>``; its root directory belongs to the trainee from
``mkfs`` on, so root never walks, chowns or deletes inside it: ``down`` unmounts it,
``down --purge`` deletes the image. ``<instance>.json`` beside the image records the uid
that owns it; that uid stays reserved for the instance while the image exists, so a kept
home never becomes another trainee's.

Where loop devices or ``mkfs.ext4`` are missing (some containers), the home is a plain
directory and its size is unbounded: :func:`problem` says so, ``up`` prints it.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

HOMES = Path("/var/lib/dnslab/home")
DISKS = Path("/var/lib/dnslab/disks")
DEFAULT_SIZE = 512 << 20


def home_of(instance: str) -> Path:
    return HOMES / instance


def image_of(instance: str) -> Path:
    return DISKS / f"{instance}.img"


def _record(instance: str) -> Path:
    return DISKS / f"{instance}.json"


@lru_cache(maxsize=1)
def problem() -> str:
    """Why homes cannot be size-capped here ("" when they can)."""
    for tool, pkg in (("mkfs.ext4", "e2fsprogs"), ("losetup", "mount")):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            return f"{tool} is missing (apt-get install {pkg}): trainees' homes are not size-capped"
    if not os.path.exists("/dev/loop-control"):
        return "no loop devices (/dev/loop-control): trainees' homes are not size-capped"
    return ""


def _dirs() -> None:
    for d, mode in ((HOMES.parent, 0o711), (HOMES, 0o711), (DISKS, 0o700)):
        d.mkdir(mode=mode, exist_ok=True)
        os.chmod(d, mode)


def reserved_uids() -> dict[int, str]:
    """uid -> instance, for every kept home (image or directory)."""
    found: dict[int, str] = {}
    if DISKS.is_dir():
        for rec in DISKS.glob("*.json"):
            try:
                found[int(json.loads(rec.read_text())["uid"])] = rec.stem
            except (OSError, ValueError, KeyError, TypeError):
                continue
    if HOMES.is_dir():
        for d in HOMES.iterdir():
            try:
                st = os.lstat(d)
            except OSError:
                continue
            if st.st_uid != 0:
                found.setdefault(st.st_uid, d.name)
    return found


def recorded_uid(instance: str) -> int | None:
    """The uid owning the kept home of ``instance``, if it has one."""
    try:
        return int(json.loads(_record(instance).read_text())["uid"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        st = os.lstat(home_of(instance))
        return st.st_uid if st.st_uid != 0 else None
    except OSError:
        return None


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def mount(instance: str, uid: int, gid: int, size: int = DEFAULT_SIZE) -> str:
    """Give ``instance``'s trainee (uid/gid) their home, made if absent; returns a warning ("" if none).

    :raises OSError: the image could not be made or mounted
    """
    _dirs()
    home = home_of(instance)
    try:
        home.mkdir(mode=0o700)
    except FileExistsError:
        if home.is_symlink() or not home.is_dir():
            raise OSError(f"{home} is not a directory") from None
    if problem():
        os.chown(home, uid, gid)  # a plain directory (of this uid if kept: reserved_uids)
        os.chmod(home, 0o700)
        _record(instance).write_text(json.dumps({"uid": uid, "image": False}))
        return problem()
    if is_mounted(home):
        return ""
    img = image_of(instance)
    if not img.exists():
        fd = os.open(img, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-J", "size=4", "-E", f"root_owner={uid}:{gid}", str(img)])
    _record(instance).write_text(json.dumps({"uid": uid, "image": True}))
    _run(["mount", "-o", "loop,nosuid,nodev,noatime", str(img), str(home)])
    try:
        (home / "lost+found").rmdir()  # root's, in her home; empty on a fresh or clean image
    except OSError:
        pass
    os.chmod(home, 0o700)
    return ""


def unmount(instance: str) -> None:
    """Unmount the home (lazily, if something still holds it); the image is kept."""
    home = home_of(instance)
    if is_mounted(home):
        subprocess.run(["umount", "-l", str(home)], capture_output=True, stdin=subprocess.DEVNULL)


def purge(instance: str, uid: int | None) -> None:
    """Delete the home for good: the image file, or a plain directory's content removed with
    the trainee's own rights (``uid``), never walked by root."""
    unmount(instance)
    home = home_of(instance)
    img = image_of(instance)
    if img.exists():
        img.unlink()
    elif uid is not None and home.is_dir() and not home.is_symlink():
        subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                        "find", str(home), "-mindepth", "1", "-delete"],
                       capture_output=True, stdin=subprocess.DEVNULL, cwd="/")
    try:
        home.rmdir()
    except FileNotFoundError:
        pass
    _record(instance).unlink(missing_ok=True)


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
    if res.returncode != 0:
        raise OSError(f"`{' '.join(argv)}` failed: {res.stderr.strip() or res.returncode}")


def gc_mounts(live: set[str]) -> list[str]:
    """Unmount homes whose instance is gone (a crashed run); returns their instances."""
    from .state import run_root
    prefix = str(HOMES) + "/"
    gone = []
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        inst = point[len(prefix):]
        if point.startswith(prefix) and "/" not in inst and inst not in live and not (run_root() / inst).exists():
            unmount(inst)
            gone.append(inst)
    return gone
