"""Plain-text rendering of a drift result for terminals."""

from __future__ import annotations

from typing import Any

_HEALTH_MARK = {"good": "OK", "warning": "WARN", "critical": "CRIT"}


def _fmt(value: float | None, spec: str) -> str:
    if value is None:
        return "-"
    if spec == "p":
        return "<1e-12" if value < 1e-12 else f"{value:.3g}"
    return format(value, spec)


def format_table(result: dict[str, Any], *, title: str | None = None) -> str:
    """A drift result as an aligned table, most severe features first, then recommendations."""
    features = result["features"]
    order = sorted(
        features,
        key=lambda n: (
            not features[n]["drift_detected"],
            -(features[n]["importance"] * features[n]["severity"]),
            -(features[n]["score"] or 0.0),
            n,
        ),
    )
    header = ("feature", "type", "method", "score", "thresh", "p(adj)", "missing", "drift", "note")
    rows = [header]
    for name in order:
        f = features[name]
        note = f["reason"] or ""
        if f["details"].get("unseen_count"):
            note = f"{f['details']['unseen_count']} unseen values"
        rows.append(
            (
                name,
                f["data_type"],
                f["method"],
                _fmt(f["score"], ".4f"),
                _fmt(f["threshold"], ".3g"),
                _fmt(f["p_value_adjusted"], "p"),
                f"{f['missing_rate']:.1%}",
                "YES" if f["drift_detected"] else "no",
                note,
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header) - 1)]
    lines = []
    if title:
        lines += [title, ""]
    for i, row in enumerate(rows):
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join(cells) + ("  " + row[-1] if row[-1] else ""))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    health = result["overall_health"]
    lines += [
        "",
        f"health: {health} [{_HEALTH_MARK.get(health, '?')}]   "
        f"drift score: {result['overall_drift_score']:.3f}   "
        f"drifted: {len(result['drifted_features'])}/{len(features)}",
        "",
        "recommendations:",
        *(f"  - {r}" for r in result["recommendations"]),
    ]
    return "\n".join(lines)
