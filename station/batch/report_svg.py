"""Inline SVG charts for the report: plain strings, no plotting library, no JavaScript.

Each chart is a standalone, well-formed ``<svg>`` element with a ``<title>`` and
``<desc>`` (screen readers announce them), every bar carries its number as text (colour is
never the only cue) and the palette is Okabe-Ito, as on the station screens. Dark strokes
keep the light colours (review yellow, sky blue) visible on white paper.
"""
from __future__ import annotations

import hashlib
import math
from html import escape
from typing import Sequence

# Okabe-Ito, with the station's verdict mapping
DECISION_COLORS = {"pass": "#009E73", "reject": "#D55E00", "review": "#F0E442", "check_capture": "#56B4E9"}
BAR = "#0072B2"
LINE = "#000000"
ACCENT = "#CC79A7"
AXIS = "#333333"
MAX_BAR = 72  # px: one or two groups must not become slabs
FONT = "font-family:system-ui,sans-serif;font-size:12px"


def _x(text: object) -> str:
    return escape(str(text), quote=True)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.01:
        return f"{v:.3g}"
    return f"{v:.3f}".rstrip("0").rstrip(".")


def _svg(width: int, height: int, title: str, desc: str, body: list[str]) -> str:
    uid = hashlib.sha1(f"{title}|{desc}".encode()).hexdigest()[:10]  # ids unique in the page
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-labelledby="t{uid} d{uid}" style="{FONT}">'
            f'<title id="t{uid}">{_x(title)}</title><desc id="d{uid}">{_x(desc)}</desc>'
            + "".join(body) + "</svg>")


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[:n - 1] + "\u2026"


def pareto_chart(bars: Sequence[tuple[str, int, float]], *, title: str, color: str = BAR,
                 colors: dict[str, str] | None = None) -> str:
    """Bars (most frequent first) with the cumulative share as a line on a 0-100 % axis."""
    width, height, left, right, top, bottom = 640, 280, 48, 48, 20, 70
    n = max(len(bars), 1)
    plot_w, plot_h = width - left - right, height - top - bottom
    top_count = max([b[1] for b in bars] + [1])
    slot = plot_w / n
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{top_count}</text>',
            f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>',
            f'<line x1="{left + plot_w}" y1="{top}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<text x="{left + plot_w + 6}" y="{top + 4}">100%</text>',
            f'<text x="{left + plot_w + 6}" y="{top + plot_h}">0%</text>']
    points = []
    for i, (label, count, cum) in enumerate(bars):
        h = plot_h * count / top_count
        bw = min(slot * 0.7, MAX_BAR)
        x = left + (i + 0.5) * slot - bw / 2
        fill = (colors or {}).get(label, color)
        body.append(f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                    f'fill="{fill}" stroke="{LINE}" stroke-width="0.5"><title>{_x(label)}: {count}</title></rect>')
        body.append(f'<text x="{x + bw / 2:.1f}" y="{top + plot_h - h - 4:.1f}" text-anchor="middle">{count}</text>')
        cx, cy = left + (i + 0.5) * slot, top + plot_h * (1 - cum / 100.0)
        points.append(f"{cx:.1f},{cy:.1f}")
        lx, ly = cx, top + plot_h + 14
        body.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-30 {lx:.1f} {ly})">'
                    f'{_x(_short(label))}</text>')
    if points:
        body.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="{LINE}" stroke-width="1.5" '
                    f'stroke-dasharray="4 2"/>')
        for p in points:
            x, y = p.split(",")
            body.append(f'<circle cx="{x}" cy="{y}" r="3" fill="{LINE}"/>')
    desc = "; ".join(f"{label}: {count} ({cum:.0f}% cumulative)" for label, count, cum in bars) or "no data"
    return _svg(width, height, title, desc, body)


def stacked_bars(groups: Sequence[tuple[str, dict[str, int], float | None]], *, title: str,
                 order: Sequence[str]) -> str:
    """One stacked bar per group (hour, lot) by decision, the yield written above each."""
    width, top, bottom, left, right = 640, 34, 64, 48, 12
    height = 300
    n = max(len(groups), 1)
    plot_w, plot_h = width - left - right, height - top - bottom
    top_total = max([sum(c.values()) for _, c, _ in groups] + [1])
    slot = plot_w / n
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>',
            f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{top_total}</text>',
            f'<text x="{left - 6}" y="{top + plot_h}" text-anchor="end">0</text>']
    for k, name in enumerate(order):  # the legend: colour swatch and the word
        lx = left + k * 130
        body.append(f'<rect x="{lx}" y="4" width="12" height="12" fill="{DECISION_COLORS.get(name, BAR)}" '
                    f'stroke="{LINE}" stroke-width="0.5"/><text x="{lx + 16}" y="14">{_x(name)}</text>')
    for i, (label, counts, yld) in enumerate(groups):
        bw = min(slot * 0.7, MAX_BAR)
        x = left + (i + 0.5) * slot - bw / 2
        y = top + plot_h
        for name in order:
            c = counts.get(name, 0)
            if not c:
                continue
            h = plot_h * c / top_total
            y -= h
            body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw:.1f}" height="{h:.1f}" '
                        f'fill="{DECISION_COLORS.get(name, BAR)}" stroke="{LINE}" stroke-width="0.5">'
                        f'<title>{_x(label)} {_x(name)}: {c}</title></rect>')
        text = "n/a" if yld is None else f"{yld:.1f}%"
        body.append(f'<text x="{x + bw / 2:.1f}" y="{y - 4:.1f}" text-anchor="middle">{text}</text>')
        lx, ly = left + (i + 0.5) * slot, top + plot_h + 14
        body.append(f'<text x="{lx:.1f}" y="{ly}" text-anchor="end" transform="rotate(-30 {lx:.1f} {ly})">'
                    f'{_x(_short(label))}</text>')
    desc = "; ".join(f"{label}: {sum(c.values())} parts, yield {'n/a' if y is None else f'{y:.1f}%'}"
                     for label, c, y in groups) or "no data"
    return _svg(width, height, title, desc, body)


def histogram(scores: Sequence[float], *, threshold: float | None, title: str, log: bool = False,
              bins: int = 30) -> str:
    """Score histogram with the threshold as a vertical line; ``log`` bins log10(score)."""
    width, height, left, right, top, bottom = 640, 260, 48, 16, 20, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [math.log10(s) for s in scores if s > 0] if log else list(scores)
    body = [f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{AXIS}"/>']
    if not values:
        body.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">no scores</text>')
        return _svg(width, height, title, "no scores", body)
    t = None if threshold is None else (math.log10(threshold) if log and threshold > 0 else
                                        None if log else threshold)
    lo, hi = min(values + ([t] if t is not None else [])), max(values + ([t] if t is not None else []))
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    span = hi - lo
    lo, hi = lo - span * 0.02, hi + span * 0.02
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / (hi - lo) * bins))] += 1
    top_count = max(counts)

    def px(v: float) -> float:
        return left + plot_w * (v - lo) / (hi - lo)

    bw = plot_w / bins
    for i, c in enumerate(counts):
        if c:
            h = plot_h * c / top_count
            a, b = lo + (hi - lo) * i / bins, lo + (hi - lo) * (i + 1) / bins
            rng = f"{_fmt(10 ** a)}..{_fmt(10 ** b)}" if log else f"{_fmt(a)}..{_fmt(b)}"
            body.append(f'<rect x="{left + i * bw:.1f}" y="{top + plot_h - h:.1f}" width="{bw - 1:.1f}" '
                        f'height="{h:.1f}" fill="{BAR}"><title>{rng}: {c}</title></rect>')
    for frac in (0.0, 0.5, 1.0):  # three x ticks, in score units
        v = lo + (hi - lo) * frac
        body.append(f'<text x="{px(v):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
                    f'{_fmt(10 ** v if log else v)}</text>')
    body.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{top_count}</text>')
    axis = "anomaly score (log scale)" if log else "anomaly score"
    body.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{axis}</text>')
    if t is not None:
        x = px(t)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{ACCENT}" '
                    f'stroke-width="2.5" stroke-dasharray="6 3"/>')
        body.append(f'<text x="{x + 4:.1f}" y="{top + 10}">threshold {_fmt(threshold)}</text>')
    above = sum(1 for s in scores if threshold is not None and s > threshold)
    desc = (f"{len(scores)} scores from {_fmt(min(scores))} to {_fmt(max(scores))}"
            + ("" if threshold is None else f"; threshold {_fmt(threshold)}, {above} above it")
            + ("; log scale" if log else ""))
    return _svg(width, height, title, desc, body)


def wants_log_scale(scores: Sequence[float]) -> bool:
    """True when a few outliers would squeeze the bulk of the scores into one or two bins:
    three quarters of the scores lie in the lowest 5 % of the range (all scores positive,
    so the log exists)."""
    pos = sorted(s for s in scores if s > 0)
    if len(pos) < 10 or len(pos) != len(scores):
        return False
    p75 = pos[int(0.75 * (len(pos) - 1))]
    return (p75 - pos[0]) < 0.05 * (pos[-1] - pos[0])
