"""Column batches: normalising incoming columns, filling absent ones, and JSON round-trips.

A batch is a mapping of column name to a 1-d array. Numeric columns (bool, int, float) are kept as
float64 so a missing value can be NaN; everything else (strings, mixed objects) is kept as an object
array where a missing value is None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Batch = Mapping[str, Any]
Columns = dict[str, np.ndarray]

_JSON_SCALARS = (str, int, float, bool, type(None))


def normalise_batch(batch: Batch) -> tuple[Columns, int]:
    """Return the batch as `{name: float64 or object array}` and its row count.

    Raises ValueError naming the column when a column is not one-dimensional, when columns differ in
    length, or when the batch is not a mapping.
    """
    if not isinstance(batch, Mapping):
        raise ValueError(
            f"a batch must be a mapping of column name to values, got {type(batch).__name__}; "
            "pass e.g. {'age': [31, 45], 'country': ['FR', 'DE']}"
        )
    columns: Columns = {}
    n_rows: int | None = None
    for name, values in batch.items():
        if not isinstance(name, str):
            raise ValueError(f"column names must be strings, got {name!r} ({type(name).__name__})")
        column = as_column(name, values)
        if n_rows is None:
            n_rows = len(column)
        elif len(column) != n_rows:
            first = next(iter(columns))
            raise ValueError(
                f"column {name!r} has {len(column)} rows but column {first!r} has {n_rows}; "
                "every column of a batch must have the same number of rows"
            )
        columns[name] = column
    return columns, n_rows or 0


def as_column(name: str, values: Any) -> np.ndarray:
    """Convert one column to a float64 array (numeric data) or an object array (anything else)."""
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"column {name!r} must be one-dimensional, got shape {array.shape}")
    kind = array.dtype.kind
    if kind in "biuf":
        return array.astype(np.float64, copy=True)
    if kind in "mM":
        raise ValueError(
            f"column {name!r} holds dates or durations ({array.dtype}); convert it to numbers "
            "(for example seconds since an epoch) before adding it to a window"
        )
    if kind == "c":
        raise ValueError(f"column {name!r} holds complex numbers, which windows do not support")
    out = array.astype(object, copy=True)
    out[missing_mask(out)] = None  # one spelling of "missing" in object columns
    return out


def missing_mask(column: np.ndarray) -> np.ndarray:
    """True where a value is missing: NaN for numeric columns, None or NaN for object columns."""
    if column.dtype == object:
        # NaN is the only value that differs from itself; comparisons run elementwise in C.
        return np.asarray(column == None) | np.asarray(column != column)  # noqa: E711
    return np.isnan(column)


def missing_column(length: int, dtype: np.dtype) -> np.ndarray:
    """An all-missing column of the given length and dtype (NaN or None)."""
    if dtype.kind == "O":
        return np.full(length, None, dtype=object)
    return np.full(length, np.nan, dtype=np.float64)


def common_dtype(dtypes: Sequence[np.dtype]) -> np.dtype:
    """float64 when every part is numeric, object as soon as one part is not."""
    return np.dtype(object) if any(d.kind == "O" for d in dtypes) else np.dtype(np.float64)


def to_object(column: np.ndarray) -> np.ndarray:
    """Promote a float column to object, turning NaN into None."""
    if column.dtype == object:
        return column
    out = column.astype(object)
    out[np.isnan(column)] = None
    return out


def concat_chunks(chunks: Sequence[tuple[int, Mapping[str, np.ndarray]]]) -> Columns:
    """Concatenate row-aligned chunks `(n_rows, columns)`; a column absent from a chunk is missing there."""
    names: dict[str, None] = {}
    for _, columns in chunks:
        names.update(dict.fromkeys(columns))
    out: Columns = {}
    for name in names:
        dtype = common_dtype([cols[name].dtype for _, cols in chunks if name in cols])
        parts = []
        for n, cols in chunks:
            part = cols.get(name)
            if part is None:
                part = missing_column(n, dtype)
            elif dtype.kind == "O":
                part = to_object(part)
            parts.append(part)
        out[name] = np.concatenate(parts) if parts else missing_column(0, dtype)
    return out


def slice_columns(columns: Mapping[str, np.ndarray], start: int, stop: int, total: int) -> Columns:
    """Rows `start:stop` of every column; partial slices are copied so the whole batch is not kept alive."""
    if start == 0 and stop == total:
        return dict(columns)
    return {name: col[start:stop].copy() for name, col in columns.items()}


def column_nbytes(columns: Mapping[str, np.ndarray]) -> int:
    """Bytes held by the arrays' buffers (object columns count their pointers)."""
    return sum(int(c.nbytes) for c in columns.values())


def _json_value(value: Any) -> Any:
    if isinstance(value, _JSON_SCALARS):
        if isinstance(value, float) and not np.isfinite(value):
            return None if value != value else ("inf" if value > 0 else "-inf")
        return value
    if isinstance(value, np.generic):
        return _json_value(value.item())
    return str(value)


def floats_to_json(values: np.ndarray) -> list[Any]:
    """A float array as a strict-JSON list: NaN becomes None, infinities become "inf" / "-inf"."""
    out: list[Any] = values.tolist()
    bad = ~np.isfinite(values)
    if bad.any():
        for i in np.flatnonzero(bad).tolist():
            v = values[i]
            out[i] = None if np.isnan(v) else ("inf" if v > 0 else "-inf")
    return out


def floats_from_json(values: Sequence[Any]) -> np.ndarray:
    """Inverse of `floats_to_json` (numpy parses None as NaN and "inf" as infinity)."""
    return np.array(values, dtype=np.float64).reshape(-1)


def column_to_json(column: np.ndarray) -> dict[str, Any]:
    """A strict-JSON form of a column: `{"dtype": "float"|"object", "values": [...]}`."""
    if column.dtype.kind == "O":
        # Checkpointing is rare and object columns hold arbitrary Python values: convert each.
        return {"dtype": "object", "values": [_json_value(v) for v in column.tolist()]}
    return {"dtype": "float", "values": floats_to_json(column)}


def column_from_json(data: Mapping[str, Any]) -> np.ndarray:
    """Inverse of `column_to_json`."""
    if data["dtype"] == "object":
        out = np.empty(len(data["values"]), dtype=object)
        out[:] = data["values"]
        return out
    return floats_from_json(data["values"])


def columns_to_json(columns: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """JSON form of a whole column mapping."""
    return {name: column_to_json(col) for name, col in columns.items()}


def columns_from_json(data: Mapping[str, Any]) -> Columns:
    """Inverse of `columns_to_json`."""
    return {name: column_from_json(col) for name, col in data.items()}


def json_key(value: Any) -> Any:
    """A category value as stored in JSON state (numpy scalars become Python scalars)."""
    return _json_value(value)
