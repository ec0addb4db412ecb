"""Run a notebook's code cells in-process with IPython, as the trainee, for the grader.

The grader (root) starts ``python -P -m dnslab.gradrun`` as the unprivileged trainee, in the
trainee's home. It needs only the stdlib and IPython (no Jupyter kernel, no ZMQ), so it starts fast.

Protocol:

- stdin: one JSON object, then EOF (built by :func:`request`)::

      {"cells": [{"id": int, "source": str}, ...], "cell_timeout": float, "max_output": int}

  Then fd 0 becomes /dev/null: ``input()`` in a cell fails at once.
- stdout (fd 1 at start, kept on a private close-on-exec fd): one JSON line per cell, in order,
  ``{"id": int, "execution_count": int, "outputs": [nbformat v4 output dicts]}``, then
  ``{"done": true}``. Each line is flushed when its cell ends, so a killed or self-ended
  (``os._exit``) run keeps its finished cells; no ``done`` line means the run did not finish.
- Outputs: ``stream`` (fd 1 and 2 of the process are capture pipes, so prints, ``!cmd``,
  ``%%bash`` and children's raw writes are all kept; "stdout"/"stderr"), ``execute_result``
  (the last expression), ``display_data`` (``display()``), ``error`` (ename, evalue, traceback
  without colours; execution goes on with the next cell, SystemExit included). A cell running
  longer than ``cell_timeout`` seconds is interrupted and ends with an error named "CellTimeout".
  A cell keeps at most ``max_output`` bytes of text (characters for non-stream payloads); beyond
  that its outputs end with a stream ``[output truncated: more than N bytes]``. An error output
  is always kept (cut if need be) so a failure is never lost.

The grader must treat every line as untrusted: :func:`parse_line` validates one.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import signal
import sys
import tempfile
import termios
import threading
import time
from typing import Any, Callable, Iterable


def request(cells: Iterable[tuple[int, str]], cell_timeout: float, max_output: int) -> bytes:
    """The runner's stdin for these ``(id, source)`` cells."""
    return json.dumps({"cells": [{"id": i, "source": s} for i, s in cells],
                       "cell_timeout": cell_timeout, "max_output": max_output}).encode()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _is_bundle(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(x, str) for x in v.values())


_FIELDS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "stream": {"name": lambda v: v in ("stdout", "stderr"), "text": _is_str},
    "execute_result": {"execution_count": _is_int, "data": _is_bundle, "metadata": lambda v: isinstance(v, dict)},
    "display_data": {"data": _is_bundle, "metadata": lambda v: isinstance(v, dict)},
    "error": {"ename": _is_str, "evalue": _is_str,
              "traceback": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)},
}


def _is_output(out: Any) -> bool:
    kind = out.get("output_type") if isinstance(out, dict) else None
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    return (fields is not None and out.keys() == {"output_type", *fields}
            and all(check(out[key]) for key, check in fields.items()))


def _reject(constant: str) -> None:
    raise ValueError(constant)


def parse_line(line: bytes) -> dict | None:
    """One result line as a dict (a cell's result or ``{"done": True}``), None if malformed."""
    try:
        obj = json.loads(line, parse_constant=_reject)
    except (ValueError, RecursionError):
        return None
    if obj == {"done": True} and obj["done"] is True:
        return obj
    if (isinstance(obj, dict) and obj.keys() == {"id", "execution_count", "outputs"}
            and _is_int(obj["id"]) and _is_int(obj["execution_count"])
            and isinstance(obj["outputs"], list) and all(map(_is_output, obj["outputs"]))):
        return obj
    return None


class CellTimeout(KeyboardInterrupt):
    """Raised in the main thread when a cell runs out of time."""


def _str(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def _bundle(data: dict) -> dict[str, str]:
    """A mime bundle with str values (bytes as base64, anything else as JSON)."""
    return {str(mime): value if isinstance(value, str)
            else base64.b64encode(value).decode() if isinstance(value, bytes)
            else json.dumps(value, default=str) for mime, value in data.items()}


class Capture:
    """Fds 1 and 2 made pipes read by threads; keeps a cell's outputs within ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.items: list[list | dict] = []  # [name, bytearray] for streams, output dicts
        self.size, self.truncated, self.failed, self.last = 0, False, False, 0.0
        self.pipes: list[int] = []
        for fd, name in ((1, "stdout"), (2, "stderr")):
            r, w = os.pipe()
            os.dup2(w, fd)
            os.close(w)
            self.pipes.append(r)
            threading.Thread(target=self._read, args=(r, name), daemon=True).start()

    def _read(self, fd: int, name: str) -> None:
        while True:
            select.select([fd], [], [])
            with self.lock:  # held from read to keep, so an empty pipe means all it had is kept
                chunk = os.read(fd, 65536)
                if not chunk:
                    return
                self.last = time.monotonic()
                room = max(self.limit - self.size, 0)
                if len(chunk) > room:
                    self.truncated, chunk = True, chunk[:room]
                self.size += len(chunk)
                if chunk and self.items and isinstance(self.items[-1], list) and self.items[-1][0] == name:
                    self.items[-1][1] += chunk
                elif chunk:
                    self.items.append([name, bytearray(chunk)])

    def drain(self, quiet: float, bound: float) -> None:
        """Flush Python's streams; wait (at most ``bound`` s) until all the pipes received is
        kept and they have been silent for ``quiet`` s."""
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        start = time.monotonic()
        while (now := time.monotonic()) < start + bound:
            with self.lock:
                unread = sum(int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, bytes(4)), sys.byteorder)
                             for fd in self.pipes)
            if not unread and now - max(self.last, start) >= quiet:
                return
            time.sleep(0.002)

    def add(self, out: dict, size: int) -> None:
        """Keep an output after what was printed before it, if it fits."""
        self.drain(0, 0.1)
        with self.lock:
            if self.size + size > self.limit:
                self.truncated = True
            else:
                self.size += size
                self.items.append(out)

    def error(self, ename: str, evalue: str, traceback: list[str]) -> None:
        """Keep an error output, cut to the room left if need be."""
        self.drain(0, 0.1)
        with self.lock:
            room = max(self.limit - self.size, 0)
            if len(ename) + len(evalue) + sum(map(len, traceback)) > room:
                self.truncated, ename, evalue, traceback = True, ename[:100], evalue[:max(room, 200)], []
            self.size += len(ename) + len(evalue) + sum(map(len, traceback))
            self.failed = True
            self.items.append({"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback})

    def take(self) -> list[dict]:
        """The outputs kept since the last call; starts a new budget."""
        with self.lock:
            items, truncated = self.items, self.truncated
            self.items, self.size, self.truncated, self.failed, self.last = [], 0, False, False, 0.0
        outputs = [{"output_type": "stream", "name": item[0], "text": item[1].decode("utf-8", "replace")}
                   if isinstance(item, list) else item for item in items]
        if truncated:
            outputs.append({"output_type": "stream", "name": "stdout",
                            "text": f"[output truncated: more than {self.limit} bytes]\n"})
        return outputs


def _shell(capture: Capture) -> Any:
    """An IPython shell whose results, displays and tracebacks go to ``capture``."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    def keep(kind: str, data: dict, **extra: Any) -> None:
        bundle = _bundle(data)
        capture.add({"output_type": kind, **extra, "data": bundle, "metadata": {}}, sum(map(len, bundle.values())))

    class Hook(DisplayHook):
        def write_output_prompt(self) -> None:
            pass

        def write_format_data(self, format_dict: dict, md_dict: dict | None = None) -> None:
            keep("execute_result", format_dict, execution_count=self.prompt_count)

        def log_output(self, format_dict: dict) -> None:
            pass  # IPython 9 keeps every output in memory (for %notebook): not here

    class Publisher(DisplayPublisher):
        def publish(self, data: dict, metadata: dict | None = None, *args: Any, **kwargs: Any) -> None:
            keep("display_data", data)

    class Shell(InteractiveShell):
        def _tee(self, channel: str) -> contextlib.AbstractContextManager:
            return contextlib.nullcontext()  # nor a copy of every write to sys.stdout/stderr

        def _showtraceback(self, etype: type, evalue: BaseException, stb: list[str]) -> None:
            capture.error(etype.__name__, _str(evalue), [_str(line) for line in stb])

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    return Shell.instance(config=config, displayhook_class=Hook, display_pub_class=Publisher)


def _run(shell: Any, capture: Capture, source: str, timeout: float) -> None:
    """Run one cell within ``timeout`` s (re-interrupting every second after); make sure a
    failure IPython did not show (timeout, exception group, usage error) gets an error output."""
    expired, message = False, f"the cell ran longer than {timeout:g} s and was interrupted"

    def alarm(signum: int, frame: object) -> None:
        nonlocal expired
        expired = True
        raise CellTimeout(message)

    signal.signal(signal.SIGALRM, alarm)
    exc: BaseException | None = None
    try:
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout, 1.0)
            result = shell.run_cell(source, store_history=True)
            exc = result.error_before_exec or result.error_in_exec
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except (CellTimeout, Exception) as escaped:
        exc = escaped
    if expired and not isinstance(exc, CellTimeout):  # interrupt swallowed or turned into another error
        capture.error("CellTimeout", message, [f"CellTimeout: {message}"])
    elif exc is not None and not capture.failed and not isinstance(exc, shell.custom_exceptions):
        capture.error(type(exc).__name__, _str(exc), [f"{type(exc).__name__}: {_str(exc)}"])


def _emit(fd: int, obj: dict) -> None:
    data = (json.dumps(obj) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def main() -> int:
    """Read the request, run its cells, stream their results; the exit code."""
    try:
        req = json.loads(sys.stdin.buffer.read())
        cells = [(cell["id"], cell["source"]) for cell in req["cells"]]
        timeout, limit = float(req["cell_timeout"]), req["max_output"]
        if not (all(_is_int(i) and isinstance(s, str) for i, s in cells)
                and 0 < timeout < float("inf") and _is_int(limit) and limit >= 0):
            raise ValueError("wrong types or values")
    except (ValueError, KeyError, TypeError) as exc:
        print(f"gradrun: bad request: {exc}", file=sys.stderr)
        return 2
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    results = fcntl.fcntl(1, fcntl.F_DUPFD_CLOEXEC, 10)
    capture = Capture(limit)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    sys.argv = ["notebook"]
    ipython_dir = os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="gradrun-")
    try:
        shell = _shell(capture)
        sys.path.insert(0, os.getcwd())  # as a kernel does: the notebook's own modules import (as the trainee)
        shutil.rmtree(ipython_dir)  # not needed once IPython started: a killed run leaves nothing
        capture.drain(0, 0.1)
        capture.take()  # whatever starting IPython printed
        for cell_id, source in cells:
            count = shell.execution_count
            _run(shell, capture, source, timeout)
            capture.drain(0.02, 0.5)
            _emit(results, {"id": cell_id, "execution_count": count, "outputs": capture.take()})
        _emit(results, {"done": True})
    finally:
        shutil.rmtree(ipython_dir, ignore_errors=True)  # if a cell made it again
    return 0


if __name__ == "__main__":
    # os._exit: do not wait for threads or children the notebook left running.
    os._exit(main())
