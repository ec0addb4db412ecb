"""dnslab.sanitize, offline: a trainee's notebook is hostile input. Once normalized it has the
assignment's structure (nbgrader records it), and rendered to HTML nothing the trainee wrote
can run as script: no raw HTML, no javascript: or data: links, no rich outputs, no scripts."""
from __future__ import annotations

import base64
import copy
import json
import re
from html.parser import HTMLParser

import nbformat
import pytest
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbgrader.nbgraderformat import ValidationError as NbgraderValidationError
from nbgrader.preprocessors import CheckCellMetadata

from dnslab import exercise, sanitize
from dnslab.sanitize import harden_html, normalize, safe_markdown, safe_outputs

SOURCE = exercise.find("dns-basics").notebook("en")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()
HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[a](javascript:alert(1))",
    "[a][r]\n\n[r]: javascript:alert(1)",
    "![x](data:text/html,<script>alert(1)</script>)",
    "<javascript:alert(1)>",
    "[b](JaVa\\Script:alert(1)) [c](javascript&#58;alert(1)) [d](<javascript:alert(1)>)",
    "> [q]: javascript:alert(1)\n\n[e][q]",
    "```mermaid\ngraph TD; A[<img src=x onerror=alert(1)>]\n```",
    "![i](attachment:evil.png)",
]
RAW_HTML = [  # shown as text, so "javascript:" and "onload=" stay visible, but in no tag
    "<svg onload=alert(1)><a href='javascript:alert(1)'>x</a></svg>",
    '<iframe srcdoc="<script>alert(1)</script>"></iframe><form action=javascript:alert(1)><button>go',
    "<!-- x --><![CDATA[ x ]]><?php x ?><!DOCTYPE x>",
]
ORDINARY_MARKDOWN = "Some **bold** text, a `code span`.\n\n- one\n- two\n\n> quoted\n\nSee [the RFC](https://www.rfc-editor.org/rfc/rfc1034)."
HOSTILE_OUTPUTS = [
    {"output_type": "display_data", "metadata": {},
     "data": {"text/html": "<script>alert(1)</script>", "text/plain": "<DataFrame>"}},
    {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": "<svg><script>alert(1)</script></svg>"}},
    {"output_type": "display_data", "metadata": {}, "data": {"application/javascript": "alert(1)"}},
    {"output_type": "display_data", "metadata": {}, "data": {"image/png": '"><script>alert(1)</script>'}},
    {"output_type": "display_data", "data": {"image/png": PNG},
     "metadata": {"image/png": {"width": '1 onerror="alert(1)"'}, "filenames": {"image/png": "x\" onerror=alert(1)"}}},
    {"output_type": "execute_result", "execution_count": "7", "metadata": {},
     "data": {"text/markdown": "<img src=x onerror=alert(1)>", "text/latex": "$x$",
              "application/vnd.jupyter.widget-view+json": {"model_id": "x"}}},
    {"output_type": "stream", "name": "stdout", "text": "<script>alert(1)</script>\n"},
    {"output_type": "error", "ename": "E<script>", "evalue": "<img src=x onerror=alert(1)>",
     "traceback": ["\x1b[31m<script>alert(1)</script>\x1b[0m"]},
    {"output_type": "stream", "name": "stdout", "text": "x" * 2_000_000},
]


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def source_cell(gid: str):
    return next(c for c in SOURCE.cells if grade_id(c) == gid)


def hostile_submission() -> dict:
    """The released notebook as JSON, attacked in every way the brief lists."""
    nb = json.loads(nbformat.writes(SOURCE))
    cells = {grade_id(c): c for c in nb["cells"] if grade_id(c)}
    cells["trace"]["source"] = ["TLD_SERVER = ", "'mine'\n"]          # a solution, as a list of lines
    cells["trace-answer"]["source"] = "import os\nos.system('id')"      # an edited test cell
    cells["trace-answer"]["outputs"] = copy.deepcopy(HOSTILE_OUTPUTS[:3])
    cells["explain"].update(cell_type="markdown", source="my answer <script>alert(1)</script>")
    del cells["explain"]["outputs"], cells["explain"]["execution_count"]
    nb["cells"].remove(cells["fix-resolution"])                         # a deleted test cell
    nb["cells"] += [
        {"cell_type": "code", "id": "dup", "execution_count": 3, "outputs": [], "source": "print('dup')",
         "metadata": {"nbgrader": {**cells["fix"]["metadata"]["nbgrader"], "grade": True, "points": 50}}},
        {"cell_type": "code", "id": "bonus", "execution_count": None, "outputs": [], "source": "pass",
         "metadata": {"nbgrader": {"grade_id": "bonus", "grade": True, "points": 100, "solution": False,
                                   "locked": True, "schema_version": 3}}},
        {"cell_type": "raw", "id": "raw", "metadata": {"format": "text/html"},
         "source": "<script>alert('raw')</script>"},
        {"cell_type": "markdown", "id": cells["trace"]["id"], "source": "\n\n".join(HOSTILE_MARKDOWN),
         "metadata": {"tags": ['x" onmouseover="alert(1)']}, "attachments": {"evil.png": {"image/png": PNG}}},
        {"cell_type": "markdown", "id": "md", "metadata": {}, "source": ORDINARY_MARKDOWN},
    ]
    nb["metadata"] = {"kernelspec": {"name": "evil", "display_name": "evil", "language": "python"},
                      "widgets": {"application/vnd.jupyter.widget-state+json": {"</script><script>": 1}}}
    return nb


@pytest.fixture(scope="module")
def normalized():
    return normalize(hostile_submission(), SOURCE, max_cells=200)


def test_the_structure_is_the_assignments(normalized):
    nb, notes = normalized
    nbformat.validate(nb)
    assert nb.metadata == SOURCE.metadata
    graded = [grade_id(c) for c in nb.cells if grade_id(c)]
    assert graded == [grade_id(c) for c in SOURCE.cells if grade_id(c) and grade_id(c) != "fix-resolution"]
    for cell in nb.cells:
        gid = grade_id(cell)
        if gid:  # a copy of the source cell
            src = source_cell(gid)
            assert (cell.cell_type, cell.metadata, cell.id) == (src.cell_type, src.metadata, src.id)
        else:    # a plain cell
            assert cell.metadata == {} and cell.cell_type in ("code", "markdown")
        assert "attachments" not in cell
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    ids = [c.id for c in nb.cells]
    assert len(set(ids)) == len(ids)
    by_id = {grade_id(c): c for c in nb.cells if grade_id(c)}
    assert by_id["trace"].source == "TLD_SERVER = 'mine'\n"                     # the trainee's solution
    assert by_id["trace-answer"].source == source_cell("trace-answer").source   # edits undone
    assert by_id["explain"].source == source_cell("explain").source             # turned into markdown
    assert by_id["explain"].cell_type == "code"
    assert "fix-resolution" not in by_id                                       # stays deleted
    plain = [c for c in nb.cells if not grade_id(c)]
    assert "print('dup')" in [c.source for c in plain] and "pass" in [c.source for c in plain]
    assert any(c.cell_type == "markdown" and "&lt;script&gt;alert('raw')" in c.source for c in plain)
    assert any("claimed grade id 'fix' a second time: kept as a plain cell" in n for n in notes)
    assert any("claimed unknown grade id 'bonus'" in n for n in notes)
    assert any("'trace-answer'" in n and "locked" in n for n in notes)
    assert any("'explain'" in n and "markdown" in n for n in notes)
    assert any("'fix-resolution'" in n and "missing" in n for n in notes)
    assert any("raw cell" in n for n in notes)


def test_nbgrader_can_record_it(normalized):
    nb, _ = normalized
    CheckCellMetadata().preprocess(nb, {})
    with pytest.raises(NbgraderValidationError):  # what it would have said without normalize
        CheckCellMetadata().preprocess(nbformat.from_dict(hostile_submission()), {})


def test_at_most_max_cells_are_kept():
    cell = {"cell_type": "code", "source": "x = 1", "metadata": {}, "outputs": [], "execution_count": None}
    nb, notes = normalize({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell] * 10_000},
                          SOURCE, max_cells=200)
    assert len(nb.cells) == 200
    assert "9800 cells beyond the limit of 200 were dropped" in notes
    nbformat.validate(nb)


def test_garbage_is_kept_as_plain_cells():
    gid = grade_id(SOURCE.cells[4])
    cells = [
        {"cell_type": "code", "source": "a = 1", "metadata": ["not", "a", "dict"]},
        {"cell_type": "code", "source": "b = 2", "metadata": {"nbgrader": "trace"}},
        {"cell_type": "code", "source": "c = 3", "metadata": {"nbgrader": {"grade_id": 42, "solution": True}}},
        {"cell_type": "code", "source": "d = 4", "metadata": {"nbgrader": {"solution": True}}},
        {"cell_type": "markdown", "source": ["two ", "lines"], "metadata": None, "attachments": "junk"},
        {"cell_type": "code", "source": 7, "outputs": "junk", "execution_count": "1", "id": "bad id!"},
        {"cell_type": "heading", "source": "# old", "level": 1},
        {"source": "no type"},
        {},
        "not a cell",
        None,
        {"cell_type": "code", "source": "e = '\ud800'", "metadata": {"nbgrader": {"grade_id": gid}}},
    ]
    nb, notes = normalize({"nbformat": 4, "nbformat_minor": 5, "metadata": "junk", "cells": cells},
                          SOURCE, max_cells=200)
    nbformat.validate(nb)
    nbformat.writes(nb)  # no lone surrogate left to choke the UTF-8 writer
    assert [grade_id(c) for c in nb.cells] == [None] * 11 + [gid]
    assert all(c.metadata == {} for c in nb.cells[:11])
    assert [c.source for c in nb.cells[:4]] == ["a = 1", "b = 2", "c = 3", "d = 4"]
    assert nb.cells[4].source == "two lines" and nb.cells[5].source == ""
    assert nb.cells[11].source == "e = '?'"
    assert sum("malformed metadata" in n for n in notes) >= 6
    assert normalize({"cells": "junk"}, SOURCE, max_cells=5)[0].cells == []


def test_only_plain_outputs_are_kept():
    outs = safe_outputs(copy.deepcopy(HOSTILE_OUTPUTS[:8]) + ["junk", None, {"output_type": "bogus"},
                        {"output_type": "stream", "name": "stdin", "text": "x"},
                        {"output_type": "stream", "name": "stdout", "text": 3},
                        {"output_type": "error", "ename": "E", "evalue": "v", "traceback": [1]},
                        {"output_type": "display_data", "data": "junk"}], max_bytes=100_000)
    nbformat.validate(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(outputs=outs)]))
    assert [o.output_type for o in outs] == ["display_data"] * 5 + ["execute_result", "stream", "error"]
    assert [o.data for o in outs[:4]] == [{"text/plain": "<DataFrame>"}] + [{"text/plain": sanitize.NO_RICH_OUTPUT}] * 3
    assert outs[4].data == {"image/png": PNG} and all(o.get("metadata", {}) == {} for o in outs)
    assert outs[5].data == {"text/plain": sanitize.NO_RICH_OUTPUT} and outs[5].execution_count is None
    assert outs[7].traceback == HOSTILE_OUTPUTS[7]["traceback"]


def test_a_png_must_be_strict_base64_of_a_png():
    wrapped = "\n".join(PNG[i:i + 20] for i in range(0, len(PNG), 20))
    for data, kept in [(PNG, True), (wrapped, True), (PNG[:-2], False), (PNG.replace("i", " i", 1), False),
                       (base64.b64encode(b"GIF89a....").decode(), False), ("iVBORw0KGgo=\"><script>", False)]:
        outs = safe_outputs([{"output_type": "display_data", "data": {"image/png": data}, "metadata": {}}],
                            max_bytes=10_000)
        assert ("image/png" in outs[0].data) is kept, data


def test_outputs_stay_within_max_bytes():
    many = [{"output_type": "stream", "name": "stdout", "text": "é" * 999}] * 50
    outs = safe_outputs([HOSTILE_OUTPUTS[-1], *many], max_bytes=100_000)
    assert len(outs) == 1 and outs[0].text.endswith(sanitize.TRUNCATED)
    assert len(outs[0].text.encode()) <= 100_000
    outs = safe_outputs(many, max_bytes=10_000)
    assert sum(len(o.text.encode()) for o in outs) <= 10_000 and outs[-1].text.endswith(sanitize.TRUNCATED)
    assert safe_outputs(many, max_bytes=0) == []


class Tags(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def assert_inert(page: str, *, raw_html: bool = False) -> None:
    """No script, event handler or javascript: URL; ``raw_html``: the markdown had raw HTML,
    shown as escaped text, so "javascript:" may be read in the page, only not in a tag."""
    low = re.sub(r"<style.*?</style>", "", page.lower(), flags=re.S)  # bootstrap's CSS has a[href^="javascript:"]
    assert "<script" not in low
    assert raw_html or "javascript:" not in low
    assert not re.search(r"<[^>]*(\bon[a-z]+\s*=|javascript:)", low)  # onerror=... only ever as text
    for tag, attrs in Tags(page).tags:
        assert tag not in ("script", "iframe", "object", "embed", "svg", "base", "form"), tag
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        for name in ("href", "src"):
            url = re.sub(r"\s", "", attrs.get(name, "")).lower()
            assert not url.startswith(("javascript:", "data:text", "data:image/svg", "vbscript:")), (tag, attrs)


@pytest.mark.parametrize("template", ["lab", "classic"])
def test_the_rendered_page_runs_nothing(normalized, template):
    nb = copy.deepcopy(normalized[0])
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = safe_outputs(copy.deepcopy(HOSTILE_OUTPUTS), max_bytes=100_000)
    page, _ = HTMLExporter(template_name=template).from_notebook_node(nb)
    assert "<script" in page.lower()  # nbconvert's own: harden_html must take them out
    page = harden_html(page)
    assert_inert(page)
    head = re.search(r"<head[^>]*>", page, re.I)
    assert page[head.end():].startswith('<meta http-equiv="Content-Security-Policy" '
                                        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:;")
    assert "&lt;img src=x onerror=alert(1)&gt;" in page  # shown as text
    assert f"data:image/png;base64,{PNG}" in page
    assert "<strong>bold</strong>" in page and "<li>one</li>" in page and "<blockquote>" in page
    assert '<a href="https://www.rfc-editor.org/rfc/rfc1034">the RFC</a>' in page
    assert "<code>code span</code>" in page


@pytest.mark.parametrize("text", HOSTILE_MARKDOWN + RAW_HTML)
def test_hostile_markdown_renders_inert(text):
    rendered = markdown2html_mistune(safe_markdown(text))
    assert_inert(rendered, raw_html=text in RAW_HTML)
    assert "mermaid" not in rendered
    assert sanitize._inert(safe_markdown(text))


def test_a_link_the_rewrite_misses_falls_back_to_plain_text(monkeypatch):
    monkeypatch.setattr(sanitize, "_tamed", lambda text: text)  # as if the rewrite had a hole
    text = "**x** <img src=x onerror=alert(1)> [a](javascript:alert(1))"
    safe = safe_markdown(text)
    rendered = markdown2html_mistune(safe)
    assert "<img" not in rendered and "<a" not in rendered and "<strong>" not in rendered
    assert "**x** &lt;img src=x onerror=alert(1)&gt; [a](javascript:alert(1))" in rendered


def test_ordinary_markdown_still_works():
    rendered = markdown2html_mistune(safe_markdown(ORDINARY_MARKDOWN + "\n\n<https://example.org/> & 1 < 2"))
    for part in ["<strong>bold</strong>", "<code>code span</code>", "<li>two</li>", "<blockquote>",
                 '<a href="https://www.rfc-editor.org/rfc/rfc1034">the RFC</a>',
                 '<a href="https://example.org/">https://example.org/</a>', "&amp; 1 &lt; 2"]:
        assert part in rendered


def test_harden_html():
    meta = '<meta http-equiv="Content-Security-Policy"'
    page = harden_html('<!DOCTYPE html><HTML><HEAD lang="en"><title>t</title>'
                       "<SCRIPT src=x></SCRIPT ><script type=module>import x</script></head>"
                       "<body><header>h</header><scr<script>x</script>ipt>alert(1)</script>ok<script/src=y>")
    assert page == f'<!DOCTYPE html><HTML><HEAD lang="en">{meta} content="{sanitize.CSP}"><title>t</title>' \
                   "</head><body><header>h</header>ok"
    assert harden_html("<p>no head</p>").startswith(meta)
    assert harden_html("<header>x</header>").startswith(meta)
