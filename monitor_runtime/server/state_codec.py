"""A state tree as data: one JSON document plus numpy buffers in an npz archive, never pickle.

The checkpoint crosses versions (a pod's `emptyDir` outlives a container, `poetmon dev`'s directory
outlives a version), so it holds only data and is read with `allow_pickle=False`. The encoder is strict:
anything that is not data raises `NotData` naming its path in the state (`runtime.pending[0].columns.x`).

| value in the state | stored as |
|---|---|
| dict with str keys, list, tuple (read back as a list), str, int, bool, None, finite float | itself |
| NaN, inf, -inf | `{"$float": "nan"}`, `"inf"`, `"-inf"` |
| a list of 16 or more floats and nothing else | `{"$floats": [buffer, offset, length]}` (a list again) |
| numpy scalar of a bool, int or float dtype | its Python value |
| numpy array of numbers, datetimes, durations, str or bytes | `{"$array": [buffer, offset, shape]}` |
| numpy object array of str, numbers, bool and None (a text column) | `{"$objects": [shape, [values...]]}` |
| bytes, bytearray | `{"$bytes": [buffer, offset, length]}` |

Arrays are stored flat (C order) and concatenated per dtype into one buffer each (archive members `b0`,
`b1`, ...), so an archive has a handful of members whatever the number of arrays. The document (member
`state`: UTF-8 JSON as uint8) names the format, lists the buffers' dtypes and holds the tree. A JSON object
whose keys begin with a single `$` is a tag; a key of the state that begins with `$` is stored with one
more `$` in front, so no state can pass for a tag.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

DOCUMENT_MEMBER = "state"
FORMAT = "poet.checkpoint"
FORMAT_VERSION = 2
# Array dtype kinds stored as they are: numbers, datetimes, durations, fixed-width str and bytes. Never
# object ("O", which needs pickle) or void ("V": records, whose dtype string does not keep their fields).
_ARRAY_KINDS = frozenset("biufcmMUS")
_PLAIN = frozenset({str, int, float, bool, type(None)})
# Lists of at least this many floats are stored in the float64 buffer rather than as JSON numbers.
_FLOAT_RUN = 16
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}
_WHAT_IS_DATA = (
    "a checkpoint holds dicts with str keys, lists, str, numbers, bool, None, bytes and numpy arrays of "
    "numbers, or of str, numbers, bool and None"
)
_ARCHIVE_ERRORS = (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error)


class NotData(ValueError):
    """A value in a state that a checkpoint cannot hold as data; the message names its path."""


class UnreadableState(ValueError):
    """Bytes that are not a state this codec wrote (damaged, another format, an unknown tag)."""


def encode_state(state: Mapping[str, Any]) -> bytes:
    """The npz archive of `state` (a dict with str keys); NotData naming the first value that is not data."""
    if not isinstance(state, Mapping):
        raise NotData(f"checkpoint state: expected a dict, got {type(state).__name__}")
    encoder = _Encoder()
    tree = encoder.value(state, "")
    document = {"format": FORMAT, "version": FORMAT_VERSION, "buffers": encoder.dtypes(), "state": tree}
    text = json.dumps(document, allow_nan=False, separators=(",", ":"))
    members = {DOCUMENT_MEMBER: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    members.update({f"b{i}": buf for i, buf in enumerate(encoder.buffers())})
    out = io.BytesIO()
    np.savez(out, allow_pickle=False, **members)
    return out.getvalue()


def decode_state(payload: bytes) -> dict[str, Any]:
    """The state `encode_state` wrote; UnreadableState saying what is wrong. Nothing in it can run code."""
    try:
        archive = np.load(io.BytesIO(payload), allow_pickle=False)
    except _ARCHIVE_ERRORS as exc:
        raise UnreadableState(f"not an npz archive: {exc}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UnreadableState("a single .npy array, not an npz archive")
    with archive:
        try:
            members = {name: archive[name] for name in archive.files}
        except _ARCHIVE_ERRORS as exc:
            raise UnreadableState(f"a member cannot be read: {exc}") from None
    raw = members.pop(DOCUMENT_MEMBER, None)
    if raw is None or raw.dtype != np.uint8 or raw.ndim != 1:
        raise UnreadableState(f"no {DOCUMENT_MEMBER!r} member of UTF-8 JSON")
    buffers = [members.get(f"b{i}") for i in range(len(members))]
    if any(buf is None or buf.ndim != 1 for buf in buffers):
        raise UnreadableState(f"members {sorted(members)} are not the flat buffers b0, b1, ...")
    try:
        # Tags are resolved during the parse, inner objects first.
        document = json.loads(raw.tobytes().decode("utf-8"), object_hook=_Decoder(buffers).object)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnreadableState(f"the {DOCUMENT_MEMBER!r} member is not JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UnreadableState(f"not a {FORMAT} document")
    if document.get("version") != FORMAT_VERSION:
        raise UnreadableState(
            f"{FORMAT} version {document.get('version')!r}; this runtime reads {FORMAT_VERSION}"
        )
    if document.get("buffers") != [buf.dtype.str for buf in buffers]:
        raise UnreadableState(f"buffer dtypes {[b.dtype.str for b in buffers]} differ from the document's")
    state = document.get("state")
    if not isinstance(state, dict):
        raise UnreadableState("the state is not an object")
    return state


def _child(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"


def _not_data(path: str, what: str) -> NotData:
    return NotData(f"checkpoint state at {path or '(root)'}: {what}")


class _Encoder:
    """Walks a state tree into JSON values, collecting arrays into one flat buffer per dtype."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {}
        self._sizes: dict[str, int] = {}

    def dtypes(self) -> list[str]:
        return list(self._parts)

    def buffers(self) -> list[np.ndarray]:
        return [np.concatenate(parts) for parts in self._parts.values()]

    def _store(self, flat: np.ndarray) -> tuple[int, int]:
        """(buffer index, offset) of a flat array appended to its dtype's buffer."""
        key = flat.dtype.str
        parts = self._parts.setdefault(key, [])
        offset = self._sizes.get(key, 0)
        parts.append(flat)
        self._sizes[key] = offset + flat.size
        return list(self._parts).index(key), offset

    def value(self, value: Any, path: str) -> Any:
        kind = type(value)
        if kind is str or kind is bool or kind is int or value is None:
            return value
        if kind is float:
            return value if math.isfinite(value) else _float_tag(value)
        if isinstance(value, Mapping):
            return self._mapping(value, path)
        if kind is list or kind is tuple:
            return self._sequence(value, path)
        if isinstance(value, np.ndarray):
            return self._array(value, path)
        if isinstance(value, np.generic) and value.dtype.kind in "biuf":
            return self.value(value.item(), path)
        if isinstance(value, bytes | bytearray):
            buffer, offset = self._store(np.frombuffer(bytes(value), dtype=np.uint8))
            return {"$bytes": [buffer, offset, len(value)]}
        # Subclasses (np.str_, a str enum) as their plain value, whatever their own __str__ says.
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return int.__index__(value)
        if isinstance(value, float):
            return self.value(float.__float__(value), path)
        raise _not_data(path, f"{kind.__name__} is not data ({_WHAT_IS_DATA})")

    def _mapping(self, value: Mapping[Any, Any], path: str) -> dict[str, Any]:
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _not_data(path, f"key {key!r} is {type(key).__name__}; checkpoint keys are str")
            out["$" + key if key.startswith("$") else str.__str__(key)] = self.value(item, _child(path, key))
        return out

    def _sequence(self, value: list[Any] | tuple[Any, ...], path: str) -> list[Any]:
        # Lists of plain values (a window's numbers, say) pass in one check instead of one call per item.
        types = set(map(type, value))
        if types == {float} and len(value) >= _FLOAT_RUN:
            # A run of floats (a strict-JSON window) goes to the float64 buffer: a tenth of the time of their
            # decimal text, and `tolist()` gives back the very same floats, NaN and inf included.
            buffer, offset = self._store(np.array(value, dtype=np.float64))
            return {"$floats": [buffer, offset, len(value)]}
        if types <= _PLAIN and (
            float not in types or all(math.isfinite(v) for v in value if type(v) is float)
        ):
            return list(value)
        return [self.value(item, _child(path, i)) for i, item in enumerate(value)]

    def _array(self, arr: np.ndarray, path: str) -> dict[str, Any]:
        shape = list(arr.shape)
        if arr.dtype == object:
            values = arr.ravel().tolist()
            if not set(map(type, values)) <= _PLAIN:
                values = [self._object_item(v, path, i) for i, v in enumerate(values)]
            return {"$objects": [shape, self._sequence(values, path)]}
        if arr.dtype.kind not in _ARRAY_KINDS or arr.dtype.fields is not None:
            raise _not_data(
                path,
                f"array of dtype {arr.dtype} is not data (arrays of numbers, datetimes, durations, str or "
                "bytes, or object arrays of str, numbers, bool and None are)",
            )
        buffer, offset = self._store(np.ascontiguousarray(arr).ravel())
        return {"$array": [buffer, offset, shape]}

    def _object_item(self, item: Any, path: str, index: int) -> Any:
        """One value of an object array (a text column, labels of mixed types) as a plain scalar."""
        if isinstance(item, np.bool_ | np.integer | np.floating):
            return item.item()
        if isinstance(item, str):
            return str.__str__(item)
        if isinstance(item, bool):
            return bool(item)
        if isinstance(item, int):
            return int.__index__(item)
        if isinstance(item, float):
            return float.__float__(item)
        if item is None:
            return None
        raise _not_data(
            path,
            f"object array holds {type(item).__name__} at flat index {index}; object arrays are stored "
            "only when they hold str, numbers, bool and None",
        )


def _float_tag(value: float) -> dict[str, str]:
    return {"$float": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


class _Decoder:
    """Resolves tags (objects whose keys begin with a single `$`) and unescapes `$$` keys."""

    def __init__(self, buffers: list[np.ndarray]) -> None:
        self.buffers = buffers

    def object(self, obj: dict[str, Any]) -> Any:
        if not any(k.startswith("$") for k in obj):
            return obj
        tags = [k for k in obj if k.startswith("$") and not k.startswith("$$")]
        if not tags:
            return {k[1:] if k.startswith("$") else k: v for k, v in obj.items()}
        if len(obj) != 1:
            raise UnreadableState(f"a tag object has other keys: {sorted(obj)}")
        ((tag, arg),) = obj.items()
        if tag == "$float" and arg in _NON_FINITE:
            return _NON_FINITE[arg]
        if tag == "$objects" and _is_list(arg, 2) and isinstance(arg[1], list):
            shape, values = _shape(arg[0]), arg[1]
            if math.prod(shape) != len(values) or not set(map(type, values)) <= _PLAIN:
                raise UnreadableState(
                    f"$objects of shape {shape} holds {len(values)} values or not only scalars"
                )
            out = np.empty(len(values), dtype=object)
            out[:] = values
            return out.reshape(shape)
        if tag == "$array" and _is_list(arg, 3):
            shape = _shape(arg[2])
            return self._slice(arg[0], arg[1], math.prod(shape)).reshape(shape)
        if tag == "$floats" and _is_list(arg, 3):
            flat = self._slice(arg[0], arg[1], arg[2])
            if flat.dtype != np.float64:
                raise UnreadableState(f"$floats points into a buffer of {flat.dtype}")
            return flat.tolist()
        if tag == "$bytes" and _is_list(arg, 3):
            flat = self._slice(arg[0], arg[1], arg[2])
            if flat.dtype != np.uint8:
                raise UnreadableState(f"$bytes points into a buffer of {flat.dtype}")
            return flat.tobytes()
        raise UnreadableState(f"unknown or malformed tag {tag!r}")

    def _slice(self, index: Any, offset: Any, count: Any) -> np.ndarray:
        if not all(type(v) is int and v >= 0 for v in (index, offset, count)) or index >= len(self.buffers):
            raise UnreadableState(f"array reference [{index!r}, {offset!r}, {count!r}] is out of range")
        buf = self.buffers[index]
        if offset + count > buf.size:
            raise UnreadableState(f"array reference [{index}, {offset}, {count}] is past the end of b{index}")
        # A copy, so one small restored array does not keep the whole buffer alive.
        return buf[offset : offset + count].copy()


def _is_list(value: Any, n: int) -> bool:
    return isinstance(value, list) and len(value) == n


def _shape(value: Any) -> list[int]:
    if not isinstance(value, list) or not all(type(v) is int and v >= 0 for v in value):
        raise UnreadableState(f"{value!r} is not an array shape")
    return value
