"""Continuous features: KS test, with KS, Wasserstein, PSI or Jensen-Shannon as the effect size.

The reference is sorted and binned once at fit time. With KS as the effect size a batch is counted in the
reference's grid cells (`GridKS`: no sort of the batch); the other effect sizes need the batch's quantiles,
so there a batch costs one sort of its own values and a binary search into the reference.
"""

from __future__ import annotations

import numpy as np

from monitor_runtime.drift.columns import Column, numeric_view, unparsed_labels
from monitor_runtime.drift.ks import GRID_MIN_CURRENT, GridKS, ks_statistic_sorted
from monitor_runtime.drift.outcome import Outcome

CONTINUOUS_METHODS = ("ks", "wasserstein", "psi", "js")
PSI_BINS = 10
HISTOGRAM_BINS = 20
WASSERSTEIN_GRID = 2048
#: Pseudo-probability added to empty bins so PSI and KL stay finite.
BIN_EPSILON = 1e-4


def _bin_shares(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of values in each of the bins (-inf, e1], (e1, e2], ..., (ek, inf)."""
    if sorted_values.size == 0:
        return np.zeros(edges.size + 1)
    cuts = np.searchsorted(sorted_values, edges, side="right")
    counts = np.diff(np.concatenate(([0], cuts, [sorted_values.size])))
    return counts / sorted_values.size


def psi(ref_shares: np.ndarray, cur_shares: np.ndarray) -> float:
    """Population stability index with empty bins floored at ``BIN_EPSILON``."""
    p = np.maximum(ref_shares, BIN_EPSILON)
    q = np.maximum(cur_shares, BIN_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance, base 2 (0 identical .. 1 disjoint); same as scipy's jensenshannon."""
    p = p / p.sum() if p.sum() > 0 else p
    q = q / q.sum() if q.sum() > 0 else q
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.5 * (kl_pm + kl_qm), 0.0)))


class ContinuousReference:
    """A continuous feature's prepared reference."""

    data_type = "continuous"

    def __init__(
        self,
        column: Column,
        method: str = "ks",
        max_samples: int | None = None,
        seed: int = 0,
        histograms: bool = False,
    ):
        if method not in CONTINUOUS_METHODS:
            raise ValueError(f"continuous method must be one of {CONTINUOUS_METHODS}, got {method!r}")
        self.method = method
        self.histograms = histograms
        self.max_samples = max_samples
        self.seed = seed
        values = _subsample(numeric_view(column), max_samples, seed)
        self.sorted = np.sort(values)
        self.n_total = column.n
        self.n_unusable = self.unusable(column)
        # The grid answers the statistic and the median; histograms and the other effect sizes need more.
        self.grid = GridKS.prepare(self.sorted) if method == "ks" and not histograms else None
        n = self.sorted.size
        if n:
            qs = np.quantile(self.sorted, np.linspace(0, 1, PSI_BINS + 1)[1:-1])
            self.edges = np.unique(qs)
            self.shares = _bin_shares(self.sorted, self.edges)
            self.mean, std = _mean_std(self.sorted)
            iqr = float(np.subtract(*np.quantile(self.sorted, [0.75, 0.25])))
            # Scale for Wasserstein: std, or IQR-based, or 1 for a constant reference.
            self.scale = std if std > 0 else (iqr / 1.349 if iqr > 0 else 1.0)
            self.low, self.high = float(self.sorted[0]), float(self.sorted[-1])
        else:
            self.edges = np.empty(0)
            self.shares = np.empty(1)
            self.mean = self.scale = 1.0
            self.low = self.high = float("nan")

    @property
    def n_valid(self) -> int:
        return int(self.sorted.size)

    @staticmethod
    def unusable(column: Column) -> int:
        """Values this feature cannot test: missing, infinite, or text that is not a number."""
        return column.n_missing + column.n_inf + unparsed_labels(column)

    def compare(self, column: Column) -> Outcome:
        """Compare one batch's column with the reference."""
        values = _subsample(numeric_view(column), self.max_samples, self.seed + 1)
        n1, n2 = self.sorted.size, values.size
        if self.grid is not None and n2 >= GRID_MIN_CURRENT:
            return self._compare_grid(column, values)
        cur = np.sort(values)
        out = Outcome(self.method, self.data_type, 0.0, n1, n2)
        bad_labels = unparsed_labels(column)
        if bad_labels:
            out.details["non_numeric_values"] = bad_labels
        if n1 == 0 or n2 == 0:
            out.status = "insufficient_data" if column.n == 0 or n1 == 0 else "all_missing"
            out.reason = _empty_reason(n1, column.n)
            return out
        d = ks_statistic_sorted(self.sorted, cur)
        out.ks = (d, n1, n2)
        out.effect = self._effect(d, cur)
        cur_mean = _mean(cur)
        out.details.update(
            ks_statistic=d,
            reference_mean=self.mean,
            current_mean=cur_mean,
            reference_median=float(self.sorted[n1 // 2]),
            current_median=float(cur[n2 // 2]),
            mean_shift_sd=(cur_mean - self.mean) / self.scale,
        )
        if self.histograms:
            out.details["histogram"] = self._histogram(cur)
        if self.low == self.high and cur[0] == cur[-1]:
            same = cur[0] == self.low
            out.status = "constant"
            out.reason = (
                f"constant in reference and current (value {self.low:g})"
                if same
                else f"constant in both, but the value changed from {self.low:g} to {float(cur[0]):g}"
            )
        return out

    def _compare_grid(self, column: Column, values: np.ndarray) -> Outcome:
        """`compare` for a KS feature and a batch large enough for the grid: no sort of the batch."""
        n1, n2 = self.sorted.size, values.size
        out = Outcome(self.method, self.data_type, 0.0, n1, n2)
        bad_labels = unparsed_labels(column)
        if bad_labels:
            out.details["non_numeric_values"] = bad_labels
        d, cur_median = self.grid.statistic(values)
        out.ks = (d, n1, n2)
        out.effect = d
        cur_mean = _mean_unsorted(values)
        out.details.update(
            ks_statistic=d,
            reference_mean=self.mean,
            current_mean=cur_mean,
            reference_median=float(self.sorted[n1 // 2]),
            current_median=cur_median,
            mean_shift_sd=(cur_mean - self.mean) / self.scale,
        )
        return out  # never "constant": the grid exists only for a reference that is not constant

    def _effect(self, d: float, cur: np.ndarray) -> float:
        if self.method == "ks":
            return d
        if self.method == "wasserstein":
            return wasserstein_sorted(self.sorted, cur) / self.scale
        shares = _bin_shares(cur, self.edges)
        if self.method == "psi":
            return psi(self.shares, shares)
        return js_distance(self.shares, shares)

    def _histogram(self, cur: np.ndarray) -> dict[str, list[float]]:
        # A shared range from the 1st to the 99th percentile of both sides keeps outliers from
        # flattening the picture; values outside land in the end bins.
        lo = min(self.sorted[int(0.01 * (self.sorted.size - 1))], cur[int(0.01 * (cur.size - 1))])
        hi = max(self.sorted[int(0.99 * (self.sorted.size - 1))], cur[int(0.99 * (cur.size - 1))])
        if not hi > lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
        inner = edges[1:-1]
        return {
            "edges": edges.tolist(),
            "reference": np.round(_bin_shares(self.sorted, inner), 6).tolist(),
            "current": np.round(_bin_shares(cur, inner), 6).tolist(),
        }


def _mean(sorted_values: np.ndarray) -> float:
    mag = max(abs(float(sorted_values[0])), abs(float(sorted_values[-1])))
    if mag < 1e150:
        return float(sorted_values.mean())
    return float((sorted_values / mag).mean()) * mag


def _mean_unsorted(values: np.ndarray) -> float:
    with np.errstate(over="ignore"):
        mean = float(values.mean())
    if np.isfinite(mean):  # only a sum beyond the float range fails, and then the mean of scaled values
        return mean
    mag = float(np.abs(values).max())
    return float((values / mag).mean()) * mag


def _mean_std(sorted_values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation that do not overflow for values near the float limit."""
    mag = max(abs(float(sorted_values[0])), abs(float(sorted_values[-1])))
    if mag < 1e150:
        return float(sorted_values.mean()), float(sorted_values.std())
    scaled = sorted_values / mag
    return float(scaled.mean()) * mag, float(scaled.std()) * mag


def wasserstein_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance between two sorted samples via their quantile functions.

    Exact when both samples have the same size (mean |a_i - b_i|); otherwise evaluated on a grid of
    ``WASSERSTEIN_GRID`` quantile levels, accurate to well under a percent for an effect size.
    """
    mag = max(abs(float(a[0])), abs(float(a[-1])), abs(float(b[0])), abs(float(b[-1])))
    if mag >= 1e150:  # rescale so differences of huge values do not overflow
        return wasserstein_sorted(a / mag, b / mag) * mag
    if a.size == b.size:
        return float(np.mean(np.abs(a - b)))
    m = min(max(a.size, b.size), WASSERSTEIN_GRID)
    u = (np.arange(m) + 0.5) / m
    qa = a[np.minimum((u * a.size).astype(np.int64), a.size - 1)]
    qb = b[np.minimum((u * b.size).astype(np.int64), b.size - 1)]
    return float(np.mean(np.abs(qa - qb)))


def _subsample(values: np.ndarray, max_samples: int | None, seed: int) -> np.ndarray:
    if max_samples is None or values.size <= max_samples:
        return values
    rng = np.random.default_rng(seed)
    return values[rng.choice(values.size, size=max_samples, replace=False)]


def _empty_reason(n_reference_valid: int, n_current_rows: int) -> str:
    if n_reference_valid == 0:
        return "the reference has no usable values for this feature"
    if n_current_rows == 0:
        return "the current batch has no rows"
    return "every current value is missing or not a number"
