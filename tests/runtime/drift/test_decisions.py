"""Decisions by simulation: calibration under no drift, power under real drift, effect gates."""

import numpy as np
import pytest

from monitor_runtime.drift import Reference, detect_drift
from monitor_runtime.drift.decisions import adjust_pvalues, confidence


def test_benjamini_hochberg_and_bonferroni() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, np.nan])
    bh = adjust_pvalues(p, "bh")
    assert bh[:4] == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert np.isnan(bh[4])
    assert adjust_pvalues(p, "bonferroni")[:4] == pytest.approx([0.04, 0.16, 0.12, 0.02])
    assert adjust_pvalues(p, "none")[:4] == pytest.approx(p[:4])


def _alarm_rate(make, trials: int, **fit) -> float:
    rng = np.random.default_rng(1234)
    alarms = 0
    for _ in range(trials):
        ref, cur = make(rng)
        alarms += bool(detect_drift(ref, cur, **fit)["drifted_features"])
    return alarms / trials


def test_null_false_alarm_rate_is_near_nominal_for_one_continuous_feature() -> None:
    rate = _alarm_rate(lambda r: ({"x": r.normal(size=400)}, {"x": r.normal(size=400)}), 400)
    assert 0.02 <= rate <= 0.08  # nominal 0.05; exact KS is slightly conservative


def test_null_false_alarm_rate_is_near_nominal_for_one_categorical_feature() -> None:
    cats = np.array(["a", "b", "c", "d"])
    rate = _alarm_rate(lambda r: ({"c": r.choice(cats, 400)}, {"c": r.choice(cats, 400)}), 400)
    assert 0.02 <= rate <= 0.08


def test_correction_keeps_many_null_features_quiet() -> None:
    def make(r):
        return (
            {f"f{i}": r.normal(size=300) for i in range(30)},
            {f"f{i}": r.normal(size=300) for i in range(30)},
        )

    assert _alarm_rate(make, 60) <= 0.1  # family-wise, 30 features
    assert _alarm_rate(make, 60, correction="none") >= 0.5  # without correction most batches alarm


def test_power_half_sigma_shift_at_n_1000() -> None:
    rate = _alarm_rate(lambda r: ({"x": r.normal(size=1000)}, {"x": r.normal(0.5, size=1000)}), 50)
    assert rate == 1.0


def test_power_ten_point_category_share_shift() -> None:
    cats = np.array(["a", "b", "c"])
    rate = _alarm_rate(
        lambda r: (
            {"c": r.choice(cats, 1000, p=[0.5, 0.3, 0.2])},
            {"c": r.choice(cats, 1000, p=[0.4, 0.4, 0.2])},
        ),
        50,
    )
    assert rate >= 0.98


def test_power_survives_correction_across_many_features() -> None:
    rng = np.random.default_rng(2)
    ref = {f"f{i}": rng.normal(size=1000) for i in range(100)}
    cur = {f"f{i}": rng.normal(0.5 if i < 3 else 0.0, size=1000) for i in range(100)}
    assert detect_drift(ref, cur)["drifted_features"] == ["f0", "f1", "f2"]


def test_large_samples_ignore_negligible_shifts_but_catch_small_real_ones() -> None:
    rng = np.random.default_rng(3)
    ref = {"tiny": rng.normal(size=200_000), "small": rng.normal(size=200_000)}
    cur = {"tiny": rng.normal(0.02, size=200_000), "small": rng.normal(0.1, size=200_000)}
    got = detect_drift(ref, cur)["features"]
    assert got["tiny"]["p_value"] < 1e-6  # significant ...
    assert not got["tiny"]["drift_detected"]  # ... but immaterial
    assert got["small"]["drift_detected"]


def test_bonferroni_is_selectable_and_more_conservative() -> None:
    rng = np.random.default_rng(4)
    ref = {f"f{i}": rng.normal(size=300) for i in range(40)}
    cur = {f"f{i}": rng.normal(0.2 if i < 10 else 0.0, size=300) for i in range(40)}
    bh = detect_drift(ref, cur)
    bonf = detect_drift(ref, cur, correction="bonferroni")
    assert bonf["summary"]["correction"] == "bonferroni"
    assert set(bonf["drifted_features"]) <= set(bh["drifted_features"])
    bh_adj = np.array([bh["features"][f"f{i}"]["p_value_adjusted"] for i in range(40)])
    bonf_adj = np.array([bonf["features"][f"f{i}"]["p_value_adjusted"] for i in range(40)])
    assert np.all(bonf_adj >= bh_adj - 1e-15) and np.any(bonf_adj > bh_adj)


def test_confidence_grows_with_sample_size() -> None:
    c = confidence(np.array([10, 100, 1000, 10_000]), np.array([10, 100, 1000, 10_000]))
    assert np.all(np.diff(c) > 0) and c[0] < 0.1 and c[-1] > 0.99


def test_importance_weights_the_overall_score_and_health() -> None:
    rng = np.random.default_rng(5)
    ref = {"key": rng.normal(size=1000), "minor": rng.normal(size=1000), "other": rng.normal(size=1000)}
    cur_key = {
        "key": rng.normal(1, size=1000),
        "minor": rng.normal(size=1000),
        "other": rng.normal(size=1000),
    }
    cur_minor = {
        "key": rng.normal(size=1000),
        "minor": rng.normal(1, size=1000),
        "other": rng.normal(size=1000),
    }
    features = {"key": {"importance": 5.0}, "minor": {"importance": 0.5}}
    prepared = Reference.fit(ref, features=features)
    hit_key, hit_minor = prepared.detect(cur_key), prepared.detect(cur_minor)
    assert hit_key["overall_drift_score"] > 3 * hit_minor["overall_drift_score"]
    assert hit_key["overall_health"] == "critical"
    assert hit_minor["overall_health"] == "warning"
    assert any("Retraining is warranted" in r for r in hit_key["recommendations"])
    assert any("'key'" in r for r in hit_key["recommendations"])


def test_no_drift_is_good_health_with_a_clear_recommendation() -> None:
    rng = np.random.default_rng(6)
    got = detect_drift({"x": rng.normal(size=1000)}, {"x": rng.normal(size=1000)})
    assert got["overall_health"] == "good" and got["overall_drift_score"] == 0.0
    assert got["recommendations"] == ["No material drift: no action needed."]


@pytest.mark.parametrize("goal", ["real_time", "cost"])
def test_faster_goals_subsample_but_keep_verdicts_on_clear_shifts(goal: str) -> None:
    rng = np.random.default_rng(7)
    ref = {"x": rng.normal(size=60_000), "y": rng.normal(size=60_000)}
    cur = {"x": rng.normal(0.3, size=60_000), "y": rng.normal(size=60_000)}
    got = detect_drift(ref, cur, optimize_for=goal)
    assert got["drifted_features"] == ["x"]
    assert got["features"]["x"]["n_current"] < 60_000
    assert got["summary"]["optimize_for"] == goal


def test_prepared_reference_equals_one_shot() -> None:
    rng = np.random.default_rng(8)
    ref = {"x": rng.normal(size=500), "c": rng.choice(["a", "b"], 500)}
    cur = {"x": rng.normal(0.2, size=400), "c": rng.choice(["a", "b"], 400)}
    assert Reference.fit(ref).detect(cur) == detect_drift(ref, cur)
