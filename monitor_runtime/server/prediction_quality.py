"""Prediction quality of the reference period and of the current window, for the report.

When batches carry `_prediction` and `_actual` (and, for classification, `_score`: the positive class's
score), the runtime scores them with the toolkit's vetted metrics (`monitor_runtime.quality`): accuracy,
precision, recall, F1, the confusion matrix and AUC when scores are sent; MAE, RMSE and MAPE for regression.
The reference period is the rows sent with the reference (or the first window when that becomes the
reference); the current window keeps at most one window's worth of rows, in chunks, like the distributions.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor_runtime import json_safe
from monitor_runtime.quality import TASKS, evaluate_predictions
from monitor_runtime.server.state_fields import column, float_array, integer, list_of, object_of

SCORE_COLUMN = "_score"


def quality_settings(spec: Mapping[str, Any]) -> tuple[str, Any]:
    """(task, positive label) from a spec's `predictions` (camelCase or snake_case keys)."""
    predictions = spec.get("predictions") or {}
    if not isinstance(predictions, Mapping):
        return "none", None
    positive = predictions.get("positiveLabel", predictions.get("positive_label"))
    return str(predictions.get("task") or "none"), positive


def score_metrics(
    task: str, predictions: np.ndarray, actuals: np.ndarray, scores: np.ndarray | None, positive: Any
) -> dict[str, Any]:
    """The toolkit's metrics for one period; invalid input is a verdict with the toolkit's reason."""
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if task != "classification" or not np.isfinite(scores).any():
            scores = None
    try:
        return evaluate_predictions(predictions, actuals, task=task, scores=scores, positive_label=positive)
    except ValueError as exc:
        return {"task": task, "status": "invalid_input", "reason": str(exc)}


class PredictionQuality:
    """Reference-period metrics and a window of current predictions, actuals and scores."""

    def __init__(self, task: str, positive_label: Any = None, window_rows: int = 2000) -> None:
        self.task = task
        self.positive_label = positive_label
        self.window_rows = max(1, int(window_rows))
        self.reference: dict[str, Any] | None = None
        self.current: dict[str, Any] | None = None
        self.chunks: deque[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = deque()
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.task in TASKS

    def to_state(self) -> dict[str, Any]:
        """The tracker as data for a checkpoint (JSON values and numpy columns); `from_state` reads it."""
        with self._lock:
            reference, current, chunks = self.reference, self.current, list(self.chunks)
        return {
            "task": self.task,
            "positive_label": self.positive_label,
            "window_rows": self.window_rows,
            # Metrics as the report serves them: strict JSON, whatever the toolkit's types.
            "reference": json_safe.plain(reference),
            "current": json_safe.plain(current),
            "chunks": [{"predictions": p, "actuals": a, "scores": s} for p, a, s in chunks],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PredictionQuality:
        """A tracker from `to_state()` data; ValueError naming the field that is wrong."""
        where = "quality"
        state = object_of(state, where)
        task = state.get("task")
        if not isinstance(task, str):
            raise ValueError(f"{where}.task: expected a str, got {task!r}")
        out = cls(
            task, state.get("positive_label"), integer(state.get("window_rows"), f"{where}.window_rows")
        )
        for key in ("reference", "current"):
            metrics = state.get(key)
            setattr(out, key, None if metrics is None else dict(object_of(metrics, f"{where}.{key}")))
        for i, chunk in enumerate(list_of(state.get("chunks"), f"{where}.chunks")):
            at = f"{where}.chunks[{i}]"
            chunk = object_of(chunk, at)
            preds = column(chunk.get("predictions"), f"{at}.predictions")
            acts = column(chunk.get("actuals"), f"{at}.actuals")
            scores = chunk.get("scores")
            if scores is not None:
                scores = float_array(scores, f"{at}.scores")
            if len(acts) != len(preds) or (scores is not None and len(scores) != len(preds)):
                raise ValueError(f"{at}: predictions, actuals and scores differ in length")
            out.chunks.append((preds, acts, scores))
        return out

    def set_reference(self, predictions: np.ndarray, actuals: np.ndarray, scores: np.ndarray | None) -> None:
        """Score the reference period (a new reference replaces the old period's metrics)."""
        if not self.enabled:
            return
        metrics = score_metrics(self.task, predictions, actuals, scores, self.positive_label)
        with self._lock:
            self.reference = metrics

    def add_current(self, predictions: np.ndarray, actuals: np.ndarray, scores: np.ndarray | None) -> None:
        """Add an evaluated chunk, forget chunks past one window, and score the window."""
        if not self.enabled:
            return
        with self._lock:
            self.chunks.append((predictions, actuals, scores))
            total = sum(len(p) for p, _, _ in self.chunks)
            while len(self.chunks) > 1 and total - len(self.chunks[0][0]) >= self.window_rows:
                total -= len(self.chunks.popleft()[0])
            chunks = list(self.chunks)
        preds = np.concatenate([_as_column(p) for p, _, _ in chunks])
        acts = np.concatenate([_as_column(a) for _, a, _ in chunks])
        have_scores = any(s is not None for _, _, s in chunks)
        scores = (
            np.concatenate(
                [np.full(len(p), np.nan) if s is None else np.asarray(s, np.float64) for p, _, s in chunks]
            )
            if have_scores
            else None
        )
        metrics = score_metrics(self.task, preds, acts, scores, self.positive_label)
        with self._lock:
            self.current = metrics

    def snapshot(self) -> dict[str, Any] | None:
        """{"task", "positive_label", "reference", "current"}; None when the spec scores no predictions."""
        if not self.enabled:
            return None
        with self._lock:
            return {
                "task": self.task,
                "positive_label": self.positive_label,
                "reference": self.reference,
                "current": self.current,
            }


def _as_column(values: np.ndarray) -> np.ndarray:
    # Labels may be numbers in one chunk and text in another; object arrays concatenate either way.
    arr = np.asarray(values)
    return arr if arr.dtype.kind in "biuf" else arr.astype(object)
