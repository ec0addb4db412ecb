"""Node images for the docker backend, built locally from Debian packages.

No image registry is reachable from a training room's machines, so the base image is
made by ``debootstrap --variant=minbase`` and ``docker import``; each kind's image is
then built through the docker SDK from the one ``images/Dockerfile``, with the kind's folder
``images/<kind>/`` (its ``packages.txt``, and ``caps.txt`` for file capabilities) as context.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from .backends.docker import client, image
from .errors import EnvError

BASE = "dnslab/base:bookworm"
IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
MIRROR = "http://deb.debian.org/debian"


def kinds_with_images() -> list[str]:
    return sorted(p.parent.name for p in IMAGES_DIR.glob("*/packages.txt"))


def _context(kind: str) -> io.BytesIO:
    """The build context of a kind's image: the shared Dockerfile and the kind's folder, as a tar
    (the same bytes for the same files, so that the engine's build cache holds)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, path in [("Dockerfile", IMAGES_DIR / "Dockerfile"),
                           *sorted((p.name, p) for p in (IMAGES_DIR / kind).iterdir() if p.is_file())]:
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def build_base(progress: Callable[[str], None], mirror: str = MIRROR) -> None:
    if shutil.which("debootstrap") is None:
        raise EnvError("building the base image needs debootstrap: apt-get install debootstrap")
    engine = client()
    with tempfile.TemporaryDirectory(prefix="dnslab-rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        progress(f"debootstrap --variant=minbase bookworm ({mirror})")
        try:
            res = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), mirror],
                                 capture_output=True, text=True)
        finally:
            _unmount_under(root)  # a failed debootstrap can leave /proc, /sys mounted in the rootfs
        if res.returncode:
            raise EnvError(f"debootstrap failed: {res.stdout[-2000:]}{res.stderr[-2000:]}")
        # Packages must not try to start services inside an image build.
        (root / "usr/sbin/policy-rc.d").write_text("#!/bin/sh\nexit 101\n")
        (root / "usr/sbin/policy-rc.d").chmod(0o755)
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True)
        progress(f"importing {BASE}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        repo, tag = BASE.split(":")
        engine.api.import_image_from_stream(tar.stdout, repository=repo, tag=tag)
        tar.wait()


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever is mounted below ``root`` (deepest first), so that removing
    the temporary rootfs never walks into the host's /proc, /sys or /dev."""
    prefix = str(root.resolve()) + "/"
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point.startswith(prefix):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def build(kinds: list[str] | None = None, progress: Callable[[str], None] = print,
          rebuild_base: bool = False) -> list[str]:
    """Build the base image if missing, then each kind's image; returns the tags built."""
    import docker.errors
    engine = client()
    try:
        engine.images.get(BASE)
        have_base = not rebuild_base
    except docker.errors.ImageNotFound:
        have_base = False
    if not have_base:
        build_base(progress)
    built = []
    for kind in kinds or kinds_with_images():
        progress(f"building {image(kind)} from images/{kind}/")
        try:
            engine.images.build(fileobj=_context(kind), custom_context=True, tag=image(kind), network_mode="host",
                                rm=True, labels={"dnslab": "node"})
        except docker.errors.BuildError as exc:
            log = "".join(x.get("stream", "") for x in exc.build_log)[-2000:]
            raise EnvError(f"building {image(kind)} failed:\n{log}") from None
        built.append(image(kind))
    # a rebuilt tag leaves its old image untagged: remove those of ours, nothing else
    engine.images.prune(filters={"dangling": True, "label": "dnslab=node"})
    return built
