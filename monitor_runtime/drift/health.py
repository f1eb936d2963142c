"""From per-feature verdicts to an overall score, a health status and concrete recommendations."""

from __future__ import annotations

from typing import Any

#: Overall drift score at or above which health is critical.
CRITICAL_SCORE = 0.25
#: Share of (importance-weighted) features drifting at or above which health is critical.
CRITICAL_SHARE = 0.3
#: Effective sample size below which a recommendation asks for more data.
LOW_CONFIDENCE = 0.5
MAX_FEATURE_RECOMMENDATIONS = 5


def overall(features: dict[str, dict[str, Any]], critical_score: float = CRITICAL_SCORE) -> tuple[float, str]:
    """Importance-weighted mean severity (0..1) and health: good | warning | critical.

    A feature absent from the batch (`missing_feature`) is scored like any other, at the severity its entry
    carries (1 when the batch has rows); a new column is not scored: the reference says nothing about it.
    """
    scored = [f for f in features.values() if f["status"] != "new_feature"]
    total = sum(f["importance"] for f in scored)
    score = sum(f["importance"] * f["severity"] for f in scored) / total if total > 0 else 0.0
    drifted_weight = sum(f["importance"] for f in scored if f["drift_detected"])
    schema_change = any(f["status"] in ("new_feature", "missing_feature") for f in features.values())
    # Verdicts resting on a handful of rows may warn but never make health critical on their own.
    confident = [f for f in scored if f["confidence"] >= LOW_CONFIDENCE]
    sure_score = sum(f["importance"] * f["severity"] for f in confident) / total if total > 0 else 0.0
    sure_weight = sum(f["importance"] for f in confident if f["drift_detected"])
    if sure_score >= critical_score or (total > 0 and sure_weight / total >= CRITICAL_SHARE):
        return score, "critical"
    if drifted_weight > 0 or schema_change:
        return score, "warning"
    return score, "good"


def _plain(v: float) -> str:
    """A number without an exponent where plain digits fit (44,711 rather than 4.471e+04)."""
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}" if v == 0 or abs(v) >= 1e-4 else f"{v:.2g}"


def _describe(name: str, f: dict[str, Any]) -> str:
    d = f["details"]
    p = f["p_value"]
    p_text = "" if p is None else (", p < 0.0001" if p < 1e-4 else f", p={p:.2g}")
    head = f"Feature '{name}' drifted ({f['method']} {_plain(f['score'])}{p_text})"
    if f["data_type"] == "continuous" and "current_mean" in d:
        head += (
            f": mean {_plain(d['reference_mean'])} -> {_plain(d['current_mean'])}"
            f" ({d['mean_shift_sd']:+.2f} reference sd)"
        )
        action = "check the upstream source and unit conversions of this feature"
    elif f["data_type"] in ("categorical", "binary") and d.get("categories"):
        cats = d["categories"]
        label, ref, cur = cats["labels"][0], cats["reference"][0], cats["current"][0]
        if label == "(unseen)":
            head += f": {cur:.1%} of rows hold categories never seen in the reference"
        else:
            head += f": share of '{label}' {ref:.1%} -> {cur:.1%}"
        action = "check for a new population segment or a changed encoding upstream"
    elif f["data_type"] == "sparse":
        head += f": zero rate {d['zero_rate_reference']:.1%} -> {d['zero_rate_current']:.1%}"
        action = "check whether the event behind this feature fires more or less often"
    else:
        action = "inspect the feature's recent values"
    return f"{head}; {action}."


def recommendations(
    features: dict[str, dict[str, Any]], drifted: list[str], score: float, health: str
) -> list[str]:
    """Concrete next steps: which features, what to check, and whether retraining is warranted."""
    recs: list[str] = []
    # Features flagged only for their missing rate get the missing-values advice below instead.
    shifted = [n for n in drifted if features[n]["details"].get("distribution_drift", True)]
    ranked = sorted(shifted, key=lambda n: -features[n]["importance"] * features[n]["severity"])
    for name in ranked[:MAX_FEATURE_RECOMMENDATIONS]:
        recs.append(_describe(name, features[name]))
    if len(ranked) > MAX_FEATURE_RECOMMENDATIONS:
        recs.append(f"{len(ranked) - MAX_FEATURE_RECOMMENDATIONS} more drifted features: see the report.")
    for name, f in features.items():
        d = f["details"]
        if d.get("missing_drift"):
            recs.append(
                f"Missing values in '{name}' changed from {f['missing_rate_reference']:.1%} to "
                f"{f['missing_rate']:.1%}: check for a broken join, a failing source or a schema change."
            )
        if d.get("unseen_count"):
            examples = ", ".join(repr(x) for x in d.get("unseen_examples", []))
            recs.append(
                f"'{name}' has values never seen in the reference ({d['unseen_rate']:.1%} of rows, "
                f"e.g. {examples}): update the model's encoders or refresh the reference."
            )
    new = [n for n, f in features.items() if f["status"] == "new_feature"]
    gone = [n for n, f in features.items() if f["status"] == "missing_feature"]
    if new:
        recs.append(f"New features not in the reference: {', '.join(new)}; add them to the reference.")
    if gone:
        recs.append(
            f"Reference features absent from the batch: {', '.join(gone)}; the model gets no values for "
            "them: check the producer for a renamed or dropped column."
        )
    low = [
        n
        for n, f in features.items()
        if f["status"] not in ("new_feature", "missing_feature", "insufficient_data")
        and f["confidence"] < LOW_CONFIDENCE
    ]
    if low:
        recs.append(
            f"Few rows behind {len(low)} verdicts (e.g. '{low[0]}'): "
            "use a larger window for confident results."
        )
    absent_only = bool(drifted) and all(features[n]["status"] == "missing_feature" for n in drifted)
    if health == "critical" and absent_only:
        recs.append(
            f"Retraining is not the remedy: the drift score ({score:.2f}) comes from features absent from "
            "the batch; restore them upstream first."
        )
    elif health == "critical":
        recs.append(
            f"Retraining is warranted: {len(drifted)} features drifted (drift score {score:.2f}); first rule "
            "out data-quality causes above, then retrain on recent data and refresh the reference."
        )
    elif health == "warning" and drifted:
        recs.append("Retraining is not yet warranted: watch these features over the next windows.")
    if not recs:
        recs.append("No material drift: no action needed.")
    return recs
