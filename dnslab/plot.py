"""Charts as SVG for notebooks, with nothing to install: an attack's counters over time (packets
sent, rounds won or lost) as lines, and counters side by side (bytes at the victim before and
after a mitigation) as bars. ``Chart`` shows itself in Jupyter; ``.svg`` is the text."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from typing import Sequence

W, H, PAD = 560, 260, 48
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


@dataclass(frozen=True)
class Chart:
    svg: str

    def _repr_svg_(self) -> str:
        return self.svg


def _number(v: float) -> str:
    """A value as a label: one decimal below ten (0.9), none from ten up (1,234)."""
    return f"{v:,.{0 if v >= 10 else 1}f}"


def _frame(title: str, x: str, y: str, ymax: float) -> list[str]:
    """The chart's background, title, axes and their labels (y from 0 to ``ymax``)."""
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
            f'font-size="11"><rect width="{W}" height="{H}" fill="white"/>',
            f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
            f'<polyline points="{PAD},{PAD} {PAD},{H - PAD} {W - PAD},{H - PAD}" fill="none" stroke="black"/>',
            f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle">{escape(x)}</text>',
            f'<text x="14" y="{H / 2}" text-anchor="middle" transform="rotate(-90 14 {H / 2})">{escape(y)}</text>',
            f'<text x="{PAD - 4}" y="{H - PAD + 4}" text-anchor="end">0</text>',
            f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{_number(ymax)}</text>']


def _legend(names: Sequence[str], row: bool = False) -> list[str]:
    """Each series' name in its colour: down the plot's top left, or in a row above it."""
    def at(i: int) -> str:
        return f'x="{PAD + i * (W - 2 * PAD) / len(names):.1f}" y="{PAD - 16}"' if row else \
            f'x="{PAD + 8}" y="{PAD + 14 * (i + 1)}"'
    return [f'<text {at(i)} fill="{COLOURS[i % len(COLOURS)]}">{escape(name)}</text>' for i, name in enumerate(names)]


def lines(series: dict[str, Sequence[tuple[float, float]]], x: str, y: str, title: str = "",
          marks: Sequence[tuple[float, float, str]] = ()) -> Chart:
    """One line per series of (x, y) points, on shared axes from 0; ``marks`` are labelled
    points (x, y, label), e.g. the round that won."""
    points = [p for s in series.values() for p in s] + [(m[0], m[1]) for m in marks]
    xmax = max((p[0] for p in points), default=1) or 1
    ymax = max((p[1] for p in points), default=1) or 1

    def at(px: float, py: float) -> str:
        return f"{PAD + px / xmax * (W - 2 * PAD):.1f},{H - PAD - py / ymax * (H - 2 * PAD):.1f}"
    out = _frame(title, x, y, ymax) + [f'<text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="middle">{xmax:g}</text>']
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        out.append(f'<polyline points="{" ".join(at(px, py) for px, py in [(0, 0), *pts])}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"/>')
    out += _legend(list(series))
    for px, py, label in marks:
        cx, cy = at(px, py).split(",")
        out.append(f'<circle cx="{cx}" cy="{cy}" r="4" fill="{COLOURS[1]}"/>'
                   f'<text x="{cx}" y="{float(cy) - 8}" text-anchor="middle">{escape(label)}</text>')
    return Chart("\n".join(out) + "\n</svg>\n")


def bars(groups: dict[str, dict[str, float]], y: str, title: str = "", x: str = "") -> Chart:
    """Bars side by side: one cluster per group (e.g. a reflector), one bar per series in it
    (e.g. before and after a mitigation), each bar labelled with its value; a series a group
    lacks leaves a gap."""
    series = list(dict.fromkeys(name for g in groups.values() for name in g))
    ymax = max((v for g in groups.values() for v in g.values()), default=1) or 1
    slot = (W - 2 * PAD) / max(len(groups), 1)
    width = slot * 0.8 / max(len(series), 1)
    out = _frame(title, x, y, ymax) + _legend(series, row=True)
    for gi, (group, values) in enumerate(groups.items()):
        left = PAD + gi * slot + slot * 0.1
        out.append(f'<text x="{left + slot * 0.4:.1f}" y="{H - PAD + 14}" text-anchor="middle">{escape(group)}</text>')
        for si, name in enumerate(series):
            if name not in values:
                continue
            v, bx = values[name], left + si * width
            top = H - PAD - v / ymax * (H - 2 * PAD)
            out.append(f'<rect x="{bx:.1f}" y="{top:.1f}" width="{width * 0.9:.1f}" height="{H - PAD - top:.1f}" '
                       f'fill="{COLOURS[si % len(COLOURS)]}"/>'
                       f'<text x="{bx + width * 0.45:.1f}" y="{top - 3:.1f}" text-anchor="middle">{_number(v)}</text>')
    return Chart("\n".join(out) + "\n</svg>\n")
