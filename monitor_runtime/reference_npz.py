"""A monitor's reference as data: columns <-> npz bytes (no pickle), and its canonical fingerprint.

The reference crosses pods (stable -> canary, a ConfigMap, a restarted pod), so it travels as an npz
archive read with `allow_pickle=False`: nothing in it can run code. Object arrays would need pickle, so a
text column is stored as its UTF-8 bytes, the row offsets into them and a missing-value mask. Numpy's
fixed-width unicode arrays are not used: they drop trailing NUL characters and pad every value to the
longest one (one long string in a million short ones would cost gigabytes).

Archive members (`c<i>` is the i-th column of the header, so any column name is safe):

| member | dtype, shape | what |
|---|---|---|
| `header` | uint8 (JSON text) | `format` ("poet.reference"), `version` (1), `rows`, `columns`, `sha256` |
| `c<i>_values` | float64 (rows,) | a `numeric` column, NaN for missing |
| `c<i>_utf8` | uint8 (any) | a `text` column's values, UTF-8, one after the other |
| `c<i>_offsets` | int64 (rows + 1,) | where each value starts in `_utf8`; the last entry is its length |
| `c<i>_missing` | bool (rows,) | True where the value is missing (None); its slice is empty |

`columns` lists `{"name", "kind"}` in order, `kind` being `numeric` or `text`. The fingerprint (`sha256`)
is computed from the canonical columns (names, order, kinds and values, all NaNs alike), not from the
archive's bytes, so two pods holding the same reference report the same fingerprint whichever way it
reached them.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

MEDIA_TYPE = "application/vnd.poet.reference+npz"
FORMAT = "poet.reference"
FORMAT_VERSION = 1
NUMERIC = "numeric"
TEXT = "text"
KINDS = (NUMERIC, TEXT)
HEADER_MEMBER = "header"
# Uncompressed size of all members together; the runtime passes its POET_MAX_REFERENCE_BYTES.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000_000
_MAX_HEADER_BYTES = 4 * 1024 * 1024
_HASH_DOMAIN = b"poet.reference/1\0"
_NPY_HEADER_READERS = {
    (1, 0): np.lib.format.read_array_header_1_0,
    (2, 0): np.lib.format.read_array_header_2_0,
}


@dataclass(frozen=True)
class EncodedReference:
    """A reference ready to serve: the npz bytes and what describes them."""

    npz: bytes
    sha256: str
    rows: int
    columns: tuple[str, ...]


# ---------------------------------------------------------------- canonical columns


def canonical_columns(columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The columns as every pod sees them: numbers as float64 (NaN missing), the rest as str or None.

    Booleans and integers become float64, as in every request format. In an object column a NaN is a
    missing value (a batch without the column, merged with one that has it) and a non-string value becomes
    its `str()`, since only text survives the trip.
    """
    out: dict[str, np.ndarray] = {}
    n: int | None = None
    first = ""
    for name, values in columns.items():
        if not isinstance(name, str):
            raise ValueError(f"column name {name!r} is not a string")
        arr = np.asarray(values)
        if arr.ndim != 1:
            raise ValueError(f"column {name!r} has shape {arr.shape}; a reference column is one-dimensional")
        if n is None:
            n, first = len(arr), name
        elif len(arr) != n:
            raise ValueError(f"column {name!r} has {len(arr)} values but column {first!r} has {n}")
        if arr.dtype.kind in "biuf":
            out[name] = arr.astype(np.float64, copy=False)
        else:
            out[name] = _text_column(arr)
    return out


def _text_value(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return v if type(v) is str else str(v)


def _text_column(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == object and all(type(v) is str or v is None for v in arr):
        return arr
    out = np.empty(len(arr), dtype=object)
    out[:] = [_text_value(v) for v in arr.tolist()]
    return out


def column_kind(arr: np.ndarray) -> str:
    """`numeric` for a float64 column, `text` for an object column (of canonical columns)."""
    return NUMERIC if arr.dtype == np.float64 else TEXT


# ---------------------------------------------------------------- arrays of the archive and the fingerprint


def _text_arrays(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(utf8 bytes, offsets, missing mask) of a canonical text column."""
    values = arr.tolist()
    missing = np.fromiter((v is None for v in values), dtype=bool, count=len(values))
    # surrogatepass: a lone surrogate (valid in a Python str, e.g. from JSON "\ud800") survives the trip
    encoded = [b"" if v is None else v.encode("utf-8", "surrogatepass") for v in values]
    offsets = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded)), out=offsets[1:])
    return np.frombuffer(b"".join(encoded), dtype=np.uint8), offsets, missing


def _column_arrays(index: int, arr: np.ndarray) -> dict[str, np.ndarray]:
    if column_kind(arr) == NUMERIC:
        return {f"c{index}_values": arr}
    utf8, offsets, missing = _text_arrays(arr)
    return {f"c{index}_utf8": utf8, f"c{index}_offsets": offsets, f"c{index}_missing": missing}


def _digest(rows: int, names: list[str], members: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256(_HASH_DOMAIN)
    h.update(rows.to_bytes(8, "little"))
    for i, name in enumerate(names):
        raw = name.encode("utf-8", "surrogatepass")
        h.update(len(raw).to_bytes(8, "little") + raw)
        if f"c{i}_values" in members:
            values = members[f"c{i}_values"].astype("<f8")  # a copy: NaNs are made alike below
            values[np.isnan(values)] = np.nan  # every NaN payload hashes as the one quiet NaN
            h.update(b"N" + values.tobytes())
        else:
            h.update(b"T" + members[f"c{i}_missing"].astype(np.uint8).tobytes())
            h.update(members[f"c{i}_offsets"].astype("<i8").tobytes())
            h.update(members[f"c{i}_utf8"].tobytes())
    return h.hexdigest()


def reference_fingerprint(columns: Mapping[str, Any]) -> str:
    """sha256 of the reference's canonical content: column names, their order, kinds and values."""
    canon = canonical_columns(columns)
    members: dict[str, np.ndarray] = {}
    for i, arr in enumerate(canon.values()):
        members.update(_column_arrays(i, arr))
    return _digest(_rows(canon), list(canon), members)


def _rows(canon: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(canon.values()))) if canon else 0


# ---------------------------------------------------------------- encode


def encode_reference(columns: Mapping[str, Any]) -> EncodedReference:
    """The npz archive of a reference (columns in their order), with its fingerprint."""
    canon = canonical_columns(columns)
    rows = _rows(canon)
    members: dict[str, np.ndarray] = {}
    header_columns = []
    for i, (name, arr) in enumerate(canon.items()):
        members.update(_column_arrays(i, arr))
        header_columns.append({"name": name, "kind": column_kind(arr)})
    sha256 = _digest(rows, list(canon), members)
    header = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "rows": rows,
        "columns": header_columns,
        "sha256": sha256,
    }
    header_bytes = json.dumps(header, ensure_ascii=True, separators=(",", ":")).encode()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{HEADER_MEMBER: np.frombuffer(header_bytes, dtype=np.uint8)}, **members)
    return EncodedReference(npz=buffer.getvalue(), sha256=sha256, rows=rows, columns=tuple(canon))


# ---------------------------------------------------------------- decode


def decode_reference(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int = DEFAULT_MAX_ROWS
) -> dict[str, np.ndarray]:
    """Columns of a reference archive, checked strictly; ValueError naming the member on any problem.

    Refused: anything but an npz archive, a member holding pickled objects, a header of another format or
    version, members missing, extra or not of the dtype and shape the header implies, text that is not
    UTF-8, more than `max_rows` rows or `max_bytes` of uncompressed members, content whose fingerprint
    differs from the header's `sha256`.
    """
    return _decode(data, max_bytes=max_bytes, max_rows=max_rows)[0]


def archive_fingerprint(
    data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, max_rows: int = DEFAULT_MAX_ROWS
) -> str:
    """The content fingerprint (`sha256`) of a reference archive, after every check `decode_reference` makes.

    This is the fingerprint the runtime reports (`X-Poet-Reference-Sha256`), not a digest of the bytes: the
    same reference archived twice may differ in its zip bytes and still names the same content.
    """
    return _decode(data, max_bytes=max_bytes, max_rows=max_rows)[1]


def _decode(data: bytes, *, max_bytes: int, max_rows: int) -> tuple[dict[str, np.ndarray], str]:
    try:
        loaded = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"reference is not a readable npz archive: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError("reference is a single .npy array, not an npz archive: send the archive")
    with loaded as npz:
        return _decode_members(npz, max_bytes=max_bytes, max_rows=max_rows)


def _decode_members(npz: Any, *, max_bytes: int, max_rows: int) -> tuple[dict[str, np.ndarray], str]:
    infos = {info.filename: info for info in npz.zip.infolist()}
    total = sum(info.file_size for info in infos.values())
    if total > max_bytes:
        raise ValueError(
            f"reference archive unpacks to {total} bytes; the limit is {max_bytes} (POET_MAX_REFERENCE_BYTES)"
        )
    members = set(npz.files)
    if HEADER_MEMBER not in members:
        raise ValueError(f"reference archive has no member {HEADER_MEMBER!r}: not a poet reference")
    raw_header = _member(npz, infos, HEADER_MEMBER, np.dtype(np.uint8), None, _MAX_HEADER_BYTES)
    header = _parse_header(raw_header, max_rows)
    rows: int = header["rows"]
    expected = {HEADER_MEMBER}
    arrays: dict[str, np.ndarray] = {}
    for i, col in enumerate(header["columns"]):
        parts = ("values",) if col["kind"] == NUMERIC else ("utf8", "offsets", "missing")
        names = [f"c{i}_{part}" for part in parts]
        for member in names:
            if member not in members:
                raise ValueError(
                    f"member {member!r} is missing: the header declares column {i} ({col['name']!r}) "
                    f"as {col['kind']}"
                )
        expected.update(names)
    extra = sorted(members - expected)
    if extra:
        raise ValueError(f"member {extra[0]!r} is not part of a version-{FORMAT_VERSION} reference")
    out: dict[str, np.ndarray] = {}
    for i, col in enumerate(header["columns"]):
        if col["kind"] == NUMERIC:
            values = _member(npz, infos, f"c{i}_values", np.dtype("<f8"), rows, max_bytes)
            arrays[f"c{i}_values"] = values
            out[col["name"]] = values.astype(np.float64, copy=False)
        else:
            utf8 = _member(npz, infos, f"c{i}_utf8", np.dtype(np.uint8), None, max_bytes)
            offsets = _member(npz, infos, f"c{i}_offsets", np.dtype("<i8"), rows + 1, max_bytes)
            missing = _member(npz, infos, f"c{i}_missing", np.dtype(bool), rows, max_bytes)
            out[col["name"]] = _decode_text(i, utf8, offsets, missing)
            arrays.update({f"c{i}_utf8": utf8, f"c{i}_offsets": offsets, f"c{i}_missing": missing})
    sha256 = _digest(rows, [c["name"] for c in header["columns"]], arrays)
    if sha256 != header["sha256"]:
        raise ValueError(
            f"member {HEADER_MEMBER!r}: sha256 {header['sha256']} does not match the content ({sha256}); "
            "the archive was altered or damaged"
        )
    return out, sha256


def _member(
    npz: Any, infos: Mapping[str, zipfile.ZipInfo], name: str, dtype: np.dtype, length: int | None, limit: int
) -> np.ndarray:
    """One member after checking its .npy header: dtype, 1-D shape, size; the data is read only then."""
    info = infos.get(f"{name}.npy")
    if info is None:
        raise ValueError(f"member {name!r} is not a .npy array")
    if info.file_size > limit:
        raise ValueError(f"member {name!r} is {info.file_size} bytes; the limit is {limit}")
    try:
        with npz.zip.open(info) as fh:
            version = np.lib.format.read_magic(fh)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"npy format version {version} (this runtime reads 1.0 and 2.0)")
            shape, fortran, found = _NPY_HEADER_READERS[version](fh)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"member {name!r}: not a readable .npy array ({exc})") from None
    if found.hasobject:
        raise ValueError(f"member {name!r} holds Python objects (pickle), which a reference may not contain")
    if found != dtype or fortran or len(shape) != 1 or (length is not None and shape[0] != length):
        want = f"{dtype.str} of shape ({length if length is not None else 'n'},)"
        raise ValueError(f"member {name!r} is {found.str} of shape {shape}; expected {want}")
    if shape[0] * dtype.itemsize > info.file_size:
        raise ValueError(f"member {name!r} declares {shape[0]} values but holds fewer bytes")
    try:
        arr = npz[name]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"member {name!r}: {exc}") from None
    return arr


def _parse_header(raw: np.ndarray, max_rows: int) -> dict[str, Any]:
    where = f"member {HEADER_MEMBER!r}"
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} is not JSON text: {exc}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(header).__name__}")
    if header.get("format") != FORMAT:
        raise ValueError(f"{where}: format {header.get('format')!r} is not {FORMAT!r}")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where}: unsupported format version {version!r}; this runtime reads version {FORMAT_VERSION}"
        )
    rows = header.get("rows")
    if type(rows) is not int or rows < 0:
        raise ValueError(f"{where}: 'rows' must be a non-negative integer, got {rows!r}")
    if rows > max_rows:
        raise ValueError(f"{where}: {rows} rows; the limit is {max_rows}")
    columns = header.get("columns")
    if not isinstance(columns, list):
        raise ValueError(f"{where}: 'columns' must be a list of {{'name', 'kind'}} objects")
    seen: set[str] = set()
    for i, col in enumerate(columns):
        if not isinstance(col, dict) or set(col) != {"name", "kind"}:
            raise ValueError(f"{where}: column {i} must be an object with exactly 'name' and 'kind'")
        if not isinstance(col["name"], str) or col["kind"] not in KINDS:
            raise ValueError(
                f"{where}: column {i} needs a string name and a kind in {list(KINDS)}, got {col!r}"[:500]
            )
        if col["name"] in seen:
            raise ValueError(f"{where}: column {col['name']!r} appears twice")
        seen.add(col["name"])
    sha256 = header.get("sha256")
    if not isinstance(sha256, str) or len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
        raise ValueError(f"{where}: 'sha256' must be 64 lowercase hex digits")
    unknown = sorted(set(header) - {"format", "version", "rows", "columns", "sha256"})
    if unknown:
        raise ValueError(f"{where}: unknown field {unknown[0]!r}")
    return header


def _decode_text(index: int, utf8: np.ndarray, offsets: np.ndarray, missing: np.ndarray) -> np.ndarray:
    name = f"c{index}_offsets"
    if offsets[0] != 0 or offsets[-1] != utf8.size or (np.diff(offsets) < 0).any():
        raise ValueError(
            f"member {name!r}: offsets must start at 0, never decrease and end at the length of "
            f"c{index}_utf8 ({utf8.size})"
        )
    lengths = np.diff(offsets)
    if (lengths[missing] != 0).any():
        row = int(np.flatnonzero(missing & (lengths != 0))[0])
        raise ValueError(f"member c{index}_missing: row {row} is missing but has text")
    raw = utf8.tobytes()
    bounds = offsets.tolist()
    out = np.empty(len(missing), dtype=object)
    try:
        out[:] = [raw[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(bounds)]
    except UnicodeDecodeError:
        row = next(r for r, (a, b) in enumerate(itertools.pairwise(bounds)) if not _is_utf8(raw[a:b]))
        raise ValueError(f"member c{index}_utf8: row {row} is not valid UTF-8") from None
    out[missing] = None
    return out


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return False
    return True


__all__ = [
    "DEFAULT_MAX_BYTES",
    "FORMAT_VERSION",
    "MEDIA_TYPE",
    "EncodedReference",
    "canonical_columns",
    "decode_reference",
    "encode_reference",
    "reference_fingerprint",
]
