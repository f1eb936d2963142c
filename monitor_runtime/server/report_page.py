"""The report as one self-contained HTML page: inline CSS and SVG, no scripts, no external assets.

What a person sees: the verdict of every feature with the reason in words (from the drift result's
`decision`, see `explain.py`), summary statistics of reference and current data, readable charts, prediction
quality when predictions and outcomes are sent, and the history of the last evaluations.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from monitor_runtime.server.explain import (
    DECIDED_BY_LABELS,
    as_float,
    explain_feature,
    legend,
    number,
    p_value,
    percent,
)
from monitor_runtime.server.report_charts import CUR, REF, distribution_chart, history_chart

#: Features drawn as full cards (most severe first); the rest appear in the overview table only.
MAX_FEATURE_CARDS = 50

_HEALTH_COLOURS = {"good": "#1a7f37", "warning": "#b26a00", "critical": "#c62828"}
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f6f7f9;
color:#1d232b}
header{background:#fff;border-bottom:1px solid #dde1e6;padding:18px 28px;display:flex;gap:28px;
align-items:center;flex-wrap:wrap}
h1{font-size:20px;margin:0}h2{font-size:16px;margin:26px 0 8px}h3{font-size:15px;margin:0 0 6px}
.badge{display:inline-block;padding:4px 12px;border-radius:14px;color:#fff;font-weight:600;
text-transform:uppercase;letter-spacing:.04em}
.kv{color:#5a6470}.kv b{color:#1d232b}
main{padding:0 28px 32px;max-width:1400px}
table{border-collapse:collapse;background:#fff;border:1px solid #dde1e6}
table.wide{width:100%}
th,td{padding:5px 10px;border-bottom:1px solid #eceff2;text-align:left;vertical-align:top}
th{background:#f0f2f5;font-weight:600;font-size:13px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.drift td:first-child{border-left:4px solid #c62828}tr.ok td:first-child{border-left:4px solid transparent}
.flag{font-weight:700;color:#c62828}.noflag{color:#1a7f37;font-weight:600}
ul{background:#fff;border:1px solid #dde1e6;padding:12px 12px 12px 32px;margin:0}
.legend span.sw{display:inline-block;width:12px;height:12px;margin:0 4px 0 14px;vertical-align:-1px}
.muted{color:#5a6470}
.fail{background:#fff4f4;border:1px solid #f0c2c2;padding:10px 14px}
.wait{background:#fffbea;border:1px solid #eedc9a;padding:12px 16px;font-size:15px}
.how{background:#fff;border:1px solid #dde1e6;padding:10px 14px;margin:0}
.card{background:#fff;border:1px solid #dde1e6;border-left:4px solid #dde1e6;padding:12px 16px;
margin:0 0 12px}
.card.drift{border-left-color:#c62828}
.card ul.why{border:0;padding:0 0 0 18px;margin:4px 0 10px}
.panes{display:flex;gap:22px;flex-wrap:wrap;align-items:flex-start}
.panes table td,.panes table th{padding:3px 8px;font-size:13px}
.panes>div{max-width:400px}.pane-title{font-size:12px;color:#5a6470;margin:0 0 2px}
table.cm td{text-align:right;min-width:48px}
"""


def render_report_page(
    report: Mapping[str, Any],
    distributions: Mapping[str, Mapping[str, Any]],
    history: Sequence[Mapping[str, Any]] = (),
) -> str:
    """HTML for a report (as `GET /v1/report` serves it), binned distributions and statistics per feature
    (`DistributionTracker.snapshot()`) and the evaluation history (`EvaluationHistory.as_list()`)."""
    version = report.get("version") or {}
    features: Mapping[str, Mapping[str, Any]] = report.get("features") or {}
    order = severity_order(features)
    summary = report.get("summary") or {}
    timing = report.get("timing") or {}
    window = report.get("window") or {}
    title = f"{version.get('monitor') or 'monitor'} · drift report"
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        _header(report, version, features, timing, window),
        "<main>",
    ]
    waiting = waiting_message(report)
    if waiting:
        parts.append(f"<p class='wait' id='waiting'>{escape(waiting)}</p>")
    status = report.get("status")
    if status and status not in ("ok", "waiting_for_reference", "waiting_for_data"):
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
    if features:
        parts.append(
            f"<h2>How verdicts are reached</h2><p class='how' id='legend'>{escape(legend(summary))}</p>"
        )
        parts.append(_overview(features, order))
        parts.append(_feature_cards(features, order, distributions, summary, history))
    else:
        parts.append(
            "<h2>Features</h2><table class='wide'><tbody><tr><td class='muted'>No evaluation yet."
            "</td></tr></tbody></table>"
        )
    parts.append(quality_section(report.get("quality"), report.get("predictions")))
    parts.append(_history_section(history))
    ingestion = report.get("ingestion") or {}
    parts.append(
        f"<p class='muted'>{number(ingestion.get('rows', 0))} rows in {number(ingestion.get('batches', 0))} "
        "batches ingested · "
        f"last evaluation took {number(timing.get('evaluation_seconds'))} s · "
        f"code sha256 {escape(str(version.get('code_sha256') or '')[:12])}</p>"
    )
    parts.append("</main></body></html>")
    return "".join(parts)


def _header(
    report: Mapping[str, Any],
    version: Mapping[str, Any],
    features: Mapping[str, Any],
    timing: Mapping[str, Any],
    window: Mapping[str, Any],
) -> str:
    health = str(report.get("overall_health") or "unknown")
    colour = _HEALTH_COLOURS.get(health, "#5a6470")
    size = window.get("size")
    return "".join(
        [
            "<header>",
            f"<h1>{escape(str(version.get('monitor') or 'monitor'))}</h1>",
            f"<span class='badge' style='background:{colour}'>{escape(health)}</span>",
            _kv("overall drift score", number(report.get("overall_drift_score"))),
            _kv("drifted", f"{len(report.get('drifted_features') or [])} of {len(features)} features"),
            _kv("model", version.get("model")),
            _kv("version", version.get("version")),
            _kv("generator", version.get("generator")),
            _kv("evaluated", _when(timing.get("evaluated_at"))),
            _kv(
                "window", f"{window.get('strategy', '?')} · {number(size) if size is not None else '?'} rows"
            ),
            "</header>",
        ]
    )


def waiting_message(report: Mapping[str, Any]) -> str | None:
    """What the monitor waits for before its first evaluation, with counts; None once there is one."""
    status = report.get("status")
    window = report.get("window") or {}
    pending = int(as_float(window.get("pending_rows")) or 0) if window.get("pending_rows") is not None else 0
    if status == "waiting_for_reference":
        size = window.get("reference_size")
        if window.get("reference_from_first_window") and size:
            got = min(pending, int(size))
            return (
                f"Waiting for the reference: {number(got)} of {number(size)} reference rows received. "
                f"The first {number(size)} rows become the reference; drift is reported from the rows after "
                "them."
            )
        if window.get("reference_from_first_window") is False:
            return (
                "Waiting for a reference: the spec sets reference.source: uploaded, so send one with "
                f"POST /v1/reference. {number(pending)} rows received meanwhile wait for it."
            )
        return "Waiting for a reference: no evaluation is possible before there is one."
    if status == "waiting_for_data":
        cadence = window.get("cadence_rows")
        ref_rows = window.get("reference_rows")
        due = f"{number(min(pending, int(cadence)))} of {number(cadence)}" if cadence else number(pending)
        return (
            f"Reference in place ({number(ref_rows)} rows). Waiting for the first evaluation: {due} rows "
            "received since."
        )
    return None


def _overview(features: Mapping[str, Mapping[str, Any]], order: list[str]) -> str:
    rows = [
        "<h2>Features <span class='legend muted'><span class='sw' style='background:" + REF + "'></span>"
        "reference<span class='sw' style='background:" + CUR + "'></span>current</span></h2>",
        "<table class='wide' id='overview'><thead><tr><th>feature</th><th>verdict</th><th>decided by</th>"
        "<th class='num'>score</th><th class='num'>threshold</th><th class='num'>adjusted p</th>"
        "<th class='num'>missing (reference → current)</th><th class='num'>importance</th></tr></thead>"
        "<tbody>",
    ]
    for name in order:
        f = features[name]
        drifted = bool(f.get("drift_detected"))
        decision = f.get("decision") if isinstance(f.get("decision"), Mapping) else {}
        decided = DECIDED_BY_LABELS.get(
            str(decision.get("decided_by")), str(f.get("status") or "").replace("_", " ")
        )
        rows.append(
            f"<tr class='{'drift' if drifted else 'ok'}'><td>{escape(str(name))}</td><td>{_flag(f)}</td>"
            f"<td>{escape(decided)}</td><td class='num'>{number(f.get('score'))}</td>"
            f"<td class='num'>{number(f.get('threshold'))}</td>"
            f"<td class='num'>{p_value(f.get('p_value_adjusted', f.get('p_value')))}</td>"
            f"<td class='num'>{percent(f.get('missing_rate_reference'))} → "
            f"{percent(f.get('missing_rate'))}</td>"
            f"<td class='num'>{number(f.get('importance'))}</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _flag(f: Mapping[str, Any]) -> str:
    flag = "<span class='flag'>drift</span>" if f.get("drift_detected") else "<span class='noflag'>ok</span>"
    status = f.get("status")
    if status and status != "ok":
        flag += f" <span class='muted'>({escape(str(status).replace('_', ' '))})</span>"
    return flag


def _feature_cards(
    features: Mapping[str, Mapping[str, Any]],
    order: list[str],
    distributions: Mapping[str, Mapping[str, Any]],
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
) -> str:
    parts = ["<h2>Why, feature by feature</h2>"]
    for name in order[:MAX_FEATURE_CARDS]:
        f = features[name]
        drifted = bool(f.get("drift_detected"))
        dist = distributions.get(name)
        meta = " · ".join(
            x
            for x in (
                str(f.get("data_type") or ""),
                str(f.get("method") or ""),
                f"importance {number(f.get('importance'))}",
            )
            if x
        )
        why = "".join(f"<li>{escape(s)}</li>" for s in explain_feature(f, summary))
        panes = [
            _pane("summary statistics", stats_table(dist, f)),
            _pane(_chart_title(dist), distribution_chart(dist, str(name))),
        ]
        series = feature_series(history, str(name))
        if len(series) > 1:
            threshold = next((t for _, _, _, _, t in reversed(series) if t is not None), None)
            chart = history_chart(
                [(at, v, flagged, ver) for at, v, flagged, ver, _ in series],
                band_from=threshold,
                band_label="threshold",
                y_label="score",
                name=str(name),
            )
            panes.append(_pane("score over the last evaluations", chart))
        parts.append(
            f"<section class='card{' drift' if drifted else ''}' id='feature-{escape(str(name))}'>"
            f"<h3><b>{escape(str(name))}</b> {_flag(f)} <span class='muted'>{escape(meta)}</span></h3>"
            f"<ul class='why'>{why}</ul><div class='panes'>{''.join(panes)}</div></section>"
        )
    hidden = len(order) - MAX_FEATURE_CARDS
    if hidden > 0:
        parts.append(f"<p class='muted'>{number(hidden)} more features are in the table above only.</p>")
    return "".join(parts)


def _pane(title: str, body: str) -> str:
    return f"<div><p class='pane-title'>{escape(title)}</p>{body}</div>"


def _chart_title(dist: Mapping[str, Any] | None) -> str:
    if dist and dist.get("kind") == "numeric":
        return (
            "distribution over the reference's quantile bins (each holds about an equal share of the "
            "reference): grey bars are level, blue bars show where current values moved"
        )
    return "categories: the reference's most frequent, then all others"


def stats_table(dist: Mapping[str, Any] | None, f: Mapping[str, Any]) -> str:
    """Reference against current: rows, missing share and, for numbers, mean, std, min, quantiles, max;
    for categories, the number of reference categories and the share of unseen ones (from the result)."""
    stats = (dist or {}).get("stats") or {}
    ref, cur = stats.get("reference") or {}, stats.get("current") or {}
    details = f.get("details") or {}
    rows: list[tuple[str, str, str]] = [
        ("rows", number(ref.get("rows", f.get("n_reference"))), number(cur.get("rows", f.get("n_current")))),
        (
            "missing",
            percent(ref.get("missing_share", f.get("missing_rate_reference"))),
            percent(cur.get("missing_share", f.get("missing_rate"))),
        ),
    ]
    if "mean" in ref or "mean" in cur:
        rows += [
            ("mean", number(ref.get("mean")), number(cur.get("mean"))),
            ("std", number(ref.get("std")), number(cur.get("std"))),
            ("min", number(ref.get("min")), number(cur.get("min"))),
        ]
        rq, cq = ref.get("quantiles") or {}, cur.get("quantiles") or {}
        for key, label in (("p5", "5%"), ("p25", "25%"), ("p50", "median"), ("p75", "75%"), ("p95", "95%")):
            rows.append((label, number(rq.get(key)), number(cq.get(key))))
        rows.append(("max", number(ref.get("max")), number(cur.get("max"))))
    elif "current_mean" in details:
        rows += [
            ("mean", number(details.get("reference_mean")), number(details.get("current_mean"))),
            ("median", number(details.get("reference_median")), number(details.get("current_median"))),
        ]
    if details.get("n_categories_reference") is not None:
        rows.append(("categories", number(details.get("n_categories_reference")), ""))
    if "unseen_rate" in details:
        examples = ", ".join(str(x) for x in (details.get("unseen_examples") or [])[:3])
        rows.append(
            (
                "unseen categories",
                "",
                percent(details.get("unseen_rate")) + (f" ({examples})" if examples else ""),
            )
        )
    body = "".join(
        f"<tr><th>{escape(label)}</th><td class='num'>{escape(r)}</td><td class='num'>{escape(c)}</td></tr>"
        for label, r, c in rows
    )
    return (
        "<table class='stats'><thead><tr><th></th><th class='num'>reference</th>"
        f"<th class='num'>current</th></tr></thead><tbody>{body}</tbody></table>"
    )


def feature_series(
    history: Sequence[Mapping[str, Any]], name: str
) -> list[tuple[float, float | None, bool, Any, float | None]]:
    """(time, score, drifted, version, threshold) of one feature over the history entries that hold it."""
    out = []
    for entry in history:
        f = (entry.get("features") or {}).get(name)
        if not isinstance(f, Mapping):
            continue
        score = as_float(f.get("score"))
        threshold = as_float(f.get("threshold"))
        out.append(
            (
                as_float(entry.get("at")),
                None if math.isnan(score) else score,
                bool(f.get("drift")),
                entry.get("version"),
                None if math.isnan(threshold) else threshold,
            )
        )
    return out


def _history_section(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return "<h2>History</h2><p class='muted' id='history'>No evaluations recorded yet.</p>"
    points = []
    for e in history:
        score = as_float(e.get("overall_drift_score"))
        points.append(
            (
                as_float(e.get("at")),
                None if math.isnan(score) else score,
                e.get("overall_health") == "critical",
                e.get("version"),
            )
        )
    critical = next(
        (as_float(e.get("critical_score")) for e in reversed(history) if e.get("critical_score") is not None),
        None,
    )
    chart = history_chart(
        points, band_from=critical, band_label="critical", y_label="drift score", name="overall", width=620
    )
    versions = [e.get("version") for e in history]
    changes = sum(1 for a, b in itertools.pairwise(versions) if a != b)
    note = (
        f"{len(history)} evaluations, oldest first; red points were critical; "
        f"{changes} version change{'s' if changes != 1 else ''} marked with dashed lines. "
        "Each feature's own series is in its section above; GET /v1/history returns the same as JSON."
    )
    return f"<h2>History</h2><div id='history'>{chart}<p class='muted'>{escape(note)}</p></div>"


# ---------------------------------------------------------------- prediction quality

_CLASSIFICATION = (
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("auc", "AUC"),
)
_REGRESSION = (
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("mape", "MAPE"),
    ("bias", "bias (mean prediction − actual)"),
)


def quality_section(quality: Mapping[str, Any] | None, monitor_predictions: Any) -> str:
    """Metrics of the reference period against the current window, and the confusion matrices."""
    if not isinstance(quality, Mapping) or not (quality.get("reference") or quality.get("current")):
        if isinstance(monitor_predictions, Mapping) and monitor_predictions.get("status") == "ok":
            quality = {
                "task": monitor_predictions.get("task"),
                "reference": None,
                "current": monitor_predictions,
            }
        else:
            return (
                "<h2>Prediction quality</h2><p class='muted' id='quality'>No predictions with outcomes yet: "
                "send the columns _prediction and _actual (and _score, the positive class's score, for AUC) "
                "with the batches and the reference.</p>"
            )
    task = str(quality.get("task") or "")
    ref = quality.get("reference") or {}
    cur = quality.get("current") or {}
    metrics = _CLASSIFICATION if task == "classification" else _REGRESSION
    rows = []
    for key, label in metrics:
        if ref.get(key) is None and cur.get(key) is None:
            continue
        r, c = as_float(ref.get(key)), as_float(cur.get(key))
        change = (
            "–"
            if math.isnan(r) or math.isnan(c)
            else (f"{c - r:+.3f}" if key != "mape" else f"{(c - r) * 100:+.1f} points")
        )
        fmt = percent if key == "mape" else (lambda v: number(v, 3))
        rows.append(
            f"<tr><th>{escape(label)}</th><td class='num'>{fmt(ref.get(key))}</td>"
            f"<td class='num'>{fmt(cur.get(key))}</td><td class='num'>{change}</td></tr>"
        )
    rows.append(
        f"<tr><th>rows scored</th><td class='num'>{number(ref.get('n'))}</td>"
        f"<td class='num'>{number(cur.get('n'))}</td><td></td></tr>"
    )
    notes = []
    for who, m in (("reference", ref), ("current", cur)):
        if m and m.get("status") not in (None, "ok"):
            notes.append(f"{who}: {m.get('reason') or m.get('status')}")
        elif m and m.get("auc_reason"):
            notes.append(f"{who}: {m.get('auc_reason')}")
    if task == "classification" and quality.get("positive_label") is not None:
        notes.append(
            f"precision, recall and F1 are those of the positive label {quality.get('positive_label')!s}"
        )
    elif task == "classification" and cur.get("positive_label") is not None:
        notes.append(
            f"precision, recall and F1 are those of the positive label {cur.get('positive_label')!s}"
        )
    parts = [
        f"<h2>Prediction quality <span class='muted'>({escape(task or 'unknown task')})</span></h2>",
        "<div class='panes' id='quality'><table><thead><tr><th>metric</th>"
        "<th class='num'>reference period</th><th class='num'>current window</th>"
        "<th class='num'>change</th></tr></thead><tbody>",
        *rows,
        "</tbody></table>",
    ]
    for who, m in (("reference period", ref), ("current window", cur)):
        if m and m.get("confusion_matrix"):
            parts.append(_pane(f"confusion matrix, {who}", confusion_table(m)))
    parts.append("</div>")
    if notes:
        parts.append("<p class='muted'>" + escape("; ".join(notes)) + ".</p>")
    return "".join(parts)


def confusion_table(metrics: Mapping[str, Any]) -> str:
    """Rows are actual labels, columns predicted labels; the diagonal (right) is shaded green."""
    labels = [str(x) for x in metrics.get("labels") or []]
    matrix = metrics.get("confusion_matrix") or []
    total = sum(sum(int(v) for v in row) for row in matrix) or 1
    head = "".join(f"<th class='num'>{escape(x)}</th>" for x in labels)
    body = []
    for i, row in enumerate(matrix):
        cells = []
        for j, v in enumerate(row):
            share = int(v) / total
            tint = (
                f"rgba(26,127,55,{0.1 + 0.6 * share:.2f})" if i == j else f"rgba(198,40,40,{0.6 * share:.2f})"
            )
            cells.append(f"<td style='background:{tint}'>{number(v)}</td>")
        label = labels[i] if i < len(labels) else str(i)
        body.append(f"<tr><th>{escape(label)}</th>{''.join(cells)}</tr>")
    return (
        f"<table class='cm'><thead><tr><th>actual ↓ predicted →</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# ---------------------------------------------------------------- ordering and small helpers


def severity_order(features: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Feature names, most severe first (the order of the report page and the text table)."""
    return sorted(features, key=lambda n: _weighted_severity(features[n]), reverse=True)


def _weighted_severity(f: Mapping[str, Any]) -> tuple[bool, float, float]:
    """Drifted first, then importance x severity; ties (severity 0) by importance x closeness to threshold."""
    sev = as_float(f.get("severity"))
    imp = as_float(f.get("importance"))
    sev = 0.0 if math.isnan(sev) else sev
    imp = 1.0 if math.isnan(imp) else imp
    threshold = as_float(f.get("threshold"))
    ratio = as_float(f.get("score")) / threshold if threshold and not math.isnan(threshold) else math.nan
    return bool(f.get("drift_detected")), sev * imp, 0.0 if math.isnan(ratio) else ratio * imp


def _kv(key: str, value: Any) -> str:
    return f"<span class='kv'>{escape(key)} <b>{escape(str(value if value is not None else '–'))}</b></span>"


def _when(ts: Any) -> str:
    v = as_float(ts)
    return "not yet" if math.isnan(v) else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(v))
