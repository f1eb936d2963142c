"""Prediction quality over a window: classification and regression metrics, and prediction drift.

scikit-learn computes the same metrics but is not a dependency of the runtime (it would more than
double the image), and the formulas are short and vectorised: a confusion matrix from one `bincount`,
ROC AUC from average ranks (the Mann-Whitney form, which handles tied scores exactly like
`sklearn.metrics.roc_auc_score`). Every result is a JSON-serialisable dict; missing values are counted
and left out, mismatched lengths raise ValueError, and empty input gives a verdict with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata

TASKS = ("classification", "regression")

ArrayLike = Sequence[Any] | np.ndarray


def _array(name: str, values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.asarray(values == None) | np.asarray(values != values)  # noqa: E711
    return np.zeros(values.shape, dtype=bool)


def _check_lengths(predictions: np.ndarray, actuals: np.ndarray) -> None:
    if predictions.size != actuals.size:
        raise ValueError(
            f"predictions has {predictions.size} values but actuals has {actuals.size}; they must be "
            "aligned row by row (join predictions to actuals on their request id first)"
        )


def _verdict(reason: str, **counts: int) -> dict[str, Any]:
    return {"status": "insufficient_data", "reason": reason, **counts}


def _num(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _label_key(label: Any) -> str:
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def _json_label(label: Any) -> Any:
    if isinstance(label, np.generic):
        label = label.item()
    if isinstance(label, float) and label.is_integer():
        return int(label)
    return label


def _retype(values: np.ndarray) -> np.ndarray:
    # An object array that held None before missing rows were dropped may be all numbers now.
    return np.array(values.tolist()) if values.dtype.kind == "O" and values.size else values


def _labels(predictions: np.ndarray, actuals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Numbers stay numbers (so 1 and 1.0 are one class); anything else is compared as text.
    predictions, actuals = _retype(predictions), _retype(actuals)
    if predictions.dtype.kind in "biuf" and actuals.dtype.kind in "biuf":
        return predictions.astype(np.float64), actuals.astype(np.float64)
    return _as_text(predictions), _as_text(actuals)


def _as_text(values: np.ndarray) -> np.ndarray:
    # Whole numbers are written without ".0" so 1.0 predicted against "1" actual is one class.
    if values.dtype.kind in "f":
        whole = np.isfinite(values) & (values == np.round(values))
        text = values.astype(str)
        if whole.any():
            text = np.where(whole, np.where(whole, values, 0).astype(np.int64).astype(str), text)
        return text.astype(object)
    if values.dtype.kind == "O":
        return np.array([_json_label(v) if isinstance(v, float) else v for v in values.tolist()]).astype(
            str
        ).astype(object)
    return values.astype(str).astype(object)


def _default_positive(classes: np.ndarray) -> Any:
    values = set(classes.tolist())
    for candidate in (1.0, "1", "True", "true", "yes", "positive"):
        if candidate in values:
            return candidate
    return classes[-1]


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary `labels` (True = positive) from `scores`, ties counted as one half.

    Uses the rank-sum identity AUC = (R+ - n+(n+ + 1)/2) / (n+ n-) with average ranks; NaN when
    only one class is present.
    """
    labels = np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(np.asarray(scores, dtype=np.float64), method="average")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def classification_metrics(
    predictions: ArrayLike,
    actuals: ArrayLike,
    scores: ArrayLike | None = None,
    *,
    positive_label: Any = None,
) -> dict[str, Any]:
    """Accuracy, precision, recall and F1 (per class and macro), and ROC AUC when scores are given.

    With two classes, `precision`, `recall` and `f1` are those of the positive class (`positive_label`,
    by default 1 / "1" / True when present, else the last label in sorted order); with more, they
    are macro averages. `scores` is one score per row for the positive class (two classes) or an
    (n_rows, n_classes) array with columns in sorted label order (macro one-vs-rest AUC). Rows with a
    missing prediction or actual are left out and counted in `n_missing`.
    """
    pred = _array("predictions", predictions)
    act = _array("actuals", actuals)
    _check_lengths(pred, act)
    score_array = None
    if scores is not None:
        score_array = np.asarray(scores, dtype=np.float64)
        if score_array.ndim not in (1, 2) or score_array.shape[0] != pred.size:
            raise ValueError(
                f"scores must have one row per prediction ({pred.size}), got shape {score_array.shape}"
            )
    missing = _missing(pred) | _missing(act)
    n_missing = int(missing.sum())
    keep = ~missing
    pred, act = _labels(pred[keep], act[keep])
    n = int(pred.size)
    if n == 0:
        reason = "no rows with both a prediction and an actual" if n_missing else "no predictions"
        return _verdict(
            reason + " in the window",
            n=0,
            n_missing=n_missing,
        )
    classes = np.unique(np.concatenate([act, pred]))
    k = classes.size
    act_code = np.searchsorted(classes, act)
    pred_code = np.searchsorted(classes, pred)
    confusion = np.bincount(act_code * k + pred_code, minlength=k * k).reshape(k, k)
    tp = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0).astype(np.float64)
    actual = confusion.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1_den = predicted + actual
        f1 = np.where(f1_den > 0, 2.0 * tp / f1_den, 0.0)
    labels = [_json_label(c) for c in classes.tolist()]
    per_class = {
        _label_key(label): {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(actual[i]),
        }
        for i, label in enumerate(labels)
    }
    out: dict[str, Any] = {
        "status": "ok",
        "reason": None,
        "n": n,
        "n_missing": n_missing,
        "labels": labels,
        "accuracy": float(tp.sum() / n),
        "macro": {
            "precision": float(precision.mean()),
            "recall": float(recall.mean()),
            "f1": float(f1.mean()),
        },
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
    }
    if k == 2 or positive_label is not None:
        positive = _resolve_positive(classes, positive_label)
        i = int(np.searchsorted(classes, positive))
        out.update(
            positive_label=_json_label(positive),
            precision=float(precision[i]),
            recall=float(recall[i]),
            f1=float(f1[i]),
        )
    else:
        out.update(positive_label=None, **out["macro"])
    if score_array is not None:
        out.update(_auc(score_array[keep], act, classes, out["positive_label"], positive_label))
    return out


def _resolve_positive(classes: np.ndarray, positive_label: Any) -> Any:
    if positive_label is None:
        return _default_positive(classes)
    candidate: Any = str(positive_label)
    if classes.dtype.kind == "f":
        try:
            candidate = float(positive_label)
        except (TypeError, ValueError):
            candidate = None  # a text label can never match numeric classes; fall through to the error
    if candidate is None or candidate not in set(classes.tolist()):
        raise ValueError(
            f"positive_label {positive_label!r} is not among the labels {[_json_label(c) for c in classes]}"
        )
    return candidate


def _auc(
    scores: np.ndarray, act: np.ndarray, classes: np.ndarray, positive: Any, positive_label: Any
) -> dict[str, Any]:
    usable = ~np.isnan(scores) if scores.ndim == 1 else ~np.isnan(scores).any(axis=1)
    n_missing_scores = int((~usable).sum())
    scores, act = scores[usable], act[usable]
    result: dict[str, Any] = {"auc": None, "auc_reason": None, "n_missing_scores": n_missing_scores}
    if scores.ndim == 1:
        if classes.size < 2:
            result["auc_reason"] = "AUC needs both positive and negative actuals in the window"
            return result
        if positive is None:
            raise ValueError(
                f"one score per row needs two classes (or a positive_label); found {classes.size} classes, "
                "so pass an (n_rows, n_classes) score array instead"
            )
        auc = roc_auc(act == positive, scores)
        if math.isnan(auc):
            result["auc_reason"] = "AUC needs both positive and negative actuals in the window"
        else:
            result["auc"] = auc
        return result
    if scores.shape[1] != classes.size:
        raise ValueError(
            f"scores has {scores.shape[1]} columns but there are {classes.size} classes "
            f"{[_json_label(c) for c in classes]}; give one column per class in sorted label order"
        )
    aucs = np.array([roc_auc(act == c, scores[:, i]) for i, c in enumerate(classes)])
    defined = ~np.isnan(aucs)
    if not defined.any():
        result["auc_reason"] = "AUC needs at least two classes among the actuals"
    else:
        result["auc"] = float(aucs[defined].mean())
        if not defined.all():
            result["auc_reason"] = "classes absent from the actuals were left out of the macro AUC"
    result["per_class_auc"] = {
        _label_key(_json_label(c)): _num(a) for c, a in zip(classes.tolist(), aucs, strict=True)
    }
    return result


def regression_metrics(predictions: ArrayLike, actuals: ArrayLike) -> dict[str, Any]:
    """MAE, RMSE, MAPE and bias (mean of prediction minus actual) over rows with both values.

    MAPE is a fraction (0.1 means 10%) over rows whose actual is not zero; those rows are counted in
    `mape_excluded_zero_actuals`. NaN, inf and None are counted in `n_missing` and left out.
    """
    pred = _numeric("predictions", _array("predictions", predictions))
    act = _numeric("actuals", _array("actuals", actuals))
    _check_lengths(pred, act)
    finite = np.isfinite(pred) & np.isfinite(act)
    n_missing = int((~finite).sum())
    pred, act = pred[finite], act[finite]
    n = int(pred.size)
    if n == 0:
        reason = "no rows with both a finite prediction and actual" if n_missing else "no predictions"
        return _verdict(
            reason + " in the window",
            n=0,
            n_missing=n_missing,
        )
    error = pred - act
    nonzero = act != 0
    n_zero = int((~nonzero).sum())
    out: dict[str, Any] = {
        "status": "ok",
        "reason": None,
        "n": n,
        "n_missing": n_missing,
        "mae": float(np.abs(error).mean()),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "bias": float(error.mean()),
        "mape": None,
        "mape_excluded_zero_actuals": n_zero,
    }
    if nonzero.any():
        out["mape"] = float(np.mean(np.abs(error[nonzero]) / np.abs(act[nonzero])))
    else:
        out["reason"] = "MAPE is undefined: every actual is zero"
    return out


def _numeric(name: str, values: np.ndarray) -> np.ndarray:
    if values.dtype.kind in "biuf":
        return values.astype(np.float64)
    try:
        # None becomes NaN; numeric strings parse; anything else is a clear error below.
        return values.astype(np.float64)
    except (TypeError, ValueError):
        listed = values.tolist()  # only on the error path: find the first offending row
        bad = next((i for i, v in enumerate(listed) if not _is_number_like(v)), 0)
        raise ValueError(
            f"{name} must be numbers for a regression task; row {bad} holds {listed[bad]!r}"
        ) from None


def _is_number_like(value: Any) -> bool:
    if value is None:
        return True
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def evaluate_predictions(
    predictions: ArrayLike,
    actuals: ArrayLike,
    *,
    task: str,
    scores: ArrayLike | None = None,
    positive_label: Any = None,
) -> dict[str, Any]:
    """Quality metrics for `task` ("classification" or "regression"), with the task in the result."""
    if task == "classification":
        result = classification_metrics(predictions, actuals, scores, positive_label=positive_label)
    elif task == "regression":
        if scores is not None:
            raise ValueError("scores apply to classification only; drop them for a regression task")
        result = regression_metrics(predictions, actuals)
    else:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return {"task": task, **result}


def prediction_drift(
    reference_predictions: ArrayLike, current_predictions: ArrayLike, *, task: str
) -> dict[str, Any]:
    """Drift of the prediction distribution itself, via the drift engine on one column `prediction`.

    Classification predictions are compared as categories, regression predictions as a continuous
    column. Returns the engine's verdict for that column plus the task and recommendations.
    """
    from monitor_runtime.drift import detect_drift  # the engine is heavy; load it only when used

    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    reference = _array("reference_predictions", reference_predictions)
    current = _array("current_predictions", current_predictions)
    data_type = "categorical" if task == "classification" else "continuous"
    result = detect_drift(
        {"prediction": reference},
        {"prediction": current},
        features={"prediction": {"type": data_type}},
    )
    return {
        "task": task,
        **result["features"]["prediction"],
        "overall_health": result["overall_health"],
        "recommendations": result["recommendations"],
    }
