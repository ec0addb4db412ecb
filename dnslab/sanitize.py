"""A trainee's submitted notebook is hostile input: what the grader does to it before anything
executes it, records it with nbgrader, renders it to HTML feedback or shows it in the formgrader.

Two goals: nbgrader can always record it (:func:`normalize` gives it the canonical structure
of the assignment), and nothing the trainee wrote can run as script in anyone's browser
(:func:`safe_markdown` for their prose, :func:`safe_outputs` for what their code printed,
:func:`harden_html` for the feedback page).
"""
from __future__ import annotations

import binascii
import html
import re
import uuid
from html.parser import HTMLParser

import nbformat
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from nbformat import NotebookNode

SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src data:; "
       "base-uri 'none'; form-action 'none'")
NO_RICH_OUTPUT = "[rich output not shown]"
TRUNCATED = "\n[... output truncated]\n"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MARKER = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)")  # nbgrader finds them anywhere in a line


# --- the notebook's structure ------------------------------------------------------------------

def normalize(submitted: NotebookNode | dict, source: NotebookNode, *, max_cells: int,
              released: NotebookNode | None = None) -> tuple[NotebookNode, list[str]]:
    """The submission rebuilt on the assignment's ``source`` notebook, and notes on what changed.

    A cell claiming a grade id of the source (the first time) becomes a copy of that source
    cell, keeping the trainee's text only in a solution cell of the same type; every other cell
    becomes a plain code or markdown cell with no metadata. Source cells the submission lacks
    stay missing. A locked cell whose text is the ``released`` one (what trainees were given:
    hidden tests stripped) is not noted as edited. Never raises on a notebook nbformat could read."""
    nb = submitted if isinstance(submitted, NotebookNode) else nbformat.from_dict(submitted)
    cells = nb.get("cells") if isinstance(nb, dict) else None
    cells = cells if isinstance(cells, list) else []
    notes: list[str] = []
    if len(cells) > max_cells:
        notes.append(f"{len(cells) - max_cells} cells beyond the limit of {max_cells} were dropped")
        cells = cells[:max(max_cells, 0)]
    graded = {gid: c for c in source.cells if (gid := _claimed(c)[0]) is not None}
    given = {gid: c.source for c in (released.cells if released else []) if (gid := _claimed(c)[0]) is not None}
    seen: set[str] = set()
    ids: set[str] = set()
    kept = []
    for n, cell in enumerate(cells, 1):
        gid, odd = _claimed(cell)
        if gid in graded and gid not in seen:
            seen.add(gid)
            new = _adopted(cell, graded[gid], given.get(gid), n, notes)
        else:
            if gid in seen:
                notes.append(f"cell {n} claimed grade id {_shown(gid)} a second time: kept as a plain cell")
            elif gid is not None:
                notes.append(f"cell {n} claimed unknown grade id {_shown(gid)}: kept as a plain cell")
            elif odd:
                notes.append(f"cell {n} has malformed metadata: kept as a plain cell")
            new = _plain(cell, n, notes)
        new["id"] = _unique_id(new.get("id"), ids)
        kept.append(new)
    for gid in graded:
        if gid not in seen:
            notes.append(f"cell {_shown(gid)} of the assignment is missing: not restored")
    result = nbformat.v4.new_notebook(cells=kept, metadata=nbformat.from_dict(source.metadata))
    return result, notes


def _claimed(cell) -> tuple[str | None, bool]:
    """The grade id a cell claims (None if it claims none), and whether its metadata is malformed."""
    meta = cell.get("metadata", {}) if isinstance(cell, dict) else None
    if not isinstance(meta, dict):
        return None, True
    nbgrader = meta.get("nbgrader")
    if nbgrader is None:
        return None, False
    if not isinstance(nbgrader, dict) or not isinstance(nbgrader.get("grade_id"), str):
        return None, True
    return nbgrader["grade_id"], False


def _adopted(cell: dict, src: NotebookNode, given: str | None, n: int, notes: list[str]) -> NotebookNode:
    """A copy of the source cell ``src``, with the trainee's text if it is their solution."""
    new = nbformat.from_dict(src)  # a deep copy: every dict and list is new
    meta = src.metadata.nbgrader
    text, kind = _text(cell), cell.get("cell_type")
    if meta.get("solution") is True and not meta.get("locked") and kind == src.cell_type:
        new.source = safe_markdown(_defused(text)) if kind == "markdown" else _defused(text)
    elif text not in (src.source, given):
        why = f"was turned into {_shown(kind)}" if meta.get("solution") and kind != src.cell_type else "is locked"
        notes.append(f"cell {n} ({_shown(meta['grade_id'])}) {why}: the assignment's text was kept")
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    return new


def _plain(cell, n: int, notes: list[str]) -> NotebookNode:
    """The trainee's text in a cell with no metadata: code stays code, anything else is markdown."""
    kind = cell.get("cell_type") if isinstance(cell, dict) else None
    if kind == "code":
        return nbformat.v4.new_code_cell(_defused(_text(cell)))
    if kind == "raw":
        notes.append(f"cell {n}, a raw cell, became a markdown cell")
    return nbformat.v4.new_markdown_cell(safe_markdown(_defused(_text(cell))))


def _text(cell) -> str:
    """A cell's source as one string ("" if it is not text)."""
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        source = "".join(source)
    return _clean(source) if isinstance(source, str) else ""


def _defused(text: str) -> str:
    """A trainee's text with nbgrader's region markers broken (``BEGIN-HIDDEN-TESTS``): in a
    trainee's cell they would make nbgrader refuse the notebook, or hide what follows them."""
    return _MARKER.sub(lambda m: f"{m[1]}-{m[2].replace(' ', '-')}", text)


def _unique_id(wanted, taken: set[str]) -> str:
    """``wanted`` if it is a valid nbformat 4.5 cell id not yet taken, else a new one."""
    cid = wanted if isinstance(wanted, str) and re.fullmatch(r"[A-Za-z0-9_-]{1,64}", wanted) else ""
    while not cid or cid in taken:
        cid = uuid.uuid4().hex[:8]
    taken.add(cid)
    return cid


def _shown(value) -> str:
    """A hostile value quoted for a note: repr, at most 40 characters of it."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _clean(text: str) -> str:
    """``text`` without lone surrogates (nbformat could not write them as UTF-8)."""
    return text.encode("utf-8", "replace").decode("utf-8")


# --- outputs -----------------------------------------------------------------------------------

def safe_outputs(outputs: list, *, max_bytes: int) -> list[NotebookNode]:
    """Outputs reduced to plain text, tracebacks and valid PNG images, ``max_bytes`` of text in all.

    Rich output (HTML, SVG, JavaScript, markdown, widgets...) is dropped; output metadata is
    emptied; anything malformed is dropped."""
    budget = _Budget(max_bytes)
    kept = []
    for out in outputs if isinstance(outputs, list) else []:
        if budget.full:
            break
        kind = out.get("output_type") if isinstance(out, dict) else None
        if kind == "stream":
            new = _stream(out, budget)
        elif kind == "error":
            new = _error(out, budget)
        elif kind in ("execute_result", "display_data"):
            new = _bundle(out, budget)
        else:
            new = None
        if new is not None:
            kept.append(nbformat.from_dict(new))
    return kept


class _Budget:
    """What is left of ``max_bytes``; the first text beyond it is cut, with a marker (room for
    which is kept from the start), and nothing comes after it."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes - len(TRUNCATED.encode("utf-8"))
        self.full = self.left < 0

    def text(self, text: str) -> str:
        if self.full:
            return ""
        data = _clean(text).encode("utf-8")
        if len(data) <= self.left:
            self.left -= len(data)
            return data.decode("utf-8")
        self.full = True
        return data[:self.left].decode("utf-8", "ignore") + TRUNCATED

    def take(self, size: int) -> bool:
        if self.full or size > self.left:
            return False
        self.left -= size
        return True


def _stream(out: dict, budget: _Budget) -> dict | None:
    text = _string(out.get("text"))
    if out.get("name") not in ("stdout", "stderr") or text is None:
        return None
    return {"output_type": "stream", "name": out["name"], "text": budget.text(text)}


def _error(out: dict, budget: _Budget) -> dict | None:
    ename, evalue, tb = out.get("ename"), out.get("evalue"), out.get("traceback")
    if not (isinstance(ename, str) and isinstance(evalue, str) and isinstance(tb, list)
            and all(isinstance(line, str) for line in tb)):
        return None
    return {"output_type": "error", "ename": budget.text(ename), "evalue": budget.text(evalue),
            "traceback": [budget.text(line) for line in tb]}


def _bundle(out: dict, budget: _Budget) -> dict | None:
    data = out.get("data")
    if not isinstance(data, dict):
        return None
    kept = {}
    text = _string(data.get("text/plain"))
    if text is not None:
        kept["text/plain"] = budget.text(text)
    png = data.get("image/png")
    if isinstance(png, str) and _is_png(png) and budget.take(len(png)):
        kept["image/png"] = png
    if not kept:
        kept["text/plain"] = budget.text(NO_RICH_OUTPUT)
    new = {"output_type": out["output_type"], "data": kept, "metadata": {}}
    if out["output_type"] == "execute_result":
        count = out.get("execution_count")
        ok = isinstance(count, int) and not isinstance(count, bool) and count >= 0
        new["execution_count"] = count if ok else None
    return new


def _string(value) -> str | None:
    """A text field: a string, or a list of strings joined (nbformat's multiline form)."""
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return "".join(value)
    return value if isinstance(value, str) else None


def _is_png(data: str) -> bool:
    """Strict base64 (alphabet, '=' and newlines only) of bytes starting with the PNG signature."""
    if not re.fullmatch(r"[A-Za-z0-9+/=\n]+", data):
        return False
    try:
        raw = binascii.a2b_base64(data.replace("\n", "").encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        return False
    return raw.startswith(PNG_SIGNATURE)


# --- markdown ----------------------------------------------------------------------------------

_AUTOLINK = re.compile(r"<([A-Za-z][A-Za-z0-9+.-]{1,31}):[^\x00-\x20<>]*>")
_QUOTE_MARKERS = re.compile(r"(?m)^[ \t]*(?:&gt;[ \t]*)+")  # blockquote markers, once escaped
_LINK_TARGET = re.compile(r"\]([(:])[ \t]*(?:\n[ \t]*)?")  # `](url` of a link, `]: url` of a definition
_MERMAID_FENCE = re.compile(r"(?m)^([ \t>*+\-\d.)]*(?:`{3,}|~{3,})[ \t]*)mermaid")
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
_TAGS = frozenset("p em strong del a img code pre ul ol li blockquote h1 h2 h3 h4 h5 h6 hr br "
                  "table thead tbody tr th td input dl dt dd div span".split())
_ATTRS = frozenset("href src alt title class id type checked disabled start style".split())


def safe_markdown(text: str) -> str:
    """Markdown a trainee wrote, made inert once rendered by nbconvert (mistune) to HTML.

    ``&``, ``<`` and ``>`` are escaped (raw HTML shows as text; blockquote markers stay), and
    link, image and definition URLs whose scheme is not http, https or mailto become ``#``.
    The result is checked by rendering it with nbconvert's own renderer; if anything but plain
    markdown HTML comes out, every punctuation character is backslash-escaped instead."""
    text = _clean(text) if isinstance(text, str) else ""
    for candidate in (_tamed(text), _PUNCTUATION.sub(r"\\\1", text)):
        if _inert(candidate):
            return candidate
    return ""


def _tamed(text: str) -> str:
    parts, pos = [], 0
    for m in _AUTOLINK.finditer(text):  # <https://...> stays a link; <javascript:...> becomes <#>
        keep = m.group(1).lower() in SAFE_SCHEMES
        parts += [html.escape(text[pos:m.start()], quote=False), m.group(0) if keep else "&lt;#&gt;"]
        pos = m.end()
    parts.append(html.escape(text[pos:], quote=False))
    text = _QUOTE_MARKERS.sub(lambda m: m.group(0).replace("&gt;", ">"), "".join(parts))
    return _MERMAID_FENCE.sub(r"\1text", _safe_link_targets(text))


def _safe_link_targets(text: str) -> str:
    """Every link, image and reference definition URL with an unsafe scheme replaced by ``#``."""
    parts, pos = [], 0
    for m in _LINK_TARGET.finditer(text):
        if m.start() < pos:
            continue
        end = _url_end(text, m.end(), inline=m.group(1) == "(")
        if _unsafe_url(text[m.end():end]):
            parts += [text[pos:m.end()], "#"]
            pos = end
    parts.append(text[pos:])
    return "".join(parts)


def _url_end(text: str, i: int, *, inline: bool) -> int:
    """Where a link destination starting at ``i`` ends (CommonMark: at a space, or at an
    unbalanced ``)`` in an inline link; backslash escapes skipped)."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c.isspace() or ord(c) < 32 or (inline and c == ")" and depth == 0):
            break
        if inline:
            depth += (c == "(") - (c == ")")
        i += 1
    return min(i, len(text))


def _unsafe_url(url: str) -> bool:
    """Whether ``url`` has (or could be decoded to) a scheme other than http, https and mailto."""
    for _ in range(8):  # mistune decodes character references more than once
        decoded = html.unescape(url)
        if decoded == url:
            break
        url = decoded
    else:
        return True
    url = re.sub(r"[\x00-\x20\x7f-\x9f\\]", "", url).lstrip("<\"'")  # as a browser reads it, and more
    m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    return bool(m) and m.group(1).lower() not in SAFE_SCHEMES


def _inert(markdown: str) -> bool:
    """Whether nbconvert renders ``markdown`` to nothing but plain markdown HTML."""
    try:
        rendered = markdown2html_mistune(markdown)
    except Exception:  # e.g. an image of a missing attachment: nbconvert would fail on it too
        return False
    audit = _Audit()
    audit.feed(rendered)
    audit.close()
    return audit.ok


class _Audit(HTMLParser):
    """Checks that HTML has only the tags and attributes markdown produces, and safe URLs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ok = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ok &= tag in _TAGS
        for name, value in attrs:
            value = value or ""
            self.ok &= name in _ATTRS and not (
                (name in ("href", "src") and _unsafe_url(value))
                or (name == "class" and "mermaid" in value.lower())
                or (name == "style" and not re.fullmatch(r"text-align:(left|right|center)", value)))

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag: str) -> None:
        self.ok &= tag in _TAGS

    def handle_comment(self, data: str) -> None:
        self.ok = False

    handle_decl = handle_pi = unknown_decl = handle_comment


# --- the feedback page -------------------------------------------------------------------------

_HEAD = re.compile(r"<head(?=[\s/>])[^>]*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<script\b.*?(?:</script[^>]*>|\Z)", re.IGNORECASE | re.DOTALL)


def harden_html(page: str) -> str:
    """The feedback page with a strict Content-Security-Policy first in its head and no script
    element at all (an unclosed one is cut to the end of the page)."""
    while True:
        stripped = _SCRIPT.sub("", page)
        if stripped == page:
            break
        page = stripped
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
    head = _HEAD.search(page)
    at = head.end() if head else 0
    return page[:at] + meta + page[at:]
