"""Prediction quality: metrics against hand-computed cases and scipy, bad input, prediction drift."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.quality import (
    classification_metrics,
    evaluate_predictions,
    prediction_drift,
    regression_metrics,
    roc_auc,
)


def test_binary_metrics_by_hand() -> None:
    # actual:    1 1 1 1 0 0 0 0 0 0
    # predicted: 1 1 1 0 1 0 0 0 0 0  -> tp 3, fn 1, fp 1, tn 5
    actual = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    predicted = [1, 1, 1, 0, 1, 0, 0, 0, 0, 0]
    m = classification_metrics(predicted, actual)
    assert m["status"] == "ok" and m["n"] == 10 and m["labels"] == [0, 1]
    assert m["positive_label"] == 1
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75)
    assert m["per_class"]["0"] == {
        "precision": 5 / 6,
        "recall": 5 / 6,
        "f1": pytest.approx(5 / 6),
        "support": 6,
    }
    assert m["confusion_matrix"] == [[5, 1], [1, 3]]
    json.dumps(m, allow_nan=False)


def test_multiclass_metrics_are_macro_averages_of_per_class() -> None:
    actual = ["cat", "cat", "dog", "dog", "dog", "eel"]
    predicted = ["cat", "dog", "dog", "dog", "eel", "eel"]
    m = classification_metrics(predicted, actual)
    assert m["positive_label"] is None
    per = m["per_class"]
    assert per["cat"]["precision"] == 1.0 and per["cat"]["recall"] == 0.5
    assert per["dog"]["precision"] == pytest.approx(2 / 3) and per["dog"]["recall"] == pytest.approx(2 / 3)
    assert per["eel"]["precision"] == 0.5 and per["eel"]["recall"] == 1.0
    assert m["precision"] == pytest.approx(np.mean([1.0, 2 / 3, 0.5]))
    assert m["f1"] == pytest.approx(np.mean([2 / 3, 2 / 3, 2 / 3]))
    assert m["accuracy"] == pytest.approx(4 / 6)


def test_auc_by_hand_with_ties() -> None:
    # positives 0.8, 0.4, 0.4; negatives 0.4, 0.1: pairs won 1+1, 0.5+1, 0.5+1 = 5 of 6
    labels = np.array([1, 1, 1, 0, 0], dtype=bool)
    scores = np.array([0.8, 0.4, 0.4, 0.4, 0.1])
    assert roc_auc(labels, scores) == pytest.approx(5 / 6)


def test_auc_equals_mann_whitney_u_over_pairs() -> None:
    rng = np.random.default_rng(0)
    actual = rng.integers(0, 2, 2000)
    scores = np.round(rng.normal(actual * 0.8, 1.0), 1)  # rounding makes many ties
    predicted = (scores > 0.4).astype(int)
    m = classification_metrics(predicted, actual, scores)
    u = stats.mannwhitneyu(scores[actual == 1], scores[actual == 0]).statistic
    assert m["auc"] == pytest.approx(u / (actual.sum() * (actual.size - actual.sum())), abs=1e-12)
    try:  # scikit-learn is not a dependency; compare with it when it happens to be installed
        from sklearn.metrics import f1_score, roc_auc_score
    except ImportError:
        return
    assert m["auc"] == pytest.approx(roc_auc_score(actual, scores), abs=1e-12)
    assert m["f1"] == pytest.approx(f1_score(actual, predicted), abs=1e-12)


def test_multiclass_auc_is_macro_one_vs_rest() -> None:
    rng = np.random.default_rng(1)
    actual = rng.integers(0, 3, 600)
    scores = rng.dirichlet([1, 1, 1], 600) + np.eye(3)[actual] * 0.3
    m = classification_metrics(scores.argmax(axis=1), actual, scores)
    expected = [roc_auc(actual == k, scores[:, k]) for k in range(3)]
    assert m["auc"] == pytest.approx(np.mean(expected))
    assert list(m["per_class_auc"]) == ["0", "1", "2"]


def test_missing_values_are_counted_and_left_out() -> None:
    m = classification_metrics(
        ["a", None, "b", "a", np.nan], ["a", "b", None, "a", "b"], [0.1, 0.2, 0.3, np.nan, 0.5]
    )
    assert m["n"] == 2 and m["n_missing"] == 3
    assert m["accuracy"] == 1.0
    assert m["auc"] is None and m["auc_reason"] and m["n_missing_scores"] == 1
    r = regression_metrics([1.0, np.nan, 3.0, np.inf, None], [1.0, 2.0, np.nan, 4.0, 5.0])
    assert r["n"] == 1 and r["n_missing"] == 4 and r["mae"] == 0.0


def test_regression_metrics_by_hand_with_zero_actuals() -> None:
    r = regression_metrics([2.0, 0.0, 5.0, 1.0], [1.0, 0.0, 4.0, 2.0])
    assert r["mae"] == pytest.approx(0.75)
    assert r["rmse"] == pytest.approx(np.sqrt(3 / 4))
    assert r["bias"] == pytest.approx(0.25)
    assert r["mape"] == pytest.approx(np.mean([1.0, 0.25, 0.5]))
    assert r["mape_excluded_zero_actuals"] == 1
    zeros = regression_metrics([1.0, 2.0], [0, 0])
    assert zeros["mape"] is None and "zero" in zeros["reason"]


def test_empty_input_gives_a_verdict_not_an_exception() -> None:
    for task in ("classification", "regression"):
        out = evaluate_predictions([], [], task=task)
        assert out["status"] == "insufficient_data" and out["reason"] and out["task"] == task
    out = classification_metrics([None, None], ["a", "b"])
    assert out["status"] == "insufficient_data" and out["n_missing"] == 2


def test_single_class_window_reports_no_auc_with_reason() -> None:
    m = classification_metrics([1, 1, 0], [1, 1, 1], [0.9, 0.8, 0.1])
    assert m["accuracy"] == pytest.approx(2 / 3)
    assert m["auc"] is None and "negative" in m["auc_reason"]


def test_bad_input_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match="predictions has 3 values but actuals has 2"):
        classification_metrics([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="predictions has 2 values but actuals has 3"):
        regression_metrics([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one row per prediction"):
        classification_metrics([1, 0], [1, 0], [0.5])
    with pytest.raises(ValueError, match="row 1 holds 'high'"):
        regression_metrics([1.0, "high"], [1.0, 2.0])
    with pytest.raises(ValueError, match="task must be one of"):
        evaluate_predictions([1], [1], task="ranking")
    with pytest.raises(ValueError, match="positive_label 'z'"):
        classification_metrics(["a", "b"], ["a", "b"], positive_label="z")
    with pytest.raises(ValueError, match="scores has 2 columns but there are 3 classes"):
        classification_metrics([0, 1, 2], [0, 1, 2], np.zeros((3, 2)))


def test_positive_label_can_be_chosen() -> None:
    m = classification_metrics(["spam", "ham", "spam"], ["spam", "spam", "ham"], positive_label="ham")
    assert m["positive_label"] == "ham" and m["precision"] == 0.0 and m["recall"] == 0.0


def test_prediction_drift_uses_the_engine_on_one_column() -> None:
    rng = np.random.default_rng(4)
    same = prediction_drift(rng.normal(size=3000), rng.normal(size=3000), task="regression")
    shifted = prediction_drift(rng.normal(size=3000), rng.normal(0.5, 1, 3000), task="regression")
    assert same["data_type"] == "continuous" and not same["drift_detected"]
    assert shifted["drift_detected"] and shifted["task"] == "regression"
    labels = prediction_drift(
        rng.choice(["a", "b"], 3000, p=[0.8, 0.2]),
        rng.choice(["a", "b"], 3000, p=[0.6, 0.4]),
        task="classification",
    )
    assert labels["data_type"] == "categorical" and labels["drift_detected"]
    json.dumps([same, shifted, labels], allow_nan=False)


def test_text_positive_label_with_numeric_labels_names_the_labels() -> None:
    import pytest

    from monitor_runtime.quality import classification_metrics

    with pytest.raises(ValueError, match="not among the labels"):
        classification_metrics([0, 1, 1], [0, 1, 0], positive_label="fraud")


def test_float_predictions_match_text_actuals() -> None:
    from monitor_runtime.quality import classification_metrics

    got = classification_metrics([1.0, 0.0, 1.0], ["1", "0", "1"])
    assert got["accuracy"] == 1.0
