"""The report as one self-contained HTML page: inline CSS and SVG, no scripts, no external assets."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from html import escape
from typing import Any

_HEALTH_COLOURS = {"good": "#1a7f37", "warning": "#b26a00", "critical": "#c62828"}
_REF = "#8c96a3"
_CUR = "#2f6fdf"
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b}
header{background:#fff;border-bottom:1px solid #dde1e6;padding:18px 28px;display:flex;gap:28px;
align-items:center;flex-wrap:wrap}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:24px 0 8px}
.badge{display:inline-block;padding:4px 12px;border-radius:14px;color:#fff;font-weight:600;
text-transform:uppercase;letter-spacing:.04em}
.kv{color:#5a6470}.kv b{color:#1d232b}
main{padding:0 28px 32px}
table{border-collapse:collapse;background:#fff;width:100%;border:1px solid #dde1e6}
th,td{padding:6px 10px;border-bottom:1px solid #eceff2;text-align:left;vertical-align:middle}
th{background:#f0f2f5;font-weight:600;font-size:13px}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td:first-child{border-left:4px solid #c62828}tr.ok td:first-child{border-left:4px solid transparent}
.flag{font-weight:700;color:#c62828}.noflag{color:#1a7f37}
.meter{display:inline-block;width:80px;height:8px;background:#eceff2;border-radius:4px;overflow:hidden;
vertical-align:middle}.meter span{display:block;height:100%;background:#c62828}
ul{background:#fff;border:1px solid #dde1e6;padding:12px 12px 12px 32px;margin:0}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:-1px}
.muted{color:#5a6470}
.fail{background:#fff4f4;border:1px solid #f0c2c2;padding:10px 14px}
"""


def render_report_page(report: Mapping[str, Any], distributions: Mapping[str, Mapping[str, Any]]) -> str:
    """HTML for a report (as served by `GET /v1/report`) and binned distributions per feature."""
    version = report.get("version") or {}
    health = str(report.get("overall_health") or "unknown")
    colour = _HEALTH_COLOURS.get(health, "#5a6470")
    features: Mapping[str, Mapping[str, Any]] = report.get("features") or {}
    order = severity_order(features)
    timing = report.get("timing") or {}
    window = report.get("window") or {}
    title = f"{version.get('monitor') or 'monitor'} · drift report"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        "<header>",
        f"<h1>{escape(str(version.get('monitor') or 'monitor'))}</h1>",
        f"<span class='badge' style='background:{colour}'>{escape(health)}</span>",
        _kv("overall drift score", _fmt(report.get("overall_drift_score"))),
        _kv("drifted", f"{len(report.get('drifted_features') or [])} of {len(features)} features"),
        _kv("model", version.get("model")),
        _kv("version", version.get("version")),
        _kv("generator", version.get("generator")),
        _kv("evaluated", _when(timing.get("evaluated_at"))),
        _kv("window", f"{window.get('strategy', '?')} · {window.get('size', '?')} rows"),
        "</header><main>",
    ]
    status = report.get("status")
    if status and status != "ok":
        parts.append(f"<p class='muted'>Status: {escape(str(status).replace('_', ' '))}.</p>")
    recs = report.get("recommendations") or []
    if recs:
        parts.append("<h2>Recommendations</h2><ul>")
        parts.extend(f"<li>{escape(str(r))}</li>" for r in recs)
        parts.append("</ul>")
    failures = report.get("failures") or {}
    if failures.get("total"):
        last = failures.get("last") or {}
        sig = last.get("signature") or {}
        parts.append(
            "<h2>Failures</h2><div class='fail'>"
            f"{failures.get('total')} failed evaluations of {failures.get('evaluations')}; last: "
            f"<b>{escape(str(sig.get('exception', '')))}</b> at {escape(str(sig.get('location', '')))} "
            f"— {escape(str(last.get('message', '')))}</div>"
        )
    parts.append(
        "<h2>Features <span class='legend muted'><span style='background:" + _REF + "'></span>reference"
        "<span style='background:" + _CUR + "'></span>current</span></h2>"
    )
    parts.append(
        "<table><thead><tr><th>feature</th><th>drift</th><th>severity</th><th>importance</th><th>method</th>"
        "<th>score</th><th>threshold</th><th>p-value</th><th>missing</th><th>distribution</th></tr></thead><tbody>"
    )
    for name in order:
        f = features[name]
        drifted = bool(f.get("drift_detected"))
        sev = _float(f.get("severity"))
        sev_pct = 0 if math.isnan(sev) else max(0.0, min(1.0, sev)) * 100
        status_note = f.get("status")
        flag = "<span class='flag'>drift</span>" if drifted else "<span class='noflag'>ok</span>"
        if status_note and status_note != "ok":
            flag += f" <span class='muted'>({escape(str(status_note).replace('_', ' '))})</span>"
        parts.append(
            f"<tr class='{'drift' if drifted else 'ok'}'><td><b>{escape(str(name))}</b>"
            f"<div class='muted'>{escape(str(f.get('data_type') or ''))}</div></td>"
            f"<td>{flag}</td>"
            f"<td><span class='meter' title='{_fmt(sev)}'>"
            f"<span style='width:{sev_pct:.0f}%'></span></span></td>"
            f"<td class='num'>{_fmt(f.get('importance'))}</td><td>{escape(str(f.get('method') or ''))}</td>"
            f"<td class='num'>{_fmt(f.get('score'))}</td><td class='num'>{_fmt(f.get('threshold'))}</td>"
            f"<td class='num'>{_fmt(f.get('p_value'))}</td><td class='num'>{_pct(f.get('missing_rate'))}</td>"
            f"<td>{_svg(distributions.get(name), str(name))}</td></tr>"
        )
    parts.append("</tbody></table>")
    ingestion = report.get("ingestion") or {}
    parts.append(
        f"<p class='muted'>{ingestion.get('rows', 0)} rows in {ingestion.get('batches', 0)} batches "
        "ingested · "
        f"last evaluation took {_fmt(timing.get('evaluation_seconds'))} s · "
        f"code sha256 {escape(str(version.get('code_sha256') or '')[:12])}</p>"
    )
    parts.append("</main></body></html>")
    return "".join(parts)


def _svg(dist: Mapping[str, Any] | None, name: str, width: int = 300, height: int = 84) -> str:
    """Paired bars per bin: reference (grey) and current (blue) shares."""
    if not dist:
        return "<span class='muted'>no reference bins</span>"
    ref = [float(x) for x in dist.get("reference") or []]
    cur = [float(x) for x in dist.get("current") or []]
    n = len(ref)
    if n == 0:
        return "<span class='muted'>no data</span>"
    top = max(max(ref, default=0.0), max(cur, default=0.0)) or 1.0
    plot_h = height - 16
    slot = width / n
    bar = max(1.0, slot * 0.42)
    labels = dist.get("labels") or []
    rects = []
    for i in range(n):
        x = i * slot
        for j, (share, colour) in enumerate(((ref[i], _REF), (cur[i] if i < len(cur) else 0.0, _CUR))):
            h = plot_h * share / top
            label = escape(str(labels[i])) if i < len(labels) else str(i)
            rects.append(
                f"<rect x='{x + 1 + j * bar:.1f}' y='{plot_h - h:.1f}' width='{bar:.1f}' height='{h:.1f}' "
                f"fill='{colour}'><title>{label}: {'reference' if j == 0 else 'current'} "
                f"{share:.1%}</title></rect>"
            )
    axis = f"<line x1='0' y1='{plot_h}' x2='{width}' y2='{plot_h}' stroke='#c3c9d0'/>"
    if dist.get("kind") == "numeric" and dist.get("edges"):
        edges = dist["edges"]
        foot = (
            f"<text x='0' y='{height - 3}' font-size='10' fill='#5a6470'>{_fmt(edges[0])}</text>"
            f"<text x='{width}' y='{height - 3}' font-size='10' fill='#5a6470' text-anchor='end'>"
            f"{_fmt(edges[-1])}</text>"
        )
    else:
        shown = ", ".join(str(x) for x in labels[:4])
        foot = f"<text x='0' y='{height - 3}' font-size='10' fill='#5a6470'>{escape(shown[:60])}</text>"
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' "
        f"aria-label='{escape(name)} distribution'>{''.join(rects)}{axis}{foot}</svg>"
    )


def severity_order(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Feature names, most severe first (the order of the report page and the text table)."""
    return sorted(features, key=lambda n: _weighted_severity(features[n]), reverse=True)


def _weighted_severity(f: Mapping[str, Any]) -> tuple[bool, float, float]:
    """Drifted first, then importance x severity; ties (severity 0) by importance x closeness to threshold."""
    sev = _float(f.get("severity"))
    imp = _float(f.get("importance"))
    sev = 0.0 if math.isnan(sev) else sev
    imp = 1.0 if math.isnan(imp) else imp
    ratio = _float(f.get("score")) / _float(f.get("threshold")) if _float(f.get("threshold")) else math.nan
    return bool(f.get("drift_detected")), sev * imp, 0.0 if math.isnan(ratio) else ratio * imp


def _float(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _fmt(value: Any) -> str:
    v = _float(value)
    if math.isnan(v):
        return "–"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4g}"


def _pct(value: Any) -> str:
    v = _float(value)
    return "–" if math.isnan(v) else f"{v:.1%}"


def _kv(key: str, value: Any) -> str:
    return f"<span class='kv'>{escape(key)} <b>{escape(str(value if value is not None else '–'))}</b></span>"


def _when(ts: Any) -> str:
    v = _float(ts)
    return "not yet" if math.isnan(v) else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
