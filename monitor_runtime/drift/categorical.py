"""Categorical and binary features: chi-squared contingency test, with Cramér's V, smoothed KL,
Jensen-Shannon or PSI as the effect size.

Categories are encoded once at fit time; a batch is encoded with a binary search into the sorted
category list and counted with ``bincount``. Categories never seen in the reference share one extra
slot: they raise the chi-squared statistic (drift evidence) instead of raising an error.
"""

from __future__ import annotations

import numpy as np

from monitor_runtime.drift.columns import Column, label_view, render_numbers
from monitor_runtime.drift.continuous import js_distance
from monitor_runtime.drift.outcome import Outcome

CATEGORICAL_METHODS = ("chi2", "kl", "js", "psi")
#: Additive (Laplace-style) pseudo-count per category for KL and PSI, so unseen or vanished
#: categories give a large but finite divergence.
SMOOTHING = 0.5
TOP_CATEGORIES = 20
#: Largest range of integer category codes counted by offset (a table of this many counters).
MAX_OFFSET_SPAN = 65_536


def chi2_contingency_2xk(ref_counts: np.ndarray, cur_counts: np.ndarray) -> tuple[float, int]:
    """Pearson chi-squared of a 2 x k table without continuity correction; all-zero columns dropped.

    Equal to ``scipy.stats.chi2_contingency(table, correction=False)``'s statistic and dof.
    """
    keep = (ref_counts + cur_counts) > 0
    table = np.vstack([ref_counts[keep], cur_counts[keep]]).astype(np.float64)
    if table.shape[1] < 2 or table[0].sum() == 0 or table[1].sum() == 0:
        return 0.0, 0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum()), int(table.shape[1] - 1)


def smoothed_kl(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """KL(current || reference) in nats with ``SMOOTHING`` pseudo-counts on every category."""
    p = (cur_counts + SMOOTHING) / (cur_counts.sum() + SMOOTHING * cur_counts.size)
    q = (ref_counts + SMOOTHING) / (ref_counts.sum() + SMOOTHING * ref_counts.size)
    return float(np.sum(p * np.log(p / q)))


def smoothed_psi(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """PSI over categories with ``SMOOTHING`` pseudo-counts."""
    p = (ref_counts + SMOOTHING) / (ref_counts.sum() + SMOOTHING * ref_counts.size)
    q = (cur_counts + SMOOTHING) / (cur_counts.sum() + SMOOTHING * cur_counts.size)
    return float(np.sum((q - p) * np.log(q / p)))


def encode_sorted(
    sorted_values: np.ndarray, values: np.ndarray, order: np.ndarray | None = None
) -> np.ndarray:
    """Positions of ``values`` among ``sorted_values`` (mapped through ``order``); len for unseen."""
    k = sorted_values.size
    if k == 0:
        return np.zeros(values.size, dtype=np.int64)
    pos = np.searchsorted(sorted_values, values)
    np.minimum(pos, k - 1, out=pos)
    hit = sorted_values[pos] == values
    codes = pos if order is None else order[pos]
    return np.where(hit, codes, k)


class CategoricalReference:
    """A categorical (or binary) feature's prepared reference."""

    def __init__(self, column: Column, method: str = "chi2", data_type: str = "categorical"):
        if method not in CATEGORICAL_METHODS:
            raise ValueError(f"categorical method must be one of {CATEGORICAL_METHODS}, got {method!r}")
        self.method = method
        self.data_type = data_type
        self.n_total = column.n
        self.n_unusable = self.unusable(column)
        if column.labels.size == 0:
            # Numeric codes stay numbers: encoding a batch is then a search among a few floats, with
            # no text conversion of every row.
            self.values, counts = np.unique(column.numeric, return_counts=True)
            self.categories = render_numbers(self.values)
        else:
            self.values = None
            self.categories, counts = np.unique(label_view(column), return_counts=True)
        # Integer codes within a small range are counted by offset: one arithmetic pass and a bincount
        # instead of a binary search per value.
        self._offsets = None
        if self.values is not None and self.values.size:
            span = float(self.values[-1] - self.values[0])
            if span <= MAX_OFFSET_SPAN and bool(np.all(self.values == np.round(self.values))):
                self._base = float(self.values[0]) - 1.0
                self._span = int(span)
                self._offsets = (self.values - self._base).astype(np.intp)
        self._label_order = np.argsort(self.categories, kind="stable")
        self._sorted_labels = self.categories[self._label_order]
        # One extra slot for categories the reference never saw.
        self.counts = np.append(counts, 0).astype(np.int64)
        self.n_valid = int(counts.sum())

    @staticmethod
    def unusable(column: Column) -> int:
        """Values this feature cannot test: missing or infinite."""
        return column.n_missing + column.n_inf

    def encode(self, labels: np.ndarray) -> np.ndarray:
        """Category codes of text labels; ``len(categories)`` for unseen labels."""
        return encode_sorted(self._sorted_labels, labels, self._label_order)

    def _codes(self, column: Column) -> tuple[np.ndarray, np.ndarray]:
        """(codes, labels-or-numbers) of a batch; the second is used only to name unseen values."""
        if self.values is not None and column.labels.size == 0:
            return encode_sorted(self.values, column.numeric), column.numeric
        labels = label_view(column)
        return self.encode(labels), labels

    def _counts(self, column: Column) -> np.ndarray:
        """Per-category counts of a batch, unseen values in the last slot."""
        k = self.categories.size
        if self._offsets is not None and column.labels.size == 0:
            # Offsets 1..span+1 are the reference's range; 0 collects values that are not whole numbers
            # or lie outside it (clipped to 0 or span + 2).
            t = column.numeric - self._base
            np.clip(t, 0.0, self._span + 2.0, out=t)
            offsets = t.astype(np.intp)
            offsets[offsets != t] = 0
            by_offset = np.bincount(offsets, minlength=self._span + 3)
            seen = by_offset[self._offsets]
            return np.append(seen, column.numeric.size - seen.sum())
        codes, _ = self._codes(column)
        return np.bincount(codes, minlength=k + 1)

    def compare(self, column: Column) -> Outcome:
        """Compare one batch's column with the reference."""
        n1, n2 = self.n_valid, column.n_valid
        out = Outcome(self.method, self.data_type, 0.0, n1, n2)
        if n1 == 0 or n2 == 0:
            out.status = "insufficient_data" if column.n == 0 or n1 == 0 else "all_missing"
            out.reason = (
                "the reference has no usable values for this feature"
                if n1 == 0
                else ("the current batch has no rows" if column.n == 0 else "every current value is missing")
            )
            return out
        k = self.categories.size
        cur_counts = self._counts(column)
        statistic, dof = chi2_contingency_2xk(self.counts, cur_counts)
        out.chi2 = (statistic, dof)
        cramers_v = float(np.sqrt(statistic / (n1 + n2))) if n1 + n2 else 0.0
        out.effect = self._effect(cramers_v, cur_counts)
        unseen = int(cur_counts[k])
        out.details.update(
            chi2_statistic=statistic,
            dof=dof,
            cramers_v=cramers_v,
            n_categories_reference=int(k),
            unseen_count=unseen,
            unseen_rate=unseen / n2,
            categories=self._shares(cur_counts, n1, n2),
        )
        if unseen:
            codes, values = self._codes(column)  # rare: encoded once more to name the unseen values
            unseen_values = values[codes == k]
            if unseen_values.dtype.kind == "f":
                unseen_values = render_numbers(unseen_values)
            new_labels, new_counts = np.unique(unseen_values, return_counts=True)
            order = np.argsort(-new_counts, kind="stable")[:5]
            out.details["unseen_examples"] = [str(new_labels[i]) for i in order]
        if k == 1 and unseen == 0:
            out.status = "constant"
            out.reason = f"a single category in reference and current ({self.categories[0]!s})"
        return out

    def _effect(self, cramers_v: float, cur_counts: np.ndarray) -> float:
        if self.method == "chi2":
            return cramers_v
        if self.method == "kl":
            return smoothed_kl(self.counts, cur_counts)
        if self.method == "psi":
            return smoothed_psi(self.counts, cur_counts)
        return js_distance(self.counts.astype(np.float64), cur_counts.astype(np.float64))

    def _shares(self, cur_counts: np.ndarray, n1: int, n2: int) -> dict[str, list]:
        ref_share = self.counts / n1
        cur_share = cur_counts / n2
        # The categories that moved most first, so a report shows what changed.
        order = np.argsort(-np.abs(cur_share - ref_share), kind="stable")[:TOP_CATEGORIES]
        names = [*(str(c) for c in self.categories), "(unseen)"]
        return {
            "labels": [names[i] for i in order],
            "reference": [round(float(ref_share[i]), 6) for i in order],
            "current": [round(float(cur_share[i]), 6) for i in order],
        }
