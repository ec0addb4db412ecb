"""The instructor's live view of a class: a JupyterHub service at ``/services/class/``.

Run by the class's hub as its user (``python -m dnslab.classview``); only a hub user with
access to this service (the instructor's role, :func:`dnslab.hub._config`) gets past its
OAuth login. It shows the class's status (:mod:`dnslab.classstatus`: trainees × lab checks
and exercise tasks, health, server and kernels, who is stuck), refreshed every few seconds,
and its buttons apply a fault to one lab or all (the break-and-fix drill) or reset a
trainee's lab. Everything goes through the class helper's socket (:mod:`dnslab.classd`),
whose closed list of operations is all this page can do; the page itself holds no secret.
Trainee-made strings (names come from the roster) reach the page only as JSON rendered
with ``textContent``; a strict Content-Security-Policy allows only this page's own script.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from urllib.parse import urlparse

from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated
from jupyterhub.utils import url_path_join
from tornado import ioloop, web

from . import lineserver

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class Base(HubOAuthenticated, web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "no-referrer")
        self.set_header("Cache-Control", "no-store")

    async def ask(self, request: dict, timeout: float = 600.0) -> dict:
        try:
            reply = await asyncio.to_thread(lineserver.call, self.settings["helper"], request, timeout)
        except (OSError, TimeoutError, lineserver.Unreachable) as exc:
            raise web.HTTPError(503, f"the class helper did not answer: {exc}") from None
        return reply

    def reply(self, data: dict) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(data))


class Page(Base):
    @web.authenticated
    def get(self) -> None:
        prefix = self.settings["prefix"]
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(PAGE.replace("{{xsrf}}", web.escape.xhtml_escape(self.xsrf_token))
                    .replace("{{prefix}}", web.escape.xhtml_escape(prefix)))


class Asset(Base):
    @web.authenticated
    def get(self, name: str) -> None:
        kind, body = ASSETS[name]
        self.set_header("Content-Type", kind)
        self.finish(body)


class Status(Base):
    @web.authenticated
    async def get(self) -> None:
        self.reply(await self.ask({"op": "status"}, timeout=120.0))


class Act(Base):
    @web.authenticated
    async def post(self, action: str) -> None:
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "a JSON body") from None
        if not isinstance(body, dict):
            raise web.HTTPError(400, "a JSON object")
        if action == "break":
            req = {"op": "break", "fault": body.get("fault"), "user": body.get("instance") or "*"}
        else:
            req = {"op": "reset", "user": body.get("instance")}
        reply = await self.ask(req)
        if not reply.get("ok"):
            self.set_status(400)
        self.reply(reply)


def app() -> web.Application:
    prefix = os.environ["JUPYTERHUB_SERVICE_PREFIX"]
    return web.Application([
        (prefix, Page),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
        (url_path_join(prefix, r"static/(view\.js|view\.css)"), Asset),
        (url_path_join(prefix, "api/status"), Status),
        (url_path_join(prefix, r"api/(break|reset)"), Act),
    ], cookie_secret=os.urandom(32), xsrf_cookies=True, prefix=prefix,
        helper=Path(os.environ["DNSLAB_CLASS_HELPER"]))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dnslab class</title>
<meta name="xsrf" content="{{xsrf}}"><meta name="prefix" content="{{prefix}}">
<link rel="stylesheet" href="{{prefix}}static/view.css"></head>
<body><header><h1 id="title">class</h1><span id="at"></span></header>
<section id="drill">Drill: <select id="fault"></select>
<button id="break-all" type="button">apply to every lab</button> <span id="said" role="status"></span></section>
<table id="grid"><thead></thead><tbody></tbody></table>
<p class="legend">A green cell passes now; a task judged by an answer shows "?" until grading.
A trainee with no progress for <span id="stuck-after"></span> min is marked stuck.</p>
<script src="{{prefix}}static/view.js"></script></body></html>
"""

CSS = """body{font-family:sans-serif;margin:1em}header{display:flex;gap:1em;align-items:baseline}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px;text-align:center}
th.check{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal}
td.ok{background:#6c6}td.no{background:#e77}td.wait{background:#ddd}tr.stuck td.who{background:#fc6}
td.who{text-align:left}.legend{color:#555}#said{color:#036}
"""

JS = r"""'use strict';
const meta = n => document.querySelector(`meta[name=${n}]`).content;
const prefix = meta('prefix'), xsrf = meta('xsrf');
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls; return e; };
const say = t => { document.getElementById('said').textContent = t; };
async function act(action, body) {
  say(action + '...');
  const r = await fetch(prefix + 'api/' + action, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json', 'X-XSRFToken': xsrf}, body: JSON.stringify(body)});
  const j = await r.json().catch(() => ({error: r.statusText}));
  say(j.ok ? (action === 'reset' ? 'reset ' + j.reset : 'applied to ' + j.broken.length + ' lab(s)')
           : 'refused: ' + (j.error || r.status));
  refresh();
}
function render(s) {
  document.getElementById('title').textContent = `class ${s.class}: ${s.lab || ''}`;
  document.getElementById('at').textContent = 'as of ' + new Date(s.at * 1000).toLocaleTimeString();
  document.getElementById('stuck-after').textContent = Math.round(s.stuck_after / 60);
  const sel = document.getElementById('fault');
  if (sel.options.length !== s.faults.length) {
    sel.replaceChildren(...s.faults.map(f => { const o = el('option', f); o.value = f; return o; }));
  }
  const head = el('tr');
  for (const h of ['trainee', 'health', 'server', 'kernels', 'faults']) head.append(el('th', h));
  for (const c of s.checks) head.append(el('th', c, 'check'));
  for (const t of s.tasks) head.append(el('th', `${t.id} (${t.points})`, 'check'));
  head.append(el('th', ''));
  document.querySelector('#grid thead').replaceChildren(head);
  const rows = s.trainees.map(t => {
    const tr = el('tr', undefined, t.stuck ? 'stuck' : '');
    tr.id = t.instance;
    const who = el('td', t.trainee || t.instance, 'who');
    who.title = t.instance + (t.stuck ? ' (stuck)' : '');
    tr.append(who, el('td', t.health, t.health === 'ok' ? 'ok' : 'no'), el('td', t.server ? 'up' : 'off'),
              el('td', String(t.kernels)), el('td', t.faults.join(', ')));
    for (const c of s.checks) {
      const v = t.checks[c];
      const td = el('td', v === undefined ? '' : v ? '✓' : '✗', v === undefined ? 'wait' : v ? 'ok' : 'no');
      td.id = `${t.instance}--${c}`;
      tr.append(td);
    }
    for (const task of s.tasks) {
      const v = t.tasks[task.id];
      const td = el('td', v === null || v === undefined ? '?' : String(v),
                    v === null || v === undefined ? 'wait' : v > 0 ? 'ok' : 'no');
      td.id = `${t.instance}--${task.id}`;
      tr.append(td);
    }
    const cell = el('td');
    const b = el('button', 'break', 'break'); b.type = 'button';
    b.onclick = () => act('break', {fault: sel.value, instance: t.instance});
    const r = el('button', 'reset', 'reset'); r.type = 'button';
    r.onclick = () => { if (confirm('Reset the lab of ' + (t.trainee || t.instance) + '? Her edits to the lab are lost; her notebooks stay.'))
      act('reset', {instance: t.instance}); };
    cell.append(b, r);
    tr.append(cell);
    return tr;
  });
  document.querySelector('#grid tbody').replaceChildren(...rows);
}
async function refresh() {
  // the hub's cookie counts for a script's request only with the page's xsrf token
  const r = await fetch(prefix + 'api/status', {credentials: 'same-origin', headers: {'X-XSRFToken': xsrf}});
  if (r.ok) { const j = await r.json(); if (j.ok) render(j.status); }
}
document.getElementById('break-all').onclick = () => {
  const f = document.getElementById('fault').value;
  if (f && confirm('Apply ' + f + ' to every lab of the class?')) act('break', {fault: f});
};
refresh();
setInterval(refresh, 3000);
"""

ASSETS = {"view.js": ("application/javascript", JS), "view.css": ("text/css", CSS)}


def main() -> None:
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    app().listen(url.port, url.hostname)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
