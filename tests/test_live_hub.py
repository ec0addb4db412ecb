"""The class at one address: `dnslab up --trainees R --hub`, for real. Trainees log in at the
hub (over TLS here, with a certificate made for the test), their server starts inside their
own lab on login, as them; another trainee's server and the admin pages are refused; the
instructor reaches the class's live view, the hub's admin page and `dnslab class status`, never
a trainee's server; drills and resets from the view keep each trainee's values and notebooks;
an idle server is culled and comes back, work kept; `down` leaves nothing. The trainee side acts only through what a trainee has: the hub's login form,
her API tokens, her server."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

try:
    from . import livelab, traineeclient
except ImportError:
    import livelab
    import traineeclient

from dnslab import accounts, confine, hub, lineserver
from dnslab.lab import Instance
from dnslab.procs import start_time
from dnslab.state import State

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces, users)", allow_module_level=True)

IDLE = 20  # seconds: the culler stops an idle server after this (checking every 10 s)


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def descendants(top: int) -> dict[int, str]:
    """Every process below ``top``: pid -> command line."""
    parent = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (st := livelab.proc_stat(entry.name)) is not None:
            parent[int(entry.name)] = st[1]
    out = {}
    for pid in parent:
        p = pid
        while p in parent and p != top:
            p = parent[p]
        if p == top and pid != top:
            try:
                out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                pass
    return out


class HubClass:
    """Two trainees and their hub, brought up by the real CLI."""

    def __init__(self, tmp: Path) -> None:
        self.names = [livelab.unique_name("ha"), livelab.unique_name("hb")]
        self.klass = livelab.unique_name("hc")
        self.roster = tmp / f"{self.klass}.csv"
        self.roster.write_text("trainee\n" + "".join(f"{n}\n" for n in self.names))
        self.cert, self.key = tmp / "hub.crt", tmp / "hub.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        self.port = _free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.up = None
        self.passwords: dict[str, str] = {}

    def login(self, user: str, password: str | None = None) -> traineeclient.HubTrainee:
        return traineeclient.HubTrainee(self.url, user, password or self.passwords[user])


@pytest.fixture(scope="module")
def hc(tmp_path_factory):
    k = HubClass(tmp_path_factory.mktemp("hub"))
    for n in k.names:
        livelab.remove(n)
    try:
        k.up = livelab.cli("up", "dns-basics", "--trainees", str(k.roster), "--hub", "--hub-port", str(k.port),
                           "--hub-cert", str(k.cert), "--hub-key", str(k.key), "--idle-timeout", str(IDLE),
                           timeout=300)
        assert k.up.returncode == 0, livelab.explain(k.up)
        with open(hub.class_dir(k.klass) / "logins.csv") as f:
            k.passwords = {row["user"]: row["password"] for row in csv.DictReader(f)}
        yield k
    finally:
        for n in k.names:
            try:
                livelab.remove(n)
            finally:
                accounts.remove(n, purge_home=True)
        hub.stop(k.klass)


def test_one_address_and_the_logins(hc):
    assert f"the class's JupyterHub: {hc.url}/ (instructor: {hc.url}/services/class/" in hc.up.stdout
    d = hub.class_dir(hc.klass)
    assert set(hc.passwords) == {*hc.names, "instructor"}
    assert os.stat(d / "logins.csv").st_mode & 0o777 == 0o600  # the passwords: root's only
    hashes = (d / "logins.json").read_text()
    assert not any(p in hashes for p in hc.passwords.values()) and "scrypt$" in hashes
    # the hub and its proxy run as the hub's unprivileged user, never as root
    st = hub.open_class(hc.klass)
    uid = accounts.service_user(hub.HUB_USER, hub.HUB_HOME, "jupyterhub")[0]
    commands = descendants(st.data["procs"]["hub"]["pid"])
    hub_procs = [p for p, c in commands.items() if "-m jupyterhub" in c or "configurable-http-proxy" in c]
    assert hub_procs and all(os.stat(f"/proc/{p}").st_uid == uid for p in hub_procs), commands


def test_servers_are_prestarted_in_the_background(hc):
    ins = hc.login("instructor")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = ins.hub_api("/users")
        ready = {u["name"] for u in json.loads(body) if (u.get("servers") or {}).get("", {}).get("ready")}
        if ready >= set(hc.names):
            break
        time.sleep(0.5)
    else:
        pytest.fail(f"servers ready without a login: {ready}")


def test_login_starts_her_server_in_her_own_lab(hc):
    a = hc.login(hc.names[0])
    assert a.status == 200
    a.wait_server()
    t = confine.find_trainee(hc.names[0])
    r = a.run("import dnslab, json, os\nlab = dnslab.attach()\n"
              "print('RESULT' + json.dumps({'uid': os.getuid(), 'instance': lab.name, "
              "'txt': lab.dig('nic.test', 'TXT').answer[0][0].to_text()}))")
    assert r == {"uid": t.uid, "instance": hc.names[0], "txt": '"the registry of test."'}


def test_wrong_or_unknown_logins_are_refused(hc):
    assert hc.login(hc.names[0], "not-her-password").status == 403
    assert hc.login("nobody-here", "x").status == 403
    assert hc.login(hc.names[0], hc.passwords[hc.names[1]]).status == 403  # a neighbour's password


def test_another_trainees_server_and_the_admin_pages_are_refused(hc):
    a, b = hc.login(hc.names[0]), hc.login(hc.names[1])
    a.wait_server()
    b.wait_server()
    # a's token and a's browser cookie, on b's server and on the hub's admin side
    assert traineeclient.http(f"{b.base}/api/status", headers={"Authorization": f"token {a.token}"})[0] == 403
    status, _ = traineeclient.http(f"{b.base}/api/contents", opener=a.opener)
    assert status in (403, 404), status
    assert a.hub_api("/users")[0] == 403
    assert a.hub_api(f"/users/{hc.names[1]}")[0] == 404  # not even told she exists
    assert a.hub_api(f"/users/{hc.names[1]}/server", "DELETE")[0] in (403, 404)
    assert traineeclient.http(f"{hc.url}/hub/admin", opener=a.opener)[0] == 403
    # nor through what her kernel has: the class helper's socket is the hub's alone
    r = a.run("import json, socket\nout = {}\nfor p in [%r, %r]:\n"
              "    s = socket.socket(socket.AF_UNIX)\n"
              "    try:\n        s.connect(p); out[p] = 'connected'\n"
              "    except OSError as e:\n        out[p] = type(e).__name__\n"
              "print('RESULT' + json.dumps(out))" % (str(hub.class_dir(hc.klass) / "classd.sock"),
                                                    "/run/dnslab/class.x/classd.sock"))
    assert set(r.values()) <= {"PermissionError", "FileNotFoundError"}, r


def view(k: traineeclient.HubTrainee, path: str = "", body: dict | None = None) -> tuple[int, bytes]:
    """The class's live view as her (or his) browser uses it: the page's xsrf token on a POST."""
    url = f"{k.hub}/services/class/{path}"
    if body is None:
        return traineeclient.http(url, opener=k.opener)
    status, page = traineeclient.http(f"{k.hub}/services/class/", opener=k.opener)
    token = page.decode().split('<meta name="xsrf" content="', 1)[1].split('"', 1)[0] if status == 200 else ""
    return traineeclient.http(url, "POST", body, headers={"X-XSRFToken": token}, opener=k.opener, timeout=300)


def test_the_instructor_sees_the_class_not_the_servers(hc):
    ins = hc.login("instructor")
    assert ins.status == 200
    status, page = view(ins)
    assert status == 200 and b'<table id="grid">' in page
    deadline = time.monotonic() + 60
    while True:  # the class helper polls the labs every few seconds
        status, body = view(ins, "api/status")
        assert status == 200, body
        snap = json.loads(body)["status"]
        if all(t["checks"] for t in snap["trainees"]) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert {t["instance"] for t in snap["trainees"]} == set(hc.names)
    assert {"lab-delegation", "lab-mx"} <= set(snap["checks"]) and set(snap["faults"]) == {"lame-glue", "mx-removed"}
    assert {t["id"]: t["judged"] for t in snap["tasks"]}["report-answer"] == "answer"
    for t in snap["trainees"]:  # the exercise's fault is there, waiting for each trainee's repair
        assert t["health"] == "ok" and t["checks"]["lab-delegation"] is False and t["checks"]["root-aa"] is True, t
        assert t["tasks"]["fix-delegation"] == 0 and t["tasks"]["report-answer"] is None and not t["stuck"]
    # the same data from the command line
    res = livelab.cli("class", "status", "--class", hc.klass, "--json")
    assert res.returncode == 0, livelab.explain(res)
    cli = json.loads(res.stdout)
    assert cli["checks"] == snap["checks"] and {t["instance"] for t in cli["trainees"]} == set(hc.names)
    res = livelab.cli("class", "status", "--class", hc.klass)
    assert res.returncode == 0 and all(n in res.stdout for n in hc.names), livelab.explain(res)
    # the hub's user list and admin page, but no trainee's server: by cookie nor by token
    status, body = ins.hub_api("/users")
    assert status == 200 and {u["name"] for u in json.loads(body)} >= set(hc.names)
    assert traineeclient.http(f"{hc.url}/hub/admin", opener=ins.opener)[0] == 200
    a = hc.login(hc.names[0])
    a.wait_server()
    assert traineeclient.http(f"{a.base}/lab", opener=ins.opener)[0] == 403
    assert traineeclient.http(f"{a.base}/api/status", headers={"Authorization": f"token {ins.token}"})[0] == 403
    # and a trainee has no live view: not the page, not its API, not its buttons
    assert view(a)[0] == 403
    assert traineeclient.http(f"{hc.url}/services/class/api/status",
                              headers={"Authorization": f"token {a.token}"})[0] == 403
    assert view(a, "api/reset", {"instance": hc.names[1]})[0] == 403


@contextlib.contextmanager
def busy(trainee: traineeclient.HubTrainee):
    """She keeps working (a request to her server every 2 s) while the instructor acts: her
    server is never idle long enough (IDLE) for the culler, however long the instructor takes."""
    done = threading.Event()

    def work():
        while not done.wait(2):
            trainee.api("/api/contents", timeout=5)  # fails while a reset restarts her server
    worker = threading.Thread(target=work)
    worker.start()
    try:
        yield
    finally:
        done.set()
        worker.join()


def test_drills_and_resets_keep_her_values_and_notebooks(hc):
    name = hc.names[0]
    ins, a = hc.login("instructor"), hc.login(name)
    a.wait_server()
    with busy(a):
        _drill_and_reset(hc, ins, a, name)


def _drill_and_reset(hc, ins, a, name):
    assert a.put("mine.txt", "her notes") == 201
    before = Instance.open(name)
    seed, www = before.state.data["seed"], before.plan.values["www_lab"]
    status, body = view(ins, "api/break", {"fault": "mx-removed", "instance": name})
    assert status == 200 and json.loads(body)["broken"] == [name], body
    inst = Instance.open(name)
    assert inst.state.data["faults"] == ["lame-glue", "mx-removed"]
    assert not inst.query("lab.test", "MX", server="sld-nsd").answer  # her lab lost its MX, the other did not
    assert Instance.open(hc.names[1]).query("lab.test", "MX", server="sld-nsd").answer
    status, body = view(ins, "api/break", {"fault": "no-such-fault"})
    assert status == 400 and "no fault 'no-such-fault'" in json.loads(body)["error"], body
    # reset: her lab as first made (the same values), her files kept, her server back where it was;
    # the hub polling her server meanwhile is told it runs (told otherwise, the hub forgets it)
    polls, resetting = [], threading.Event()

    def poll_as_the_hub():
        while not resetting.is_set():
            polls.append(lineserver.call(hub.class_dir(hc.klass) / "classd.sock", {"op": "poll", "user": name}, 120.0))
            time.sleep(0.05)
    poller = threading.Thread(target=poll_as_the_hub)
    poller.start()
    try:
        status, body = view(ins, "api/reset", {"instance": name})
    finally:
        resetting.set()
        poller.join()
    assert polls and all(p == {"ok": True, "running": True} for p in polls), polls
    assert status == 200 and json.loads(body) == {"ok": True, "reset": name, "server": True}, body
    inst = Instance.open(name)
    assert inst.state.data["seed"] == seed and inst.plan.values["www_lab"] == www
    assert inst.state.data["faults"] == ["lame-glue"] and inst.query("lab.test", "MX", server="sld-nsd").answer
    a.wait_server()
    assert a.get("mine.txt") == (200, b"her notes")
    r = a.run("import dnslab, json\nprint('RESULT' + json.dumps(dnslab.attach().dig('www.lab.test', 'A', "
              "at='sld-nsd', rd=False).answer[0][0].address))")
    assert r == www


def test_an_idle_server_is_culled_and_comes_back_with_her_work(hc):
    name = hc.names[1]
    b = hc.login(name)
    b.wait_server()
    assert b.put("kept.txt", "her work") == 201
    b.api("/api/kernels")  # the last activity
    deadline = time.monotonic() + IDLE * 6
    while time.monotonic() < deadline:
        status, body = b.hub_api(f"/users/{name}")
        if status == 200 and not json.loads(body).get("server") and not json.loads(body).get("pending"):
            break
        time.sleep(0.5)
    else:
        pytest.fail("the idle server was not culled")
    assert not State.open(name).data.get("jupyter")  # her server, forwarder and relay are gone
    again = hc.login(name)
    again.wait_server()
    assert again.get("kept.txt") == (200, b"her work")


def test_zz_down_removes_the_hub(hc):
    st = hub.open_class(hc.klass)
    pids = [rec["pid"] for rec in st.data["procs"].values()]
    data = hub.data_dir(hc.klass)
    res = livelab.cli("down", *hc.names, "--purge")
    assert res.returncode == 0, livelab.explain(res)
    assert not hub.class_dir(hc.klass).exists() and not data.exists()
    assert all(start_time(p) is None for p in pids)  # gone (or a zombie of ours, waiting to be reaped)
    hub_uid = accounts.service_user(hub.HUB_USER, hub.HUB_HOME, "jupyterhub")[0]
    assert [p for p in os.listdir("/proc") if p.isdigit() and hub_uid in accounts.uids_of(p)
            and livelab.proc_stat(p) and livelab.proc_stat(p)[0] not in ("Z", "X")] == []
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections in TIME_WAIT aside
        s.bind(("127.0.0.1", hc.port))  # nothing listens on the hub's port any more
        s.listen()
    finally:
        s.close()
