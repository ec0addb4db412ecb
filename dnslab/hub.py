"""One address for a class: its JupyterHub, the trainees' servers started on login.

``start`` (root, from ``dnslab up --trainees R --hub``) gives a class, once its labs are up:

- a login per trainee (user = instance name) and one for the instructor (``instructor``, a
  role that reaches the class's live view and the hub's admin page, never a trainee's server:
  see :data:`INSTRUCTOR_SCOPES`): random passwords, in clear only in ``logins.csv`` (root's, 0600), as scrypt
  hashes for the hub;
- the class helper (:mod:`dnslab.classd`, root): the hub's only way to start, poll and stop a
  trainee's server, a closed list of operations on a socket only the hub's user may use;
- JupyterHub and its proxy (configurable-http-proxy, Debian's) as the unprivileged system user
  ``_dnslab-hub``, in a PID namespace of their own (stopping it stops them all), seeing the
  checkout at :data:`dnslab.confine.CODE` as trainees do; the hub's database and cookie secret
  in ``/var/lib/dnslab/hub/<class>`` (the hub user's, 0700); the idle-culler and the
  instructor's live view (:mod:`dnslab.classview`, at ``/services/class/``) as hub services,
  and (unless told not to) :mod:`dnslab.prestart`, which starts every trainee's server in the
  background while the class is already usable.

A trainee's server runs as her in her client node (:func:`dnslab.jupyter.start_server`), behind
a forwarder on a loopback port of the host; it reaches the hub's API at 127.0.0.1:8081 *inside
her node*, a socket root made there and handed to a relay that runs as the hub's user on the
host (:func:`start_relay`). ``stop`` (``down`` of the class's last instance) ends everything.
"""
from __future__ import annotations

import csv
import hashlib
import hmac
import http.client
import json
import os
import secrets
import shutil
import socket
import ssl
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import procs, safeio
from .errors import EnvError, InputError
from .state import State, run_root

if TYPE_CHECKING:
    from .lab import Instance

HUB_USER = "_dnslab-hub"
HUB_HOME = Path("/var/lib/dnslab/hub")
ADMIN = "instructor"
DEFAULT_PORT = 8000
DEFAULT_BIND = "127.0.0.1"
DEFAULT_IDLE = 3600
SERVER_PORTS = 18900           # loopback ports of the trainees' forwarders, from here up
READY_TIMEOUT = 60.0
VIEW = "class"                 # the live view's service name: /services/class/
# The instructor's role. No access:servers: every server of the class shares the hub's origin,
# so a page a trainee serves from her server, opened by the instructor, would act as him.
INSTRUCTOR_SCOPES = ["admin-ui", "list:users", "read:users", "servers", f"access:services!service={VIEW}"]
ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


# ---------------------------------------------------------------- the class's state

def class_dir(klass: str) -> Path:
    """``/run/dnslab/class.<class>``: a dot keeps it out of every listing of instances."""
    return run_root() / f"class.{klass}"


def data_dir(klass: str) -> Path:
    return HUB_HOME / klass


def open_class(klass: str) -> State | None:
    """The hub's state of a class, None when it has no hub."""
    d = class_dir(klass)
    try:
        return State(d, json.loads((d / "state.json").read_text()))
    except (OSError, ValueError):
        return None


def classes() -> list[str]:
    root = run_root()
    return sorted(d.name[len("class."):] for d in root.glob("class.*") if d.is_dir()) if root.is_dir() else []


def hub_ids() -> tuple[int, int]:
    from . import accounts
    return accounts.service_user(HUB_USER, HUB_HOME, "jupyterhub")


def info(klass: str) -> dict | None:
    """The class's hub: url, port, bind, running, helper; None without a hub."""
    st = open_class(klass)
    if st is None:
        return None
    h = st.data["hub"]
    return {"class": klass, "url": h["url"], "port": h["port"], "bind": h["bind"],
            "logins": str(st.dir / "logins.csv"),
            "running": procs.recorded_alive(st, "hub") and procs.recorded_alive(st, "classd")}


# ---------------------------------------------------------------- starting and stopping

def check_options(klass: str | None, port: int, bind: str, cert: str | None, key: str | None) -> None:
    """Bad hub options are input errors, found before anything is made."""
    from .jupyter import check_options as check_bind
    if not klass:
        raise InputError("--hub serves a class: give the roster with --trainees")
    if class_dir(klass).exists():
        raise InputError(f"class {klass} has a hub already: `dnslab down` its instances first")
    check_bind(port, bind, what="--hub")
    from .jupyter import port_free
    if not port_free(bind, port):
        raise InputError(f"--hub-port {port}: in use on {bind}; choose another")
    if bool(cert) != bool(key):
        raise InputError("--hub-cert and --hub-key go together (a PEM certificate and its key)")
    for flag, path in (("--hub-cert", cert), ("--hub-key", key)):
        if path and not Path(path).is_file():
            raise InputError(f"{flag} {path}: no such file")


def _password() -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(3))


def _free_port(start: int, taken: set[int]) -> int:
    from .jupyter import port_free
    port = start
    while port in taken or not port_free("127.0.0.1", port):
        port += 1
    return port


def _write(path: Path, text: str, mode: int, gid: int = 0) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(path, 0, gid)
    os.chmod(path, mode)


def activity_every(idle: int) -> int:
    """Seconds between activity reports to the hub: a quarter of the idle timeout (so a server in
    use is never taken for idle), within JupyterHub's default of 5 minutes."""
    return max(2, min(300, idle // 4))


def _config(st: State, klass: str, users: Sequence[str], idle: int, cert: bool, prestart: bool) -> str:
    from .confine import trainee_python
    h, d = st.data["hub"], data_dir(klass)
    every = activity_every(idle)
    scheme = "https" if cert else "http"
    host = f"[{h['bind']}]" if ":" in h["bind"] else h["bind"]
    python = trainee_python()
    bind_url, api_url = f"{scheme}://{host}:{h['port']}/", f"http://127.0.0.1:{h['api_port']}"
    proxy_url, db_url = f"http://127.0.0.1:{h['proxy_port']}", f"sqlite:///{d}/jupyterhub.sqlite"
    lines = [
        "# the JupyterHub of one dnslab class, written by `dnslab up --hub`; read by the hub's user",
        "c = get_config()  # noqa",
        "from dnslab.hubplugins import landing",
        "c.JupyterHub.default_url = landing",
        f"c.JupyterHub.bind_url = {bind_url!r}",
        f"c.JupyterHub.hub_bind_url = {api_url!r}",
        f"c.JupyterHub.db_url = {db_url!r}",
        f"c.JupyterHub.cookie_secret_file = {str(d / 'cookie_secret')!r}",
        "c.JupyterHub.cleanup_servers = False  # dnslab stops them, with their labs",
        "c.JupyterHub.authenticator_class = 'dnslab.hubplugins.ClassAuthenticator'",
        f"c.ClassAuthenticator.logins_file = {str(st.dir / 'logins.json')!r}",
        f"c.Authenticator.allowed_users = {set(users) | {ADMIN}!r}",
        "c.JupyterHub.spawner_class = 'dnslab.hubplugins.LabSpawner'",
        f"c.LabSpawner.helper_socket = {str(st.dir / 'classd.sock')!r}",
        "c.Spawner.default_url = '/lab'",
        "c.Spawner.start_timeout = 120",
        "c.Spawner.http_timeout = 60",
        # activity reaches the hub (servers report it, the hub reads the proxy's) often enough for
        # the idle timeout: with the defaults (5 min) a busy server looks idle under a short one
        f"c.Spawner.environment = {{'JUPYTERHUB_ACTIVITY_INTERVAL': '{every}'}}",
        f"c.JupyterHub.last_activity_interval = {every}",
        "c.ConfigurableHTTPProxy.command = ['configurable-http-proxy']",
        f"c.ConfigurableHTTPProxy.api_url = {proxy_url!r}",
        f"c.ConfigurableHTTPProxy.auth_token = {secrets.token_hex(32)!r}",
        f"c.ConfigurableHTTPProxy.pid_file = {str(d / 'proxy.pid')!r}",
        "c.JupyterHub.services = [{'name': 'idle-culler', 'command': "
        f"[{python!r}, '-s', '-m', 'jupyterhub_idle_culler', '--timeout={idle}', "
        f"'--cull-every={max(5, min(300, idle // 2))}']}},",
        f"    {{'name': {VIEW!r}, 'url': 'http://127.0.0.1:{h['view_port']}', 'oauth_no_confirm': True, "
        f"'command': [{python!r}, '-s', '-m', 'dnslab.classview'], "
        f"'environment': {{'DNSLAB_CLASS_HELPER': {str(st.dir / 'classd.sock')!r}}}}}]",
        "c.JupyterHub.load_roles = [{'name': 'idle-culler', 'services': ['idle-culler'], 'scopes': "
        "['list:users', 'read:users:activity', 'read:servers', 'delete:servers']},",
        f"    {{'name': 'instructor', 'users': [{ADMIN!r}], 'scopes': {INSTRUCTOR_SCOPES!r}}}]",
    ]
    if prestart:  # the trainees' servers started in the background, the class usable meanwhile
        lines += ["c.JupyterHub.services.append({'name': 'prestart', 'command': "
                  f"[{python!r}, '-s', '-m', 'dnslab.prestart', *{list(users)!r}]}})",
                  "c.JupyterHub.load_roles.append({'name': 'prestart', 'services': ['prestart'], "
                  "'scopes': ['list:users', 'read:users', 'servers']})"]
    if cert:
        lines += [f"c.JupyterHub.ssl_cert = {str(st.dir / 'hub.crt')!r}",
                  f"c.JupyterHub.ssl_key = {str(st.dir / 'hub.key')!r}"]
    return "\n".join(lines) + "\n"


def hub_argv(argv: Sequence[str], cwd: str = "/", pid_namespace: bool = False) -> list[str]:
    """A root-run command line that runs ``argv`` as the hub's user, seeing the checkout at
    ``CODE`` in a mount namespace of its own (and with ``pid_namespace``, in a PID namespace
    whose processes all end with it), with a clean environment, no capabilities."""
    from .confine import CODE, REPO
    uid, gid = hub_ids()
    ns = ["--pid", "--fork", "--kill-child=SIGTERM"] if pid_namespace else []
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(HUB_HOME),
           "PYTHONPATH": str(CODE), "NODE_PATH": "/usr/share/nodejs"}  # Debian's node modules, whatever node runs
    CODE.mkdir(parents=True, exist_ok=True, mode=0o755)
    return ["unshare", "--mount", "--propagation", "private", *ns, "--", "sh", "-c",
            'mount --bind "$0" "$1" || exit 1; shift; exec "$@"', str(REPO), str(CODE),
            "env", "-i", *(f"{k}={v}" for k, v in env.items()),
            "setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", "--no-new-privs", "--",
            "sh", "-c", 'cd "$0" || exit 1; exec "$@"', cwd, *argv]


def start(klass: str, trainees: dict[str, str], port: int = DEFAULT_PORT, bind: str = DEFAULT_BIND,
          cert: str | None = None, key: str | None = None, idle: int = DEFAULT_IDLE, prestart: bool = True,
          progress: Callable[[str], None] = lambda m: None) -> dict:
    """The class's logins, helper, hub and proxy for ``trainees`` (instance -> the trainee's
    name); returns :func:`info` once the hub answers. It may start before their labs: logins
    work at once, servers start once a lab is ready. Until :func:`adopt`, the class is this
    process's (a ``down`` meanwhile leaves it alone; if this process dies, the next one stops it).

    :raises InputError: a trainee whose instance is named like the instructor's login
    :raises EnvError: the hub or its helper did not start (with its log's tail); nothing is left
    """
    from . import jupyter
    t0 = time.monotonic()
    users = list(trainees)
    if ADMIN in users:
        raise InputError(f"instance name {ADMIN!r} is the hub's instructor login: rename that trainee in the roster")
    uid, gid = hub_ids()
    d = class_dir(klass)
    d.mkdir(mode=0o750)
    os.chown(d, 0, gid)
    st = State(d, {"instance": f"class.{klass}", "class": klass, "resources": [], "procs": {}, "phase": "creating",
                   "owner_pid": os.getpid()})
    try:
        with jupyter.ports_lock():
            taken = jupyter.ports_taken()
            api_port = _free_port(DEFAULT_PORT + 81, taken | {port})
            proxy_port = _free_port(api_port + 1, taken | {port})
            view_port = _free_port(proxy_port + 1, taken | {port})
            scheme = "https" if cert else "http"
            st.data["hub"] = {"port": port, "bind": bind, "api_port": api_port, "proxy_port": proxy_port,
                              "view_port": view_port, "url": f"{scheme}://{jupyter.url_host(bind)}:{port}/",
                              "ports": [port, api_port, proxy_port, view_port], "users": users}
            st.save()
        logins = {u: _password() for u in [ADMIN, *users]}
        with ThreadPoolExecutor(max_workers=4) as pool:  # scrypt lets go of the GIL
            hashes = dict(zip(logins, pool.map(hash_password, logins.values())))
        _write(d / "logins.json", json.dumps(hashes), 0o640, gid)
        rows = [["trainee", "instance", "user", "password", "url"]]
        rows += [[trainees[u] or u, u, u, logins[u], st.data["hub"]["url"]] for u in users]
        rows.append(["(instructor)", "", ADMIN, logins[ADMIN], st.data["hub"]["url"] + f"services/{VIEW}/"])
        _write(d / "logins.csv", "".join(_csv_line(r) for r in rows), 0o600)
        if cert:
            _write(d / "hub.crt", Path(cert).read_text(), 0o640, gid)
            _write(d / "hub.key", Path(key).read_text(), 0o640, gid)
        data = data_dir(klass)
        HUB_HOME.mkdir(parents=True, exist_ok=True, mode=0o755)
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(mode=0o700)
        os.chown(data, uid, gid)
        st.intend("hubdata", str(data))
        _write(d / "jupyterhub_config.py", _config(st, klass, users, idle, bool(cert), prestart), 0o640, gid)
        _start_helper(st, klass)
        procs.spawn(st, "hub", hub_argv([jupyter_python(), "-s", "-m", "jupyterhub", "-f",
                                         str(d / "jupyterhub_config.py")], cwd=str(data), pid_namespace=True),
                    d / "hub.log")
        _wait_hub(st)
        st.set_phase("ready")
    except BaseException:
        stop(klass)
        raise
    progress(f"JupyterHub of class {klass} answers at {st.data['hub']['url']}, "
             f"{time.monotonic() - t0:.2f}s after its start")
    return info(klass)


def jupyter_python() -> str:
    from .confine import trainee_python
    return trainee_python()


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<hash hex>``: what the hub keeps of a login (the root-only CSV keeps it
    in clear). The passwords are random (about 59 bits), so a light scrypt (4 MiB) suffices."""
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=1 << 12, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    try:
        kind, salt, _ = stored.split("$")
        return kind == "scrypt" and hmac.compare_digest(hash_password(password, bytes.fromhex(salt)), stored)
    except ValueError:
        return False


def _csv_line(row: list[str]) -> str:
    import io
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue()


def _start_helper(st: State, klass: str, timeout: float = 10.0) -> None:
    import sys
    from . import lineserver
    sock = st.dir / "classd.sock"
    proc = procs.spawn(st, "classd", [sys.executable, "-I", "-m", "dnslab.classd", klass], st.dir / "classd.log",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                            **{k: v for k, v in os.environ.items() if k in ("DNSLAB_RUN", "DNSLAB_LABS")}})
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise EnvError(f"the class helper of {klass} exited ({proc.returncode}): "
                           f"{safeio.tail(st.dir / 'classd.log')}")
        try:
            if sock.exists() and lineserver.call(sock, {"op": "ping"}, timeout=2.0).get("ok"):
                return
        except (OSError, ValueError, lineserver.Unreachable):
            pass
        if time.monotonic() > deadline:
            raise EnvError(f"the class helper of {klass} did not answer in {timeout:.0f}s: "
                           f"{safeio.tail(st.dir / 'classd.log')}")
        time.sleep(0.02)


def _health(st: State) -> int | None:
    """The HTTP status of the hub's /hub/health through its public port, None if nothing answers."""
    h = st.data["hub"]
    from .jupyter import connect_host
    host = connect_host(h["bind"])
    if h["url"].startswith("https"):
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # our own hub, whatever its certificate
        conn = http.client.HTTPSConnection(host, h["port"], timeout=2.0, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, h["port"], timeout=2.0)
    try:
        conn.request("GET", "/hub/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _wait_hub(st: State, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while _health(st) != 200:
        if not procs.recorded_alive(st, "hub"):
            raise EnvError(f"JupyterHub of class {st.data['class']} exited; its log ends with:\n"
                           f"{safeio.tail(st.dir / 'hub.log')}")
        if time.monotonic() > deadline:
            raise EnvError(f"JupyterHub of class {st.data['class']} did not answer in {timeout:.0f}s; its log "
                           f"ends with:\n{safeio.tail(st.dir / 'hub.log')}")
        time.sleep(0.1)


def stop(klass: str) -> bool:
    """Stop the class's hub, proxy, services and helper (by recorded PID) and remove their
    files; the trainees' servers go with their instances. Returns whether there was a hub."""
    st = open_class(klass)
    d = class_dir(klass)
    if st is None and not d.exists():
        return False
    if st is not None:
        procs.stop_recorded([st])
        for path in st.resources("hubdata"):
            shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(d, ignore_errors=True)
    return True


def adopt(klass: str) -> None:
    """The class's labs are up: from now on the class goes with its last lab."""
    st = open_class(klass)
    if st is not None:
        st.data["owner_pid"] = 0
        st.save()


def stop_orphaned() -> list[str]:
    """Stop the hubs of classes that have no instance left (after ``down``, or for ``gc``),
    except one whose ``up`` is still making its labs."""
    from .state import all_states
    live = {s.data.get("meta", {}).get("class") for s in all_states()}
    return [k for k in classes() if k not in live and not ((st := open_class(k)) and st.owner_alive()) and stop(k)]


# ---------------------------------------------------------------- a trainee's way to the hub

def start_relay(inst: Instance, klass: str) -> None:
    """The hub's API at 127.0.0.1:8081 inside her client node: a socket root makes there, handed
    to a forwarder running as the hub's user on the host (in her cgroup: she pays for it)."""
    from .confine import join
    from .hubplugins import HUB_API_PORT
    st = open_class(klass)
    if st is None:
        raise EnvError(f"class {klass} has no hub")
    state = inst.state
    listener = inst.backend.socket(state, inst.default_vantage(), socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", HUB_API_PORT))
        listener.listen(64)
        fd = listener.fileno()
        argv = hub_argv([jupyter_python(), "-s", "-P", "-m", "dnslab.forward", "--fd", str(fd),
                         "--tcp", f"127.0.0.1:{st.data['hub']['api_port']}"])
        procs.spawn(state, "hubapi", [*join(state, "session"), *argv], state.dir / "hubapi.log", pass_fds=(fd,))
    except OSError as exc:
        raise EnvError(f"instance {inst.name}: cannot reach the hub from its client node: {exc.strerror}") from None
    finally:
        listener.close()
