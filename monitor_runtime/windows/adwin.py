"""ADWIN: an adaptive window that drops its older part when the mean has changed (Bifet & Gavaldà, 2007).

Hand-written because the maintained implementations (river, scikit-multiflow) insert one value at a
time in Python; this one takes a whole batch, builds its buckets with `np.add.reduceat`, and tests
every split point at once with cumulative sums.

Buckets summarise runs of consecutive values (count, mean, sum of squared deviations). Bucket `i`
counted from the newest may hold up to 2**(i // max_buckets) values, so a window of n values needs
about max_buckets * log2(n / max_buckets) buckets and the split points are dense near the newest data,
where a change shows first. A split into older part W0 and newer part W1 is a change when

    |mean(W0) - mean(W1)| > sqrt(2 / m * var(W) * ln(2 / d)) + 2 / (3 m) * ln(2 / d),
    m = 1 / (1 / n0 + 1 / n1),  d = delta / ln(n),

the variance-aware bound of ADWIN2 (the `ln n` correction accounts for testing O(log n) split points).
While a split is a change, the oldest bucket is dropped.

`delta` is the false-alarm probability bound; the default 0.002 is the value used by the original
authors and by MOA and river: low enough that a stationary stream of a million values rarely cuts,
high enough that, after a long stable stretch, a mean shift of a quarter standard deviation is
found within a few hundred values (both checked by the tests).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

DEFAULT_DELTA = 0.002
DEFAULT_MAX_BUCKETS = 5
# Neither side of a split may be smaller than this (tiny sides make the bound meaningless).
_MIN_SIDE = 5


class ADWIN:
    """Change detector over a stream of numbers, fed in batches."""

    def __init__(self, delta: float = DEFAULT_DELTA, *, max_buckets: int = DEFAULT_MAX_BUCKETS) -> None:
        if not 0.0 < delta < 1.0:
            raise ValueError(f"ADWIN delta must be in (0, 1), got {delta}")
        if max_buckets < 2:
            raise ValueError(f"ADWIN max_buckets must be at least 2, got {max_buckets}")
        self.delta = float(delta)
        self.max_buckets = int(max_buckets)
        # Oldest bucket first.
        self._count = np.empty(0, dtype=np.float64)
        self._mean = np.empty(0, dtype=np.float64)
        self._m2 = np.empty(0, dtype=np.float64)
        self.n_detections = 0

    @property
    def width(self) -> int:
        """Number of values in the current window."""
        return int(self._count.sum())

    @property
    def mean(self) -> float:
        """Mean of the current window (NaN when empty)."""
        total = self._count.sum()
        return float((self._count * self._mean).sum() / total) if total else math.nan

    @property
    def n_buckets(self) -> int:
        """Buckets in use (grows with the log of the width)."""
        return int(self._count.size)

    def update(self, values: np.ndarray) -> int:
        """Add a batch (NaN and infinities are ignored); returns how many old values were dropped."""
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            return 0
        self._append(values)
        return self._cut()

    def _append(self, values: np.ndarray) -> None:
        # New buckets for the batch, newest first sizes 1 x max_buckets, 2 x max_buckets, 4 x ...
        caps = []
        covered = 0
        i = 0
        while covered < values.size:
            cap = 2 ** (i // self.max_buckets)
            caps.append(min(cap, values.size - covered))
            covered += caps[-1]
            i += 1
        sizes = np.array(caps[::-1], dtype=np.int64)  # oldest first
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sums = np.add.reduceat(values, starts)
        means = sums / sizes
        dev2 = (values - np.repeat(means, sizes)) ** 2
        m2 = np.add.reduceat(dev2, starts)
        count = np.concatenate([self._count, sizes.astype(np.float64)])
        mean = np.concatenate([self._mean, means])
        m2 = np.concatenate([self._m2, m2])
        self._count, self._mean, self._m2 = self._regroup(count, mean, m2)

    def _regroup(
        self, count: np.ndarray, mean: np.ndarray, m2: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Greedy from the newest: bucket j absorbs whole older buckets while it stays within its
        # capacity. The loop runs over buckets (logarithmic in the width), never over values.
        labels = np.empty(count.size, dtype=np.int64)
        group, filled = 0, 0.0
        for idx in range(count.size - 1, -1, -1):
            cap = 2.0 ** (group // self.max_buckets)
            if filled and filled + count[idx] > cap:
                group += 1
                filled = 0.0
            labels[idx] = group
            filled += count[idx]
        labels = labels.max() - labels  # oldest group first, in order
        starts = np.flatnonzero(np.diff(labels, prepend=-1))
        n = np.add.reduceat(count, starts)
        total = np.add.reduceat(count * mean, starts)
        new_mean = total / n
        # Chan et al.'s parallel variance: within-bucket squares plus between-bucket spread.
        spread = count * (mean - np.repeat(new_mean, np.diff(np.append(starts, count.size)))) ** 2
        new_m2 = np.add.reduceat(m2 + spread, starts)
        return n, new_mean, new_m2

    def _significant_split(self) -> bool:
        count, mean, m2 = self._count, self._mean, self._m2
        n = count.sum()
        if count.size < 2 or n < 2 * _MIN_SIDE:
            return False
        n0 = np.cumsum(count)[:-1]
        s0 = np.cumsum(count * mean)[:-1]
        n1 = n - n0
        mu = (count * mean).sum() / n
        mu0 = s0 / n0
        mu1 = (mu * n - s0) / n1
        variance = (m2.sum() + (count * (mean - mu) ** 2).sum()) / n
        ok = (n0 >= _MIN_SIDE) & (n1 >= _MIN_SIDE)
        if not ok.any():
            return False
        log_term = math.log(2.0 * math.log(n) / self.delta)
        m_inv = 1.0 / n0 + 1.0 / n1
        eps = np.sqrt(2.0 * m_inv * variance * log_term) + 2.0 / 3.0 * m_inv * log_term
        return bool((ok & (np.abs(mu0 - mu1) > eps)).any())

    def _cut(self) -> int:
        dropped = 0
        while self._significant_split():
            dropped += int(self._count[0])
            self._count, self._mean, self._m2 = self._count[1:], self._mean[1:], self._m2[1:]
        if dropped:
            self.n_detections += 1
        return dropped

    @property
    def nbytes(self) -> int:
        """Bytes held by the bucket arrays."""
        return int(self._count.nbytes + self._mean.nbytes + self._m2.nbytes)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {
            "delta": self.delta,
            "max_buckets": self.max_buckets,
            "count": self._count.tolist(),
            "mean": self._mean.tolist(),
            "m2": self._m2.tolist(),
            "n_detections": self.n_detections,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ADWIN:
        """Rebuild a detector saved with `state()`."""
        out = cls(float(state["delta"]), max_buckets=int(state["max_buckets"]))
        out._count = np.asarray(state["count"], dtype=np.float64).reshape(-1)
        out._mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        out._m2 = np.asarray(state["m2"], dtype=np.float64).reshape(-1)
        out.n_detections = int(state["n_detections"])
        return out
