"""One JupyterLab per trainee, running *inside* the trainee's client node as the trainee.

For each instance (brought up with its trainee, :func:`dnslab.confine.setup`), ``start``
starts the instance's broker (:mod:`dnslab.broker`), then a JupyterLab through
:func:`confine.enter_argv`: in the client's network namespace, as the trainee, in the
trainee's cgroup, no capabilities, no_new_privs. It listens only on a Unix socket in the
trainee's working area (``work/jupyter.sock``, 0600), so its kernels and terminals inherit
the namespace and the user with no root helper; kernels use ZMQ over ipc in ``work/runtime``.
The host reaches it through a forwarder that also runs as the trainee in her client node
(:mod:`dnslab.forward`): root only binds the host's TCP port and hands the listening socket
over, so nothing of root's ever connects to a path the trainee controls.

The server's configuration, token and only kernelspec live in root-owned dirs
(``jupyter-etc/``, readable by the trainee's group; ``jupyter-data/``), named by
``JUPYTER_CONFIG_DIR``/``JUPYTER_DATA_DIR``/``JUPYTER_PATH``; the kernelspec manager
(:class:`dnslab.kernelspecs.ConfinedKernelSpecManager`) looks kernels up only there and refuses
any name outside ``allowed_kernelspecs``, so a spec planted in the home starts nothing. Even if
it did, it would run as the same unprivileged user in the same namespace as the server.
"""
from __future__ import annotations

import csv
import http.client
import json
import os
import secrets
import shlex
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

from . import procs, safeio

if TYPE_CHECKING:
    from .lab import Instance
    from .state import State

DEFAULT_PORT = 8900
DEFAULT_BIND = "127.0.0.1"
READY_TIMEOUT = 90.0
SOCK_NAME = "jupyter.sock"
RUNTIME = "runtime"
HUB_ENV = "jupyterhub.env"


class JupyterError(Exception):
    pass


def _error(msg: str):
    from .backends import BackendError
    return BackendError(msg)


# ---------------------------------------------------------------- paths

def sock_path(state: State) -> Path:
    return state.work_dir / SOCK_NAME


def etc_dir(state: State) -> Path:
    return state.dir / "jupyter-etc"


def data_dir(state: State) -> Path:
    return state.dir / "jupyter-data"


def log_path(state: State) -> Path:
    return state.dir / "jupyter.log"


def forward_log(state: State) -> Path:
    return state.dir / "forward.log"


def _token(state: State) -> str | None:
    try:
        return json.loads((etc_dir(state) / "jupyter_server_config.json").read_text())["IdentityProvider"]["token"]
    except (OSError, ValueError, KeyError):
        return None


def url_host(bind: str) -> str:
    if bind in ("0.0.0.0", "::", ""):
        return socket.getfqdn()
    return f"[{bind}]" if ":" in bind else bind


def connect_host(bind: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def info(state: State) -> dict | None:
    """The instance's JupyterLab: url (with its token, or at the class's hub), port, bind,
    running; None if it has none."""
    from . import confine, hub
    klass = state.data.get("meta", {}).get("class")
    h = hub.info(klass) if klass else None
    j = state.data.get("jupyter")
    if h:  # started on login, through the hub
        return {"url": f"{h['url']}user/{state.name}/lab", "port": j["port"] if j else None, "bind": "127.0.0.1",
                "trainee": confine.user_name(state.name), "hub": True,
                "running": procs.recorded_alive(state, "jupyter") and procs.recorded_alive(state, "forward")}
    if not j:
        return None
    token = _token(state)
    return {"url": f"http://{url_host(j['bind'])}:{j['port']}/lab?token={token}" if token else None,
            "port": j["port"], "bind": j["bind"], "trainee": confine.user_name(state.name),
            "running": procs.recorded_alive(state, "jupyter") and procs.recorded_alive(state, "forward")}


def write_urls_csv(states: Sequence[State], path: Path) -> int:
    """``trainee,instance,url`` for every instance with a JupyterLab; returns how many rows."""
    rows = 0
    old = os.umask(0o077)  # tokens: for the instructor only
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["trainee", "instance", "url"])
            for s in states:
                i = info(s)
                if i and i["url"]:
                    w.writerow([s.data.get("meta", {}).get("trainee") or s.name, s.name, i["url"]])
                    rows += 1
    finally:
        os.umask(old)
    return rows


# ---------------------------------------------------------------- ports

@contextmanager
def ports_lock() -> Iterator[None]:
    from .accounts import lock_file
    from .state import run_root
    with lock_file(run_root() / ".ports.lock"):
        yield


def port_free(bind: str, port: int) -> bool:
    s = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def ports_taken() -> set[int]:
    """The ports instances and class hubs have claimed (bound or not yet); under :func:`ports_lock`."""
    from . import hub
    from .state import all_states
    taken = {s.data["jupyter"]["port"] for s in all_states() if s.data.get("jupyter")}
    for klass in hub.classes():
        st = hub.open_class(klass)
        taken |= set(st.data.get("hub", {}).get("ports", [])) if st else set()
    return taken


def assign_ports(states: Sequence[State], base: int, bind: str) -> None:
    """Port ``base + i`` for the i-th instance, skipping ports in use or claimed by another instance."""
    with ports_lock():
        taken = ports_taken()
        port = base
        for s in states:
            while port in taken or not port_free(bind, port):
                port += 1
                if port > 65535:
                    raise _error(f"no free TCP port from {base} up for the Jupyter forwarders")
            s.data["jupyter"] = {"port": port, "bind": bind, "sock": str(sock_path(s))}
            s.save()
            taken.add(port)


# ---------------------------------------------------------------- one server

def _config(state: State, t, token: str | None, kernel: str) -> dict:
    """The server's configuration; ``token`` None: a hub's single-user server (the hub's OAuth
    logs her in, :mod:`jupyterhub.singleuser` sets the identity provider)."""
    return {
        "ServerApp": {
            "sock": str(sock_path(state)), "sock_mode": "0600", "root_dir": str(t.home),
            "open_browser": False, "allow_remote_access": True,  # reached through the forwarder
            "kernel_spec_manager_class": "dnslab.kernelspecs.ConfinedKernelSpecManager",
            # not a login shell: /etc/profile would reset PATH (the lab tools, dnslab-node)
            "terminado_settings": {"shell_command": ["/bin/bash", "-i"]},
            # nbgrader's server extensions are the instructor's (grading reads the homes from outside);
            # importing them takes seconds per server
            "jpserver_extensions": {f"nbgrader.server_extensions.{e}": False for e in
                                    ("formgrader", "assignment_list", "course_list", "validate_assignment")}
            | {"jupyter_lsp": False},  # no language servers here; it probes for npm at start
        },
        **({"IdentityProvider": {"token": token}} if token else {}),
        "KernelSpecManager": {"allowed_kernelspecs": [kernel], "ensure_native_kernel": False},
        "MappingKernelManager": {"default_kernel_name": kernel},
        "KernelManager": {"transport": "ipc"},  # ip: <runtime dir>/kernel-<id>-ipc, absolute
        # opening a notebook signs it: the notary's secret and database are hers (the data dir is root's)
        "NotebookNotary": {"data_dir": str(state.work_dir / RUNTIME)},
    }


def _write_files(state: State, t, token: str | None) -> dict[str, str]:
    """Config and kernelspec of the server, in root's run dir (readable by the trainee's group);
    returns the environment it runs with."""
    from . import confine
    kernel = f"dnslab-{state.name}"
    etc, data = etc_dir(state), data_dir(state)
    etc.mkdir(mode=0o750, exist_ok=True)
    os.chown(etc, 0, t.gid)
    (etc / "labconfig").mkdir(mode=0o750, exist_ok=True)
    os.chown(etc / "labconfig", 0, t.gid)
    # nbgrader's JupyterLab menus are the instructor's (its server side is off for trainees)
    for cfg, content in ((etc / "jupyter_server_config.json", _config(state, t, token, kernel)),
                         (etc / "labconfig" / "page_config.json", {"disabledExtensions": {"@jupyter/nbgrader": True}})):
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o640)
        with os.fdopen(fd, "w") as f:
            json.dump(content, f, indent=1)
        os.chown(cfg, 0, t.gid)
    # jupyter_core migrates IPython 3 config once ~/.ipython exists (after her first kernel),
    # writing this marker here; a marker she cannot write tells it not to try
    marker = os.open(etc / "migrated", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
    os.fchown(marker, 0, t.gid)
    os.close(marker)
    spec = data / "kernels" / kernel
    spec.mkdir(parents=True, exist_ok=True)
    for d in (data, data / "kernels", spec):
        os.chmod(d, 0o755)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [confine.trainee_python(), "-P", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"DNS lab {state.name}", "language": "python", "interrupt_mode": "signal",
        "metadata": {"dnslab": {"instance": state.name}}}, indent=1))
    home = str(t.home)
    return {"JUPYTER_CONFIG_DIR": str(etc), "JUPYTER_DATA_DIR": str(data), "JUPYTER_PATH": str(data),
            "JUPYTER_RUNTIME_DIR": str(state.work_dir / RUNTIME),
            "JUPYTERLAB_SETTINGS_DIR": f"{home}/.jupyter/lab/user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": f"{home}/.jupyter/lab/workspaces",
            "IPYTHONDIR": f"{home}/.ipython"}


def _listen(bind: str, port: int) -> socket.socket:
    """The forwarder's listening socket on the host, bound here (root), handed to the forwarder."""
    s = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind, port))
        s.listen(128)
    except OSError as exc:
        s.close()
        raise _error(f"cannot listen on {bind} port {port} for a JupyterLab: {exc.strerror}") from None
    return s


def start_server(inst: Instance, hub_env: dict[str, str] | None = None) -> None:
    """The instance's broker, JupyterLab and forwarder (its port assigned in the state). With
    ``hub_env``, the hub's single-user server instead of a token's: that environment (the hub's
    OAuth client and API token for her) goes to a file of hers, 0600 in her working area, that
    her server's shell reads: never a command line, which /proc shows to everyone."""
    from . import broker, confine
    state = inst.state
    t = confine.require_trainee(state)
    broker.ensure(state)
    env = _write_files(state, t, None if hub_env else secrets.token_urlsafe(24))
    client = inst.default_vantage()
    python = confine.trainee_python()
    server = [python, "-P", "-m", "jupyterlab", "--no-browser"]
    if hub_env:
        confine.unpack_as(state.owner, state.work_dir, {HUB_ENV: "".join(
            f"{k}={shlex.quote(v)}\n" for k, v in sorted(hub_env.items()))}, mode=0o600)
        server = ["/bin/sh", "-c", 'set -a; . "$0" || exit 1; set +a; exec "$@"', str(state.work_dir / HUB_ENV),
                  python, "-P", "-m", "jupyterhub.singleuser"]
    procs.spawn(state, "jupyter", confine.enter_argv(state, client, t, server, env), log_path(state))
    j = state.data["jupyter"]
    listener = _listen(j["bind"], j["port"])
    try:
        fd = listener.fileno()
        argv = confine.enter_argv(state, client, t, [python, "-P", "-m", "dnslab.forward", "--fd", str(fd),
                                                     "--unix", str(sock_path(state))])
        procs.spawn(state, "forward", argv, forward_log(state), pass_fds=(fd,))
    finally:
        listener.close()


def _answers(state: State, token: str | None, with_token: bool = True) -> int | None:
    """The HTTP status of /api/status through the forwarder, None if nothing answers."""
    j = state.data["jupyter"]
    conn = http.client.HTTPConnection(connect_host(j["bind"]), j["port"], timeout=2.0)
    try:
        conn.request("GET", "/api/status" + (f"?token={token}" if with_token else ""))
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()



def wait_ready(states: Sequence[State], timeout: float = READY_TIMEOUT) -> None:
    """Until every server answers 200 through its forwarder (no fixed sleep).

    :raises BackendError: a server or forwarder exited, or none answered in time (log tail)
    """
    pending = {s.name: s for s in states}
    tokens = {s.name: _token(s) for s in states}
    deadline = time.monotonic() + timeout
    while pending:
        for name, s in list(pending.items()):
            if _answers(s, tokens[name]) == 200:
                del pending[name]
                continue
            for key, log in (("jupyter", log_path(s)), ("forward", forward_log(s))):
                if not procs.recorded_alive(s, key):
                    what = "JupyterLab" if key == "jupyter" else f"the forwarder on port {s.data['jupyter']['port']}"
                    raise _error(f"instance {name}: {what} exited; its log ends with:\n{safeio.tail(log)}")
        if pending and time.monotonic() > deadline:
            s = next(iter(pending.values()))
            raise _error(f"instance {s.name}: JupyterLab did not answer in {timeout:.0f}s; "
                         f"its log ends with:\n{safeio.tail(log_path(s))}")
        if pending:
            time.sleep(0.1)


def check_options(port_base: int, bind: str, what: str = "--jupyter") -> None:
    """Bad ``--jupyter-port``/``--jupyter-bind`` (``what``: the options' prefix) are input
    errors, found before anything is made."""
    from .errors import InputError
    if not 1 <= port_base <= 65535:
        raise InputError(f"{what}-port {port_base}: not a TCP port")
    try:
        s = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET, socket.SOCK_STREAM)
    except OSError as exc:
        raise InputError(f"{what}-bind {bind}: {exc.strerror}") from None
    try:
        s.bind((bind, 0))
    except (OSError, ValueError) as exc:
        raise InputError(f"{what}-bind {bind}: not an address of this host "
                         f"({getattr(exc, 'strerror', None) or exc})") from None
    finally:
        s.close()


def start(instances: Sequence[Instance], port_base: int = DEFAULT_PORT, bind: str = DEFAULT_BIND,
          progress: Callable[[str], None] = lambda m: None) -> None:
    """Trainee user, broker, JupyterLab and forwarder for each instance; returns once every
    server answers. On failure the caller removes the instances (``lab.up`` does)."""
    if not instances:
        return
    check_options(port_base, bind)
    t0 = time.monotonic()
    assign_ports([i.state for i in instances], port_base, bind)
    with ThreadPoolExecutor(max_workers=min(8, len(instances))) as pool:
        list(pool.map(start_server, instances))
    wait_ready([i.state for i in instances])
    progress(f"{len(instances)} JupyterLab server(s) answer, {time.monotonic() - t0:.2f}s after their start")
