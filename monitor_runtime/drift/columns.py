"""Turning user columns into clean arrays: numbers, labels and what is missing.

Columns arrive as lists, numpy arrays of any dtype, or object arrays mixing numbers, strings and
None. Everything is classified once, vectorised where numpy allows; object arrays need a per-element
pass by their nature, done with numpy's C-level object comparisons where possible.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

#: String values read as missing (as CSV readers and JSON producers write them).
#: "NA" is deliberately absent: it is Namibia's country code.
MISSING_STRINGS = frozenset({"", "nan", "NaN", "NAN", "null", "NULL", "None", "N/A", "n/a"})
#: Boolean spellings, rendered as "1"/"0" so a CSV's "true" and a JSON true are one category.
TRUE_STRINGS = ("True", "true", "TRUE")
FALSE_STRINGS = ("False", "false", "FALSE")


@dataclass(frozen=True)
class Column:
    """One feature's values, split by kind.

    ``numeric`` holds the finite numbers (unsorted), ``labels`` the non-missing strings (as a numpy
    unicode array), ``n_missing`` counts None/NaN/empty values and ``n_inf`` counts +-inf.
    """

    n: int
    numeric: np.ndarray
    labels: np.ndarray
    n_missing: int
    n_inf: int
    is_bool: bool = False

    @property
    def n_valid(self) -> int:
        return int(self.numeric.shape[0] + self.labels.shape[0])

    @property
    def kind(self) -> str:
        """``numeric``, ``labels``, ``mixed`` or ``empty``."""
        has_num, has_lab = self.numeric.size > 0, self.labels.size > 0
        if has_num and has_lab:
            return "mixed"
        if has_lab:
            return "labels"
        return "numeric" if has_num else "empty"


_EMPTY_F = np.empty(0, dtype=np.float64)
_EMPTY_U = np.empty(0, dtype="<U1")


def _split_numeric(values: np.ndarray) -> tuple[np.ndarray, int, int]:
    values = values.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if finite.all():
        return values, 0, 0
    n_nan = int(np.isnan(values).sum())
    n_inf = int(values.size - finite.sum() - n_nan)
    return values[finite], n_nan, n_inf


def _labels_from_strings(values: np.ndarray) -> tuple[np.ndarray, int]:
    if values.dtype.kind == "S":
        values = np.char.decode(values, "utf-8", "replace")
    values = values.astype(str, copy=False)
    if values.dtype.itemsize <= 5 * 4:  # only short strings can spell a boolean
        truthy, falsy = np.isin(values, TRUE_STRINGS), np.isin(values, FALSE_STRINGS)
        if truthy.any() or falsy.any():
            values = np.where(truthy, "1", np.where(falsy, "0", values))
    missing = np.isin(values, list(MISSING_STRINGS))
    if missing.any():
        return values[~missing], int(missing.sum())
    return values, 0


def _split_object(values: np.ndarray) -> Column:
    n = values.shape[0]
    none = np.equal(values, None)
    kept = values[~none]
    try:
        numbers = kept.astype(np.float64)
    except (TypeError, ValueError):
        numbers = None
    if numbers is not None:
        finite, n_nan, n_inf = _split_numeric(numbers)
        all_bool = kept.size > 0 and all(isinstance(v, (bool, np.bool_)) for v in kept[:64]) and bool(
            np.all(np.isin(finite, (0.0, 1.0)))
        )
        return Column(n, finite, _EMPTY_U, int(none.sum()) + n_nan, n_inf, is_bool=all_bool)
    types = set(map(type, kept))
    if types == {str}:  # text only (what JSON and CSV bodies give a categorical column): no per-element pass
        labels, n_missing_str = _labels_from_strings(kept)
        return Column(n, _EMPTY_F, labels, int(none.sum()) + n_missing_str, 0)
    # Mixed content: decide per element whether it is a number (bool counts as a label).
    is_num = np.fromiter(
        (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in kept),
        dtype=bool,
        count=kept.shape[0],
    )
    finite, n_nan, n_inf = _split_numeric(kept[is_num].astype(np.float64))
    labels, n_missing_str = _labels_from_strings(kept[~is_num])
    return Column(n, finite, labels, int(none.sum()) + n_nan + n_missing_str, n_inf)


def to_column(values: object, name: str = "column") -> Column:
    """Classify a column's values; raises ValueError (naming the column) for non-1-D input."""
    try:
        arr = np.asarray(values) if not isinstance(values, np.ndarray) else values
    except (ValueError, TypeError) as exc:
        raise ValueError(f"column {name!r} is not a flat sequence of values: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {arr.shape}")
    n = int(arr.shape[0])
    kind = arr.dtype.kind
    if kind == "b":
        return Column(n, arr.astype(np.float64), _EMPTY_U, 0, 0, is_bool=True)
    if kind in "iuf":
        finite, n_nan, n_inf = _split_numeric(arr)
        return Column(n, finite, _EMPTY_U, n_nan, n_inf)
    if kind in "US":
        labels, n_missing = _labels_from_strings(arr)
        return Column(n, _EMPTY_F, labels, n_missing, 0)
    if kind == "O":
        return _split_object(arr)
    if kind in "mM":  # datetimes: compare as numbers (ns since epoch); NaT is missing
        as_int = arr.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
        nat = np.isnat(arr)
        return Column(n, as_int[~nat], _EMPTY_U, int(nat.sum()), 0)
    raise ValueError(f"column {name!r} has unsupported dtype {arr.dtype}")


def numeric_view(column: Column) -> np.ndarray:
    """The column as numbers, for a feature declared continuous: labels that parse as numbers count,
    the rest are dropped (callers report them through ``unparsed_labels``)."""
    if column.labels.size == 0:
        return column.numeric
    parsed = _parse_float_labels(column.labels)
    return np.concatenate([column.numeric, parsed[np.isfinite(parsed)]])


def parses_as_numbers(labels: np.ndarray) -> bool:
    """Whether every label is a number written as text (a CSV column read as strings)."""
    if labels.size == 0:
        return False
    try:
        np.unique(labels).astype(np.float64)
    except ValueError:
        return False
    return True


def unparsed_labels(column: Column) -> int:
    """How many labels of a continuous feature are not numbers."""
    if column.labels.size == 0:
        return 0
    return int((~np.isfinite(_parse_float_labels(column.labels))).sum())


def _parse_float_labels(labels: np.ndarray) -> np.ndarray:
    try:
        return labels.astype(np.float64)
    except ValueError:
        out = np.full(labels.shape[0], np.nan)
        for i, text in enumerate(labels.tolist()):  # only on the rare malformed path
            with contextlib.suppress(ValueError):
                out[i] = float(text)
        return out


def render_numbers(nums: np.ndarray) -> np.ndarray:
    """Numbers as category labels: whole numbers without a decimal point, each value on its own."""
    whole = (nums == np.round(nums)) & (np.abs(nums) < 2**53)
    if whole.all():
        return nums.astype(np.int64).astype(str)
    out = nums.astype(str)
    if whole.any():
        out[whole] = nums[whole].astype(np.int64).astype(str)
    return out


def label_view(column: Column) -> np.ndarray:
    """The column as category labels (numbers rendered canonically, so 1 and 1.0 are one category)."""
    if column.numeric.size == 0:
        return column.labels
    rendered = render_numbers(column.numeric)
    if column.labels.size == 0:
        return rendered
    return np.concatenate([rendered, column.labels])
