"""Line charts as SVG for notebooks, with nothing to install: an attack's counters over time
(packets sent, rounds won or lost). ``Chart`` shows itself in Jupyter; ``.svg`` is the text."""
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


def lines(series: dict[str, Sequence[tuple[float, float]]], x: str, y: str, title: str = "",
          marks: Sequence[tuple[float, float, str]] = ()) -> Chart:
    """One line per series of (x, y) points, on shared axes from 0; ``marks`` are labelled
    points (x, y, label), e.g. the round that won."""
    points = [p for s in series.values() for p in s] + [(m[0], m[1]) for m in marks]
    xmax = max((p[0] for p in points), default=1) or 1
    ymax = max((p[1] for p in points), default=1) or 1

    def at(px: float, py: float) -> str:
        return f"{PAD + px / xmax * (W - 2 * PAD):.1f},{H - PAD - py / ymax * (H - 2 * PAD):.1f}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" '
           f'font-size="11"><rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>',
           f'<polyline points="{at(0, ymax)} {at(0, 0)} {at(xmax, 0)}" fill="none" stroke="black"/>',
           f'<text x="{W / 2}" y="{H - 10}" text-anchor="middle">{escape(x)}</text>',
           f'<text x="14" y="{H / 2}" text-anchor="middle" transform="rotate(-90 14 {H / 2})">{escape(y)}</text>',
           f'<text x="{PAD - 4}" y="{H - PAD + 4}" text-anchor="end">0</text>',
           f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{ymax:,.0f}</text>',
           f'<text x="{W - PAD}" y="{H - PAD + 14}" text-anchor="middle">{xmax:g}</text>']
    for i, (name, pts) in enumerate(series.items()):
        colour = COLOURS[i % len(COLOURS)]
        out.append(f'<polyline points="{" ".join(at(px, py) for px, py in [(0, 0), *pts])}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"/>')
        out.append(f'<text x="{PAD + 8}" y="{PAD + 14 * (i + 1)}" fill="{colour}">{escape(name)}</text>')
    for px, py, label in marks:
        cx, cy = at(px, py).split(",")
        out.append(f'<circle cx="{cx}" cy="{cy}" r="4" fill="{COLOURS[1]}"/>'
                   f'<text x="{cx}" y="{float(cy) - 8}" text-anchor="middle">{escape(label)}</text>')
    return Chart("\n".join(out) + "\n</svg>\n")
