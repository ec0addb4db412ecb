"""JupyterLab per trainee, for real: `dnslab up dns-basics --trainees roster.csv --jupyter`
gives two trainees each a server inside their own client node, as their own Unix user,
reached through a forwarder (also theirs) with a token. A kernel started through the server
(REST + websocket) and a terminal run as the trainee in the client namespace, resolve through
the lab, drive their own daemons (reload, control tools, a shell on every node of their lab),
and can read or reach nothing of the other trainee, the exercise sources or the host.
`down --purge` leaves no process, user, home, cgroup, mount, socket or port."""
from __future__ import annotations

import csv
import errno
import json
import os
import pwd
import re
import socket
import subprocess
from pathlib import Path

import pytest

try:
    from . import livelab, traineeclient
    from .traineeclient import http
except ImportError:
    import livelab
    import traineeclient
    from traineeclient import http

from dnslab import accounts, broker, cgroups, confine, homes, jupyter
from dnslab.backends.netns import node_ns
from dnslab.lab import Instance
from dnslab.procs import start_time
from dnslab.state import State, mounts_below, run_root

pytestmark = pytest.mark.lab
if os.geteuid() != 0:
    pytest.skip("live labs need root (network namespaces, users)", allow_module_level=True)

COURSE = Path(os.environ.get("DNSLAB_COURSE", "/var/lib/dnslab/course"))  # tests/conftest.py: our own
EXERCISES = livelab.REPO / "exercises"


def _free_base() -> int:
    """A port base of our own: other workers and engineers run Jupyter labs too (up skips taken ports)."""
    return 20000 + (os.getpid() * 37) % 30000


class Class:
    """Two trainees brought up with --jupyter by the real CLI."""

    def __init__(self, tmp: Path) -> None:
        self.names = [livelab.unique_name("ja"), livelab.unique_name("jb")]
        self.roster = tmp / "roster.csv"
        self.roster.write_text("trainee,email\n" + "".join(f"{n},{n}@example.test\n" for n in self.names))
        self.base = _free_base()
        self.inodes: set[int] = set()
        self.up = None
        self.info: dict[str, dict] = {}

    def state(self, name: str) -> State:
        return State.open(name)

    def trainee(self, name: str) -> traineeclient.Trainee:
        return traineeclient.Trainee(jupyter.info(State.open(name))["url"])


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    k = Class(tmp_path_factory.mktemp("jupyter"))
    for n in k.names:
        livelab.remove(n)
    try:
        k.up = livelab.cli("up", "dns-basics", "--trainees", str(k.roster), "--jupyter",
                           "--jupyter-port", str(k.base), "--json", timeout=300)
        assert k.up.returncode == 0, livelab.explain(k.up)
        for n in k.names:
            k.inodes |= livelab.ns_inodes(n)
        yield k
    finally:
        for n in k.names:
            try:
                livelab.remove(n)
            finally:
                accounts.remove(n, purge_home=True)


def status_json(k: Class) -> dict[str, dict]:
    res = livelab.cli("status", "--json", "--fast")
    assert res.returncode == 0, livelab.explain(res)
    return {d["instance"]: d for d in json.loads(res.stdout) if d["instance"] in k.names}


PROBE = r'''
import errno, json, os, socket, subprocess
def err(e): return errno.errorcode.get(e.errno, str(e.errno))
def attempt(fn):
    try:
        fn(); return "ok"
    except OSError as e:
        return err(e)
def conn(host, port):
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET); s.settimeout(3)
    try:
        s.connect((host, port)); return "ok"
    except socket.timeout:
        return "timeout"
    except OSError as e:
        return err(e)
    finally:
        s.close()
def unix(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path); return "ok"
    except OSError as e:
        return err(e)
    finally:
        s.close()
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
out = {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
       "home": os.environ.get("HOME"), "instance": os.environ.get("DNSLAB_INSTANCE"),
       "env": sorted(os.environ),
       "caps": {k: st[k].strip() for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")}}
links = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout)
out["addrs"] = sorted(a["local"] for l in links for a in l["addr_info"] if a.get("scope") == "global")
out["dig"] = subprocess.run(["dig", "+short", "TXT", "nic.test"], capture_output=True, text=True, timeout=30).stdout.split("\n")[0]
out["read"] = {k: attempt(lambda p=p: os.listdir(p) if os.path.isdir(p) else open(p).read(1)) for k, p in READ.items()}
out["tmp"] = [l.split()[4] for l in open("/proc/self/mountinfo") if "dnslab-tmp" in l]
out["zone_write"] = attempt(lambda: open(ZONE, "a").close())
out["zone_rename"] = attempt(lambda: (os.rename(ZONE, ZONE + ".moved"), os.rename(ZONE + ".moved", ZONE)))
out["connect"] = {f"{h} {p}": conn(h, p) for h, p in CONNECT}
out["unix"] = {p: unix(p) for p in UNIX}
import dnslab
lab = dnslab.attach()
try:
    lab.reload("sld-knot"); out["reload"] = "ok"
except Exception as e:
    out["reload"] = repr(e)
out["node_uid"] = lab.exec("id -u", node="tld").strip()           # root of her own node
out["own_node_file"] = lab.exec("ls", node="tld").split()
def other_node(node):
    r = subprocess.run(["nsenter", f"--user=/run/dnslab/{OTHER}/userns", f"--net=/run/netns/dnslab-{OTHER}-{node}",
                        "id"], capture_output=True, text=True)
    return r.returncode
out["other_node"] = other_node("tld")
out["host_net"] = subprocess.run(["nsenter", "--net=/proc/1/ns/net", "true"], capture_output=True).returncode
from dnslab import broker
out["check"] = broker.call(None, "check", name="test-delegation")
try:
    out["other_broker"] = broker.call(OTHER, "status")
except Exception as e:
    out["other_broker"] = type(e).__name__ + ": " + str(e)
try:
    from ipykernel.connect import get_connection_file
    cf = get_connection_file()
    out["conn"] = {"file": cf, **{k: v for k, v in json.load(open(cf)).items() if k in ("transport", "ip")}}
except Exception as e:
    out["conn"] = repr(e)
print("RESULT" + json.dumps(out))
'''


def probe_code(k: Class, me: str, other: str, ports: list[int]) -> str:
    st = k.state(me)
    zone = str(st.node_dir("sld-knot") / "zones" / "example.test.zone")
    other_st = State.open(other)
    read = {
        "own_state": str(st.dir / "state.json"),
        "own_zone": zone,
        "other_home": str(confine.home_of(other)),
        "other_rundir": str(run_root() / other),
        "other_state": str(run_root() / other / "state.json"),
        "other_zone": str(other_st.node_dir("sld-knot") / "zones" / "example.test.zone"),
        "faults": str(st.lab_dir / "faults"),
        "course": str(COURSE),
        # the checkout as trainee processes see it (a bind mount of theirs: the real path may be
        # unreachable for them, or hidden under their private /tmp)
        "exercises": str(confine.CODE / "exercises"),
        "grader": str(confine.CODE / "grader"),
        "git": str(confine.CODE / ".git"),
        "exercises_real": str(EXERCISES),
        "root_home": "/root",
        "shadow": "/etc/shadow",
    }
    hosts = ["127.0.0.1"] + [a for a in livelab.host_addresses() if ":" not in a][:3]
    connect = [(h, p) for h in hosts for p in ports]
    unix = [str(jupyter.sock_path(other_st)), str(run_root() / other / "control.sock")]
    head = (f"READ = {json.dumps(read)}\nZONE = {zone!r}\nCONNECT = {json.dumps(connect)}\n"
            f"UNIX = {json.dumps(unix)}\nOTHER = {other!r}\n")
    return head + PROBE


def expect_confined(k: Class, me: str, other: str, r: dict, ports: list[int]) -> None:
    t = confine.find_trainee(me)
    assert t is not None
    assert (r["uid"], r["euid"], r["gid"], r["groups"]) == (t.uid, t.uid, t.gid, []), r
    assert r["home"] == str(t.home) and r["instance"] == me
    assert r["caps"] == {"CapInh": "0000000000000000", "CapPrm": "0000000000000000",
                         "CapEff": "0000000000000000", "CapBnd": "0000000000000000",
                         "CapAmb": "0000000000000000", "NoNewPrivs": "1"}, r["caps"]
    inst_client = [a.split("/")[0] for a in State.open(me) and
                   __import__("dnslab.lab", fromlist=["Instance"]).Instance.open(me).plan.nodes["client"].addresses]
    assert sorted(r["addrs"]) == sorted(inst_client), r["addrs"]
    assert r["dig"] == '"the registry of test."', r["dig"]  # (the exercise's fault breaks the second-level zones)
    reads = r["read"]
    assert reads["own_zone"] == "ok", reads
    for what in ("own_state", "faults", "other_home", "other_rundir", "other_state", "other_zone", "exercises",
                 "grader", "git", "root_home", "shadow"):
        assert reads[what] in ("EACCES",), (what, reads)
    assert reads["exercises_real"] in ("EACCES", "ENOENT"), reads  # ENOENT: a checkout under /tmp
    if COURSE.exists():
        assert reads["course"] == "EACCES", reads
    else:
        assert reads["course"] in ("EACCES", "ENOENT"), reads
    assert sorted(r["tmp"]) == ["/dev/shm", "/tmp", "/var/tmp"], r["tmp"]  # private temp dirs
    assert r["zone_write"] == "ok" and r["zone_rename"] == "ok", r  # her lab's files are hers
    for target, result in r["connect"].items():  # its own loopback refuses; the host has no route
        assert result != "ok", (target, r["connect"])
    assert all(v == "EACCES" for v in r["unix"].values()), r["unix"]
    assert r["reload"] == "ok", r["reload"]
    assert r["node_uid"] == "0" and "named.conf" in r["own_node_file"], r
    assert r["other_node"] != 0 and r["host_net"] != 0, r
    assert r["check"]["ok"] is True and r["check"]["results"][0]["passed"] is True, r["check"]
    assert "not yours" in str(r["other_broker"]) or "EACCES" in str(r["other_broker"]), r["other_broker"]
    assert not [e for e in r["env"] if e.startswith(("SUDO", "SSH", "PYTEST", "XDG"))], r["env"]


# ---------------------------------------------------------------- the tests

def test_up_prints_urls_and_status_lists_them(klass, tmp_path):
    data = {d["instance"]: d for d in json.loads(klass.up.stdout)}
    assert set(data) == set(klass.names)
    st = status_json(klass)
    for n in klass.names:
        assert data[n]["url"] == st[n]["url"] and st[n]["jupyter_running"] is True
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/lab\?token=[\w-]{20,}", st[n]["url"]), st[n]["url"]
        klass.info[n] = jupyter.info(State.open(n))
    assert len({i["port"] for i in klass.info.values()}) == 2
    assert all(i["port"] >= klass.base for i in klass.info.values())
    out = tmp_path / "urls.csv"
    res = livelab.cli("status", "--fast", "--urls-csv", str(out))
    assert res.returncode == 0, livelab.explain(res)
    rows = {r["trainee"]: r["url"] for r in csv.DictReader(out.open())}
    assert {n: rows.get(n) for n in klass.names} == {n: st[n]["url"] for n in klass.names}
    assert out.stat().st_mode & 0o077 == 0
    one = livelab.cli("status", klass.names[0])
    assert st[klass.names[0]]["url"] in one.stdout, livelab.explain(one)


def test_url_answers_with_token_only(klass):
    for n in klass.names:
        t = klass.trainee(n)
        assert t.api("/api/status")[0] == 200
        assert http(f"{t.base}/api/status")[0] == 403
        assert http(f"{t.base}/api/status?token=wrong{t.token}")[0] == 403
        status, body = http(jupyter.info(State.open(n))["url"])
        assert status == 200 and b"JupyterLab" in body
    a, b = (klass.trainee(n) for n in klass.names)
    assert http(f"{a.base}/api/status?token={b.token}")[0] == 403  # one trainee's token, not another's


def test_server_runs_in_the_client_namespace_as_the_trainee(klass):
    """The server process itself: the trainee's uid, the client node's network namespace,
    listening on nothing but its Unix socket (mode 0600)."""
    for n in klass.names:
        st = State.open(n)
        pid = st.data["procs"]["jupyter"]["pid"]
        t = confine.find_trainee(n)
        assert accounts.uids_of(str(pid)) == {t.uid}
        assert pid in cgroups.Group(n).pids("session")
        fwd = st.data["procs"]["forward"]["pid"]
        assert accounts.uids_of(str(fwd)) == {t.uid}  # the forwarder is hers too, in her client node
        assert os.stat(f"/proc/{fwd}/ns/net").st_ino == os.stat(f"/run/netns/{node_ns(n, 'client')}").st_ino
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{node_ns(n, 'client')}").st_ino
        sock = jupyter.sock_path(st)
        assert sock.is_socket() and sock.stat().st_mode & 0o777 == 0o600 and sock.stat().st_uid == t.uid
        tcp = subprocess.run(["ip", "netns", "exec", node_ns(n, "client"), "ss", "-Hltn"],
                             capture_output=True, text=True).stdout
        assert tcp.strip() == "", tcp
        mode = (st.dir.stat().st_mode & 0o777, st.dir.stat().st_gid)
        assert mode == (0o750, t.gid)
        ctl = broker.socket_path(n).stat()
        assert (ctl.st_mode & 0o777, ctl.st_uid, ctl.st_gid) == (0o660, 0, t.gid)


@pytest.mark.parametrize("who", [0, 1])
def test_kernel_through_the_server_is_confined(klass, who):
    me, other = klass.names[who], klass.names[1 - who]
    ports = [jupyter.info(State.open(n))["port"] for n in klass.names]
    r = klass.trainee(me).run(probe_code(klass, me, other, ports))
    expect_confined(klass, me, other, r, ports)
    assert r["conn"]["transport"] == "ipc", r["conn"]
    assert r["conn"]["ip"].startswith(str(State.open(me).work_dir / jupyter.RUNTIME) + "/"), r["conn"]


def test_kernelspecs_offered_and_planted_ones_refused(klass):
    n = klass.names[0]
    t = confine.find_trainee(n)
    trainee = klass.trainee(n)
    status, body = trainee.api("/api/kernelspecs")
    specs = json.loads(body)
    assert status == 200 and set(specs["kernelspecs"]) == {f"dnslab-{n}"} and specs["default"] == f"dnslab-{n}"
    planted = t.home / ".local" / "share" / "jupyter" / "kernels" / "planted"
    marker = t.home / "planted-ran"
    confine.write_as(t, planted / "kernel.json", json.dumps({"argv": ["/bin/sh", "-c", f"touch {marker}"],
                                                            "display_name": "x", "language": "python"}).encode())
    for name in ("planted", "python3"):
        status, body = trainee.api("/api/kernels", "POST", {"name": name})
        assert status >= 400, (name, status, body)
    assert not marker.exists()


def test_terminal_lands_in_the_lab_as_the_trainee(klass):
    n = klass.names[1]
    text = klass.trainee(n).terminal("echo U=$(id -u) A=$(ip -o -4 addr show scope global | awk '{print $4}') "
                                     "D=$(dig +short TXT nic.test) END$((6*7))")
    m = re.search(r"U=(\d+) A=(\S+) D=(.+?) END42", text)
    assert m, text
    t = confine.find_trainee(n)
    client = Instance.open(n).plan.nodes["client"]
    assert (int(m.group(1)), m.group(2), m.group(3)) == (t.uid, f"{client.address}/24", '"the registry of test."'), text


def test_broker_refuses_another_uid_and_bad_requests(klass):
    a, b = klass.names
    ta, tb = confine.find_trainee(a), confine.find_trainee(b)
    # a's uid with b's group passes the socket's file mode: SO_PEERCRED still says no
    code = f"from dnslab import broker; import json; print(json.dumps(broker.call({b!r}, 'status')))"
    forged = accounts.Trainee(ta.user, ta.uid, tb.gid, ta.home)  # run as trainee processes run: the checkout at CODE
    res = subprocess.run(confine.enter_argv(State.open(a), "client", forged, [confine.trainee_python(), "-c", code]),
                         capture_output=True, text=True, timeout=60, cwd="/")
    assert res.returncode == 0, res.stderr
    reply = json.loads(res.stdout)
    assert reply["ok"] is False and "may not use" in reply["error"], reply
    # exec and reload are the docker backend's (her nodes are the engine's there): here she does them herself
    assert broker.call(a, "reload", node="tld") == {"ok": False, "error": "run it yourself: your lab's nodes are "
                                                                          "yours to enter (dnslab-node NODE)"}
    assert broker.call(a, "exec", node="tld", argv=["id"])["ok"] is False
    assert broker.call(a, "frobnicate")["ok"] is False
    assert broker.call(a, "check", name=7)["ok"] is False
    assert broker.call(a, "status")["ok"] is True


def test_a_broken_zone_reload_reports_the_log(klass):
    """The trainee breaks her zone file (serial raised) and reloads: NSD stops serving the zone
    (SERVFAIL), and her reload says so, with her daemon's log naming the bad line; fixed again,
    the reload waits for the new serial."""
    n = klass.names[1]
    code = r"""
import dnslab, json, re
lab = dnslab.attach()
good = lab.read_zone("sld-nsd", "lab.test")
bump = lambda t, by: re.sub(r"(SOA\s+\S+\s+\S+\s+)(\d+)", lambda m: m.group(1) + str(int(m.group(2)) + by), t, count=1)
lab.zone_file("sld-nsd", "lab.test").write_text(bump(good, 1) + "\nbroken IN A not-an-address\n")
try:
    lab.reload("sld-nsd", wait=2); out = "reloaded"
except Exception as e:
    out = str(e)
lab.write_zone("sld-nsd", "lab.test", bump(good, 2))
lab.reload("sld-nsd")
serial = lab.dig("lab.test", "SOA", at="sld-nsd", rd=False).answer[0][0].serial
print("RESULT" + json.dumps({"broken": out, "serial": serial, "want": int(re.search(r"SOA\s+\S+\s+\S+\s+(\d+)", good)[1]) + 2}))
"""
    r = klass.trainee(n).run(code)
    # NSD drops the zone; before its reload is through, its old process may still answer the old serial
    assert re.search(r"sld-nsd (gave|gives) no authoritative answer for lab\.test\.", r["broken"]), r
    assert "its log ends with" in r["broken"] and "invalid IPv4 address 'not-an-address'" in r["broken"], r
    assert r["serial"] == r["want"], r


def test_zz_down_leaves_nothing(klass):
    states = {n: State.open(n) for n in klass.names}
    pids = [rec["pid"] for s in states.values() for rec in s.data["procs"].values()]
    users = {n: confine.find_trainee(n) for n in klass.names}
    ports = [s.data["jupyter"]["port"] for s in states.values()]
    assert all(users.values()) and len(pids) == 6
    res = livelab.cli("down", *klass.names, "--purge")
    assert res.returncode == 0, livelab.explain(res)
    for n in klass.names:
        assert livelab.leftovers(n, klass.inodes) == []
        with pytest.raises(KeyError):
            pwd.getpwnam(confine.user_name(n))
        assert not confine.home_of(n).exists()
        assert not (run_root() / n).exists()
    uids = {u.uid for u in users.values()}
    left = [p for p in os.listdir("/proc") if p.isdigit() and accounts.uids_of(p) & uids
            and livelab.proc_stat(p) and livelab.proc_stat(p)[0] not in ("Z", "X")]
    assert left == [], left
    for pid in pids:
        assert start_time(pid) is None, pid
    for n in klass.names:
        assert not homes.image_of(n).exists() and not homes.is_mounted(homes.home_of(n))
        assert all(not d.exists() for d in cgroups.Group(n).dirs())
        assert mounts_below(run_root() / n) == []
    for port in ports:
        s = socket.socket()
        try:
            assert s.connect_ex(("127.0.0.1", port)) == errno.ECONNREFUSED
        finally:
            s.close()


def test_bad_bind_address_is_bad_input(tmp_path):
    """An address not on this host: exit 2 and nothing made."""
    name = livelab.unique_name("jf")
    res = livelab.cli("up", "dns-basics", "--name", name, "--jupyter", "--jupyter-bind", "192.0.2.254")
    assert res.returncode == 2 and "--jupyter-bind 192.0.2.254: not an address of this host" in res.stderr, \
        livelab.explain(res)
    assert not (run_root() / name).exists() and confine.find_trainee(name) is None


def test_failed_jupyter_rolls_the_whole_up_back():
    """When starting the trainees' servers fails half-way (here: after every server and
    forwarder started), the whole up is undone: no instance, user, home, process or port."""
    from dnslab import lab
    name = livelab.unique_name("jf")
    livelab.remove(name)
    seen: dict = {}

    def servers_then_fail(insts):
        jupyter.start(insts, _free_base(), "127.0.0.1")
        st = insts[0].state
        seen.update(pids=[r["pid"] for r in st.data["procs"].values()], port=st.data["jupyter"]["port"],
                    uid=confine.find_trainee(name).uid)
        raise RuntimeError("injected failure after the servers started")

    try:
        with pytest.raises(RuntimeError, match="injected"):
            lab.up(livelab.DNS_BASICS, [name], before_ready=servers_then_fail, trainees=True)
        assert len(seen["pids"]) == 3
        assert livelab.leftovers(name) == []
        assert confine.find_trainee(name) is None
        assert all(start_time(p) is None for p in seen["pids"])
        assert not [p for p in os.listdir("/proc") if p.isdigit() and seen["uid"] in accounts.uids_of(p)
                    and livelab.proc_stat(p) and livelab.proc_stat(p)[0] not in ("Z", "X")]
        s = socket.socket()
        try:
            assert s.connect_ex(("127.0.0.1", seen["port"])) == errno.ECONNREFUSED
        finally:
            s.close()
    finally:
        livelab.remove(name)
        accounts.remove(name, purge_home=True)


def test_up_killed_while_starting_jupyter_then_gc_leaves_nothing():
    """SIGKILL `up --jupyter` once its JupyterLab process is recorded: `gc` removes the
    instance, its broker, server and forwarder (by recorded PID) and the trainee user."""
    import signal
    name = livelab.unique_name("jk")
    livelab.remove(name)
    proc = subprocess.Popen(livelab.dnslab_argv() + ["up", "dns-basics", "--name", name, "--jupyter",
                                                     "--jupyter-port", str(_free_base())],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=livelab.REPO)
    pids: list[int] = []
    try:
        def recorded():
            st = livelab.read_state(name) or {}
            return "jupyter" in st.get("procs", {}) and st
        st = livelab.wait_for(recorded, timeout=180, what="the JupyterLab process to be recorded")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        st = livelab.read_state(name)
        pids = [r["pid"] for r in st["procs"].values()]
        uid = pwd.getpwnam(confine.user_name(name)).pw_uid
        assert st["phase"] != "ready"
        res = livelab.cli("gc", timeout=300)
        assert res.returncode == 0, livelab.explain(res)
        assert f"instance {name}" in res.stdout, livelab.explain(res)
        assert livelab.leftovers(name) == []
        assert confine.find_trainee(name) is None
        livelab.wait_for(lambda: all(start_time(p) is None for p in pids), timeout=10,
                         what="the recorded helpers to be gone")
        assert not [p for p in os.listdir("/proc") if p.isdigit() and uid in accounts.uids_of(p)
                    and livelab.proc_stat(p) and livelab.proc_stat(p)[0] not in ("Z", "X")]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        livelab.remove(name)
        accounts.remove(name, purge_home=True)
