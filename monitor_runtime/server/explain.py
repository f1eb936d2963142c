"""Verdicts in words: why each feature drifted or did not, from the facts its drift result carries.

Nothing here decides anything: the drift engine's `decision` says which gate decided (see
`monitor_runtime.drift.reference.DECIDED_BY`) and with which numbers; this module only says it in
sentences, for the report page and anyone reading a report by eye.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

#: What each method's score measures, as a reader would call it.
SCORE_NAMES = {
    "ks": "KS distance",
    "wasserstein": "Wasserstein distance (in reference standard deviations)",
    "psi": "population stability index",
    "js": "Jensen-Shannon distance",
    "chi2": "Cramér's V",
    "kl": "KL divergence",
    "sparse": "sparse-feature score",
    "hybrid": "mixed-feature score",
}
CORRECTION_NAMES = {
    "bh": "the Benjamini-Hochberg correction",
    "bonferroni": "the Bonferroni correction",
    "none": "no correction",
}


def number(value: Any, digits: int = 4) -> str:
    """A number for people: plain digits (no exponent), thousands separated, `–` when there is none."""
    v = as_float(value)
    if math.isnan(v):
        return "–"
    if math.isinf(v):
        return "∞" if v > 0 else "-∞"
    if abs(v) >= 10_000 or (abs(v) >= 1000 and v == round(v)):
        return f"{v:,.0f}"
    if v == 0:
        return "0"
    if abs(v) < 1e-6:
        return f"{'-' if v < 0 else ''}< 0.000001"
    text = f"{v:.{digits}g}"
    if "e" in text:  # 4 significant digits of a small number: write the zeros out
        decimals = digits - 1 - math.floor(math.log10(abs(v)))
        text = f"{v:.{decimals}f}".rstrip("0").rstrip(".")
    return text


def p_value(value: Any) -> str:
    """A p-value: `< 0.0001` below that, else up to 4 significant digits."""
    v = as_float(value)
    if math.isnan(v):
        return "–"
    return "< 0.0001" if v < 1e-4 else number(v, 3)


def p_equals(value: Any) -> str:
    """`p = 0.03`, or `p < 0.0001` for the smallest values."""
    text = p_value(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def percent(value: Any) -> str:
    v = as_float(value)
    if math.isnan(v):
        return "–"
    return f"{v:.1%}" if v == 0 or abs(v) >= 0.001 else f"{v:.2%}"


def as_float(value: Any) -> float:
    try:
        return math.nan if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return math.nan


def legend(summary: Mapping[str, Any]) -> str:
    """How the two gates work, with this report's alpha and correction (plain text)."""
    alpha = summary.get("alpha")
    correction = CORRECTION_NAMES.get(str(summary.get("correction")), "the configured correction")
    alpha_text = f"α = {number(alpha)}" if alpha is not None else "alpha"
    return (
        "A feature drifts when two gates both pass. Significance: its p-value, adjusted with "
        f"{correction} because many features are tested at once, is below {alpha_text}; this guards "
        "against noise when there are few rows. Size: its effect size (the score) reaches the method's "
        "threshold; this guards against shifts too small to matter when there are many rows. A feature "
        "also drifts when its share of missing values changes significantly and by at least the missing "
        "threshold. Categories never seen in the reference count as change in the categorical test. "
        "Verdicts resting on few rows are marked low-confidence."
    )


def explain_feature(f: Mapping[str, Any], summary: Mapping[str, Any] | None = None) -> list[str]:
    """Sentences saying why this feature drifted or did not, most important first."""
    summary = summary or {}
    status = str(f.get("status") or "ok")
    d = f.get("decision")
    details = f.get("details") or {}
    reason = f.get("reason")
    if status in ("new_feature", "missing_feature"):
        return [str(reason or status.replace("_", " "))]
    if not isinstance(d, Mapping) or "decided_by" not in d:
        out = ["The result does not say which gate decided this verdict."]
        return out + ([str(reason)] if reason else [])
    decided = str(d["decided_by"])
    if decided == "not_tested":
        return [f"Not tested: {reason}." if reason else "Not tested: no usable values on one side."]
    out = [_distribution_sentence(f, d, summary)]
    missing = _missing_sentence(f, d)
    if missing:
        if decided == "missing_values":
            out.insert(0, missing)
        else:
            out.append(missing)
    unseen = _unseen_sentence(details)
    if unseen:
        out.append(unseen)
    if d.get("low_confidence"):
        out.append(
            f"Low confidence: only {number(f.get('n_current'))} current and {number(f.get('n_reference'))} "
            "reference values; a larger window gives a firmer verdict."
        )
    if status not in ("ok",) and reason:
        out.append(f"{str(reason)[0].upper()}{str(reason)[1:]}.")
    return out


def _gates(f: Mapping[str, Any], d: Mapping[str, Any], summary: Mapping[str, Any]) -> tuple[str, str]:
    method = str(f.get("method") or "")
    score_name = SCORE_NAMES.get(method, f"{method} score")
    alpha = d.get("alpha", summary.get("alpha"))
    correction = CORRECTION_NAMES.get(str(d.get("correction", summary.get("correction"))), "its correction")
    p_adj = d.get("p_value_adjusted")
    size = f"{score_name} {number(d.get('effect_size'))} {{}} its threshold {number(d.get('threshold'))}"
    significance = f"adjusted {p_equals(p_adj)}, {{}} α = {number(alpha)} after {correction}"
    return size, significance


def _distribution_sentence(f: Mapping[str, Any], d: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    size, significance = _gates(f, d, summary)
    decided = str(d["decided_by"])
    large, significant = bool(d.get("effect_reaches_threshold")), bool(d.get("significant"))
    size = size.format("reaches" if large else "is below")
    significance = significance.format("below" if significant else "not below")
    if decided in ("distribution", "distribution_and_missing_values"):
        return f"Drift in the distribution: the {size}, and the change is significant ({significance})."
    if decided == "p_value":
        return (
            f"No drift, decided by the p-value: the {size}, but the change is not significant "
            f"({significance}) with {number(f.get('n_current'))} current rows; more rows would tell "
            "whether it is real."
        )
    if decided == "effect_size":
        return (
            f"No drift, decided by the effect size: the change is significant ({significance}) "
            f"but too small to matter: the {size}."
        )
    if decided == "missing_values":
        if d.get("p_value_adjusted") is None:
            return "The values present could not be tested for a shift."
        return f"The values present did not drift: the {size}, and {significance}."
    return f"No drift: the {size}, and {significance}."


def _missing_sentence(f: Mapping[str, Any], d: Mapping[str, Any]) -> str | None:
    m = d.get("missing")
    if not isinstance(m, Mapping) or not m.get("tested"):
        return None
    before, after = percent(f.get("missing_rate_reference")), percent(f.get("missing_rate"))
    change = f"missing values went from {before} to {after} of rows"
    if m.get("drift"):
        return (
            f"Drift in missing values: {change}, a change past the {percent(m.get('threshold'))} threshold "
            f"and significant (adjusted {p_equals(m.get('p_value_adjusted'))})."
        )
    if as_float(m.get("change")) == 0:
        return None
    why = (
        f"below the {percent(m.get('threshold'))} threshold"
        if not m.get("change_reaches_threshold")
        else f"not significant (adjusted {p_equals(m.get('p_value_adjusted'))})"
    )
    return f"The {change}: {why}, so not a drift."


def _unseen_sentence(details: Mapping[str, Any]) -> str | None:
    count = details.get("unseen_count")
    if not count:
        return None
    examples = ", ".join(f"'{x}'" for x in (details.get("unseen_examples") or [])[:5])
    tail = f" (e.g. {examples})" if examples else ""
    return (
        f"{percent(details.get('unseen_rate'))} of current rows hold categories never seen in the "
        f"reference{tail}; they count as change in the categorical test."
    )


#: Short labels for `decided_by`, for the overview table.
DECIDED_BY_LABELS = {
    "distribution": "distribution shift",
    "missing_values": "missing values",
    "distribution_and_missing_values": "distribution and missing values",
    "p_value": "p-value (not significant)",
    "effect_size": "effect size (too small)",
    "both_gates": "both gates",
    "not_tested": "not tested",
}
