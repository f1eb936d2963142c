"""Each feature's result says which gate decided its verdict, with the numbers each gate compared."""

import numpy as np
from scipy import stats

from monitor_runtime.drift import detect_drift


def _result(seed: int = 7) -> dict:
    rng = np.random.default_rng(seed)
    n_small, n_big = 60, 200_000
    grid = stats.norm.ppf((np.arange(n_small) + 0.5) / n_small)  # 60 evenly spread normal values
    income = rng.normal(50, 10, 2000)
    income_cur = rng.permutation(income)  # the same values, so only the missing rate moves
    income_cur[:400] = np.nan  # missing rate 0% -> 20%, the values themselves unchanged
    reference = {
        "shifted": rng.normal(0, 1, 4000),
        "few_rows": grid,
        "big_tiny_shift": rng.normal(0, 1, n_big),
        "same": rng.normal(0, 1, 4000),
        "income": income,
        "empty": np.full(50, np.nan),
    }
    current = {
        "shifted": rng.normal(1.0, 1, 4000),
        "few_rows": grid + 0.25,
        "big_tiny_shift": rng.normal(0.03, 1, n_big),
        "same": rng.normal(0, 1, 4000),
        "income": income_cur,
        "empty": np.full(50, np.nan),
    }
    return detect_drift(reference, current, correction="none", alpha=0.05)


def test_decided_by_names_the_gate_that_made_or_kept_each_verdict() -> None:
    features = _result()["features"]
    decided = {name: f["decision"]["decided_by"] for name, f in features.items()}
    assert decided["shifted"] == "distribution" and features["shifted"]["drift_detected"]
    assert decided["income"] == "missing_values" and features["income"]["drift_detected"]
    # 60 rows: the shift is past the KS threshold but not significant.
    few = features["few_rows"]["decision"]
    assert decided["few_rows"] == "p_value" and few["effect_reaches_threshold"] and not few["significant"]
    assert few["low_confidence"]
    # 200,000 rows: a 0.03-sd shift is significant but below the threshold.
    big = features["big_tiny_shift"]["decision"]
    assert decided["big_tiny_shift"] == "effect_size" and big["significant"]
    assert not big["effect_reaches_threshold"]
    assert decided["same"] == "both_gates"
    assert decided["empty"] == "not_tested"


def test_the_decision_carries_alpha_correction_and_the_missing_gate_numbers() -> None:
    result = _result()
    income = result["features"]["income"]["decision"]
    assert income["alpha"] == 0.05 and income["correction"] == "none"
    assert income["missing"]["tested"] and income["missing"]["drift"]
    assert income["missing"]["change"] == np.float64(0.2)
    assert income["missing"]["threshold"] == 0.02 and not income["distribution_drift"]
    same = result["features"]["same"]["decision"]
    assert not same["missing"]["tested"]  # no missing values on either side: no missing-rate test
    assert result["summary"]["critical_score"] == 0.25


def test_recommendations_write_plain_numbers() -> None:
    rng = np.random.default_rng(3)
    result = detect_drift(
        {"income": rng.normal(45_000, 9_000, 2000)}, {"income": rng.normal(63_000, 9_000, 500)}
    )
    (text,) = [r for r in result["recommendations"] if r.startswith("Feature 'income' drifted")]
    assert "p < 0.0001" in text and "e+" not in text and "e-" not in text
    assert " -> 6" in text and "," in text  # e.g. "mean 45,012 -> 62,874"
