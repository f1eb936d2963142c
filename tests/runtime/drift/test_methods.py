"""Effect-size methods: Wasserstein, PSI, Jensen-Shannon, chi-squared, smoothed KL."""

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor_runtime.drift import Reference, detect_drift
from monitor_runtime.drift.categorical import chi2_contingency_2xk, smoothed_kl
from monitor_runtime.drift.continuous import js_distance, psi, wasserstein_sorted


def _features(name: str, method: str, ftype: str = "continuous") -> dict:
    return {name: {"type": ftype, "method": method}}


def test_wasserstein_is_normalised_across_scales() -> None:
    rng = np.random.default_rng(0)
    ref, cur = rng.normal(size=4000), rng.normal(0.3, size=3000)
    scores = [
        detect_drift({"x": ref * k}, {"x": cur * k}, features=_features("x", "wasserstein"))["features"]["x"]
        for k in (1e-3, 1.0, 1e4)
    ]
    assert scores[0]["score"] == pytest.approx(scores[1]["score"], rel=1e-9)
    assert scores[2]["score"] == pytest.approx(scores[1]["score"], rel=1e-9)
    assert 0.2 < scores[1]["score"] < 0.4  # a 0.3-sd mean shift
    assert scores[1]["drift_detected"]


def test_wasserstein_equals_scipy_for_equal_sizes() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.exponential(size=500)
    assert wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(stats.wasserstein_distance(a, b))


def test_wasserstein_grid_is_close_to_scipy_for_unequal_sizes() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=20_000), rng.normal(0.5, 1.2, size=7_000)
    assert wasserstein_sorted(np.sort(a), np.sort(b)) == pytest.approx(
        stats.wasserstein_distance(a, b), rel=0.01
    )


def test_psi_uses_reference_quantile_bins() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(size=10_000)
    prepared = Reference.fit({"x": ref}, features=_features("x", "psi"))._features["x"]
    assert prepared.shares == pytest.approx(np.full(10, 0.1), abs=1e-3)
    cur = rng.normal(0.5, size=10_000)
    result = detect_drift({"x": ref}, {"x": cur}, features=_features("x", "psi"))["features"]["x"]
    edges = np.quantile(ref, np.linspace(0, 1, 11)[1:-1])
    p = np.histogram(ref, np.concatenate(([-np.inf], edges, [np.inf])))[0] / ref.size
    q = np.histogram(cur, np.concatenate(([-np.inf], edges, [np.inf])))[0] / cur.size
    assert result["score"] == pytest.approx(np.sum((q - p) * np.log(q / p)), rel=1e-6)
    assert result["method"] == "psi" and result["drift_detected"]


def test_js_distance_equals_scipy() -> None:
    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.1, 0.6, 0.3])
    assert js_distance(p, q) == pytest.approx(jensenshannon(p, q, base=2))
    assert psi(p, p) == 0.0


def test_chi2_equals_scipy_contingency_without_correction() -> None:
    ref, cur = np.array([50, 30, 20, 0]), np.array([40, 35, 20, 5])
    statistic, dof = chi2_contingency_2xk(ref, cur)
    expected = stats.chi2_contingency(
        np.vstack([[*ref[:3].tolist(), 0], cur]).T[ref + cur > 0].T, correction=False
    )
    assert statistic == pytest.approx(expected.statistic)
    assert dof == expected.dof


def test_categorical_pvalue_is_the_contingency_test() -> None:
    rng = np.random.default_rng(4)
    ref = rng.choice(["a", "b", "c"], 800, p=[0.5, 0.3, 0.2])
    cur = rng.choice(["a", "b", "c"], 600, p=[0.45, 0.35, 0.2])
    got = detect_drift({"c": ref}, {"c": cur})["features"]["c"]
    table = np.array([[np.sum(ref == k) for k in "abc"], [np.sum(cur == k) for k in "abc"]])
    assert got["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9)
    assert got["method"] == "chi2" and got["data_type"] == "categorical"


def test_kl_smoothing_keeps_unseen_categories_finite_and_counts_them_as_drift() -> None:
    assert np.isfinite(smoothed_kl(np.array([100, 0]), np.array([0, 100])))
    rng = np.random.default_rng(5)
    ref = rng.choice(["a", "b"], 2000)
    cur = np.concatenate([rng.choice(["a", "b"], 1700), np.array(["z"] * 300)])
    for method in ("chi2", "kl", "js", "psi"):
        got = detect_drift({"c": ref}, {"c": cur}, features=_features("c", method, "categorical"))[
            "features"
        ]["c"]
        assert got["drift_detected"], method
        assert got["details"]["unseen_count"] == 300
        assert got["details"]["unseen_examples"] == ["z"]
        assert np.isfinite(got["score"])


def test_histograms_are_opt_in_and_cover_both_sides() -> None:
    rng = np.random.default_rng(6)
    ref, cur = {"x": rng.normal(size=500)}, {"x": rng.normal(1, size=400)}
    assert "histogram" not in detect_drift(ref, cur)["features"]["x"]["details"]
    hist = Reference.fit(ref, histograms=True).detect(cur)["features"]["x"]["details"]["histogram"]
    assert len(hist["edges"]) == 21 and sum(hist["reference"]) == pytest.approx(1.0)
    assert np.argmax(hist["current"]) > np.argmax(hist["reference"])
