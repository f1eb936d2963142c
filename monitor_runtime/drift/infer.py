"""Feature type inference for ``type: auto``.

Rules, in order (documented in docs/drift.md):
1. labels that all parse as numbers are numbers (then rule 3);
   labels only -> ``binary`` with two distinct labels, else ``categorical``; booleans -> ``binary``;
2. numbers and labels in one column -> ``mixed`` (the hybrid test);
3. numbers: ``sparse`` when at least half of the values are zero or missing and the non-zero part
   has more than two distinct values; ``binary`` with at most two distinct values; ``categorical``
   when every value is an integer and there are at most ``MAX_INTEGER_CATEGORIES`` distinct ones;
   ``continuous`` otherwise.
"""

from __future__ import annotations

import numpy as np

from monitor_runtime.drift.columns import Column, numeric_view, parses_as_numbers

FEATURE_TYPES = ("continuous", "categorical", "binary", "sparse", "mixed")
DECLARABLE_TYPES = (*FEATURE_TYPES, "auto")
MAX_INTEGER_CATEGORIES = 20
SPARSE_MIN_ZERO_RATE = 0.5


def infer_type(column: Column, sorted_numeric: np.ndarray | None = None) -> str:
    """Infer a feature type from a (reference) column; ``sorted_numeric`` saves a sort if known."""
    kind = column.kind
    if kind == "empty":
        return "continuous"
    if column.is_bool:
        return "binary"
    if kind in ("labels", "mixed") and parses_as_numbers(column.labels):
        # Numbers written as text (a CSV read without types) are numbers.
        sorted_numeric = np.sort(numeric_view(column))
    elif kind == "labels":
        return "binary" if np.unique(column.labels).size == 2 else "categorical"
    elif kind == "mixed":
        return "mixed"
    values = np.sort(column.numeric) if sorted_numeric is None else sorted_numeric
    distinct = int(np.count_nonzero(np.diff(values))) + 1 if values.size else 0
    zeros = int(np.searchsorted(values, 0.0, "right") - np.searchsorted(values, 0.0, "left"))
    zero_or_missing = (zeros + column.n_missing) / column.n if column.n else 0.0
    if zero_or_missing >= SPARSE_MIN_ZERO_RATE and distinct - (1 if zeros else 0) > 2:
        return "sparse"
    if distinct <= 2:
        return "binary"
    if distinct <= MAX_INTEGER_CATEGORIES and np.all(values == np.round(values)):
        return "categorical"
    return "continuous"
