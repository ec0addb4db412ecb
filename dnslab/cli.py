"""The ``dnslab`` command (also ``./orchestrate.py``): containerlab/kubectl habits.

Exit codes: 0 ok, 1 a check failed, 2 bad input, 3 environment (not root, a program missing).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from . import __version__
from .errors import LabError

if TYPE_CHECKING:
    from .lab import Instance

EXIT_CHECK_FAILED = 1
LOG_LIMIT = 4 << 20


def _out(args: argparse.Namespace, data: Any, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if getattr(args, "json", False) else human)


def _table(rows: list[list[str]], header: list[str]) -> str:
    rows = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _progress(msg: str) -> None:
    print(f"dnslab: {msg}", file=sys.stderr, flush=True)


def cmd_list(args):
    from . import lab, plan
    rows, data = [], []
    for name in lab.shipped_labs():
        try:
            p = plan.load(lab.labs_root() / name)
            data.append({"name": name, "description": p.description, "nodes": len(p.nodes), "zones": list(p.zones)})
            rows.append([name, len(p.nodes), p.description])
        except LabError as exc:
            data.append({"name": name, "error": str(exc)})
            rows.append([name, "?", f"(invalid: {str(exc).splitlines()[0]})"])
    _out(args, data, _table(rows, ["LAB", "NODES", "DESCRIPTION"]))


def cmd_validate(args):
    from . import lab, labfolder
    d = lab.find_lab(args.lab)
    f = labfolder.validate(d)
    p = f.plan
    data = {"lab": p.name, "path": str(d), "nodes": {n.name: {"kind": n.kind, "role": n.role, "addresses": n.addresses}
                                                     for n in p.nodes.values()},
            "zones": {z.name: {"servers": list(z.servers), "parent": z.parent, "primary": z.primary}
                      for z in p.zones.values()},
            "checks": len(f.checks), "faults": f.faults, "exercise": f.exercise.name if f.exercise else None,
            "warnings": [str(w) for w in f.warnings]}
    for w in f.warnings:
        print(f"dnslab: warning: {w}", file=sys.stderr)
    extra = [f"{len(f.faults)} faults" if f.faults else "", f"exercise {f.exercise.name} ({', '.join(f.exercise.languages)})"
             if f.exercise else ""]
    _out(args, data, f"{d / 'lab.yaml'}: ok, {len(p.nodes)} nodes, {len(p.zones)} zones, {len(f.checks)} checks"
         + "".join(f", {e}" for e in extra if e))


def cmd_schema(args):
    from . import checks, topology
    model = checks.ChecksFile if args.what == "checks" else topology.Topology
    print(json.dumps(model.model_json_schema(by_alias=True), indent=2))


def cmd_kinds(args):
    from . import kinds
    data = {k.name: {"roles": list(k.roles),
                     "packages": sorted(set(k.binaries.values()) | set(k.signing_binaries.values()))}
            for k in kinds.KINDS.values()}
    _out(args, data, _table([[k, ", ".join(v["roles"]), " ".join(v["packages"])] for k, v in data.items()],
                            ["KIND", "ROLES", "DEBIAN PACKAGES"]))


def cmd_up(args):
    from . import lab, roster
    from .errors import InputError
    d = lab.find_lab(args.lab)
    meta: dict[str, dict] = {}
    if args.trainees:
        meta = roster.load(Path(args.trainees))
        names = list(meta)
    elif args.instances is not None:
        if args.instances < 1:
            raise InputError("--instances must be at least 1")
        base = args.name or d.name
        names = [f"{base}-{i}" for i in range(1, args.instances + 1)]
    else:
        names = [args.name or d.name]
    klass = None
    if args.trainees:
        klass = args.klass or Path(args.trainees).stem
        for m in meta.values():
            m["class"] = klass
    elif args.klass:
        raise InputError("--class names the class of a roster: give it with --trainees")
    t0 = time.monotonic()
    before_ready: Callable[[list[Instance]], None] | None = None
    faults = list(args.fault)
    if args.jupyter and args.hub:
        raise InputError("--jupyter (a URL per trainee) or --hub (one for the class): not both")
    if args.jupyter or args.hub:
        from . import exercise, hub, jupyter
        if args.hub:
            hub.check_options(klass, args.hub_port, args.hub_bind, args.hub_cert, args.hub_key)
        else:
            jupyter.check_options(args.jupyter_port, args.jupyter_bind)
        ex = exercise.find(d.name) if (exercise.exercises_root() / d.name).is_dir() and not args.no_exercise else None
        if ex:  # the exercise's faults are what the trainees must repair
            ex.check_languages({n: exercise.lang_of(m) for n, m in meta.items()}, args.trainees)
            faults += [f for f in ex.exercise.faults if f not in faults]

        def start_classroom(insts: list[Instance]) -> None:
            if not args.hub:
                jupyter.start(insts, args.jupyter_port, args.jupyter_bind, _progress)
            if ex:
                from . import grader
                grader.release(ex, insts)
                _progress(f"exercise {ex.name} released to {len(insts)} trainee(s)"
                          + (f"; lab faults to repair: {', '.join(faults)}" if faults else ""))
        before_ready = start_classroom
    from . import cgroups
    limits = cgroups.Limits(memory=args.trainee_memory, pids=args.trainee_pids)
    if args.hub:  # the class's hub starts first (for a lab validate accepts): trainees log in while labs come up
        from . import hub, labfolder
        labfolder.validate(d, tuple(faults))
        hub.start(klass, {n: meta[n].get("trainee") or n for n in names}, args.hub_port, args.hub_bind,
                  args.hub_cert, args.hub_key, args.idle_timeout, not args.no_prestart, _progress)
    try:
        insts = lab.up(d, names, args.backend, progress=_progress, meta=meta, faults=faults,
                       before_ready=before_ready, trainees=bool(args.trainees or args.jupyter or args.hub),
                       limits=limits, home_size=args.home_size)
    except BaseException:
        if args.hub:
            hub.stop(klass)
        raise
    if args.hub:
        hub.adopt(klass)
    data = [{"instance": i.name, "lab": i.plan.name, "backend": i.backend.name,
             "nodes": {n.name: n.addresses for n in i.plan.nodes.values()}, **({"trainee": i.state.data["meta"]
                                                                                 .get("trainee")} if meta else {})}
            for i in insts]
    human = [f"{len(insts)} instance(s) of {insts[0].plan.name} up in {time.monotonic() - t0:.2f}s: "
             + ", ".join(i.name for i in insts),
             f"try: dnslab exec {insts[0].name} {insts[0].default_vantage()} -- dig {_a_name(insts[0].plan)}",
             f"     dnslab status {insts[0].name}    dnslab check {insts[0].name}    dnslab down {insts[0].name}"]
    if args.jupyter:
        from . import jupyter
        for row, i in zip(data, insts):
            row["url"] = jupyter.info(i.state)["url"]
            human.append(f"JupyterLab of {row.get('trainee') or i.name}: {row['url']}")
        human.append("all URLs for the instructor: dnslab status --urls-csv urls.csv")
    if args.hub:
        from . import hub
        h = hub.info(klass)
        for row in data:
            row["url"] = h["url"]
        human += [f"the class's JupyterHub: {h['url']} (instructor: {h['url']}services/class/, the class's live view)",
                  f"logins (user, password; give each trainee hers): {h['logins']}"]
    _out(args, data, "\n".join(human))


def _a_name(plan) -> str:
    """A name worth asking in this lab: an address record of its deepest zone (not a name server's)."""
    import dns.rdatatype
    import dns.zone
    hosts = {n.hostname for n in plan.nodes.values() if n.hostname}
    for z in sorted(plan.zones.values(), key=lambda z: -z.name.count(".")):
        zone = dns.zone.from_text(z.text, z.name, relativize=False, check_origin=False)
        for name, node in zone.items():
            if name.to_text() not in hosts and any(r.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA) for r in node):
                return name.to_text().rstrip(".")
    return f"{next(iter(plan.zones))} SOA"


def cmd_down(args):
    from . import lab
    from .errors import InputError
    names = [s.name for s in lab.instances()] if args.all else args.instances
    if not names and not args.all:
        raise InputError("name the instances to remove, or use --all")
    t0 = time.monotonic()
    removed = lab.down(names, purge_homes=args.purge)
    _out(args, {"removed": removed}, f"removed {len(removed)} instance(s) in {time.monotonic() - t0:.2f}s"
         + (": " + ", ".join(removed) if removed else ""))


def cmd_status(args):
    from . import lab
    if args.instance:
        inst = lab.Instance.open(args.instance)
        nodes = inst.status()
        from . import jupyter
        faults = inst.state.data.get("faults", [])
        data = {"instance": inst.name, "lab": inst.state.data["lab"], "phase": inst.state.data["phase"],
                "backend": inst.backend.name, "meta": inst.state.data.get("meta", {}), "faults": faults,
                "nodes": [vars(n) for n in nodes], "jupyter": jupyter.info(inst.state)}
        rows = [[n.name, n.kind, n.role, " ".join(n.addresses), "running" if n.running else "STOPPED",
                 {True: "answers", False: "NO ANSWER", None: "-"}[n.answers]] for n in nodes]
        _out(args, data, f"instance {inst.name} (lab {data['lab']}, {data['phase']}, {inst.backend.name}"
             + (f", faults: {', '.join(faults)}" if faults else "") + ")\n"
             + _table(rows, ["NODE", "KIND", "ROLE", "ADDRESSES", "PROCESS", "DNS"])
             + (f"\nJupyterLab: {data['jupyter']['url']}" + ("" if data["jupyter"]["running"] else " (NOT RUNNING)")
                if data["jupyter"] else ""))
        return 0 if all(n.running and n.answers is not False for n in nodes) else EXIT_CHECK_FAILED
    from . import jupyter
    data, rows = [], []
    if args.urls_csv:
        n = jupyter.write_urls_csv(lab.instances(), Path(args.urls_csv))
        print(f"wrote {args.urls_csv}: {n} JupyterLab URL(s) (trainee,instance,url; mode 0600)", file=sys.stderr)
    for st in lab.instances():
        inst = lab.Instance(st)
        jinfo = jupyter.info(st)
        try:
            nodes = inst.status(probe=not args.fast)
        except LabError:
            nodes = []
        running = sum(n.running for n in nodes)
        answering = [n for n in nodes if n.answers is not None]
        data.append({"instance": st.name, "lab": st.data.get("lab"), "phase": st.data.get("phase"),
                     "backend": st.data.get("backend"), "faults": st.data.get("faults", []),
                     "running": running, "nodes": len(nodes),
                     "answering": sum(bool(n.answers) for n in answering), "daemons": len(answering),
                     "trainee": st.data.get("meta", {}).get("trainee"),
                     "url": jinfo["url"] if jinfo else None, "jupyter_running": jinfo["running"] if jinfo else None})
        rows.append([st.name, st.data.get("lab"), st.data.get("phase"), f"{running}/{len(nodes)}",
                     f"{sum(bool(n.answers) for n in answering)}/{len(answering)}" if not args.fast else "-",
                     (jinfo["url"] + ("" if jinfo["running"] else " (NOT RUNNING)")) if jinfo else "-"])
    _out(args, data, _table(rows, ["INSTANCE", "LAB", "PHASE", "RUNNING", "ANSWERING", "JUPYTERLAB"])
         if rows else "no instances")


def cmd_exec(args):
    from . import lab
    from .errors import InputError
    if not args.command:
        raise InputError("give a command after --, e.g. dnslab exec t1 client -- dig www.example.test")
    inst = lab.Instance.open(args.instance)
    return inst.exec(args.node, args.command).returncode


def cmd_reload(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    t0 = time.monotonic()
    nodes = args.nodes or [n.name for n in inst.plan.nodes.values() if n.role not in ("client", "attacker")]
    for node in nodes:
        inst.reload(node, wait=args.wait)
    _out(args, {"reloaded": nodes}, f"reloaded {', '.join(nodes)} in {time.monotonic() - t0:.2f}s: "
         "each serves the serial of its zone files (and its secondaries too)")


def cmd_break(args):
    """A fault on an instance, or on every instance of a lab; ``--random``: a fault drawn for each
    instance among those not applied yet (a drill where neighbours' faults differ)."""
    import random

    from . import faults as _faults
    from .errors import InputError
    if (args.fault is None) == (not args.random):
        raise InputError("name a fault of the lab (dnslab faults <lab> lists them), or give --random")
    rng = random.Random(args.seed)
    done = []
    for inst in _check_targets(args.target, None):
        fault = args.fault
        if args.random:
            left = sorted(set(_faults.available(inst.state.lab_dir)) - set(inst.state.data.get("faults", [])))
            if not left:
                raise InputError(f"instance {inst.name} has every fault of its lab already")
            fault = rng.choice(left)
        touched = inst.break_with(fault)
        done.append({"instance": inst.name, "fault": fault, "faults": inst.state.data["faults"], "nodes": touched})
    _out(args, done, "\n".join(f"fault {d['fault']} applied to {d['instance']} ({', '.join(d['nodes']) or 'no node'}); "
                               f"faults now: {', '.join(d['faults'])}" for d in done))


def cmd_faults(args):
    from . import faults as _faults
    from . import lab
    from .state import all_states
    running = {s.name: s for s in all_states()}
    lab_dir = running[args.lab].lab_dir if args.lab in running else lab.find_lab(args.lab)
    rows = []
    for name in _faults.available(lab_dir):
        fault = _faults.load(lab_dir, name)[0]
        rows.append({"name": name, "summary": fault.summary, "seen_by": fault.seen_by})
    _out(args, rows, _table([[r["name"], r["summary"]] for r in rows], ["FAULT", "WHAT IT BREAKS"])
         if rows else f"lab {lab_dir.name} has no faults")


def cmd_start(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    inst.start(args.node)
    _out(args, {"started": args.node}, f"the daemon of {args.node} runs and answers again")


def cmd_unblock(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    blocked = inst.unblock(args.node)
    _out(args, {"unblocked": args.node, "was_blocked": blocked},
         f"{args.node} lets all its traffic through" + ("" if blocked else " (nothing was blocked)"))


def cmd_flush(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    nodes = args.nodes or [n.name for n in inst.plan.by_role("resolver")]
    for node in nodes:
        inst.flush(node)
    _out(args, {"flushed": nodes}, f"flushed the caches of {', '.join(nodes) or 'no resolver'}")


def cmd_capture(args):
    """Packets crossing a node's interfaces: a pcap file (-w) or one line each."""
    from . import capture, lab
    inst = lab.Instance.open(args.instance)
    capture.bounds(args.count, args.seconds, args.filter)
    _progress(f"capturing in {args.node} of {inst.name}: up to {args.count} packets or {args.seconds:g}s")
    got = inst.capture(args.node, args.count, args.seconds, args.filter)
    about = {"node": args.node, "packets": got.packets, "seconds": got.seconds, "truncated": got.truncated}
    if args.write:
        Path(args.write).write_bytes(got.pcap)
        _out(args, {**about, "file": args.write}, f"{got.packets} packets in {got.seconds:g}s written to "
                                                  f"{args.write} (opens in Wireshark)")
    else:
        _out(args, about, capture.summary(got.pcap).rstrip() or f"no packet in {got.seconds:g}s")


def cmd_logs(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    if not inst.log_path(args.node).exists():
        print(f"node {args.node} has no log (a {inst.node(args.node).kind} node runs no daemon)", file=sys.stderr)
        return 0
    try:
        fd = inst.log_fd(args.node)  # in a trainee's lab: no link followed, a regular file only
    except OSError as exc:
        raise LabError(f"cannot read the log of {args.node}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        f.seek(max(0, size - LOG_LIMIT))  # at most the last LOG_LIMIT bytes: a log is not unbounded input
        lines = f.read().decode(errors="replace").splitlines(keepends=True)
        sys.stdout.writelines(lines[-args.tail:] if args.tail else lines)
        sys.stdout.flush()
        while args.follow:
            chunk = f.read(1 << 16)
            if chunk:
                sys.stdout.write(chunk.decode(errors="replace"))
                sys.stdout.flush()
            elif not inst.state.dir.exists():
                return 0
            else:
                time.sleep(0.2)
    return 0


def cmd_check(args):
    from . import checks
    targets = _check_targets(args.target, args.instance)
    results = {}
    for inst in targets:
        results[inst.name] = checks.run(inst, only=args.only)
    failed = any(not r.passed for rs in results.values() for r in rs)
    data = {name: [r.to_dict(args.lang) for r in rs] for name, rs in results.items()}
    human = []
    for name, rs in results.items():
        human.append(f"instance {name}: {sum(r.passed for r in rs)}/{len(rs)} checks pass")
        for r in rs:
            human.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.id:<22} {r.message(args.lang)}")
            if not r.passed and args.verbose:
                for ev in r.evidence:
                    human.append(f"        {ev.source} -> {ev.server}: {ev.query}: {ev.rcode or ev.error} "
                                 f"[{ev.flags}] {'; '.join(ev.answer)}")
    _out(args, data, "\n".join(human))
    return EXIT_CHECK_FAILED if failed else 0


def _check_targets(target: str, instance: str | None):
    from . import lab
    from .errors import InputError
    states = lab.instances()
    by_lab = [s for s in states if s.data.get("lab") == target]
    if instance:
        return [lab.Instance.open(instance)]
    if any(s.name == target for s in states):
        return [lab.Instance.open(target)]
    if by_lab:
        return [lab.Instance(s) for s in by_lab]
    raise InputError(f"no running instance or lab named {target!r} (running: "
                     f"{', '.join(s.name for s in states) or 'none'})")


def cmd_grade(args):
    from . import grader
    targets = _grade_targets(args)
    lab_name = targets[0].plan.name
    t0 = time.monotonic()
    budget = grader.Budget(cell=args.timeout, notebook=args.budget, output=args.max_output, cells=args.max_cells)
    grades = grader.grade(lab_name, targets, from_dir=Path(args.from_dir) if args.from_dir else None,
                          jobs=args.jobs, budget=budget, progress=_progress)
    rows = [[g.trainee, g.instance, g.lang, f"{g.score:g}/{g.max_score:g}",
             " ".join(f"{t}={v:g}" for t, v in g.tasks.items()), g.note] for g in grades]
    course = grader.Course().root
    human = (_table(rows, ["TRAINEE", "INSTANCE", "LANG", "SCORE", "TASKS", "NOTE"])
             + f"\n{len(grades)} graded in {time.monotonic() - t0:.1f}s; gradebook {course / 'grades.csv'}, "
             f"feedback in {course / 'feedback'}")
    _out(args, [g.to_dict() for g in grades], human)


def _grade_targets(args):
    """The instances a grade takes: a class (``--class``, or the roster it was brought up with),
    or named instances; never every instance of the lab on the host."""
    from . import lab, roster
    from .errors import InputError
    of_lab = [s for s in lab.instances() if s.data.get("lab") == args.lab]
    if not of_lab:
        raise InputError(f"no running instance of lab {args.lab!r}")
    if args.instances:
        wanted = set(args.instances.split(","))
        found = [s for s in of_lab if s.name in wanted]
        missing = wanted - {s.name for s in found}
        if missing:
            raise InputError(f"no instance {', '.join(sorted(missing))} of lab {args.lab}")
    elif args.trainees:
        wanted = set(roster.load(Path(args.trainees)))
        found = [s for s in of_lab if s.name in wanted]
        if not found:
            raise InputError(f"{args.trainees}: none of its trainees has an instance of lab {args.lab}")
    else:
        classes = sorted({s.data.get("meta", {}).get("class") for s in of_lab} - {None})
        klass = args.klass or (classes[0] if len(classes) == 1 else None)
        if klass is None:
            raise InputError(f"which class? lab {args.lab} is up for "
                             + (f"the classes {', '.join(classes)}: give --class NAME" if classes else
                                "no class (instances brought up with --trainees): give --instances A,B"))
        found = [s for s in of_lab if s.data.get("meta", {}).get("class") == klass]
        if not found:
            raise InputError(f"no class {klass!r} of lab {args.lab} (classes: {', '.join(classes) or 'none'})")
    return [lab.Instance(s) for s in found]


def cmd_exercise(args):
    from . import exercise
    import nbformat
    src = exercise.find(args.lab)
    out = Path(args.output or f"{src.name}.{args.lang}.ipynb")
    nbformat.write(src.notebook(args.lang), out)
    print(f"wrote {out} (the nbgrader source: solutions and hidden tests included)")


def cmd_graph(args):
    from . import graph, lab
    from .state import all_states
    running = {s.name for s in all_states()}
    inst = lab.Instance.open(args.lab) if args.lab in running else None
    from .errors import InputError
    if args.catchment and inst is None:
        raise InputError(f"--catchment reads a live lab: {args.lab!r} is no running instance")
    p = inst.plan if inst else lab.load_plan(lab.find_lab(args.lab))
    out = Path(args.output or f"{p.name}.{args.format}")
    fmt = args.format if args.output is None else out.suffix.lstrip(".") or args.format
    graph.render(p, out, fmt, _catchment(inst, None) if args.catchment else None)
    print(f"wrote {out}")


def _catchment(inst, address: str | None) -> dict[str, str | None]:
    from .checks.anycast import catchments, service_address
    from .errors import InputError
    if not (address or service_address(inst.plan)):
        raise InputError(f"instance {inst.name} has no anycast root: name the address (--at)")
    return catchments(inst, address)


def cmd_catchment(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    sites = _catchment(inst, args.at)
    _out(args, sites, _table([[v, s or "(no answer)"] for v, s in sites.items()], ["VANTAGE", "SITE"]))


def cmd_failover(args):
    from . import failover, lab
    inst = lab.Instance.open(args.instance)
    print(f"{args.site}: {failover.HOW[args.how]}; waiting for every vantage point to move (at most "
          f"{args.budget:g} s), then repairing it ...", file=sys.stderr, flush=True)
    out = failover.measure(inst, args.site, args.how, address=args.at, budget=args.budget)
    data = {"site": out.site, "how": out.how, "seconds": out.seconds, "before": out.before,
            "moved": {v: m[0] if m else None for v, m in out.moved.items()}, "lost": out.lost}
    when = f"{out.seconds:.2f} s" if out.seconds is not None else f"not within {args.budget:g} s"
    rows = [[v, out.before.get(v) or "-", m[0] if m else f"(still {out.site} or no answer)",
             f"{m[1]:.2f}" if m and out.before.get(v) == out.site else "-", out.lost[v]]
            for v, m in out.moved.items()]
    _out(args, data, f"every vantage point answered by another site: {when}\n"
         + _table(rows, ["VANTAGE", "BEFORE", "THEN", "SECONDS", "UNANSWERED"]))


def cmd_dnsviz(args):
    from . import lab
    inst = lab.Instance.open(args.instance)
    out = Path(args.output or f"{args.name.rstrip('.') or 'root'}.png")
    fmt = out.suffix.lstrip(".") or "png"
    _progress(f"probing {args.name} from {inst.default_vantage()} and drawing its chain of trust")
    data = inst.dnsviz(args.name, args.via, fmt)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes)")


def cmd_dnssec(args):
    """DNSSEC of a live instance: key status per signed zone, or a DS submitted to a registry."""
    from . import keystate, lab
    from .errors import InputError
    inst = lab.Instance.open(args.instance)
    if args.action in ("rollover", "checkds") and not args.zone:
        raise InputError(f"dnslab dnssec {args.action} INSTANCE ZONE" + (" ksk|zsk" if args.action == "rollover" else ""))
    if args.action == "rollover":
        role = (args.records or ["zsk"])[0].lower()
        if not (role in ("ksk", "zsk") and len(args.records) <= 1 or role == "algorithm" and len(args.records) == 2):
            raise InputError("dnslab dnssec rollover INSTANCE ZONE ksk|zsk|algorithm ALGORITHM")
        if role == "algorithm":
            algorithm = args.records[1].upper()
            old, what = inst.roll_algorithm(args.zone, algorithm), f"algorithm rollover of {args.zone} to {algorithm}"
        else:
            old, what = [inst.rollover(args.zone, role)], f"{role.upper()} rollover of {args.zone}"
        keys = f"key{'s' if len(old) > 1 else ''} {', '.join(map(str, old))}"
        about = {"zone": args.zone, "role": role, **({"algorithm": algorithm} if role == "algorithm" else {})}
        if not args.wait:
            _out(args, {**about, "replacing": old}, f"{what} started (replacing {keys}); follow it with "
                                                     f"dnslab dnssec status {inst.name} {args.zone}, or start it with --wait")
            return 0
        took = inst.follow_rollover(args.zone, old, args.timeout, progress=_progress)
        _out(args, {**about, "replaced": old, "seconds": round(took, 1)}, f"{what} done in {took:.1f}s ({keys} replaced)")
        return 0
    if args.action == "checkds":
        told = inst.checkds(args.zone)
        _out(args, [{"tag": t, "ds": s} for t, s in told],
             "; ".join(f"KSK {t}: DS {s}" for t, s in told) or f"the signer of {args.zone} checks its DS itself")
        return 0
    if args.action == "submit-ds":
        if not args.zone or not args.records:
            raise InputError("dnslab dnssec submit-ds INSTANCE ZONE 'TAG ALG DIGEST-TYPE DIGEST' [...]")
        published = inst.submit_ds(args.zone, args.records)
        _out(args, {"zone": args.zone, "published": published},
             f"the registry published the DS of {args.zone}: " + "; ".join(published))
        return 0
    views = keystate.status(inst, args.zone)
    rows = [[v.zone, f"{v.signer} ({v.kind})",
             ", ".join(f"{k.tag} {k.role} alg {k.algorithm}{' DS' if k.ds else ''}{' CDS' if k.cds else ''}"
                       for k in sorted(v.keys, key=lambda k: (k.role, k.tag))) or "none served",
             v.registry or "-"] for v in views]
    human = _table(rows, ["ZONE", "SIGNER", "KEYS (DS: vouched by the parent's DS, CDS: asked for by the zone)",
                          "REGISTRY"])
    if args.verbose:
        human += "".join(f"\n\n{v.zone} as {v.signer} sees its keys:\n{v.signer_says}" for v in views if v.signer_says)
    _out(args, [v.to_dict() for v in views], human)


def cmd_gc(args):
    from . import lab
    removed = lab.gc(everything=args.all)
    _out(args, {"removed": removed}, "\n".join(f"removed {r}" for r in removed) or "nothing to remove")


def cmd_class(args):
    """A class with a hub: its live status, a drill on its labs, a trainee's lab reset (through
    the class's helper, as the instructor's page does)."""
    from . import classstatus, hub, lineserver
    from .errors import InputError
    klass = args.klass
    if klass is None:
        known = hub.classes()
        if len(known) != 1:
            raise InputError("which class? " + (f"classes with a hub: {', '.join(known)}: give its name"
                                                if known else "no class has a hub (dnslab up --trainees R --hub)"))
        klass = known[0]
    if hub.open_class(klass) is None:
        raise InputError(f"no class {klass!r} with a hub (classes: {', '.join(hub.classes()) or 'none'})")
    if args.action == "status":
        snap = lineserver.call(hub.class_dir(klass) / "classd.sock", {"op": "status", "fresh": True}, timeout=300.0)
        if not snap.get("ok"):
            raise LabError(snap.get("error", "the class helper refused"))
        _out(args, snap["status"], classstatus.table(snap["status"]))
        return 0
    if args.action == "break":
        if not args.fault:
            raise InputError("class break FAULT: name a fault of the lab")
        req = {"op": "break", "fault": args.fault, "user": args.instance or "*"}
    else:
        if not args.instance:
            raise InputError("class reset --instance NAME: name the trainee's instance")
        req = {"op": "reset", "user": args.instance}
    _progress(f"{args.action} in class {klass}...")
    reply = lineserver.call(hub.class_dir(klass) / "classd.sock", req, timeout=600.0)
    if not reply.get("ok"):
        raise LabError(reply.get("error", "the class helper refused"))
    reply.pop("ok")
    human = (f"reset {reply['reset']}" if args.action == "reset" else
             f"{args.fault} applied to {len(reply['broken'])} lab(s)"
             + (f"; already in {', '.join(reply['already'])}" if reply["already"] else ""))
    _out(args, reply, human)
    return 0


def cmd_images(args):
    from . import images
    if args.action == "build":
        built = images.build(args.kinds or None, progress=_progress, rebuild_base=args.rebuild_base)
        _out(args, {"built": built}, "\n".join(f"built {b}" for b in built))
    else:
        from .backends.docker import client
        tags = sorted(t for i in client().images.list() for t in i.tags if t.startswith("dnslab/"))
        _out(args, tags, "\n".join(tags) or "no dnslab images: dnslab images build")


def _size(text: str) -> int:
    """``512M``, ``2G``, ``1048576``: a size in bytes (for argparse)."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    num, unit = (t[:-1], t[-1]) if t and t[-1] in units else (t, "")
    try:
        value = int(float(num) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 512M, 2G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: a size must be positive")
    return value


def parser() -> argparse.ArgumentParser:
    from .cgroups import Limits
    cgroup_defaults = Limits()
    ap = argparse.ArgumentParser(prog="dnslab", description="Hands-on DNS security labs: live, isolated DNS worlds.")
    ap.add_argument("--version", action="version", version=f"dnslab {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(name, func, help, json_flag=True):
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    add("list", cmd_list, "list the labs shipped with dnslab")
    add("validate", cmd_validate, "check a lab file without running it (no root needed)").add_argument("lab")
    p = add("schema", cmd_schema, "print the JSON schema of lab files (or checks files)", json_flag=False)
    p.add_argument("what", nargs="?", choices=["lab", "checks"], default="lab")
    add("kinds", cmd_kinds, "list node kinds and the Debian packages they need")
    p = add("up", cmd_up, "bring a lab up: one isolated instance, N instances or one per trainee")
    p.add_argument("lab", help="a shipped lab name or a folder with lab.yaml")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--instances", type=int, metavar="N", help="N copies named <lab>-1 .. <lab>-N")
    g.add_argument("--trainees", metavar="ROSTER.csv", help="one copy per trainee (CSV with a 'trainee' column)")
    p.add_argument("--name", help="instance name (default: the lab name); with --instances, the prefix of the "
                                  "names (NAME-1 .. NAME-N)")
    p.add_argument("--backend", default=os.environ.get("DNSLAB_BACKEND", "netns"), help="netns (default) or docker")
    p.add_argument("--no-exercise", action="store_true",
                   help="with --jupyter: do not release the lab's exercise (nor apply its faults)")
    p.add_argument("--fault", action="append", default=[], metavar="NAME",
                   help="bring the lab up with this fault of its faults/ folder (break-and-fix; repeatable)")
    p.add_argument("--jupyter", action="store_true",
                   help="per instance: a trainee user, its lab helper and a JupyterLab inside its client node")
    p.add_argument("--jupyter-port", type=int, default=8900, metavar="BASE",
                   help="first TCP port of the JupyterLab forwarders (default 8900; next free ports after it)")
    p.add_argument("--jupyter-bind", default="127.0.0.1", metavar="ADDR",
                   help="host address the forwarders listen on (default 127.0.0.1; 0.0.0.0 for a class)")
    p.add_argument("--hub", action="store_true",
                   help="with --trainees: one JupyterHub for the class (logins in its logins.csv); each "
                        "trainee's JupyterLab starts inside her lab when she logs in")
    p.add_argument("--hub-port", type=int, default=8000, metavar="PORT", help="the hub's TCP port (default 8000)")
    p.add_argument("--hub-bind", default="127.0.0.1", metavar="ADDR",
                   help="host address the hub listens on (default 127.0.0.1; a class network's address)")
    p.add_argument("--hub-cert", metavar="PEM", help="TLS certificate for the hub (with --hub-key): https")
    p.add_argument("--hub-key", metavar="PEM", help="the certificate's private key")
    p.add_argument("--no-prestart", action="store_true",
                   help="with --hub: start a trainee's server at her login only (default: all of them in the "
                        "background once the hub is up, a few at a time)")
    p.add_argument("--idle-timeout", type=int, default=3600, metavar="SECONDS",
                   help="stop a trainee's server idle this long (default 3600; her work stays)")
    p.add_argument("--class", dest="klass", metavar="NAME",
                   help="the class these trainees form (default: the roster's file name); `grade` takes a class")
    p.add_argument("--trainee-memory", type=_size, default=cgroup_defaults.memory, metavar="SIZE",
                   help="memory of each trainee: daemons, notebook server, kernels (default 1536M)")
    p.add_argument("--trainee-pids", type=int, default=cgroup_defaults.pids, metavar="N",
                   help="processes and threads of each trainee (default 512)")
    p.add_argument("--home-size", type=_size, default=512 << 20, metavar="SIZE",
                   help="size of each trainee's home (default 512M)")
    p = add("down", cmd_down, "stop and remove instances")
    p.add_argument("instances", nargs="*")
    p.add_argument("--all", action="store_true", help="every instance")
    p.add_argument("--purge", action="store_true", help="also delete the trainees' homes (their notebooks)")
    p = add("status", cmd_status, "instances, or one instance's nodes, processes and health")
    p.add_argument("instance", nargs="?")
    p.add_argument("--fast", action="store_true", help="do not query the daemons")
    p.add_argument("--urls-csv", metavar="FILE", help="write trainee,instance,url of every JupyterLab to FILE")
    p = add("exec", cmd_exec, "run a command inside a node: dnslab exec t1 client -- dig example.test",
            json_flag=False)
    p.add_argument("instance")
    p.add_argument("node")
    p.add_argument("command", nargs=argparse.REMAINDER)
    p = add("reload", cmd_reload, "reload daemons (config and zones; a resolver's cache emptied), "
                                  "waiting until each serves its zone files' serials")
    p.add_argument("instance")
    p.add_argument("nodes", nargs="*", help="default: every node with a daemon")
    p.add_argument("--wait", type=float, default=10.0, metavar="SECONDS", help="how long to wait (10)")
    p = add("break", cmd_break, "apply a fault of the lab to a running instance, or to each instance of a lab "
                                "(break-and-fix drill)")
    p.add_argument("target", help="an instance, or a lab (each of its instances)")
    p.add_argument("fault", nargs="?", help="a fault of the lab's faults/ folder (dnslab faults <lab>)")
    p.add_argument("--random", action="store_true", help="a fault drawn for each instance, one not applied yet")
    p.add_argument("--seed", type=int, help="with --random: the same draw again")
    p = add("faults", cmd_faults, "list a lab's faults (a shipped lab, a lab folder or an instance)")
    p.add_argument("lab")
    p = add("start", cmd_start, "start a node's daemon again after a fault or a drill stopped it")
    p.add_argument("instance")
    p.add_argument("node")
    p = add("unblock", cmd_unblock, "open a node's firewall: let through what a fault blocks (tcp/53, ...)")
    p.add_argument("instance")
    p.add_argument("node")
    p = add("flush", cmd_flush, "empty resolvers' caches (a repaired delegation shows at once)")
    p.add_argument("instance")
    p.add_argument("nodes", nargs="*", help="default: every resolver")
    p = add("capture", cmd_capture, "capture what crosses a node's interfaces (tcpdump in its namespace), bounded "
                                    "in packets and seconds; -w: a pcap file for Wireshark")
    p.add_argument("instance")
    p.add_argument("node")
    p.add_argument("-f", "--filter", default="", help="a tcpdump filter, e.g. 'udp port 53'")
    p.add_argument("-w", "--write", metavar="FILE", help="write the packets to FILE (pcap)")
    p.add_argument("-c", "--count", type=int, default=1000, help="stop after this many packets (default 1000)")
    p.add_argument("-s", "--seconds", type=float, default=10, help="stop after this many seconds (default 10)")
    p = add("logs", cmd_logs, "a node's daemon log", json_flag=False)
    p.add_argument("instance")
    p.add_argument("node")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-n", "--tail", type=int, default=0, metavar="LINES")
    p = add("check", cmd_check, "run the lab's checks against live instances (exit 1 if one fails)")
    p.add_argument("target", help="an instance, or a lab (all its instances)")
    p.add_argument("--instance", help="one instance of the lab")
    p.add_argument("--only", metavar="ID", help="only the check with this id")
    p.add_argument("--lang", default="en", help="language of the messages")
    p.add_argument("-v", "--verbose", action="store_true", help="show the evidence of failed checks")
    p = add("grade", cmd_grade, "grade a class's notebooks of a lab on their live instances (nbgrader)")
    p.add_argument("lab", help="the lab whose instances to grade")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--class", dest="klass", metavar="NAME", help="the class (default: the only class of the lab)")
    g.add_argument("--trainees", metavar="ROSTER.csv", help="the class brought up with this roster")
    g.add_argument("--instances", metavar="A,B", help="only these instances")
    p.add_argument("--from", dest="from_dir", metavar="DIR",
                   help="take each instance's notebook from DIR/<instance>.ipynb instead of the trainee's home")
    p.add_argument("--jobs", type=int, help="notebooks executed at once (default: 2 per core)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one cell (default: the exercise's, else 30)")
    p.add_argument("--budget", type=float, default=300.0, metavar="SECONDS",
                   help="time limit of one whole notebook, however many cells it has (300)")
    p.add_argument("--max-output", type=_size, default=2 << 20, metavar="SIZE",
                   help="output kept of one notebook (2M; beyond it the run stops)")
    p.add_argument("--max-cells", type=int, default=200, metavar="N",
                   help="cells of one notebook that are run and kept (200)")
    p = add("exercise", cmd_exercise, "write an exercise's nbgrader source notebook in one language", json_flag=False)
    p.add_argument("lab")
    p.add_argument("--lang", default="en")
    p.add_argument("-o", "--output")
    p = add("graph", cmd_graph, "draw a lab's topology, zones and delegations (graphviz)", json_flag=False)
    p.add_argument("lab")
    p.add_argument("-o", "--output", help="output file (.svg or .png)")
    p.add_argument("--format", choices=["svg", "png", "dot"], default="svg")
    p.add_argument("--catchment", action="store_true", help="a running instance: draw which anycast site answers "
                                                            "each resolver and client")
    p = add("catchment", cmd_catchment, "which anycast site answers each resolver and client of a live instance "
                                        "(the answering server's NSID)")
    p.add_argument("instance")
    p.add_argument("--at", metavar="ADDRESS", help="the anycast address (default: the root's)")
    p = add("failover", cmd_failover, "fail an anycast site of a live instance and time until every resolver "
                                      "and client is answered by another site; the site is repaired after")
    p.add_argument("instance")
    p.add_argument("site", help="the site's DNS server node (it holds the anycast address)")
    p.add_argument("--how", choices=["daemon", "freeze", "drop", "cut"], default="daemon",
                   help="daemon: its DNS daemon stops; freeze: its router's BIRD is stopped by SIGSTOP; drop: its "
                        "router's links go silent; cut: its router's cables are cut (default: daemon)")
    p.add_argument("--at", metavar="ADDRESS", help="the anycast address (default: the root's)")
    p.add_argument("--budget", type=float, default=15.0, metavar="SECONDS", help="longest wait (15)")
    p = add("dnsviz", cmd_dnsviz, "draw the chain of trust of a name (dnsviz, from inside the lab, with the "
                                  "lab root's key)", json_flag=False)
    p.add_argument("instance")
    p.add_argument("name", help="a DNS name, e.g. www.example.test")
    p.add_argument("-o", "--output", help="output file, .png (default) or .svg; default <name>.png")
    p.add_argument("--via", metavar="NODE", help="the resolver to probe through (default: the client's)")
    p = add("dnssec", cmd_dnssec, "DNSSEC of a live instance: keys and DS per signed zone, a DS submitted to a "
                                  "registry, key rollovers")
    p.add_argument("action", choices=["status", "submit-ds", "rollover", "checkds"],
                   help="status: keys per zone; submit-ds: DS records for ZONE to its parent's registry; rollover: "
                        "start a ksk or zsk rollover of ZONE, or an algorithm rollover (algorithm ECDSAP384SHA384); checkds: tell ZONE's signer which DS its parent has")
    p.add_argument("instance")
    p.add_argument("zone", nargs="?", help="status: one zone (default: every signed zone); others: the zone")
    p.add_argument("records", nargs="*", help="submit-ds: DS records, 'TAG ALG DIGEST-TYPE DIGEST' each; "
                                              "rollover: ksk, zsk, or algorithm and its name")
    p.add_argument("-v", "--verbose", action="store_true", help="status: the signer's own account of its keys")
    p.add_argument("--wait", action="store_true", help="rollover: follow it to its end (telling the signer when "
                                                       "the parent's DS changed, as its operator would)")
    p.add_argument("--timeout", type=float, default=180, help="rollover --wait: give up after this many seconds")
    p = add("class", cmd_class, "a class with a hub: live status of its labs, a drill (break), a lab reset")
    p.add_argument("action", choices=["status", "break", "reset"])
    p.add_argument("fault", nargs="?", help="break: the fault of the lab to apply")
    p.add_argument("--class", dest="klass", metavar="NAME", help="the class (default: the only class with a hub)")
    p.add_argument("--instance", metavar="NAME", help="break: only this trainee's lab (default: all); reset: hers")
    p = add("images", cmd_images, "build or list the docker backend's node images")
    p.add_argument("action", choices=["build", "list"])
    p.add_argument("kinds", nargs="*", help="only these kinds (default: all)")
    p.add_argument("--rebuild-base", action="store_true", help="debootstrap the base image again")
    p = add("gc", cmd_gc, "remove what crashed runs left (namespaces, processes, run dirs)")
    p.add_argument("--all", action="store_true", help="also remove every running instance")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "exec" and args.command[:1] == ["--"]:
        args.command = args.command[1:]
    try:
        return args.func(args) or 0
    except LabError as exc:
        from .errors import InputProblems
        if isinstance(exc, InputProblems) and len(exc.problems) > 1:
            print(f"dnslab: {len(exc.problems)} problems:\n" + "\n".join(f"  {p}" for p in exc.problems),
                  file=sys.stderr)
        else:
            print(f"dnslab: {exc}" if "\n" not in str(exc) else f"dnslab:\n{exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dnslab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `dnslab ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
