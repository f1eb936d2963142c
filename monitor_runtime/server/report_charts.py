"""Inline SVG charts of the report page: distributions per feature and history over evaluations.

Every chart labels its axes, writes numbers without exponents, and says what its bins are; no scripts and
no external assets, so the page works under a `default-src 'none'` policy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from monitor_runtime.server.explain import as_float, number, percent

REF = "#8c96a3"
CUR = "#2f6fdf"
DRIFT = "#c62828"
BAND = "#fbe3e3"
AXIS = "#c3c9d0"
INK = "#5a6470"
_FONT = "font-size='10' fill='#5a6470'"


def _text(x: float, y: float, body: str, anchor: str = "start", extra: str = "") -> str:
    return f"<text x='{x:.1f}' y='{y:.1f}' {_FONT} text-anchor='{anchor}'{extra}>{escape(body)}</text>"


def _svg(width: int, height: int, label: str, body: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"viewBox='0 0 {width} {height}' role='img' aria-label='{escape(label)}'>{body}</svg>"
    )


def distribution_chart(dist: Mapping[str, Any] | None, name: str) -> str:
    """Reference (grey) against current (blue) shares: quantile bins for numbers, one bar per category."""
    if not dist:
        return "<p class='muted'>no reference bins</p>"
    ref = [as_float(x) for x in dist.get("reference") or []]
    if not ref:
        return "<p class='muted'>no data</p>"
    if dist.get("kind") == "numeric" and dist.get("edges"):
        return numeric_chart(dist, name)
    return category_chart(dist, name)


def numeric_chart(dist: Mapping[str, Any], name: str, width: int = 380, height: int = 170) -> str:
    """Paired bars per reference-quantile bin, a labelled share axis and value ticks at bin edges."""
    ref = [as_float(x) for x in dist.get("reference") or []]
    cur = [as_float(x) for x in dist.get("current") or []]
    edges = [as_float(x) for x in dist.get("edges") or []]
    n = len(ref)
    left, right, top, bottom = 46, 8, 8, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max(max(ref, default=0.0), max(cur, default=0.0)) or 1.0
    slot = plot_w / n
    bar = max(1.0, slot * 0.42)
    parts = [f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='#fff'/>"]
    for i in range(n):
        x = left + i * slot
        lo, hi = edges[i] if i < len(edges) else math.nan, edges[i + 1] if i + 1 < len(edges) else math.nan
        for j, (share, colour, who) in enumerate(
            ((ref[i], REF, "reference"), (cur[i] if i < len(cur) else 0.0, CUR, "current"))
        ):
            h = plot_h * share / peak
            parts.append(
                f"<rect x='{x + 1 + j * bar:.1f}' y='{top + plot_h - h:.1f}' width='{bar:.1f}' "
                f"height='{h:.1f}' fill='{colour}'><title>{escape(number(lo))} to {escape(number(hi))}: "
                f"{who} {escape(percent(share))}</title></rect>"
            )
    base = top + plot_h
    parts.append(f"<line x1='{left}' y1='{base}' x2='{left + plot_w}' y2='{base}' stroke='{AXIS}'/>")
    parts.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{base}' stroke='{AXIS}'/>")
    parts.append(_text(left - 4, top + 8, percent(peak), "end"))
    parts.append(_text(left - 4, base, "0%", "end"))
    parts.append(
        _text(
            10, top + plot_h / 2, "share of rows", "middle", f" transform='rotate(-90 10 {top + plot_h / 2})'"
        )
    )
    # Value ticks at up to five bin edges (min, quartiles, max when all 20 bins are there).
    n_edges = len(edges)
    picks = sorted({round(k * (n_edges - 1) / 4) for k in range(5)}) if n_edges > 1 else []
    for k, idx in enumerate(picks):
        x = left + plot_w * idx / max(1, n_edges - 1)
        anchor = "start" if k == 0 else ("end" if k == len(picks) - 1 else "middle")
        parts.append(f"<line x1='{x:.1f}' y1='{base}' x2='{x:.1f}' y2='{base + 4}' stroke='{AXIS}'/>")
        parts.append(_text(x, base + 14, number(edges[idx]), anchor))
    parts.append(_text(left + plot_w / 2, height - 6, "value (bins: reference quantiles)", "middle"))
    return _svg(width, height, f"{name} distribution", "".join(parts))


def category_chart(dist: Mapping[str, Any], name: str, width: int = 380) -> str:
    """One labelled row per category: reference and current share bars with their percentages."""
    labels = [str(x) for x in dist.get("labels") or []]
    ref = [as_float(x) for x in dist.get("reference") or []]
    cur = [as_float(x) for x in dist.get("current") or []]
    rows = [
        (labels[i] if i < len(labels) else str(i), ref[i], cur[i] if i < len(cur) else 0.0)
        for i in range(len(ref))
    ]
    if rows and rows[-1][0] == "other" and rows[-1][1] == 0 and rows[-1][2] == 0:
        rows = rows[:-1]  # no other categories on either side
    label_w, value_w, row_h, top = 110, 96, 24, 16
    bar_w = width - label_w - value_w - 8
    peak = max([r for _, r, _ in rows] + [c for _, _, c in rows] + [1e-9])
    height = top + row_h * len(rows) + 20
    parts = [_text(label_w, 11, "share of rows (reference, current)")]
    for k, (label, r, c) in enumerate(rows):
        y = top + k * row_h
        shown = label if label != "other" else "other categories"
        short = shown if len(shown) <= 16 else shown[:15] + "…"
        parts.append(
            f"<text x='{label_w - 6}' y='{y + 14}' font-size='11' fill='#1d232b' text-anchor='end'>"
            f"<title>{escape(shown)}</title>{escape(short)}</text>"
        )
        for j, (share, colour) in enumerate(((r, REF), (c, CUR))):
            w = bar_w * share / peak
            parts.append(
                f"<rect x='{label_w}' y='{y + 3 + j * 9}' width='{w:.1f}' height='8' fill='{colour}'>"
                f"<title>{escape(shown)}: {'reference' if j == 0 else 'current'} {escape(percent(share))}"
                "</title></rect>"
            )
        parts.append(_text(width - 4, y + 14, f"{percent(r)} → {percent(c)}", "end"))
    axis_y = top + row_h * len(rows)
    parts.append(f"<line x1='{label_w}' y1='{top}' x2='{label_w}' y2='{axis_y}' stroke='{AXIS}'/>")
    parts.append(_text(label_w, axis_y + 14, "0%"))
    parts.append(_text(label_w + bar_w, axis_y + 14, percent(peak), "end"))
    return _svg(width, height, f"{name} categories", "".join(parts))


def history_chart(
    points: Sequence[tuple[float, float | None, bool, Any]],
    *,
    band_from: float | None,
    band_label: str,
    y_label: str,
    name: str,
    width: int = 380,
    height: int = 150,
) -> str:
    """A series over evaluations: (time, value, flagged, version) each; the band marks values at or past
    `band_from`, flagged points are red and a dashed line marks each change of version."""
    if not points:
        return "<p class='muted'>no evaluations yet</p>"
    left, right, top, bottom = 46, 10, 14, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v, _, _ in points if v is not None and math.isfinite(v)]
    peak = max([*values, (band_from or 0.0) * 1.5, 1e-9])
    n = len(points)

    def x_of(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * min(v, peak) / peak

    parts = [f"<rect x='{left}' y='{top}' width='{plot_w}' height='{plot_h}' fill='#fff'/>"]
    if band_from is not None and math.isfinite(band_from):
        yb = y_of(band_from)
        parts.append(
            f"<rect x='{left}' y='{top}' width='{plot_w}' height='{yb - top:.1f}' fill='{BAND}'>"
            f"<title>{escape(band_label)} {escape(number(band_from))} and above</title></rect>"
        )
        parts.append(
            f"<line x1='{left}' y1='{yb:.1f}' x2='{left + plot_w}' y2='{yb:.1f}' stroke='{DRIFT}' "
            "stroke-dasharray='4 3'/>"
        )
        parts.append(_text(left + plot_w - 2, yb - 3, f"{band_label} {number(band_from)}", "end"))
    previous = points[0][3]
    for i, (_, _, _, version) in enumerate(points):
        if i and version != previous:
            x = x_of(i) - (plot_w / (n - 1) / 2 if n > 1 else 0)
            parts.append(
                f"<line x1='{x:.1f}' y1='{top}' x2='{x:.1f}' y2='{top + plot_h}' stroke='#6b4fbb' "
                f"stroke-dasharray='2 2'><title>version {escape(str(version))} from here</title></line>"
            )
            parts.append(_text(x + 2, top + 9, f"v{version}", extra=" class='version-mark'"))
        previous = version
    path = [f"{x_of(i):.1f},{y_of(v):.1f}" for i, (_, v, _, _) in enumerate(points) if v is not None]
    if len(path) > 1:
        parts.append(f"<polyline points='{' '.join(path)}' fill='none' stroke='{CUR}' stroke-width='1.5'/>")
    for i, (at, v, flagged, version) in enumerate(points):
        if v is None:
            continue
        when = time.strftime("%H:%M:%S", time.gmtime(at))
        parts.append(
            f"<circle cx='{x_of(i):.1f}' cy='{y_of(v):.1f}' r='{3 if flagged else 2}' "
            f"fill='{DRIFT if flagged else CUR}'><title>{when} UTC, version {escape(str(version))}: "
            f"{escape(number(v))}{' (drift)' if flagged else ''}</title></circle>"
        )
    base = top + plot_h
    parts.append(f"<line x1='{left}' y1='{base}' x2='{left + plot_w}' y2='{base}' stroke='{AXIS}'/>")
    parts.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{base}' stroke='{AXIS}'/>")
    parts.append(_text(left - 4, top + 8, number(peak), "end"))
    parts.append(_text(left - 4, base, "0", "end"))
    parts.append(
        _text(10, top + plot_h / 2, y_label, "middle", f" transform='rotate(-90 10 {top + plot_h / 2})'")
    )
    first = time.strftime("%H:%M:%S", time.gmtime(points[0][0]))
    last = time.strftime("%H:%M:%S", time.gmtime(points[-1][0]))
    parts.append(_text(left, base + 13, first))
    if n > 1:
        parts.append(_text(left + plot_w, base + 13, last, "end"))
    parts.append(_text(left + plot_w / 2, height - 5, f"evaluations (UTC), {n} shown", "middle"))
    return _svg(width, height, f"{name} history", "".join(parts))
