"""Turning statistics into verdicts: multiple testing, effect-size gates, confidence, severity.

A feature drifts when its test is significant after correction across all hypotheses of the batch
(Benjamini-Hochberg by default) AND its effect size reaches the method's threshold. The p-value
guards small samples (a big-looking distance on 30 rows is noise); the effect threshold guards large
ones (at 100,000 rows a 0.01-sd shift is "significant" but immaterial). Defaults and reasons are in
docs/drift.md.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CORRECTIONS = ("bh", "bonferroni", "none")

#: Effect-size thresholds per method: the smallest shift worth an alarm.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "ks": 0.025,  # KS distance; a 0.06-sd mean shift of a normal feature
    "wasserstein": 0.06,  # Wasserstein distance in reference standard deviations
    "psi": 0.1,  # population stability index; the industry's "moderate shift" line
    "js": 0.05,  # Jensen-Shannon distance (base 2, 0..1)
    "chi2": 0.05,  # Cramer's V of the reference-vs-current contingency table
    "kl": 0.02,  # smoothed KL divergence (nats)
    "sparse": 0.025,  # max(zero-rate change, KS distance of the non-zero values)
    "hybrid": 0.025,  # max of the parts' effect sizes
    "missing": 0.02,  # absolute change of the missing rate
}

#: Effective sample size at which confidence reaches 1 - 1/e.
CONFIDENCE_SCALE = 100.0


def adjust_pvalues(p_values: np.ndarray, correction: str = "bh") -> np.ndarray:
    """Adjusted p-values across hypotheses; NaN entries (no test) stay NaN and do not count."""
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    tested = np.isfinite(p)
    if not tested.any():
        return out
    if correction == "none":
        out[tested] = p[tested]
    elif correction == "bonferroni":
        out[tested] = np.minimum(p[tested] * tested.sum(), 1.0)
    else:
        out[tested] = stats.false_discovery_control(p[tested], method="bh")
    return out


def confidence(n_reference: np.ndarray, n_current: np.ndarray) -> np.ndarray:
    """0..1, growing with the effective sample size n1*n2/(n1+n2)."""
    n1 = np.asarray(n_reference, dtype=np.float64)
    n2 = np.asarray(n_current, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        n_eff = np.where((n1 > 0) & (n2 > 0), n1 * n2 / (n1 + n2), 0.0)
    return 1.0 - np.exp(-n_eff / CONFIDENCE_SCALE)


def severity(effect: np.ndarray, threshold: np.ndarray, drifted: np.ndarray) -> np.ndarray:
    """0 when not drifted; from 0.5 at the threshold up to 1 at four times the threshold."""
    ratio = np.asarray(effect, dtype=np.float64) / np.asarray(threshold, dtype=np.float64)
    sev = 0.5 + 0.5 * np.clip((ratio - 1.0) / 3.0, 0.0, 1.0)
    return np.where(drifted, sev, 0.0)


def proportion_test(k1: np.ndarray, n1: np.ndarray, k2: np.ndarray, n2: np.ndarray) -> np.ndarray:
    """Two-sided pooled two-proportion z-test (the 2x2 chi-squared without continuity correction)."""
    k1, n1, k2, n2 = (np.asarray(a, dtype=np.float64) for a in (k1, n1, k2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (k1 + k2) / (n1 + n2)
        var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)
        z = np.abs(k1 / n1 - k2 / n2) / np.sqrt(var)
        p = 2.0 * stats.norm.sf(z)
    p = np.where((n1 > 0) & (n2 > 0), p, np.nan)
    # Identical proportions (including both 0 or both 1) carry no evidence.
    return np.where(np.isfinite(p), p, np.where((n1 > 0) & (n2 > 0), 1.0, np.nan))


def fisher_combine(*p_values: np.ndarray) -> np.ndarray:
    """Fisher's method over independent p-values; NaN parts are left out of the sum."""
    stacked = np.vstack([np.asarray(p, dtype=np.float64) for p in p_values])
    present = np.isfinite(stacked)
    clipped = np.clip(np.where(present, stacked, 1.0), 1e-300, 1.0)
    statistic = -2.0 * np.log(clipped).sum(axis=0)
    dof = 2 * present.sum(axis=0)
    combined = stats.chi2.sf(statistic, np.maximum(dof, 1))
    return np.where(dof > 0, combined, np.nan)
