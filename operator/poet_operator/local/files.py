"""Data files (CSV, JSON lines, Parquet) to numpy column batches, with errors that name the file."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from monitor_runtime.server.parsing import BadRequest, Batch, Schema, batch_from_table, parse_body

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


def read_columns(path: str | Path, kinds: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """The file's columns: numbers as float64 (missing -> NaN), the rest as object (missing -> None).

    `kinds` (column -> numeric or categorical, from `parsing.spec_kinds`) are checked as `poetmon serve`
    checks a batch: a value that is not a number in a numeric column is refused, naming column, row and value.
    """
    schema = Schema(kinds=dict(kinds or {}), max_rows=10**9)
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
        return _read_parquet(file, data, schema)
    problem = text_file_problem(data, kind)
    if problem is not None:
        raise DataFileError(f"{file}: {problem}")
    ctype = {"csv": "text/csv", "tsv": "text/tab-separated-values"}.get(kind, "application/x-ndjson")
    try:
        batch = parse_body(data, ctype, schema)
    except BadRequest as exc:
        raise DataFileError(f"{file}: {file_wording(exc.message)}") from None
    return _with_side_columns(batch)


def _with_side_columns(batch: Batch) -> dict[str, np.ndarray]:
    columns = dict(batch.columns)
    for name, values in (("_prediction", batch.predictions), ("_actual", batch.actuals)):
        if values is not None:
            columns[name] = values
    return columns


# Leading bytes of files that are often passed by mistake where text was expected.
_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed data; decompress it first (gunzip)"),
    (b"PK\x03\x04", "a zip archive (or an Excel workbook); extract or export the data as CSV"),
    (b"PAR1", "a Parquet file; give it the .parquet suffix"),
    (b"ARROW1", "an Arrow file; convert it to CSV or Parquet"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed data; decompress it first"),
    (b"BZh", "bzip2-compressed data; decompress it first"),
)
_SNIFF_BYTES = 64 * 1024


def text_file_problem(data: bytes, kind: str) -> str | None:
    """Why `data` cannot be a text data file of `kind` (csv, tsv, jsonl), or None when it may be one.

    Decides from the bytes alone: empty, a known binary format, a NUL byte or text that is not UTF-8
    (a CSV parser would otherwise blame a quote or print the bytes back).
    """
    if not data or data.isspace():
        needs = (
            "at least one JSON object per line" if kind == "jsonl" else "a header line and at least one row"
        )
        return f"the file is empty; it needs {needs}"
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return f"not a {kind.upper()} text file: it holds {what}"
    head = data[:_SNIFF_BYTES]
    nul = head.find(b"\x00")
    if nul >= 0:
        return (
            f"not a {kind.upper()} text file: it holds binary data (a NUL byte at byte {nul}); "
            "export the data as UTF-8 text"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"not UTF-8 text (byte {exc.start} is 0x{data[exc.start]:02x}): a binary file or another "
            "encoding; save it as UTF-8"
        )
    return None


# The parser speaks of HTTP request bodies; a file is not one.
_FILE_WORDS = (
    ("empty request body: send a batch with at least one row", "the file has no rows"),
    ("empty batch: columns have no values; send at least one row", "the file has a header but no rows"),
    ("request body", "file"),
    ("CSV body", "the CSV file"),
    ("TSV body", "the TSV file"),
    ("JSON body", "the JSON file"),
    ("body", "file"),
)


def file_wording(message: str) -> str:
    """A parse error message reworded for a file, with control characters escaped (never raw bytes)."""
    for http, file in _FILE_WORDS:
        message = message.replace(http, file)
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in message)


def _read_parquet(file: Path, data: bytes, schema: Schema) -> dict[str, np.ndarray]:
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
    try:
        return _with_side_columns(batch_from_table(table, schema, "Parquet"))
    except BadRequest as exc:
        raise DataFileError(f"{file}: {file_wording(exc.message)}") from None
