"""Type inference, sparse and hybrid paths, and every edge case that must not raise."""

import json

import numpy as np
import pytest

from monitor_runtime.drift import Reference, detect_drift

RNG = np.random.default_rng(11)


def _types(reference: dict) -> dict:
    return Reference.fit(reference).features


def test_type_inference() -> None:
    n = 1000
    got = _types(
        {
            "price": RNG.normal(size=n),
            "country": RNG.choice(["de", "fr", "it"], n),
            "clicked": RNG.integers(0, 2, n),
            "flag": RNG.random(n) < 0.3,
            "rating": RNG.integers(1, 6, n),
            "spend": np.where(RNG.random(n) < 0.8, 0.0, RNG.exponential(size=n)),
            "code": np.array([1.5, "x"] * (n // 2), dtype=object),
        }
    )
    assert got == {
        "price": "continuous",
        "country": "categorical",
        "clicked": "binary",
        "flag": "binary",
        "rating": "categorical",
        "spend": "sparse",
        "code": "mixed",
    }


def test_declared_types_override_inference() -> None:
    ref = {"rating": RNG.integers(1, 6, 500)}
    assert Reference.fit(ref, features={"rating": {"type": "continuous"}}).features == {
        "rating": "continuous"
    }


def test_sparse_test_catches_what_plain_ks_misses() -> None:
    n = 4000
    rng = np.random.default_rng(5)
    ref = np.where(rng.random(n) < 0.95, 0.0, rng.exponential(size=n))
    cur = np.where(rng.random(n) < 0.95, 0.0, 2.0 * rng.exponential(size=n))
    sparse = detect_drift({"s": ref}, {"s": cur})["features"]["s"]
    plain = detect_drift({"s": ref}, {"s": cur}, features={"s": {"type": "continuous"}})["features"]["s"]
    assert sparse["method"] == "sparse" and sparse["drift_detected"]
    assert not plain["drift_detected"]


def test_sparse_zero_rate_change_is_drift() -> None:
    rng = np.random.default_rng(6)
    ref = np.where(rng.random(3000) < 0.9, 0.0, rng.exponential(size=3000))
    cur = np.where(rng.random(3000) < 0.7, 0.0, rng.exponential(size=3000))
    got = detect_drift({"s": ref}, {"s": cur})["features"]["s"]
    assert got["drift_detected"]
    assert got["details"]["zero_rate_current"] == pytest.approx(0.7, abs=0.03)


def test_hybrid_path_for_mixed_columns() -> None:
    ref = np.array([*RNG.normal(size=600).tolist(), *(["n/a-code"] * 0), *(["x"] * 400)], dtype=object)
    cur = np.array([*RNG.normal(size=300).tolist(), *(["x"] * 700)], dtype=object)
    got = detect_drift({"m": ref}, {"m": cur})["features"]["m"]
    assert got["method"] == "hybrid" and got["data_type"] == "mixed"
    assert got["drift_detected"]


def test_nan_and_inf_are_counted_and_a_missing_jump_is_drift() -> None:
    rng = np.random.default_rng(8)
    ref = rng.normal(size=2000)
    cur = rng.normal(size=2000)
    cur[:200] = np.nan
    cur[200:210] = np.inf
    got = detect_drift({"x": ref}, {"x": cur})["features"]["x"]
    assert got["missing_rate"] == pytest.approx(0.105)
    assert got["n_current"] == 1790
    assert got["drift_detected"]
    assert got["details"]["missing_drift"]


def test_shifted_feature_with_missing_values_is_still_caught() -> None:
    rng = np.random.default_rng(9)
    ref, cur = rng.normal(size=1000), rng.normal(1.0, size=1000)
    cur[::10] = np.nan
    ref[::10] = np.nan
    got = detect_drift({"x": ref}, {"x": cur})["features"]["x"]
    assert got["drift_detected"] and got["p_value"] < 1e-10


@pytest.mark.parametrize(
    ("current", "status"),
    [
        ([], "insufficient_data"),
        ([np.nan, np.nan, None], "all_missing"),
        ([3.0], "ok"),
    ],
)
def test_degenerate_current_columns_give_a_verdict(current: list, status: str) -> None:
    got = detect_drift({"x": RNG.normal(size=300)}, {"x": np.array(current, dtype=object)})["features"]["x"]
    assert got["status"] == status
    if status != "ok":
        assert got["reason"]


def test_all_missing_current_is_flagged_through_the_missing_rate() -> None:
    got = detect_drift({"x": RNG.normal(size=300)}, {"x": [None] * 300})["features"]["x"]
    assert got["status"] == "all_missing" and got["drift_detected"]


def test_constant_columns() -> None:
    same = detect_drift(
        {"c": np.full(100, 2.5)}, {"c": np.full(80, 2.5)}, features={"c": {"type": "continuous"}}
    )
    assert same["features"]["c"]["status"] == "constant" and not same["features"]["c"]["drift_detected"]
    moved = detect_drift(
        {"c": np.full(100, 2.5)}, {"c": np.full(80, 3.5)}, features={"c": {"type": "continuous"}}
    )
    assert moved["features"]["c"]["drift_detected"] and "changed" in moved["features"]["c"]["reason"]


def test_all_missing_and_empty_reference_columns() -> None:
    got = detect_drift({"x": [None] * 50, "y": []}, {"x": [1.0, 2.0], "y": [1.0]})["features"]
    assert got["x"]["status"] == "insufficient_data" and "reference" in got["x"]["reason"]
    assert got["y"]["status"] == "insufficient_data"


def test_features_on_one_side_only_are_reported() -> None:
    result = detect_drift(
        {"a": RNG.normal(size=100), "gone": RNG.normal(size=100)}, {"a": RNG.normal(size=100), "new": [1, 2]}
    )
    assert result["features"]["gone"]["status"] == "missing_feature"
    assert result["features"]["new"]["status"] == "new_feature"
    # Half of the importance is absent: that is critical (see test_absent_feature_counts_by_importance).
    assert result["overall_health"] == "critical"
    assert result["drifted_features"] == ["gone"]
    assert not result["features"]["new"]["drift_detected"]
    assert any("new" in r for r in result["recommendations"])


def test_result_is_json_serialisable_without_nan() -> None:
    ref = {"a": RNG.normal(size=200), "c": RNG.choice(["x", "y"], 200), "e": []}
    cur = {"a": [np.nan, np.inf, 1.0], "c": ["q"], "e": [], "n": ["z"]}
    json.dumps(detect_drift(ref, cur), allow_nan=False)


def test_plain_lists_and_string_numbers_are_accepted() -> None:
    got = detect_drift(
        {"x": [1, 2, 3, 4, 5] * 40},
        {"x": ["1", "2", "3", "4", "5"] * 40},
        features=[{"name": "x", "type": "continuous"}],
    )
    assert got["features"]["x"]["score"] == 0.0


@pytest.mark.parametrize(
    ("features", "message"),
    [
        ({"x": {"type": "numeric"}}, "features['x'].type"),
        ({"x": {"importance": 0}}, "features['x'].importance"),
        ([{"type": "continuous"}], "features[0]"),
        ({"x": {"method": "magic"}}, "features['x'].method"),
    ],
)
def test_bad_feature_configs_name_the_field(features: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Reference.fit({"x": [1.0, 2.0]}, features=features)


def test_bad_options_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="optimize_for"):
        Reference.fit({"x": [1.0]}, optimize_for="fast")
    with pytest.raises(ValueError, match="correction"):
        Reference.fit({"x": [1.0]}, correction="holm")
    with pytest.raises(ValueError, match="one-dimensional"):
        Reference.fit({"x": np.zeros((2, 2))})
