"""Data files (CSV, JSON lines, Parquet) to numpy column batches, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monitor_runtime.server.parsing import BadRequest, Schema, parse_body, table_to_columns

SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


class DataFileError(ValueError):
    """A data file that cannot be read; the message names the file and what to do."""


def read_columns(path: str | Path) -> dict[str, np.ndarray]:
    """The file's columns: numbers as float64 (missing -> NaN), the rest as object (missing -> None)."""
    file = Path(path)
    kind = SUFFIXES.get(file.suffix.lower())
    if kind is None:
        raise DataFileError(
            f"{file}: unknown file type {file.suffix!r}; use .csv, .jsonl (JSON lines) or .parquet"
        )
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DataFileError(f"{file}: cannot read it ({exc.strerror or exc})") from None
    if kind == "parquet":
        return _read_parquet(file, data)
    ctype = {"csv": "text/csv", "tsv": "text/tab-separated-values"}.get(kind, "application/x-ndjson")
    try:
        batch = parse_body(data, ctype, Schema(max_rows=10**9))
    except BadRequest as exc:
        raise DataFileError(f"{file}: {exc.message}") from None
    columns = dict(batch.columns)
    for name, values in (("_prediction", batch.predictions), ("_actual", batch.actuals)):
        if values is not None:
            columns[name] = values
    return columns


def _read_parquet(file: Path, data: bytes) -> dict[str, np.ndarray]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataFileError(
            f"{file}: reading Parquet needs pyarrow; install the extra: pip install 'poet-monitor[parquet]'"
        ) from None
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFileError(f"{file}: not a readable Parquet file ({exc})") from None
    if table.num_rows == 0:
        raise DataFileError(f"{file}: the file has no rows")
    return table_to_columns(table)
