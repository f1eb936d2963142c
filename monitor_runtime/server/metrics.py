"""Prometheus metrics of one monitor process, with a cap on per-feature series."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

HEALTH_LEVELS = {"good": 0, "warning": 1, "critical": 2}
ERROR_KINDS = (
    "bad_request",
    "payload_too_large",
    "too_many_columns",
    "reference_rejected",
    "monitor_exception",
    "checkpoint",
    "overload",
    "internal",
)
# Prediction-quality names exported as series (what the quality toolkit returns); anything else a
# monitor reports stays in /v1/report only, so client-chosen labels cannot mint metric names.
PREDICTION_METRICS = frozenset(
    {
        "n",
        "n_missing",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "auc",
        "n_missing_scores",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "mae",
        "rmse",
        "bias",
        "mape",
        "mape_excluded_zero_actuals",
        "score",
        "p_value",
        "severity",
    }
)
PER_CLASS_STATS = ("precision", "recall", "f1", "support")
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

__all__ = ["CONTENT_TYPE_LATEST", "RuntimeMetrics"]


class RuntimeMetrics:
    """The metric families the runtime exports; one registry per process (or per test server)."""

    def __init__(
        self,
        *,
        max_features: int,
        log: Callable[..., None] | None = None,
        classes: Iterable[Any] | None = None,
        max_classes: int = 20,
    ) -> None:
        self.registry = CollectorRegistry()
        self.max_features = max_features
        # Per-class series: the spec's classes when declared, else the first `max_classes` labels seen.
        self._declared_classes = {_label_text(c) for c in classes} if classes else None
        self._seen_classes: set[str] = set()
        self.max_classes = max_classes
        self._classes_capped_logged = False
        self._prediction_names: set[str] = set()
        self._log = log
        self._exported: set[str] = set()
        self._omitted_logged = -1
        r = self.registry
        self.info = Gauge(
            "poet_monitor_info",
            "The running monitor version (value is always 1).",
            ["monitor", "model", "version", "generator"],
            registry=r,
        )
        self.feature_drift_score = Gauge(
            "poet_monitor_feature_drift_score",
            "Drift statistic of a feature in the latest evaluation.",
            ["feature"],
            registry=r,
        )
        self.feature_p_value = Gauge(
            "poet_monitor_feature_p_value",
            "Raw p-value of a feature's drift test (NaN for distance-only tests).",
            ["feature"],
            registry=r,
        )
        self.feature_drift_detected = Gauge(
            "poet_monitor_feature_drift_detected",
            "1 when the latest evaluation flags the feature as drifted.",
            ["feature"],
            registry=r,
        )
        self.features_omitted = Gauge(
            "poet_monitor_features_omitted",
            "Features left out of per-feature series by the cardinality cap.",
            registry=r,
        )
        self.overall_drift_score = Gauge(
            "poet_monitor_overall_drift_score", "Importance-weighted drift severity, 0..1.", registry=r
        )
        self.health = Gauge(
            "poet_monitor_health", "Overall health: 0 good, 1 warning, 2 critical.", registry=r
        )
        self.drifted_features = Gauge(
            "poet_monitor_drifted_features",
            "Number of features flagged in the latest evaluation.",
            registry=r,
        )
        self.rows = Counter("poet_monitor_rows_ingested", "Rows accepted by the ingestion API.", registry=r)
        self.batches = Counter(
            "poet_monitor_batches_ingested", "Batches accepted by the ingestion API.", registry=r
        )
        self.rows_dropped = Counter(
            "poet_monitor_rows_dropped", "Pending rows dropped because evaluation fell behind.", registry=r
        )
        self.pending_rows = Gauge(
            "poet_monitor_pending_rows", "Rows waiting for the next evaluation.", registry=r
        )
        self.batch_latency = Histogram(
            "poet_monitor_batch_seconds",
            "Time to parse and accept one batch.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.evaluation_latency = Histogram(
            "poet_monitor_evaluation_seconds",
            "Time the monitor code takes for one evaluation.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            "poet_monitor_evaluations", "Evaluations by outcome.", ["outcome"], registry=r
        )
        self.errors = Counter("poet_monitor_errors", "Errors by kind.", ["kind"], registry=r)
        self.prediction_metric = Gauge(
            "poet_monitor_prediction_metric",
            "Prediction quality metrics from the latest evaluation.",
            ["metric"],
            registry=r,
        )
        self.last_evaluation = Gauge(
            "poet_monitor_last_evaluation_timestamp_seconds",
            "Unix time of the latest successful evaluation.",
            registry=r,
        )
        # Nothing is known before the first evaluation: NaN, not a "good" 0 that alerts would trust.
        for gauge in (self.overall_drift_score, self.health, self.drifted_features):
            gauge.set(math.nan)
        for outcome in ("ok", "failed"):
            self.evaluations.labels(outcome)
        for kind in ERROR_KINDS:
            self.errors.labels(kind)

    def set_info(self, *, monitor: str, model: str, version: int | str, generator: str) -> None:
        """Publish which version runs."""
        self.info.labels(monitor, model, str(version), generator).set(1)

    def record_result(self, result: Mapping[str, Any]) -> None:
        """Publish one drift result; at most `max_features` features get series, the most severe first."""
        features: Mapping[str, Mapping[str, Any]] = result.get("features") or {}
        ranked = sorted(features, key=lambda name: _severity_rank(features[name]), reverse=True)
        keep = ranked[: self.max_features]
        for gone in self._exported - set(keep):
            for fam in (self.feature_drift_score, self.feature_p_value, self.feature_drift_detected):
                fam.remove(gone)
        for name in keep:
            f = features[name]
            self.feature_drift_score.labels(name).set(_num(f.get("score")))
            self.feature_p_value.labels(name).set(_num(f.get("p_value")))
            self.feature_drift_detected.labels(name).set(1.0 if f.get("drift_detected") else 0.0)
        self._exported = set(keep)
        omitted = len(ranked) - len(keep)
        self.features_omitted.set(omitted)
        if omitted and omitted != self._omitted_logged and self._log is not None:
            self._log(
                "metrics.cardinality_cap",
                level="warning",
                message=f"{len(ranked)} features; exporting the {len(keep)} most severe, omitting {omitted} "
                "(raise POET_MAX_METRIC_FEATURES to export more)",
                features=len(ranked),
                cap=self.max_features,
            )
        self._omitted_logged = omitted
        self.overall_drift_score.set(_num(result.get("overall_drift_score")))
        self.health.set(HEALTH_LEVELS.get(str(result.get("overall_health")), math.nan))
        self.drifted_features.set(len(result.get("drifted_features") or []))

    def record_predictions(self, result: Mapping[str, Any]) -> None:
        """Publish the latest prediction-quality result; series it no longer has are removed.

        Names come from a fixed list (at the top level or one mapping down, e.g. `quality_accuracy`) plus
        per-class statistics for allowed classes, so the number of series stays bounded whatever labels
        clients send.
        """
        values: dict[str, float] = {}
        self._collect(result, "", values, nested=True)
        for gone in self._prediction_names - values.keys():
            self.prediction_metric.remove(gone)
        for name, value in values.items():
            self.prediction_metric.labels(name).set(value)
        self._prediction_names = set(values)

    def _collect(
        self, result: Mapping[str, Any], prefix: str, out: dict[str, float], *, nested: bool
    ) -> None:
        for key, value in result.items():
            if key in PREDICTION_METRICS and _is_number(value):
                out[f"{prefix}{key}"] = float(value)
            elif key == "macro" and isinstance(value, Mapping):
                for stat in ("precision", "recall", "f1"):
                    if _is_number(value.get(stat)):
                        out[f"{prefix}macro_{stat}"] = float(value[stat])
            elif key == "per_class" and isinstance(value, Mapping):
                for label, stats in value.items():
                    if isinstance(stats, Mapping) and self._class_allowed(str(label)):
                        for stat in PER_CLASS_STATS:
                            if _is_number(stats.get(stat)):
                                out[f"{prefix}per_class_{label}_{stat}"] = float(stats[stat])
            elif key == "per_class_auc" and isinstance(value, Mapping):
                for label, auc in value.items():
                    if _is_number(auc) and self._class_allowed(str(label)):
                        out[f"{prefix}per_class_auc_{label}"] = float(auc)
            elif nested and isinstance(value, Mapping) and isinstance(key, str) and len(out) < 64:
                # One level of grouping chosen by the monitor code (e.g. `quality`), never deeper.
                self._collect(value, f"{prefix}{key}_", out, nested=False)

    def _class_allowed(self, label: str) -> bool:
        if self._declared_classes is not None:
            return label in self._declared_classes
        if label in self._seen_classes:
            return True
        if len(self._seen_classes) < self.max_classes:
            self._seen_classes.add(label)
            return True
        if not self._classes_capped_logged and self._log is not None:
            self._classes_capped_logged = True
            self._log(
                "metrics.class_cap",
                level="warning",
                message=f"more than {self.max_classes} prediction labels and no predictions.classes in the "
                f"spec; per-class series only for the first {self.max_classes} (first left out: {label!r}); "
                "declare the classes in the spec or raise POET_MAX_METRIC_CLASSES",
                cap=self.max_classes,
            )
        return False

    def exposition(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _label_text(label: Any) -> str:
    """A declared class as the quality toolkit keys it: whole-number floats without `.0`."""
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    return str(label)


def _num(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _severity_rank(feature: Mapping[str, Any]) -> tuple[bool, float]:
    """Drifted first, then importance-weighted severity."""
    sev = _num(feature.get("severity"))
    imp = _num(feature.get("importance"))
    sev = 0.0 if math.isnan(sev) else sev
    imp = 1.0 if math.isnan(imp) else imp
    return bool(feature.get("drift_detected")), sev * imp
