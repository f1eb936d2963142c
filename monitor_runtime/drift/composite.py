"""Tests made of parts: sparse features and mixed-type (hybrid) columns.

Sparse: KS alone fails on mostly-zero data (the zeros are one giant tie that hides both a change in
how often values are non-zero and a change in the non-zero values), so the test has two parts: the
zero-or-missing rate (two-proportion test) and the distribution of the non-zero values (KS). Mixed:
a column holding numbers and labels is tested on the share of numbers, the numbers (KS) and the
labels (chi-squared). Parts are combined with Fisher's method in the batch step.
"""

from __future__ import annotations

import numpy as np

from monitor_runtime.drift.categorical import chi2_contingency_2xk, encode_sorted
from monitor_runtime.drift.columns import Column, numeric_view, unparsed_labels
from monitor_runtime.drift.decisions import proportion_test
from monitor_runtime.drift.ks import ks_statistic_sorted
from monitor_runtime.drift.outcome import Outcome


class SparseReference:
    """A sparse feature's prepared reference: its zero-or-missing rate and sorted non-zero values."""

    data_type = "sparse"
    method = "sparse"

    def __init__(self, column: Column):
        self.n_total = column.n
        self.n_unusable = self.unusable(column)
        values = np.sort(numeric_view(column))
        self.nonzero = values[values != 0]
        self.n_empty = column.n - self.nonzero.size  # zeros, missing and infinite
        self.n_valid = int(column.numeric.size)

    @staticmethod
    def unusable(column: Column) -> int:
        """Values this feature cannot test: missing, infinite, or text that is not a number."""
        return column.n_missing + column.n_inf + unparsed_labels(column)

    def compare(self, column: Column) -> Outcome:
        """Compare one batch's column with the reference."""
        values = np.sort(numeric_view(column))
        nonzero = values[values != 0]
        n1, n2 = self.n_total, column.n
        out = Outcome(self.method, self.data_type, 0.0, n1, n2)
        if n1 == 0 or n2 == 0:
            out.status = "insufficient_data"
            out.reason = "the current batch has no rows" if n2 == 0 else "the reference has no rows"
            return out
        empty_ref, empty_cur = self.n_empty / n1, (n2 - nonzero.size) / n2
        out.extra_p.append(float(proportion_test(self.n_empty, n1, n2 - nonzero.size, n2)))
        d = 0.0
        if self.nonzero.size and nonzero.size:
            d = ks_statistic_sorted(self.nonzero, nonzero)
            out.ks = (d, int(self.nonzero.size), int(nonzero.size))
        out.effect = max(abs(empty_cur - empty_ref), d)
        out.details.update(
            zero_rate_reference=empty_ref,
            zero_rate_current=empty_cur,
            nonzero_ks_statistic=d,
            n_nonzero_reference=int(self.nonzero.size),
            n_nonzero_current=int(nonzero.size),
        )
        return out


class MixedReference:
    """A mixed-type column's prepared reference (numbers and labels in one column)."""

    data_type = "mixed"
    method = "hybrid"

    def __init__(self, column: Column):
        self.n_total = column.n
        self.n_unusable = self.unusable(column)
        self.numbers = np.sort(column.numeric)
        self.categories, counts = np.unique(column.labels, return_counts=True)
        self.counts = np.append(counts, 0)
        self.n_valid = column.n_valid

    @staticmethod
    def unusable(column: Column) -> int:
        """Values this feature cannot test: missing or infinite."""
        return column.n_missing + column.n_inf

    def compare(self, column: Column) -> Outcome:
        """Compare one batch's column with the reference."""
        n1, n2 = self.n_valid, column.n_valid
        out = Outcome(self.method, self.data_type, 0.0, n1, n2)
        if n1 == 0 or n2 == 0:
            out.status = "insufficient_data" if column.n == 0 or n1 == 0 else "all_missing"
            out.reason = "no usable values on one side"
            return out
        share_ref, share_cur = self.numbers.size / n1, column.numeric.size / n2
        out.extra_p.append(float(proportion_test(self.numbers.size, n1, column.numeric.size, n2)))
        effects = [abs(share_cur - share_ref)]
        if self.numbers.size and column.numeric.size:
            d = ks_statistic_sorted(self.numbers, np.sort(column.numeric))
            out.ks = (d, int(self.numbers.size), int(column.numeric.size))
            effects.append(d)
        if column.labels.size and self.categories.size:
            codes = encode_sorted(self.categories, column.labels)
            counts = np.bincount(codes, minlength=self.categories.size + 1)
            statistic, dof = chi2_contingency_2xk(self.counts, counts)
            if dof:
                out.chi2 = (statistic, dof)
                effects.append(float(np.sqrt(statistic / (self.counts.sum() + column.labels.size))))
        out.effect = max(effects)
        out.details.update(numeric_share_reference=share_ref, numeric_share_current=share_cur)
        return out
