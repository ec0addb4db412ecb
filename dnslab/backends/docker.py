"""The Docker backend: one container per node, made through the docker SDK from the
images of ``images/<kind>/``, wired exactly like the netns backend.

A container starts with ``network_mode=none``; its network namespace is attached as
``dnslab-<instance>-<node>`` and gets the same veths, bridges (in the instance's own
bridge namespace) and addresses as a netns node (:mod:`dnslab.backends.wiring`). So isolation
is the same on both backends, proven by the same tests, and the engine needs no docker
networks, no iptables rules and no bridge of its own. The daemon waits for its addresses,
then runs in the foreground under docker-init with the node dir mounted at ``/lab``.
"""
from __future__ import annotations

import shlex
import shutil
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import EnvError
from ..state import State
from . import bounded, wiring
from .base import BackendError
from .nsutil import socket_in
from .wiring import NETNS_DIR, node_ns

if TYPE_CHECKING:
    from ..nodespec import NodeSpec
    from ..plan import LabPlan

LABEL = "dnslab.instance"
NODE_DIR = "/lab"
WIRED = ".wired"  # created once the node's addresses are up; the daemon waits for it


def image(kind: str) -> str:
    return f"dnslab/{kind}:latest"


def client():
    """A docker SDK client for the local engine, or :class:`EnvError` saying what to do."""
    try:
        import docker
    except ImportError:
        raise EnvError("the docker backend needs the docker SDK: pip install docker") from None
    try:
        c = docker.from_env(timeout=60)
        c.ping()
        return c
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        raise EnvError(f"no Docker engine answers ({exc.__class__.__name__}): start it "
                       "(systemctl start docker, or scripts/docker-engine.sh start)") from None


class DockerBackend:
    name = "docker"
    trainee_userns = False  # containers are the engine's: a trainee reaches them through the broker

    def __init__(self) -> None:
        self._client = None

    @property
    def docker(self):
        if self._client is None:
            self._client = client()
        return self._client

    def preflight(self, lab: LabPlan, programs: dict[str, str]) -> None:
        """The images of the lab's kinds (they hold the programs) and ip on the host."""
        import docker.errors
        missing = []
        for k in sorted({n.kind for n in lab.nodes.values()}):
            try:
                self.docker.images.get(image(k))
            except docker.errors.ImageNotFound:
                missing.append(image(k))
        if missing:
            raise EnvError(f"missing images {', '.join(missing)}: build them with `dnslab images build`")
        if shutil.which("ip") is None:
            raise EnvError("the docker backend wires nodes with ip: apt-get install iproute2")

    def node_path(self, state: State, node: str) -> str:
        return NODE_DIR

    def create(self, state: State, lab: LabPlan, specs: dict[str, NodeSpec]) -> None:
        from ..confine import unpack_as
        wiring.write_files(state, specs)
        names = wiring.claim(state, lab)
        wiring.make_namespaces(state, names[:1], owned=False)
        self._containers(state, lab, specs)
        wiring.link(state, lab)
        unpack_as(state.owner, state.work_dir, {f"nodes/{node}/{WIRED}": "" for node in lab.nodes})

    def _containers(self, state: State, lab: LabPlan, specs: dict[str, NodeSpec]) -> None:
        """One container per node whose network namespace is attached by name. In a trainee's
        lab the containers run as the trainee (port 53 made unprivileged in the container's own
        network namespace) inside the trainee's cgroup."""
        state.intend("containers", f"label={LABEL}={state.name}")
        owned = {}
        if state.owner:
            owned = {"user": f"{state.owner[0]}:{state.owner[1]}"}
            if state.resources("cgroup") and self.docker.info().get("CgroupDriver") == "cgroupfs":
                owned["cgroup_parent"] = f"/dnslab/{state.name}/lab"

        def one(node: str):
            plan, spec = lab.nodes[node], specs[node]
            # a node without a daemon (a client) just stays up, and has no log, as under netns
            run = (" ".join(shlex.quote(a) for a in spec.argv) + f" >>{NODE_DIR}/daemon.log 2>&1"
                   if spec.argv else "sleep infinity")
            cmd = f"while [ ! -e {NODE_DIR}/{WIRED} ]; do sleep 0.01; done; exec {run}"
            extra = dict(owned)
            if spec.resolv_conf is not None:
                extra["dns"] = [a for a in lab.nodes[plan.resolver].addresses]
            if spec.capabilities:
                extra["cap_add"] = list(spec.capabilities)
            sysctls = {"net.ipv6.conf.all.disable_ipv6": "0"}
            if state.owner:
                sysctls["net.ipv4.ip_unprivileged_port_start"] = "0"
            c = self.docker.containers.create(
                image(plan.kind), ["sh", "-c", cmd], name=f"dnslab-{state.name}-{node}",
                hostname=node, labels={LABEL: state.name, "dnslab.node": node, "dnslab.lab": lab.name},
                network_mode="none", init=True, volumes={str(state.node_dir(node)): {"bind": NODE_DIR, "mode": "rw"}},
                working_dir=NODE_DIR, sysctls=sysctls, **extra)
            c.start()
            c.reload()
            pid = c.attrs["State"]["Pid"]
            state.data["nodes"].setdefault(node, {}).update(container=c.id)
            return node, pid

        with ThreadPoolExecutor(max_workers=8) as pool:
            started = list(pool.map(one, [n for n in lab.nodes]))
        state.save()
        wiring.ip_batches([((), "".join(f"netns attach {node_ns(state.name, n)} {pid}\n" for n, pid in started))],
                          "attaching container namespaces")

    def _container(self, state: State, node: str):
        import docker.errors
        cid = state.data["nodes"].get(node, {}).get("container")
        if not cid:
            return None
        try:
            return self.docker.containers.get(cid)
        except docker.errors.NotFound:
            return None

    def stop_daemon(self, state: State, node: str, stop) -> None:
        """A container's daemon stopped: the container is paused (stopping it would tear down the
        network namespace dnslab wired); :meth:`start_daemon` resumes it."""
        c = self._container(state, node)
        if c is not None and c.status == "running":
            c.pause()

    def start_daemon(self, state: State, node: str, argv) -> None:
        """Resume a container paused by :meth:`stop_daemon`."""
        c = self._container(state, node)
        if c is not None and c.status == "paused":
            c.unpause()

    def running(self, state: State, node: str) -> bool:
        c = self._container(state, node)
        return c is not None and c.status == "running"

    def socket(self, state: State, node: str, family: int, type: int) -> socket.socket:
        path = NETNS_DIR / node_ns(state.name, node)
        if not path.exists():
            raise BackendError(f"node {node} of instance {state.name} has no network namespace")
        return socket_in(str(path), family, type)

    def block(self, state: State, node: str, rules: Sequence[str]) -> None:
        wiring.block(state, node, rules)

    def port_range(self, state: State, node: str, ports: tuple[int, int] | None) -> None:
        wiring.port_range(state, node, ports)

    def set_links(self, state: State, links: Sequence[tuple[str, str]], up: bool) -> None:
        wiring.set_links(state, links, up)

    def log_path(self, state: State, node: str) -> Path:
        return state.node_dir(node) / "daemon.log"

    def exec(self, state: State, node: str, argv: Sequence[str], *,
             capture: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        c = self._container(state, node)
        if c is None:
            raise BackendError(f"node {node} of instance {state.name} has no container")
        # through sh: a missing program exits 127 (as in a shell), not the engine's 126
        cmd = ["sh", "-c", 'exec "$@"', "sh", *argv]
        user = f"{state.owner[0]}:{state.owner[1]}" if state.owner else ""
        if not capture:
            res = c.exec_run(cmd, demux=True, workdir=NODE_DIR, user=user)
            for out, stream in zip(res.output, (sys.stdout, sys.stderr)):
                stream.write(out.decode(errors="replace") if out else "")
            return subprocess.CompletedProcess(list(argv), res.exit_code)
        # the engine has no deadline for an exec: the command carries its own
        limit = bounded.TIMEOUT if timeout is None else timeout
        api, t0 = self.docker.api, time.monotonic()
        ex = api.exec_create(c.id, ["timeout", "-s", "KILL", f"{limit:.3f}", *cmd], user=user, workdir=NODE_DIR)
        what = f"node {node}: `{' '.join(argv)}`"
        res = bounded.collect(api.exec_start(ex["Id"], stream=True, demux=True), argv, what,
                              lambda: api.exec_inspect(ex["Id"])["ExitCode"])
        if res.returncode in (124, 137) and time.monotonic() - t0 >= limit:
            raise bounded.ExecTimeout(argv, what, limit)
        return res

    def destroy(self, states: Sequence[State]) -> None:
        import docker.errors
        containers = []
        for s in states:
            if s.resources("containers"):
                # ignore_removed: another `down` or `gc` may remove one between list and inspect
                containers += self.docker.containers.list(all=True, filters={"label": f"{LABEL}={s.name}"},
                                                          ignore_removed=True)

        def remove(c):
            try:
                c.remove(force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:  # a concurrent gc/down is removing it already
                if "already in progress" not in str(exc):
                    raise
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(remove, containers))
        wiring.destroy(states)

    def leftovers(self, claimed: set[str]) -> list[str]:
        """Labelled containers no instance claims (namespaces are the netns backend's to collect)."""
        try:
            found = self.docker.containers.list(all=True, filters={"label": LABEL}, ignore_removed=True)
        except EnvError:
            return []
        return sorted(f"container:{c.name}" for c in found if f"label={LABEL}={c.labels[LABEL]}" not in claimed)

    def remove_leftovers(self, names: Sequence[str]) -> None:
        import docker.errors
        for n in names:
            if n.startswith("container:"):
                try:
                    self.docker.containers.get(n.split(":", 1)[1]).remove(force=True)
                except docker.errors.NotFound:  # removed meanwhile (a concurrent gc)
                    pass

