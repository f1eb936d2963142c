"""Request bodies (JSON, NDJSON, CSV, Arrow IPC) to column batches, with errors a client can act on.

Every rejection is a `BadRequest` naming the column, the row and the expected type; parsing never
touches runtime state, so a rejected request leaves everything as it was.
"""

from __future__ import annotations

import array
import contextlib
import csv
import functools
import io
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import numpy as np

from monitor_runtime import reference_npz

try:  # orjson parses request bodies about 6x faster than the standard library (the ingestion hot path)
    import orjson
except ImportError:  # pragma: no cover - optional speed-up
    orjson = None

try:  # simdjson reads number arrays straight into float64 buffers, with no Python object per value
    import simdjson
except ImportError:  # pragma: no cover - optional speed-up
    simdjson = None

try:  # pyarrow is an optional extra; CSV falls back to the standard library without it
    import pyarrow as pa
    import pyarrow.csv as pa_csv
    import pyarrow.ipc as pa_ipc
except ImportError:  # pragma: no cover - exercised only on installs without the extra
    pa = None

NUMERIC = "numeric"
CATEGORICAL = "categorical"
PREDICTION_COLUMN = "_prediction"
ACTUAL_COLUMN = "_actual"
_JSON_KEYS = frozenset({"columns", "rows", "predictions", "actuals", "timestamp"})
_NUMERIC_TYPES = frozenset({int, float, bool})
_NONE = type(None)
_MAX_FLOAT_INT = int(np.finfo(np.float64).max)


class BadRequest(Exception):
    """A request the runtime refuses; `status` is the HTTP code, `detail` names what and where."""

    def __init__(self, message: str, *, status: int = 400, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = {k: v for k, v in detail.items() if v is not None}

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"error": self.message, **self.detail}


@dataclass
class Batch:
    """One parsed batch: feature columns of equal length, optional predictions and actuals."""

    columns: dict[str, np.ndarray]
    n_rows: int
    predictions: np.ndarray | None = None
    actuals: np.ndarray | None = None
    timestamp: str | float | None = None


@dataclass(frozen=True)
class Schema:
    """What the runtime knows about columns: expected kind per known column and the unknown-column policy."""

    kinds: Mapping[str, str] = field(default_factory=dict)
    reject_unknown: bool = False
    max_rows: int = 100_000


def spec_kinds(spec: Mapping[str, Any]) -> dict[str, str]:
    """Declared feature kinds from a spec mapping (`continuous` -> numeric, `categorical` -> categorical).

    `poetmon serve` and `poetmon run` both check data against these, so a value that is not a number in a
    continuous feature is refused alike, naming the column, the row and the value.
    """
    features = spec.get("features") or []
    if isinstance(features, Mapping):
        features = [{"name": k, **(v or {})} for k, v in features.items()]
    out: dict[str, str] = {}
    for f in features:
        if not isinstance(f, Mapping) or "name" not in f:
            continue
        ftype = str(f.get("type", "auto"))
        if ftype == "continuous":
            out[str(f["name"])] = NUMERIC
        elif ftype == "categorical":
            out[str(f["name"])] = CATEGORICAL
    return out


def column_kinds(columns: Mapping[str, np.ndarray]) -> dict[str, str]:
    """The kinds parsed columns hold (object -> categorical, else numeric): what a reference tells of the
    batches after it. The reserved prediction and actual columns are not features and get no kind."""
    return {
        name: CATEGORICAL if arr.dtype == object else NUMERIC
        for name, arr in columns.items()
        if name not in (PREDICTION_COLUMN, ACTUAL_COLUMN)
    }


def parse_body(body: bytes, content_type: str, schema: Schema) -> Batch:
    """Parse a request body by its content type into a validated `Batch`."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not body or body.isspace():  # no strip(): it would copy the whole body
        raise BadRequest("empty request body: send a batch with at least one row")
    if ctype in ("application/json", ""):
        batch = _parse_json(body, schema)
    elif ctype in (
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
    ):
        batch = _parse_ndjson(body, schema)
    elif ctype in ("text/csv", "application/csv"):
        batch = _parse_csv(body, schema)
    elif ctype in ("text/tab-separated-values", "text/tsv"):
        batch = _parse_csv(body, schema, delimiter="\t")
    elif ctype in ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.file"):
        batch = _parse_arrow(body, schema)
    elif ctype == reference_npz.MEDIA_TYPE:
        batch = _parse_reference_npz(body, schema)
    else:
        raise BadRequest(
            f"unsupported content type {ctype!r}: use application/json, application/x-ndjson, text/csv, "
            f"application/vnd.apache.arrow.stream or (a reference) {reference_npz.MEDIA_TYPE}",
            status=415,
        )
    return batch


# ---------------------------------------------------------------- JSON


def _fast_loads(body: bytes) -> Any:
    """orjson when installed; it rejects the bare NaN/Infinity tokens Python's json accepts, so those
    bodies (and every malformed one, for the line/column message) take the standard-library path.

    Nesting deeper than the parser allows and integers beyond Python's digit limit are client errors too.
    """
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body)
    except RecursionError:
        raise BadRequest(
            "JSON nested too deeply: send a flat object of columns or rows of scalar values"
        ) from None
    except ValueError as exc:
        if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError):
            raise
        # int() refuses integers with thousands of digits (a guard against quadratic conversion)
        raise BadRequest(
            "JSON number out of range: an integer has too many digits; send numbers within +-1.8e308"
        ) from None


def _loads(body: bytes, what: str) -> Any:
    try:
        return _fast_loads(body)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"{what} is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"malformed JSON in {what}: {exc.msg} at line {exc.lineno} column {exc.colno}",
            line=exc.lineno,
            column_number=exc.colno,
        ) from None


# Below this size orjson plus the list conversions cost less than simdjson's fixed cost per column.
_SIMD_MIN_BYTES = 16 * 1024
# A UTF-8 byte-order mark: the standard library's reader accepts it, simdjson too; left to the former.
_BOM = b"\xef\xbb\xbf"


def _columns_doc(body: bytes) -> dict[str, Any] | None:
    """The column form (`{"columns": {...}, ...}`) decoded by simdjson, number columns as float64 arrays.

    The same document `_loads` gives, except that a column of plain numbers is a float64 array instead of
    a list (the values `float()` gives; simdjson parses numbers correctly rounded, as orjson does). None
    for anything else (the row form, a malformed body, duplicate keys, nested arrays, numbers beyond
    64 bits, a byte-order mark): the general path then decides, so answers and error messages are its.
    """
    if simdjson is None or len(body) < _SIMD_MIN_BYTES or body.startswith(_BOM):
        return None
    try:
        # A parser per call: a parser may not parse again while values of its last document are alive.
        doc = simdjson.Parser().parse(body)
        if not isinstance(doc, simdjson.Object):
            return None
        keys = list(doc.keys())
        raw = doc.get("columns")
        if len(set(keys)) != len(keys) or not isinstance(raw, simdjson.Object) or "rows" in keys:
            return None
        if len(set(raw.keys())) != len(raw):
            return None
        out = {k: _plain(doc[k]) if k != "columns" else None for k in keys}  # the general reader's order
        arrays = 0
        columns: dict[str, Any] = {}
        for name in raw.keys():  # noqa: SIM118 - simdjson's `items()` turns every column into a list
            values = raw[name]
            if not isinstance(values, simdjson.Array):
                return None
            arrays += 1
            # Numbers straight to a buffer; `as_buffer` fails on anything else (null, a string, true), and
            # its failure costs more than looking at the first value, so a column starting so is a list.
            if len(values) and type(values[0]) in (float, int):
                try:
                    columns[name] = np.frombuffer(values.as_buffer(of_type="d"))
                    continue
                except (TypeError, ValueError):
                    pass
            columns[name] = values.as_list()
        # `as_buffer` flattens nested arrays: a body with more brackets than its arrays (a nested list, or
        # a bracket inside a string) goes the general way.
        arrays += sum(isinstance(out.get(k), list) for k in ("predictions", "actuals"))
        if _count_at_most(body, b"[", arrays + 1) != arrays:
            return None
    except (ValueError, TypeError, RuntimeError, KeyError, UnicodeDecodeError):
        return None
    out["columns"] = columns
    return out


def _count_at_most(body: bytes, byte: bytes, limit: int) -> int:
    """Occurrences of `byte` in `body`, counting no further than `limit` (memchr jumps: a few times faster
    than `bytes.count` when the byte is rare)."""
    found, pos = 0, body.find(byte)
    while pos >= 0 and found < limit:
        found += 1
        pos = body.find(byte, pos + 1)
    return found


def _plain(value: Any) -> Any:
    """A simdjson value as the Python value orjson gives."""
    if isinstance(value, simdjson.Array):
        return value.as_list()
    if isinstance(value, simdjson.Object):
        return value.as_dict()
    return value


def _parse_json(body: bytes, schema: Schema) -> Batch:
    doc = _columns_doc(body)
    if doc is None:
        doc = _loads(body, "request body")
    if not isinstance(doc, dict):
        raise BadRequest(
            f"JSON body must be an object with 'columns' or 'rows', got {type(doc).__name__}",
            expected='{"columns": {"name": [values...]}} or {"rows": [{"name": value}, ...]}',
        )
    unknown = sorted(set(doc) - _JSON_KEYS)
    if unknown:
        raise BadRequest(
            f"unknown top-level field {unknown[0]!r}: allowed fields are {sorted(_JSON_KEYS)}",
            field=unknown[0],
        )
    if ("columns" in doc) == ("rows" in doc):
        raise BadRequest(
            "JSON body needs exactly one of 'columns' (column -> values) or 'rows' (list of objects)"
        )
    if "columns" in doc:
        raw = doc["columns"]
        if not isinstance(raw, dict):
            raise BadRequest(f"'columns' must be an object of column -> list, got {type(raw).__name__}")
        for name, values in raw.items():
            if not isinstance(values, list | np.ndarray):  # arrays only from `_columns_doc`
                raise BadRequest(
                    f"column {name!r}: expected a list of values, got {type(values).__name__}", column=name
                )
    else:
        raw = _rows_to_columns(doc["rows"], "rows")
    for reserved, key in ((PREDICTION_COLUMN, "predictions"), (ACTUAL_COLUMN, "actuals")):
        if reserved in raw and key in doc:
            raise BadRequest(
                f"both the column {reserved!r} and the field {key!r} are given: send one of them",
                column=reserved,
            )
    batch = _side_columns(raw, _build_batch(raw, schema))
    n = batch.n_rows
    if "predictions" in doc:
        batch.predictions = _side_array(doc["predictions"], "predictions", n)
    if "actuals" in doc:
        batch.actuals = _side_array(doc["actuals"], "actuals", n)
    ts = doc.get("timestamp")
    if ts is not None and not isinstance(ts, str | int | float):
        raise BadRequest(
            f"'timestamp' must be a string or a number, got {type(ts).__name__}", field="timestamp"
        )
    batch.timestamp = ts
    return batch


def _rows_to_columns(rows: Any, what: str) -> dict[str, list[Any]]:
    """Row objects to column lists; C-level `map(itemgetter)` per column keeps this off a per-row loop."""
    if not isinstance(rows, list):
        raise BadRequest(f"'{what}' must be a list of objects, got {type(rows).__name__}")
    if not rows:
        raise BadRequest("empty batch: 'rows' has no rows; send at least one")
    if set(map(type, rows)) != {dict}:
        i = next(i for i, row in enumerate(rows) if not isinstance(row, dict))  # error path only
        raise BadRequest(
            f"row {i}: expected an object of column -> value, got {type(rows[i]).__name__}", row=i
        )
    keys = list(rows[0])
    if set(map(len, rows)) == {len(keys)}:
        # Every row has as many keys as the first; if each also has all of the first row's keys, the key
        # sets are equal, and one C-level pass per row plus a transpose builds the columns.
        try:
            if len(keys) > 1:
                return dict(zip(keys, zip(*map(itemgetter(*keys), rows), strict=True), strict=True))
            return {k: list(map(itemgetter(k), rows)) for k in keys}
        except KeyError:
            pass
    # Ragged rows: a missing key is a missing value, like an empty CSV cell.
    names: dict[str, None] = {}
    for r in rows:
        names.update(dict.fromkeys(r))
    return {k: [r.get(k) for r in rows] for k in names}


def _side_array(values: Any, name: str, n_rows: int) -> np.ndarray:
    if not isinstance(values, list):
        raise BadRequest(f"'{name}' must be a list, got {type(values).__name__}", field=name)
    if len(values) != n_rows:
        raise BadRequest(f"'{name}' has {len(values)} values but the batch has {n_rows} rows", field=name)
    return _column_array(name, values, None)


def _parse_ndjson(body: bytes, schema: Schema) -> Batch:
    # One decode of the whole body as a JSON array; blank lines or a bad line send it to the slow path,
    # which skips blanks and names the first bad line.
    # The joined parse also accepts `{...},{...}` on one line; a row count that differs from the line count
    # sends the body to the line-by-line path, which names the offending line.
    stripped = body.strip()
    if b"\r" in stripped:  # a two-byte search over the whole body costs more than the one-byte test
        stripped = stripped.replace(b"\r\n", b"\n")
    rows: Any = None
    with contextlib.suppress(json.JSONDecodeError, UnicodeDecodeError):
        rows = _fast_loads(b"".join((b"[", stripped.replace(b"\n", b","), b"]")))
    if not isinstance(rows, list) or len(rows) != stripped.count(b"\n") + 1:
        lines = [ln for ln in body.splitlines() if ln.strip()]
        try:
            rows = _fast_loads(b"[" + b",".join(lines) + b"]")
        except (json.JSONDecodeError, UnicodeDecodeError):
            rows = None
        if not isinstance(rows, list) or len(rows) != len(lines):
            for number, ln in enumerate(body.splitlines(), start=1):
                if ln.strip():
                    line_doc = _loads(ln, f"NDJSON line {number}")
                    if not isinstance(line_doc, dict):
                        raise BadRequest(
                            f"NDJSON line {number}: expected one JSON object, got {type(line_doc).__name__}",
                            line=number,
                        )
            raise BadRequest("malformed NDJSON: each line must be one JSON object") from None
    raw = _rows_to_columns(rows, "NDJSON lines")
    return _side_columns(raw, _build_batch(raw, schema))


def _side_columns(raw: Mapping[str, Any], batch: Batch) -> Batch:
    """Lift the reserved `_prediction` / `_actual` columns out of a row-oriented or tabular batch."""
    for name, attr in ((PREDICTION_COLUMN, "predictions"), (ACTUAL_COLUMN, "actuals")):
        if name in batch.columns:
            setattr(batch, attr, batch.columns.pop(name))
    return batch


# ---------------------------------------------------------------- columns and types


def _build_batch(raw: Mapping[str, Any], schema: Schema, *, typed: bool = False) -> Batch:
    if not raw:
        raise BadRequest("empty batch: no columns; send at least one feature column")
    lengths = {name: len(values) for name, values in raw.items()}
    first_name, n = next(iter(lengths.items()))
    for name, length in lengths.items():
        if length != n:
            raise BadRequest(
                f"column {name!r} has {length} values but column {first_name!r} has {n}; "
                "all columns need the same length",
                column=name,
            )
    if n == 0:
        raise BadRequest("empty batch: columns have no values; send at least one row")
    if n > schema.max_rows:
        raise BadRequest(
            f"batch has {n} rows; the limit is {schema.max_rows}: split it into smaller batches",
            status=413,
            rows=n,
            limit=schema.max_rows,
        )
    reserved = {PREDICTION_COLUMN, ACTUAL_COLUMN}
    if schema.reject_unknown:
        for name in raw:
            if name not in schema.kinds and name not in reserved:
                raise BadRequest(
                    f"unknown column {name!r}: this monitor knows {sorted(schema.kinds)}; drop the column or "
                    "declare it in the spec's features",
                    column=name,
                )
    if typed:  # final numpy columns: only the kind check is left (no pass over the values)
        kinds = schema.kinds
        columns = {
            name: _check_kind(name, arr, CATEGORICAL if arr.dtype == object else NUMERIC, kinds.get(name))
            for name, arr in raw.items()
        }
    else:
        columns = {name: _column_array(name, values, schema.kinds.get(name)) for name, values in raw.items()}
    return Batch(columns=columns, n_rows=n)


def _column_array(name: str, values: Any, expected: str | None) -> np.ndarray:
    """A JSON list to a numpy column: float64 for numbers (null -> NaN), object for strings (null -> None)."""
    if isinstance(values, np.ndarray) and values.dtype == np.float64:
        return _check_kind(name, values, NUMERIC, expected)
    first = type(values[0]) if len(values) else None
    if first is float or first is int:
        # The common case, a column of plain numbers, by a C loop that accepts only real numbers (a string
        # or null among them raises); numpy's own list conversion first infers a dtype (about 1.5x slower).
        with contextlib.suppress(TypeError, OverflowError):
            return _check_kind(name, np.frombuffer(array.array("d", values)), NUMERIC, expected)
    if isinstance(values, np.ndarray):
        arr = values
    elif first is str and (_all_str(values) or set(map(type, values)) <= {str, _NONE}):
        # Strings go straight to an object array: via numpy's fixed-width unicode they would be copied twice
        # (and `fromiter` skips the shape discovery `np.array` does, a third of its time).
        return _check_kind(name, np.fromiter(values, dtype=object, count=len(values)), CATEGORICAL, expected)
    else:
        try:
            arr = np.asarray(values)
        except ValueError:  # ragged nested lists
            arr = np.asarray(values, dtype=object)
    kind = arr.dtype.kind
    if arr.ndim != 1:
        row, _ = _first_offender(list(values), {list})
        raise BadRequest(
            f"column {name!r} row {row}: got a nested list; expected a flat list of scalars",
            column=name,
            row=row,
            expected="number, string or null",
        )
    if kind in "iufb":
        out = arr.astype(np.float64, copy=False)
        return _check_kind(name, out, NUMERIC, expected)
    types = set(map(type, values))
    if kind == "U" and types == {str}:
        return _check_kind(name, arr.astype(object), CATEGORICAL, expected)
    if types <= _NUMERIC_TYPES | {_NONE}:
        # Python's json accepts bare NaN / Infinity tokens; they are floats, so they pass as numbers.
        try:
            numbers = np.array(values, dtype=np.float64)
        except OverflowError:
            row = next(i for i, v in enumerate(values) if isinstance(v, int) and abs(v) > _MAX_FLOAT_INT)
            raise BadRequest(
                f"column {name!r} row {row}: number out of range (beyond a 64-bit float)",
                column=name,
                row=row,
                expected="a number within +-1.8e308",
            ) from None
        return _check_kind(name, numbers, NUMERIC, expected)
    if types <= {str, _NONE}:
        return _check_kind(name, np.array(values, dtype=object), CATEGORICAL, expected)
    row, value = _first_offender(values, types)
    first = next((v for v in values if v is not None), None)
    if isinstance(value, str) and isinstance(first, str) and expected != NUMERIC:
        # The column starts with strings: the number is the odd one out, not the string.
        row, value = next((i, v) for i, v in enumerate(values) if isinstance(v, int | float))
        raise BadRequest(
            f"column {name!r} row {row}: got the number {value!r} in a column of strings; "
            f"send it as a string ({json.dumps(str(value))}) or null",
            column=name,
            row=row,
            expected="string or null",
        )
    if isinstance(value, str) and types & _NUMERIC_TYPES:
        hint = " (send null for a missing value, not a string)" if _looks_nan(value) else ""
        raise BadRequest(
            f"column {name!r} row {row}: got the string {value!r} in a column of numbers; "
            f"expected a number or null{hint}",
            column=name,
            row=row,
            expected="number or null",
        )
    raise BadRequest(
        f"column {name!r} row {row}: got {type(value).__name__}; expected a number, a string or null",
        column=name,
        row=row,
        expected="number, string or null",
    )


def _all_str(values: Any) -> bool:
    """True when every value is a str: `str.join` checks that in C, faster than collecting the types."""
    try:
        "".join(values)
    except TypeError:
        return False
    return True


def _first_offender(values: list[Any], types: set[type]) -> tuple[int, Any]:
    """Error path only: the first value whose type breaks the column (a string among numbers, a list, ...)."""
    numeric = bool(types & _NUMERIC_TYPES)
    for i, v in enumerate(values):
        if isinstance(v, dict | list) or (numeric and isinstance(v, str)):
            return i, v
    return 0, values[0]


def _looks_nan(value: str) -> bool:
    return value.strip().lower() in {"nan", "null", "none", "na", "n/a", "inf", "-inf", "infinity", ""}


def _check_kind(name: str, arr: np.ndarray, got: str, expected: str | None) -> np.ndarray:
    if expected is None or expected == got:
        return arr
    if expected == CATEGORICAL and got == NUMERIC:
        return arr  # numeric codes for a categorical feature are fine: the drift engine encodes them
    row = next((i for i, v in enumerate(arr) if v is not None), 0)
    raise BadRequest(
        f"column {name!r}: got strings (row {row}: {arr[row]!r}) but this column holds numbers in the "
        "reference/spec; send numbers or null",
        column=name,
        row=row,
        expected="number or null",
    )


# ---------------------------------------------------------------- CSV and Arrow


# Arrow's CSV reader has a fixed cost of about 2 ms per call (per-column type inference); below this
# size the standard library's reader plus one numpy conversion per column is several times faster.
_SMALL_CSV_BYTES = 64 * 1024
# The same cells Arrow's reader treats as null, so both paths agree.
_CSV_NULLS = frozenset(
    {
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "n/a",
        "nan",
        "null",
    }
)
# Set membership as a ufunc: numpy's loop calls the C method directly, no Python-level loop per cell.
_is_csv_null = np.frompyfunc(_CSV_NULLS.__contains__, 1, 1)
# Arrow's default boolean spellings ("0"/"1" alone make an integer column, as in Arrow).
_CSV_BOOLS = {
    "true": 1.0,
    "True": 1.0,
    "TRUE": 1.0,
    "1": 1.0,
    "false": 0.0,
    "False": 0.0,
    "FALSE": 0.0,
    "0": 0.0,
}
_is_csv_bool = np.frompyfunc(_CSV_BOOLS.__contains__, 1, 1)
_csv_bool_value = np.frompyfunc(_CSV_BOOLS.__getitem__, 1, 1)


def warm_up_arrow() -> None:
    """Read a tiny CSV and Arrow stream once, so Arrow starts its worker threads (and maps their stacks and
    allocator arenas) now. Even with `use_threads=False` its CSV reader hands work to a pool started at
    first use; started later, near a memory limit on the address space, the pool fails to launch and the
    request ends in a 500 (or the process aborts) instead of a MemoryError the runtime can answer."""
    if pa is None:
        return
    # One I/O thread is all a reader of in-memory bodies needs; more are started whenever its read-ahead
    # queues two blocks at once, at any later request.
    pa.set_io_thread_count(1)
    body = b"a,b\n1,x\n"
    table = pa_csv.read_csv(pa.py_buffer(body), read_options=pa_csv.ReadOptions(use_threads=False))
    sink = pa.BufferOutputStream()
    with pa_ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    pa_ipc.open_stream(sink.getvalue()).read_all()


def _parse_csv(body: bytes, schema: Schema, delimiter: str = ",") -> Batch:
    # Both readers accept a quote left open to the end of the body (the rest becomes one cell); quotes in
    # a well-formed CSV come in pairs, so an odd count is a truncated or broken body.
    # numpy counts a large body's quotes several times faster than `bytes.count`.
    if len(body) <= _SMALL_CSV_BYTES:
        quotes = body.count(b'"')
    else:
        quotes = int(np.count_nonzero(np.frombuffer(body, np.uint8) == ord('"')))
    if quotes % 2:
        raise BadRequest(
            "malformed CSV: a quoted field is not terminated (odd number of double quotes); close the quote "
            '(a cell holding a quote character is quoted, with the quote doubled: "5"" screen")'
        )
    if pa is None or len(body) <= _SMALL_CSV_BYTES:
        return _parse_csv_small(body, schema, delimiter)
    # Columns the schema knows as numbers, and those Arrow inferred as numbers in an earlier body with the
    # same header, are read as float64 without type inference (most of the reader's time); if one holds
    # something else, the body is read again with inference, so the error names the cell as before.
    # Columns inferred as text under that header are read dictionary-encoded (a str per category, not per
    # cell) when a value proves them text again; otherwise, again, inference decides.
    numeric = {name: pa.float64() for name, kind in schema.kinds.items() if kind == NUMERIC}
    header = _csv_header_key(body, delimiter)
    learned = _CSV_TYPES_BY_HEADER.get(header) if header is not None else None
    typed: dict[str, Any] = {}
    if learned is not None:
        typed.update(dict.fromkeys(learned.texts, _CSV_TEXT))
        typed.update(dict.fromkeys(learned.numbers, pa.float64()))
    typed.update(numeric)
    for column_types in ([typed, {}] if typed else [{}]):
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(body),
                # One block: the whole body is one request, and splitting it only adds chunks to join.
                read_options=pa_csv.ReadOptions(use_threads=False, block_size=len(body) + 1),
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=pa_csv.ConvertOptions(strings_can_be_null=True, column_types=column_types),
            )
        except pa.ArrowInvalid as exc:
            if column_types:
                continue
            raise BadRequest(f"malformed CSV: {exc}") from None
        if not column_types or learned is None or _texts_proven(table, learned.texts - numeric.keys()):
            break
    # Learn from a read whose types were inferred, apart from the schema's numbers: the first body under a
    # header, or one a learned type did not fit. (The runtime's schema always names `_score`, so "no
    # column types at all" would never learn in a server.)
    if header is not None and (learned is None or not column_types):
        _learn_csv_types(header, table)
    return batch_from_table(table, schema, "CSV")


@dataclass(frozen=True)
class _CsvTypes:
    """What Arrow inferred for the columns under one header: numbers (integer or float) and text."""

    numbers: frozenset[str]
    texts: frozenset[str]


# Header line -> the column types Arrow inferred under it. Reading a number column as float64 directly
# gives the same values inference would: inference takes int64 or float64 for it, and both become float64
# (a cell neither parses reads again with inference). A text column read as text gives the values
# inference would when inference would take text for it again, which `_texts_proven` checks. Bounded: a
# client cycling through headers only costs a re-inference each.
_CSV_TYPES_BY_HEADER: dict[tuple[bytes, str], _CsvTypes] = {}
_CSV_HEADERS_KEPT = 64
_CSV_HEADER_KEY_BYTES = 64 * 1024
_CSV_TEXT = pa.dictionary(pa.int32(), pa.string()) if pa is not None else None
# A character no cell Arrow reads as something other than text can hold (numbers, inf and nan, true and
# false, its null spellings, dates, times and timestamps use only the others, in either case).
_PROVES_TEXT = re.compile(r"[^0-9+\-.:/#\sadefilnqrstuyzADEFILNQRSTUYZ]")


def _texts_proven(table: Any, names: Any) -> bool:
    """True when every column of `names` holds a value that only text can be: inference would read each
    of them as text (it takes the first type all of a column's values fit, text last)."""
    present = set(table.column_names)
    for name in names:
        if name not in present:
            continue
        col = table.column(name)
        if col.num_chunks != 1 or not any(map(_PROVES_TEXT.search, col.chunk(0).dictionary.to_pylist())):
            return False
    return True


def _csv_header_key(body: bytes, delimiter: str) -> tuple[bytes, str] | None:
    end = body.find(b"\n", 0, _CSV_HEADER_KEY_BYTES)
    return (body[:end], delimiter) if end > 0 else None


def _learn_csv_types(header: tuple[bytes, str], table: Any) -> None:
    types = _CsvTypes(
        numbers=frozenset(
            f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
        ),
        texts=frozenset(f.name for f in table.schema if pa.types.is_string(f.type)),
    )
    if len(_CSV_TYPES_BY_HEADER) >= _CSV_HEADERS_KEPT:
        _CSV_TYPES_BY_HEADER.clear()
    _CSV_TYPES_BY_HEADER[header] = types


def _parse_csv_small(body: bytes, schema: Schema, delimiter: str = ",") -> Batch:
    """CSV through the standard library; cells are converted a column at a time by numpy.

    Conversions match Arrow's reader (used for larger quoted bodies): a leading byte-order mark is
    dropped, the same cells are null, and a column of true/false words becomes 1.0/0.0.
    """
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"CSV body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    if '"' in text:
        text = _unquote_plain_fields(text, delimiter)
    split = _split_unquoted(text, delimiter) if text is not None and '"' not in text else None
    if split is None:
        text = body.decode("utf-8-sig")
    if split is None:
        split = _read_csv_module(text, delimiter)
    header, cells = split
    if len(set(header)) != len(header):
        dup = next(n for n in header if header.count(n) > 1)
        raise BadRequest(f"CSV header names column {dup!r} twice", column=dup)
    cols: dict[str, np.ndarray] = {}
    for name, column in zip(header, cells, strict=True):
        try:  # the common case: every cell is a number (float()'s rules, as the object path below)
            cols[name] = np.array(column, dtype=np.float64)
            continue
        except ValueError:
            pass
        arr = np.array(column, dtype=object)
        null = _is_csv_null(arr).astype(bool)
        try:
            cols[name] = np.where(null, "nan", arr).astype(np.float64)
            continue
        except ValueError:
            pass
        present = arr[~null]
        if present.size and _is_csv_bool(present).astype(bool).all():
            cols[name] = np.where(null, np.nan, _csv_bool_value(np.where(null, "0", arr)).astype(np.float64))
        else:
            cols[name] = np.where(null, None, arr)
    return _finish_columns(cols, schema, "CSV")


def _read_csv_module(text: str, delimiter: str) -> tuple[list[str], list[Any]]:
    """Header and columns through the csv module: quotes, blank lines, and the errors that name a row."""
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter, strict=True) if r]
    except csv.Error as exc:
        raise BadRequest(f"malformed CSV: {exc}") from None
    header, data = rows[0], rows[1:]
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise BadRequest(
                f"malformed CSV: row {i} has {len(row)} cells but the header has {len(header)}", row=i
            )
    return header, list(zip(*data, strict=True)) if data else [() for _ in header]


def _unquote_plain_fields(text: str, delimiter: str) -> str | None:
    """The text with the quotes of plain quoted fields removed (a whole field in quotes holding no quote,
    delimiter or line break: what CSV writers that quote every string produce); None when any other
    quote is present, for the csv module to read.

    Every quote is in a quoted run without delimiter or line break (the pattern's matches cover all
    quotes), each run's first quote follows a field boundary and each run's last quote precedes one (a
    run's inner quotes cannot: they are next to the run's content or to each other), so every run is a
    whole field, and its content is what the csv module reads."""
    quotes = text.count('"')
    runs = len(_quoted_run(delimiter).findall(text))
    if 2 * runs != quotes:
        return None
    opens = text.count(delimiter + '"') + text.count('\n"') + text.startswith('"')
    closes = text.count('"' + delimiter) + text.count('"\n') + text.count('"\r') + text.endswith('"')
    return text.replace('"', "") if opens == closes == runs else None


@functools.lru_cache(maxsize=8)
def _quoted_run(delimiter: str) -> re.Pattern[str]:
    d = re.escape(delimiter)
    return re.compile(rf'"[^"{d}\r\n]*"')


def _split_unquoted(text: str, delimiter: str) -> tuple[list[str], list[Any]] | None:
    """Header and columns of a CSV without quotes by string splitting, the same cells as the csv module
    gives; None where the csv module must read it (blank or ragged lines, a lone carriage return, NUL,
    a field longer than its limit), so that its rules and its error messages apply unchanged."""
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        if "\r" in text:
            return None
    if "\x00" in text:
        return None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if not lines or "" in lines or max(map(len, lines)) > csv.field_size_limit():
        return None
    width = lines[0].count(delimiter)
    if set(map(str.count, lines, itertools.repeat(delimiter, len(lines)))) != {width}:
        return None
    header = lines[0].split(delimiter)
    if len(lines) == 1:
        return header, [() for _ in header]
    cells = delimiter.join(lines[1:]).split(delimiter)
    return header, [cells[j :: width + 1] for j in range(width + 1)]


def _parse_arrow(body: bytes, schema: Schema) -> Batch:
    if pa is None:  # pragma: no cover
        raise BadRequest("Arrow bodies need pyarrow, which this runtime does not have", status=415)
    try:
        table = pa_ipc.open_stream(body).read_all()
    except pa.ArrowInvalid:
        try:
            table = pa_ipc.open_file(pa.BufferReader(body)).read_all()
        except pa.ArrowInvalid as exc:
            raise BadRequest(f"malformed Arrow IPC body: {exc}") from None
    return batch_from_table(table, schema, "Arrow")


def _parse_reference_npz(body: bytes, schema: Schema) -> Batch:
    """A reference archive (monitor_runtime/reference_npz.py), read without pickle."""
    try:
        cols = reference_npz.decode_reference(body)  # the row limit of the route is checked below (413)
    except ValueError as exc:
        raise BadRequest(f"malformed reference archive: {exc}", expected=reference_npz.MEDIA_TYPE) from None
    return _finish_columns(cols, schema, "npz")


def table_to_columns(table: Any) -> dict[str, np.ndarray]:
    """An Arrow table to numpy columns: numbers to float64 (null -> NaN), everything else to object."""
    out: dict[str, np.ndarray] = {}
    # `column_names` builds a new list at every call (60 us for 60 columns): once, not per column.
    for name, col in zip(table.column_names, table.columns, strict=True):
        typ = col.type
        # Direct conversions where Arrow has them: a compute `cast` per column costs more than the data.
        if pa.types.is_floating(typ):
            out[name] = col.to_numpy().astype(np.float64, copy=False)
        elif (pa.types.is_integer(typ) or pa.types.is_boolean(typ)) and col.null_count == 0:
            out[name] = col.to_numpy().astype(np.float64)
        elif pa.types.is_integer(typ) or pa.types.is_boolean(typ):
            out[name] = col.cast(pa.float64()).to_numpy()
        elif pa.types.is_null(typ) or col.null_count == len(col):
            # Nothing but nulls: a missing number, as the JSON path reads a column of nulls.
            out[name] = np.full(len(col), np.nan)
        elif pa.types.is_string(typ) or pa.types.is_large_string(typ):
            out[name] = col.to_numpy().astype(object, copy=False)
        elif _is_string_dictionary(typ):
            out[name] = _dictionary_to_objects(col)
        else:
            out[name] = col.cast(pa.string()).to_numpy().astype(object, copy=False)
    return out


def _is_string_dictionary(typ: Any) -> bool:
    return pa.types.is_dictionary(typ) and (
        pa.types.is_string(typ.value_type) or pa.types.is_large_string(typ.value_type)
    )


def _dictionary_to_objects(col: Any) -> np.ndarray:
    """A dictionary-encoded string column to an object array (null -> None) with one Python str per
    distinct value, shared by its rows: a str per cell, created and later freed, costs several times more.
    """
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    labels = arr.dictionary.to_numpy(zero_copy_only=False)
    indices = arr.indices
    if arr.null_count:
        # Nulls point one past the labels, at None.
        labels = np.append(labels.astype(object, copy=False), None)
        indices = indices.fill_null(len(labels) - 1)
    return labels.astype(object, copy=False)[indices.to_numpy(zero_copy_only=False)]


def batch_from_table(table: Any, schema: Schema, what: str) -> Batch:
    """An Arrow table (from a body or a file) to a checked `Batch`; `what` names the format in errors."""
    if table.num_columns == 0:
        raise BadRequest(f"empty batch: the {what} body has no columns")
    names = table.column_names
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise BadRequest(f"{what} header names column {dup!r} twice", column=dup)
    return _finish_columns(table_to_columns(table), schema, what, typed=True)


def _finish_columns(cols: dict[str, np.ndarray], schema: Schema, what: str, *, typed: bool = False) -> Batch:
    """Check numpy columns against the schema; `typed` says they are already in their final form (float64,
    or object holding only strings and None, at least one string), as `table_to_columns` makes them."""
    for name, arr in cols.items():
        if arr.dtype == object and schema.kinds.get(name) == NUMERIC:
            _raise_non_numeric(name, arr, what)
    return _side_columns(cols, _build_batch(cols, schema, typed=typed))


def _raise_non_numeric(name: str, arr: np.ndarray, what: str) -> None:
    """Error path: name the first cell of a numeric column that is not a number."""
    for i, v in enumerate(arr):
        if v is None:
            continue
        try:
            float(v)
        except ValueError:
            raise BadRequest(
                f"column {name!r} row {i}: {v!r} is not a number; this column holds numbers (leave the cell "
                "empty for a missing value)",
                column=name,
                row=i,
                expected="number",
            ) from None
    raise BadRequest(f"column {name!r}: {what} values are not numbers", column=name, expected="number")
