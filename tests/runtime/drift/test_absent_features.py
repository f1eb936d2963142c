"""A reference feature absent from the current batch is a finding weighted by its importance, not a zero."""

from __future__ import annotations

import numpy as np
import pytest

from monitor_runtime.drift import detect_drift

FEATURES = {
    "income": {"type": "continuous", "importance": 3.0},
    "credit_score": {"type": "continuous", "importance": 2.0},
    "age": {"type": "continuous", "importance": 1.0},
    "tenure_months": {"type": "continuous", "importance": 1.0},
    "plan": {"type": "categorical", "importance": 1.0},
    "region": {"type": "categorical", "importance": 0.5},
}
TOTAL_IMPORTANCE = sum(f["importance"] for f in FEATURES.values())


def _frame(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "income": rng.normal(45_000, 12_000, n),
        "credit_score": rng.normal(650, 50, n),
        "age": rng.normal(40, 10, n),
        "tenure_months": rng.normal(30, 8, n),
        "plan": rng.choice(["basic", "plus", "premium"], n).astype(object),
        "region": rng.choice(["north", "south"], n).astype(object),
    }


@pytest.fixture(scope="module")
def data() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return _frame(rng, 1500), _frame(rng, 600)


def test_same_population_without_the_rename_is_good(data) -> None:
    reference, current = data
    result = detect_drift(reference, current, features=FEATURES)
    assert result["overall_health"] == "good" and result["overall_drift_score"] == 0.0


def test_absent_feature_counts_by_importance(data) -> None:
    reference, current = data
    renamed = {("earnings" if k == "income" else k): v for k, v in current.items()}
    result = detect_drift(reference, renamed, features=FEATURES)
    income = result["features"]["income"]
    assert income["status"] == "missing_feature"
    assert income["drift_detected"] is True
    assert income["missing_rate"] == 1.0 and income["missing_rate_reference"] == 0.0
    assert income["severity"] == 1.0 and income["confidence"] == 1.0
    assert income["importance"] == 3.0 and income["n_reference"] == 1500 and income["n_current"] == 0
    assert income["reason"].startswith("absent from the current data")
    assert result["drifted_features"] == ["income"]
    assert result["summary"]["n_drifted"] == 1
    assert result["overall_drift_score"] == pytest.approx(3.0 / TOTAL_IMPORTANCE)
    assert result["overall_health"] == "critical"
    # The new name is reported but never scored; the advice is to restore the column, not to retrain.
    assert result["features"]["earnings"]["status"] == "new_feature"
    assert not result["features"]["earnings"]["drift_detected"]
    recs = " ".join(result["recommendations"])
    assert "absent from the batch: income" in recs and "Retraining is not the remedy" in recs


def test_a_minor_absent_feature_warns(data) -> None:
    reference, current = data
    without_region = {k: v for k, v in current.items() if k != "region"}
    result = detect_drift(reference, without_region, features=FEATURES)
    assert result["drifted_features"] == ["region"]
    assert result["overall_drift_score"] == pytest.approx(0.5 / TOTAL_IMPORTANCE)
    assert result["overall_health"] == "warning"


def test_a_batch_without_rows_judges_nothing(data) -> None:
    reference, _ = data
    empty = {name: np.array([], dtype=np.float64) for name in ("credit_score", "age")}
    result = detect_drift(reference, empty, features=FEATURES)
    income = result["features"]["income"]
    assert income["status"] == "missing_feature" and not income["drift_detected"]
    assert income["severity"] == 0.0 and income["missing_rate"] == 0.0
    assert result["drifted_features"] == []
