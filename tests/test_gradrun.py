"""dnslab.gradrun, the in-process notebook runner, run for real as a subprocess (no root needed)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from dnslab.gradrun import parse_line, request

REPO = Path(__file__).resolve().parent.parent


def run(tmp_path: Path, *sources: str, cell_timeout: float = 10, max_output: int = 100_000,
        timeout: float = 20) -> tuple[dict[int, list[dict]], bool, bytes]:
    """Run the cells (ids 1, 2, ...): their outputs by id, whether the run finished, raw stdout.
    The runner leaves nothing in its TMPDIR."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    payload = request(enumerate((textwrap.dedent(s) for s in sources), 1), cell_timeout, max_output)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.run([sys.executable, "-P", "-m", "dnslab.gradrun"], cwd=tmp_path, input=payload, env=env,
                          capture_output=True, timeout=timeout)
    assert not list((tmp_path / "tmp").iterdir())
    lines = [parse_line(line) for line in proc.stdout.splitlines()]
    assert None not in lines, proc.stdout
    done = lines[-1:] == [{"done": True}]
    cells = {line["id"]: line for line in lines if "id" in line}
    assert [c["execution_count"] for c in cells.values()] == list(range(1, len(cells) + 1))
    return {i: c["outputs"] for i, c in cells.items()}, done, proc.stdout


def text(outputs: list[dict], name: str = "stdout") -> str:
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == name)


def errors(outputs: list[dict]) -> list[dict]:
    return [o for o in outputs if o["output_type"] == "error"]


def test_prints_results_displays_and_persistent_variables(tmp_path):
    cells, done, _ = run(tmp_path, "print('hello')\nx = 41", "x + 1", """\
                         from IPython.display import HTML, display
                         print('before')
                         display(HTML('<b>hi</b>'))
                         print('after')
                         """,
                         "import os, sys\nprint(sys.argv, os.getcwd())\n__name__")
    assert done
    assert cells[1] == [{"output_type": "stream", "name": "stdout", "text": "hello\n"}]
    assert cells[2] == [{"output_type": "execute_result", "execution_count": 2,
                         "data": {"text/plain": "42"}, "metadata": {}}]
    assert cells[3] == [{"output_type": "stream", "name": "stdout", "text": "before\n"},
                        {"output_type": "display_data", "metadata": {},
                         "data": {"text/html": "<b>hi</b>", "text/plain": "<IPython.core.display.HTML object>"}},
                        {"output_type": "stream", "name": "stdout", "text": "after\n"}]
    assert text(cells[4]) == f"['notebook'] {tmp_path}\n"
    assert cells[4][1]["data"] == {"text/plain": "'__main__'"}


def test_errors_are_outputs_and_execution_goes_on(tmp_path):
    cells, done, _ = run(tmp_path, "1/0", "def f(:", "import sys\nsys.exit(3)", "print('still here')")
    assert done
    [err] = errors(cells[1])
    assert err["ename"] == "ZeroDivisionError" and err["evalue"] == "division by zero"
    assert any("1/0" in line for line in err["traceback"]) and "\x1b[" not in "".join(err["traceback"])
    assert errors(cells[2])[0]["ename"] == "SyntaxError"
    assert (errors(cells[3])[0]["ename"], errors(cells[3])[0]["evalue"]) == ("SystemExit", "3")
    assert text(cells[4]) == "still here\n"


def test_shell_escapes_raw_fds_children_and_stderr(tmp_path):
    cells, done, _ = run(tmp_path, "!echo hi", "%%bash\necho frombash\necho bad >&2",
                         """\
                         import os, subprocess, sys
                         os.write(1, b"raw\\n")
                         subprocess.run(["echo", "child"])
                         print("err", file=sys.stderr)
                         os.write(2, b"raw2")
                         """)
    assert done
    assert text(cells[1]).strip() == "hi"
    assert (text(cells[2]), text(cells[2], "stderr")) == ("frombash\n", "bad\n")
    assert (text(cells[3]), text(cells[3], "stderr")) == ("raw\nchild\n", "err\nraw2")


def test_timeout_interrupts_the_cell_and_the_next_runs(tmp_path):
    start = time.monotonic()
    cells, done, _ = run(tmp_path, "import time\ntime.sleep(10)", "!sleep 10", "print('next')", cell_timeout=1)
    assert done and time.monotonic() - start < 6
    for cell in (cells[1], cells[2]):
        [err] = errors(cell)
        assert err["ename"] == "CellTimeout" and "longer than 1 s" in err["evalue"]
    assert text(cells[3]) == "next\n"


def test_floods_are_truncated(tmp_path):
    cells, done, raw = run(tmp_path, 'print("x" * 10_000_000)', "for i in range(100_000):\n    print(i)",
                           "print('small')\n'y' * 50_000", "raise ValueError('v' * 50_000)", max_output=10_000)
    assert done and len(raw) < 60_000
    marker = {"output_type": "stream", "name": "stdout", "text": "[output truncated: more than 10000 bytes]\n"}
    for i in (1, 2, 3, 4):
        assert cells[i][-1] == marker
        assert sum(len(o.get("text", "")) for o in cells[i][:-1]) <= 10_000
    assert text(cells[2]).startswith("0\n1\n2\n")
    assert cells[3][:1] == [{"output_type": "stream", "name": "stdout", "text": "small\n"}]
    assert errors(cells[4])[0]["ename"] == "ValueError"  # an error is never dropped


def test_input_fails_fast(tmp_path):
    start = time.monotonic()
    cells, done, _ = run(tmp_path, "input('name? ')", "print('next')")
    assert done and time.monotonic() - start < 5
    assert errors(cells[1])[0]["ename"] == "EOFError"
    assert text(cells[2]) == "next\n"


def test_os_exit_keeps_what_was_done(tmp_path):
    cells, done, _ = run(tmp_path, "print('one')", "import os\nos._exit(0)", "print('three')")
    assert not done
    assert list(cells) == [1] and text(cells[1]) == "one\n"


def test_custom_exception_handler(tmp_path):
    cells, done, _ = run(tmp_path, """\
                         def handler(shell, etype, value, tb, tb_offset=None):
                             print(f"oops: {value}")
                         get_ipython().set_custom_exc((ZeroDivisionError,), handler)
                         """, "1/0", "int('z')")
    assert done
    assert cells[2] == [{"output_type": "stream", "name": "stdout", "text": "oops: division by zero\n"}]
    assert errors(cells[3])[0]["ename"] == "ValueError"


def test_lean_imports(tmp_path):
    cells, done, _ = run(tmp_path, "import sys\nsorted(m for m in sys.modules if m.split('.')[0] in "
                                   "{'nbformat', 'nbclient', 'jupyter_client', 'pydantic', 'zmq', 'dnslab'})")
    assert done and cells[1][0]["data"]["text/plain"] == "['dnslab']"  # the runner itself is __main__


def test_parse_line_rejects_malformed_lines():
    def line(*outputs: str) -> bytes:
        return b'{"id": 1, "execution_count": 1, "outputs": [%s]}' % ", ".join(outputs).encode()

    assert parse_line(line('{"output_type": "stream", "name": "stdout", "text": "x"}'))["outputs"][0]["text"] == "x"
    assert parse_line(b'{"done": true}\n') == {"done": True}
    for bad in [b"", b"not json", b"\xff", b"[]", b"null", b'{"done": 1}', b'{"done": true, "x": 1}', b"[" * 100_000,
                b'{"id": "1", "execution_count": 1, "outputs": []}',
                b'{"id": true, "execution_count": 1, "outputs": []}',
                b'{"id": 1, "execution_count": 1, "outputs": {}}',
                b'{"id": 1, "execution_count": 1, "outputs": [], "extra": 0}',
                line('{"output_type": "stream", "name": "stdin", "text": "x"}'),
                line('{"output_type": "stream", "name": "stdout", "text": ["x"]}'),
                line('{"output_type": "stream", "name": "stdout", "text": "x", "more": 1}'),
                line('{"output_type": "weird"}'), line('{"output_type": ["stream"]}'), line('"stream"'),
                line('{"output_type": "display_data", "data": {"a": 1}, "metadata": {}}'),
                line('{"output_type": "display_data", "data": {}, "metadata": NaN}'),
                line('{"output_type": "execute_result", "execution_count": null, "data": {}, "metadata": {}}'),
                line('{"output_type": "error", "ename": "E", "evalue": "", "traceback": [1]}')]:
        assert parse_line(bad) is None, bad
