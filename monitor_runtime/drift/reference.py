"""`Reference`: a reference dataset prepared once, and `detect_drift`, the one-shot form."""

from __future__ import annotations

import difflib
import itertools
import math
import numbers
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import stats

from monitor_runtime.drift.categorical import CATEGORICAL_METHODS, CategoricalReference
from monitor_runtime.drift.columns import Column, to_column
from monitor_runtime.drift.composite import MixedReference, SparseReference
from monitor_runtime.drift.continuous import CONTINUOUS_METHODS, ContinuousReference
from monitor_runtime.drift.decisions import (
    CORRECTIONS,
    DEFAULT_THRESHOLDS,
    adjust_pvalues,
    confidence,
    fisher_combine,
    proportion_test,
    severity,
)
from monitor_runtime.drift.health import CRITICAL_SCORE, LOW_CONFIDENCE, overall, recommendations
from monitor_runtime.drift.infer import DECLARABLE_TYPES, infer_type
from monitor_runtime.drift.ks import ks_precision_needed, ks_pvalue_methods, ks_pvalues
from monitor_runtime.drift.outcome import Outcome
from monitor_runtime.json_safe import finite

OPTIMIZE_FOR = ("accuracy", "real_time", "cost")
#: Per-side sample cap by optimisation goal: exact everywhere for accuracy; subsampled otherwise
#: (the p-values stay exact for the subsample, so decisions stay calibrated, only less powerful).
MAX_SAMPLES = {"accuracy": None, "real_time": 20_000, "cost": 5_000}
#: Below this many values in a batch, threads cost more than they save.
PARALLEL_MIN_VALUES = 200_000
#: Nor below this many values a feature on average: each numpy call is then too short to release the GIL
#: for long, the threads contend for it, and the call is slower than on one thread (a thousand columns of
#: 10,000 values: 0.32 s against 0.25 s on two cores; 60 columns of 100,000 values: 0.044 s against 0.050).
PARALLEL_MIN_FEATURE_VALUES = 50_000

FEATURE_KEYS = frozenset({"name", "type", "importance", "method"})

FeatureConfig = Mapping[str, Mapping[str, Any]] | Iterable[Mapping[str, Any]] | None

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
_WORKERS = max(1, min(8, os.cpu_count() or 1))


def _pool() -> ThreadPoolExecutor | None:
    """The drift threads (numpy releases the GIL while sorting and searching, so they use every core);
    None while they cannot be started, and the caller then does the work on its own thread."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = _started_pool()
        return _POOL


def _started_pool() -> ThreadPoolExecutor | None:
    """A pool whose every thread is already running, or None when one cannot start.

    An executor starts its threads as work arrives, so the first start can come late, when a process
    under an address-space limit (RLIMIT_AS) has no room left for a thread's stack: the detect then
    failed with "can't start new thread" where it could have run on one thread. Started here, all before
    any work is queued, no work can be left queued behind a start that failed.
    """
    pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="drift")
    # Each task holds its thread at the gate, so every submit has to start a new one.
    gate = threading.Barrier(_WORKERS + 1)
    try:
        for _ in range(_WORKERS):
            pool.submit(gate.wait)
        gate.wait(timeout=60)
    except (RuntimeError, threading.BrokenBarrierError):
        gate.abort()  # releases the threads that did start
        pool.shutdown(wait=False, cancel_futures=True)
        return None
    return pool


def _forget_pool_after_fork() -> None:
    # A forked child (a sandbox run forked from a warm interpreter) has none of the parent's threads: a
    # pool it inherited would queue work that no thread ever takes.
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _parallel_map(fn: Any, items: list[str]) -> list[Any]:
    """``map`` on the thread pool in a few contiguous chunks: one task per feature would spend more
    on scheduling and GIL hand-offs than a small feature's work takes."""
    n_chunks = min(len(items), _WORKERS * 4)
    pool = _pool() if n_chunks > 1 else None
    if pool is None:
        return [fn(item) for item in items]
    bounds = np.linspace(0, len(items), n_chunks + 1).astype(int)
    chunks = [items[a:b] for a, b in itertools.pairwise(bounds)]
    results = pool.map(lambda chunk: [fn(item) for item in chunk], chunks)
    return [r for chunk in results for r in chunk]


def _feature_configs(features: FeatureConfig) -> dict[str, dict[str, Any]]:
    if features is None:
        return {}
    if isinstance(features, Mapping):
        items = [{"name": k, **(dict(v) if v is not None else {})} for k, v in features.items()]
    else:
        items = [dict(f) for f in features]
    out: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"features[{i}]: every feature needs a non-empty string 'name'")
        unknown = sorted(set(item) - FEATURE_KEYS)
        if unknown:
            hint = difflib.get_close_matches(unknown[0], FEATURE_KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(
                f"features[{name!r}]: unknown key {unknown[0]!r}{suggestion}; "
                f"known keys: {sorted(FEATURE_KEYS)}"
            )
        ftype = item.get("type", "auto")
        if ftype not in DECLARABLE_TYPES:
            raise ValueError(f"features[{name!r}].type must be one of {DECLARABLE_TYPES}, got {ftype!r}")
        importance = item.get("importance", 1.0)
        if not _positive_finite(importance):
            raise ValueError(f"features[{name!r}].importance must be a positive number, got {importance!r}")
        method = item.get("method")
        if method is not None and method not in (*CONTINUOUS_METHODS, *CATEGORICAL_METHODS):
            raise ValueError(
                f"features[{name!r}].method must be one of {CONTINUOUS_METHODS + CATEGORICAL_METHODS}, "
                f"got {method!r}"
            )
        out[name] = {"type": ftype, "importance": float(importance), "method": method}
    return out


def _positive_finite(value: object) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
        and float(value) > 0
    )


def _columns(data: Mapping[str, Any], what: str) -> dict[str, Column]:
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} must be a mapping of column name to values, got {type(data).__name__}")
    out: dict[str, Column] = {}
    for name, values in data.items():
        key = str(name)
        if key in out:
            raise ValueError(f"{what}: two columns are both named {key!r} once written as text")
        out[key] = to_column(values, key)
    return out


class Reference:
    """A reference dataset prepared for repeated drift detection.

    Build it with `Reference.fit`; call `detect` with each batch. Fitting sorts numeric columns,
    encodes categories and computes bins once, so each `detect` costs about one sort of the batch.
    """

    def __init__(self) -> None:
        self._features: dict[str, Any] = {}
        self._importance: dict[str, float] = {}
        self.optimize_for = "accuracy"
        self.correction = "bh"
        self.alpha = 0.05
        self.thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)
        self.critical_score = CRITICAL_SCORE

    @classmethod
    def fit(
        cls,
        reference: Mapping[str, Any],
        *,
        features: FeatureConfig = None,
        optimize_for: str = "accuracy",
        correction: str = "bh",
        alpha: float = 0.05,
        thresholds: Mapping[str, float] | None = None,
        critical_score: float = CRITICAL_SCORE,
        max_samples: int | None = None,
        seed: int = 0,
        histograms: bool = False,
    ) -> Reference:
        """Prepare ``reference`` (a mapping of column name to values).

        ``features`` declares per-feature ``type`` (continuous, categorical, binary, sparse, mixed or
        auto), ``importance`` and optionally ``method`` (ks, wasserstein, psi, js for continuous;
        chi2, kl, js, psi for categorical). ``optimize_for`` picks exactness versus speed;
        ``correction`` is ``bh`` (Benjamini-Hochberg), ``bonferroni`` or ``none``. ``histograms``
        adds 20-bin reference and current shares of continuous features to ``details`` (for plots).
        """
        if optimize_for not in OPTIMIZE_FOR:
            raise ValueError(f"optimize_for must be one of {OPTIMIZE_FOR}, got {optimize_for!r}")
        if correction not in CORRECTIONS:
            raise ValueError(f"correction must be one of {CORRECTIONS}, got {correction!r}")
        if not isinstance(alpha, numbers.Real) or isinstance(alpha, bool) or not 0 < float(alpha) < 1:
            raise ValueError(f"alpha must be a number between 0 and 1, got {alpha!r}")
        self = cls()
        self.optimize_for, self.correction, self.alpha = optimize_for, correction, float(alpha)
        self.critical_score = float(critical_score)
        for key, value in (thresholds or {}).items():
            if key not in DEFAULT_THRESHOLDS:
                raise ValueError(f"thresholds: unknown method {key!r}; known: {sorted(DEFAULT_THRESHOLDS)}")
            if not _positive_finite(value):
                raise ValueError(f"thresholds[{key!r}] must be a positive finite number, got {value!r}")
            self.thresholds[key] = float(value)
        cap = max_samples if max_samples is not None else MAX_SAMPLES[optimize_for]
        configs = _feature_configs(features)
        columns = _columns(reference, "reference")
        names = list(columns)

        def prepare(name: str) -> Any:
            cfg = configs.get(name, {})
            try:
                return _prepare(
                    columns[name], cfg.get("type", "auto"), cfg.get("method"), cap, seed, histograms
                )
            except ValueError as exc:
                raise ValueError(f"feature {name!r}: {exc}") from None

        work = sum(c.n for c in columns.values())
        prepared = _parallel_map(prepare, names) if work >= PARALLEL_MIN_VALUES else map(prepare, names)
        self._features = dict(zip(names, prepared, strict=True))
        self._importance = {n: configs.get(n, {}).get("importance", 1.0) for n in names}
        # Declared features absent from the reference are remembered so a batch can introduce them.
        for name, cfg in configs.items():
            self._importance.setdefault(name, cfg["importance"])
        return self

    @property
    def features(self) -> dict[str, str]:
        """Feature name -> resolved data type."""
        return {name: prep.data_type for name, prep in self._features.items()}

    def detect(self, current: Mapping[str, Any]) -> dict[str, Any]:
        """Compare a batch (mapping of column name to values) with the reference."""
        columns = _columns(current, "current")
        shared = [n for n in self._features if n in columns]
        work = sum(columns[n].n for n in shared)

        def compare(name: str) -> Outcome:
            return self._features[name].compare(columns[name])

        parallel = work >= max(PARALLEL_MIN_VALUES, PARALLEL_MIN_FEATURE_VALUES * len(shared))
        mapper = _parallel_map if parallel else map
        outcomes = list(mapper(compare, shared))
        return self._decide(dict(zip(shared, outcomes, strict=True)), columns)

    def _decide(self, outcomes: dict[str, Outcome], columns: dict[str, Column]) -> dict[str, Any]:
        names = list(outcomes)
        outs = [outcomes[n] for n in names]
        threshold = np.array([self.thresholds[o.method] for o in outs], dtype=np.float64)
        effect = np.array([o.effect for o in outs], dtype=np.float64)
        # A feature below its effect threshold cannot drift whatever its p-value: its p-value may come
        # from a cheaper distribution (reported in details.p_value_method).
        p = _combined_pvalues(outs, precise=effect >= threshold)
        # Missing-rate hypotheses, only where either side has missing values.
        prepared = [self._features[n] for n in names]
        miss_ref = np.array([f.n_unusable for f in prepared], dtype=np.float64)
        n_ref = np.array([f.n_total for f in prepared], dtype=np.float64)
        pairs = zip(prepared, names, strict=True)
        miss_cur = np.array([f.unusable(columns[n]) for f, n in pairs], dtype=np.float64)
        n_cur = np.array([columns[n].n for n in names], dtype=np.float64)
        has_missing = ((miss_ref + miss_cur) > 0) & (n_cur > 0) & (n_ref > 0)
        sparse = np.array([o.data_type == "sparse" for o in outs], dtype=bool)
        has_missing &= ~sparse  # the sparse test already covers its missing values
        p_miss = np.where(has_missing, proportion_test(miss_ref, n_ref, miss_cur, n_cur), np.nan)
        adjusted = adjust_pvalues(np.concatenate([p, p_miss]), self.correction)
        p_adj, p_miss_adj = adjusted[: len(names)], adjusted[len(names) :]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate_ref = np.where(n_ref > 0, miss_ref / n_ref, 0.0)
            rate_cur = np.where(n_cur > 0, miss_cur / n_cur, 0.0)
        miss_change = np.abs(rate_cur - rate_ref)
        dist_drift = (p_adj < self.alpha) & (effect >= threshold)
        miss_drift = (p_miss_adj < self.alpha) & (miss_change >= self.thresholds["missing"])
        drifted = dist_drift | miss_drift
        miss_severity = severity(miss_change, self.thresholds["missing"], miss_drift)
        sev = np.maximum(severity(effect, threshold, dist_drift), miss_severity)
        conf = confidence([o.n_reference for o in outs], [o.n_current for o in outs])

        # Python lists: a thousand features read each array element by element, and a numpy scalar per
        # element costs more than the rest of the entry.
        arrays = (p, p_adj, p_miss, p_miss_adj, dist_drift, miss_drift, drifted, has_missing)
        p_l, p_adj_l, p_miss_l, p_miss_adj_l, dist_l, miss_l, drifted_l, has_missing_l = (
            a.tolist() for a in arrays
        )
        arrays = (threshold, effect, sev, conf, rate_cur, rate_ref, miss_change)
        threshold_l, effect_l, sev_l, conf_l, rate_cur_l, rate_ref_l, miss_change_l = (
            a.tolist() for a in arrays
        )
        result: dict[str, dict[str, Any]] = {}
        for i, (name, o) in enumerate(zip(names, outs, strict=True)):
            details = dict(o.details)
            details["distribution_drift"] = dist_l[i]
            if has_missing_l[i]:
                details.update(
                    missing_p_value=_num(p_miss_l[i]),
                    missing_p_value_adjusted=_num(p_miss_adj_l[i]),
                    missing_drift=miss_l[i],
                )
            result[name] = {
                "drift_detected": drifted_l[i],
                "score": _num(o.effect),
                "p_value": _num(p_l[i]),
                "p_value_adjusted": _num(p_adj_l[i]),
                "method": o.method,
                "data_type": o.data_type,
                "threshold": threshold_l[i],
                "effect_size": _num(o.effect),
                "severity": sev_l[i],
                "confidence": conf_l[i],
                "importance": self._importance.get(name, 1.0),
                "n_reference": int(o.n_reference),
                "n_current": int(o.n_current),
                "missing_rate": rate_cur_l[i],
                "missing_rate_reference": rate_ref_l[i],
                "status": o.status,
                "reason": o.reason or _reason(o, dist_l[i], miss_l[i], conf_l[i]),
                "details": _json_details(details),
                "decision": self._decision(
                    p_adj_l[i],
                    effect_l[i],
                    threshold_l[i],
                    p_miss_adj_l[i] if has_missing_l[i] else math.nan,
                    miss_change_l[i],
                    conf_l[i],
                ),
            }
        batch_rows = max((c.n for c in columns.values()), default=0)
        for name, prep in self._features.items():
            if name not in columns:
                result[name] = _absent_entry(name, prep, self._importance.get(name, 1.0), batch_rows)
        for name in columns:
            if name not in self._features:
                result[name] = _new_entry(name, self._importance.get(name, 1.0))
        drifted_names = [n for n in result if result[n]["drift_detected"]]
        score, health = overall(result, self.critical_score)
        return {
            "features": result,
            "overall_drift_score": float(score),
            "overall_health": health,
            "drifted_features": drifted_names,
            "recommendations": recommendations(result, drifted_names, score, health),
            "summary": {
                "n_features": len(result),
                "n_tested": int(np.isfinite(p).sum()),
                "n_drifted": len(drifted_names),
                "correction": self.correction,
                "alpha": self.alpha,
                "optimize_for": self.optimize_for,
                "critical_score": self.critical_score,
            },
        }

    def _decision(
        self,
        p_adj: float,
        effect: float,
        threshold: float,
        p_miss_adj: float,
        miss_change: float,
        conf: float,
    ) -> dict[str, Any]:
        """Which gate decided a feature's verdict, with the numbers each gate compared (see `decided_by`)."""
        tested = math.isfinite(p_adj)
        significant = tested and p_adj < self.alpha
        large = math.isfinite(effect) and effect >= threshold
        miss_tested = math.isfinite(p_miss_adj)
        miss_significant = miss_tested and p_miss_adj < self.alpha
        miss_large = miss_change >= self.thresholds["missing"]
        dist = significant and large
        miss = miss_significant and miss_large
        return {
            "decided_by": decided_by(tested, significant, large, dist, miss),
            "alpha": self.alpha,
            "correction": self.correction,
            "p_value_adjusted": _num(p_adj),
            "significant": significant,
            "effect_size": _num(effect),
            "threshold": float(threshold),
            "effect_reaches_threshold": large,
            "distribution_drift": dist,
            "missing": {
                "tested": miss_tested,
                "p_value_adjusted": _num(p_miss_adj),
                "significant": miss_significant,
                "change": float(miss_change),
                "threshold": self.thresholds["missing"],
                "change_reaches_threshold": miss_large,
                "drift": miss,
            },
            "low_confidence": bool(conf < LOW_CONFIDENCE),
        }


#: Values of a feature's `decision.decided_by`: what made it drift, or what kept it from drifting.
DECIDED_BY = (
    "distribution",  # drift: significant after correction and the effect reached its threshold
    "missing_values",  # drift: only the missing-value rate moved (significantly and materially)
    "distribution_and_missing_values",  # drift: both of the above
    "p_value",  # no drift: the effect reached its threshold but the adjusted p-value is not below alpha
    "effect_size",  # no drift: significant, but the effect is below its threshold
    "both_gates",  # no drift: neither significant nor past the threshold
    "not_tested",  # no drift: no test could run (no usable values on a side)
)


def decided_by(tested: bool, significant: bool, large: bool, dist: bool, miss: bool) -> str:
    """The `decided_by` value for one feature's two gates and its missing-value test."""
    if dist and miss:
        return "distribution_and_missing_values"
    if dist or miss:
        return "distribution" if dist else "missing_values"
    if not tested:
        return "not_tested"
    if large:
        return "p_value"
    return "effect_size" if significant else "both_gates"


def _prepare(
    column: Column, declared: str, method: str | None, cap: int | None, seed: int, histograms: bool
) -> Any:
    ftype = infer_type(column) if declared == "auto" else declared
    if ftype == "continuous":
        return ContinuousReference(column, method or "ks", cap, seed, histograms)
    if ftype in ("categorical", "binary"):
        if method in CONTINUOUS_METHODS and method not in CATEGORICAL_METHODS:
            raise ValueError(f"method {method!r} does not apply to {ftype} features")
        return CategoricalReference(column, method or "chi2", ftype)
    if ftype == "sparse":
        return SparseReference(column)
    return MixedReference(column)


def _combined_pvalues(outs: list[Outcome], precise: np.ndarray) -> np.ndarray:
    """One p-value per feature: its KS part, chi-squared part and known parts, Fisher-combined."""
    m = len(outs)
    ks_p = np.full(m, np.nan)
    ks_idx = [i for i, o in enumerate(outs) if o.ks is not None]
    if ks_idx:
        d, n1, n2 = (np.array(v) for v in zip(*(outs[i].ks for i in ks_idx), strict=True))
        needed = ks_precision_needed(d, n1, n2, precise[ks_idx])
        ks_p[ks_idx] = ks_pvalues(d, n1, n2, needed)
        for i, method in zip(ks_idx, ks_pvalue_methods(n1, n2, needed), strict=True):
            outs[i].details["p_value_method"] = method
    chi_p = np.full(m, np.nan)
    chi_idx = [i for i, o in enumerate(outs) if o.chi2 is not None]
    if chi_idx:
        parts = zip(*(outs[i].chi2 for i in chi_idx), strict=True)
        statistic, dof = (np.array(v, dtype=np.float64) for v in parts)
        chi_p[chi_idx] = np.where(dof > 0, stats.chi2.sf(statistic, np.maximum(dof, 1)), 1.0)
    extra = np.full(m, np.nan)
    for i, o in enumerate(outs):
        if o.extra_p:
            extra[i] = o.extra_p[0]
    parts = np.vstack([ks_p, chi_p, extra])
    present = np.isfinite(parts)
    count = present.sum(axis=0)
    single = np.where(present, parts, -np.inf).max(axis=0)
    combined = fisher_combine(ks_p, chi_p, extra)
    return np.where(count == 0, np.nan, np.where(count == 1, single, combined))


def _json_details(details: dict[str, Any]) -> dict[str, Any]:
    """`finite` for a details mapping: its plain values are checked in place and only nested values
    (category shares, histograms) take the general walk, which costs little per feature but adds up
    over a thousand."""
    out: dict[str, Any] = {}
    for key, value in details.items():
        kind = type(value)
        if kind is float:
            value = value if math.isfinite(value) else None
        elif not (kind is str or kind is int or kind is bool or value is None):
            value = finite(value)
        out[key if type(key) is str else str(key)] = value
    return out


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _reason(o: Outcome, dist_drift: bool, miss_drift: bool, conf: float) -> str | None:
    if conf < LOW_CONFIDENCE:
        return f"only {o.n_current} current and {o.n_reference} reference values: a low-confidence verdict"
    if miss_drift and not dist_drift:
        return "the share of missing values changed"
    return None


def _absent_entry(name: str, prep: Any, importance: float, batch_rows: int) -> dict[str, Any]:
    """A reference feature with no column in the batch: every one of its values is missing.

    That is a finding, not a zero: drifted at full severity, so its importance counts in the overall score
    (a renamed or dropped column feeds the model nothing for that feature). Only a batch without any
    rows says nothing, and then the feature is reported but not counted as drifted.
    """
    judged = batch_rows > 0
    return {
        "drift_detected": judged,
        "score": None,
        "p_value": None,
        "p_value_adjusted": None,
        "method": "none",
        "data_type": prep.data_type,
        "threshold": None,
        "effect_size": None,
        "severity": 1.0 if judged else 0.0,
        # The absence is certain, however few rows the batch holds.
        "confidence": 1.0 if judged else 0.0,
        "importance": importance,
        "n_reference": int(prep.n_total),
        "n_current": 0,
        "missing_rate": 1.0 if judged else 0.0,
        "missing_rate_reference": float(prep.n_unusable / prep.n_total) if prep.n_total else 0.0,
        "status": "missing_feature",
        "reason": f"absent from the current data: '{name}' is in the reference but the batch has no such "
        "column (renamed or dropped upstream?)",
        "details": {"distribution_drift": False, "absent": True},
    }


def _new_entry(name: str, importance: float) -> dict[str, Any]:
    """A column the reference does not have: reported as a schema change, not judged."""
    return {
        "drift_detected": False,
        "score": None,
        "p_value": None,
        "p_value_adjusted": None,
        "method": "none",
        "data_type": "unknown",
        "threshold": None,
        "effect_size": None,
        "severity": 0.0,
        "confidence": 0.0,
        "importance": importance,
        "n_reference": 0,
        "n_current": 0,
        "missing_rate": 0.0,
        "missing_rate_reference": 0.0,
        "status": "new_feature",
        "reason": f"'{name}' is in the current batch but not in the reference",
        "details": {},
        "decision": {"decided_by": "not_tested"},
    }


def detect_drift(
    reference: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    features: FeatureConfig = None,
    optimize_for: str = "accuracy",
    **options: Any,
) -> dict[str, Any]:
    """One-shot drift detection: `Reference.fit(reference, ...).detect(current)`."""
    return Reference.fit(reference, features=features, optimize_for=optimize_for, **options).detect(current)
