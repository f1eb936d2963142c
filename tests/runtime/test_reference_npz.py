"""The reference codec: round trips, the fingerprint, and strict refusal of anything else."""

from __future__ import annotations

import io
import json
import pickle
from typing import Any

import numpy as np
import pytest

from monitor_runtime.reference_npz import (
    FORMAT_VERSION,
    canonical_columns,
    decode_reference,
    encode_reference,
    reference_fingerprint,
)

UNICODE = [
    "é",
    "日本語",
    "🙂",
    "a\u0301",
    "",
    "trailing nul\x00",
    "lone \ud800 surrogate",
    " spaced ",
    "x" * 5000,
]


def _assert_same_columns(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert list(got) == list(want)
    for name, arr in want.items():
        assert got[name].dtype == arr.dtype, name
        if arr.dtype == np.float64:
            np.testing.assert_array_equal(got[name], arr)  # NaN equals NaN here
        else:
            assert got[name].tolist() == arr.tolist(), name
            assert all(v is None or type(v) is str for v in got[name])


def test_round_trip_keeps_nan_none_unicode_empty_strings_and_order() -> None:
    n = len(UNICODE) + 1
    columns = {
        "z_first": np.array([1.5, np.nan, -0.0, np.inf, -np.inf, 1e308, 5e-324, 0.1, 2.0, 3.0]),
        "text": np.array([*UNICODE, None], dtype=object),
        "ints": np.arange(n, dtype=np.int64),
        "flags": np.array([True, False] * (n // 2)),
        "all_missing_text": np.array([None] * n, dtype=object),
        "名前 with / and .npy": np.array(["a"] * n, dtype=object),
    }
    encoded = encode_reference(columns)
    decoded = decode_reference(encoded.npz)
    want = canonical_columns(columns)
    _assert_same_columns(decoded, want)
    assert decoded["ints"].dtype == np.float64 and decoded["flags"].tolist()[:2] == [1.0, 0.0]
    assert decoded["text"][4] == "" and decoded["text"][-1] is None  # empty string is not missing
    assert decoded["text"][5] == "trailing nul\x00"
    assert encoded.rows == n and encoded.columns == tuple(columns)
    assert reference_fingerprint(decoded) == encoded.sha256 == reference_fingerprint(columns)
    # encoding what was decoded gives the same archive content again
    assert encode_reference(decoded).sha256 == encoded.sha256


def test_one_row_many_columns_and_zero_rows() -> None:
    rng = np.random.default_rng(3)
    wide = {f"f{i}": rng.normal(size=1) for i in range(120)}
    wide.update({f"s{i}": np.array([str(i)], dtype=object) for i in range(120)})
    decoded = decode_reference(encode_reference(wide).npz)
    _assert_same_columns(decoded, canonical_columns(wide))
    empty = {"a": np.array([], dtype=np.float64), "b": np.array([], dtype=object)}
    decoded = decode_reference(encode_reference(empty).npz)
    assert decoded["a"].shape == (0,) and decoded["b"].dtype == object and decoded["b"].shape == (0,)


def test_object_columns_are_made_canonical_before_anyone_sees_them() -> None:
    # A categorical column merged from batches of strings and of numeric codes, NaN where a batch lacked it.
    mixed = np.array(["a", 3, 2.5, np.nan, None, np.str_("b")], dtype=object)
    canon = canonical_columns({"c": mixed})["c"]
    assert canon.tolist() == ["a", "3", "2.5", None, None, "b"]
    assert type(canon[5]) is str
    assert decode_reference(encode_reference({"c": mixed}).npz)["c"].tolist() == canon.tolist()


def test_fingerprint_depends_on_content_and_order_only() -> None:
    base = {"a": np.array([1.0, np.nan]), "b": np.array(["x", None], dtype=object)}
    fp = reference_fingerprint(base)
    other_nan = np.array([1.0, np.nan])
    other_nan.view(np.uint64)[1] = 0x7FF8DEADBEEF0001  # another NaN payload is still "missing"
    assert reference_fingerprint({"a": other_nan, "b": base["b"]}) == fp
    assert reference_fingerprint({"b": base["b"], "a": base["a"]}) != fp  # column order counts
    assert reference_fingerprint({"a": base["a"], "b": np.array(["x", ""], dtype=object)}) != fp
    assert reference_fingerprint({"a": base["a"], "bb": base["b"]}) != fp
    assert reference_fingerprint({"a": np.array([1.0, 2.0]), "b": base["b"]}) != fp
    # numbers and the same digits as text are different references
    assert reference_fingerprint({"a": np.array(["1"], dtype=object)}) != reference_fingerprint(
        {"a": np.array([1.0])}
    )


def test_mismatched_lengths_are_refused_when_encoding() -> None:
    with pytest.raises(ValueError, match="column 'b' has 1 values but column 'a' has 2"):
        encode_reference({"a": np.array([1.0, 2.0]), "b": np.array([1.0])})


# ---------------------------------------------------------------- refusals


def _members(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _header(members: dict[str, np.ndarray]) -> dict[str, Any]:
    return json.loads(members["header"].tobytes())


def _with_header(members: dict[str, np.ndarray], header: dict[str, Any]) -> dict[str, np.ndarray]:
    return {**members, "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}


def _archive(members: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **members)  # numpy pickles object arrays when saving
    return buffer.getvalue()


@pytest.fixture
def good() -> dict[str, np.ndarray]:
    columns = {"age": np.array([31.0, np.nan, 45.5]), "segment": np.array(["a", None, "b"], dtype=object)}
    return _members(encode_reference(columns).npz)


def _refused(data: bytes, *fragments: str, **limits: Any) -> str:
    with pytest.raises(ValueError) as info:
        decode_reference(data, **limits)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_pickled_objects_are_refused_naming_the_member(good: dict[str, np.ndarray]) -> None:
    evil = {**good, "c0_values": np.array([{"boom": 1}, None, 3], dtype=object)}
    _refused(_archive(evil), "member 'c0_values' holds Python objects (pickle)")
    _refused(pickle.dumps({"age": [1.0]}), "not a readable npz archive")
    # an object member that the header does not even mention is refused as well
    _refused(_archive({**good, "c9_values": np.array([object()], dtype=object)}), "member 'c9_values'")


def test_headers_of_another_format_or_version_are_refused(good: dict[str, np.ndarray]) -> None:
    header = _header(good)
    _refused(
        _archive(_with_header(good, {**header, "version": FORMAT_VERSION + 1})),
        "member 'header'",
        "unsupported format version 2",
    )
    _refused(_archive(_with_header(good, {**header, "format": "other"})), "format 'other'")
    _refused(_archive(_with_header(good, {**header, "extra": 1})), "unknown field 'extra'")
    _refused(_archive(_with_header(good, {**header, "rows": -1})), "'rows' must be a non-negative integer")
    dup = {**header, "columns": [header["columns"][0], header["columns"][0]]}
    _refused(_archive(_with_header(good, dup)), "column 'age' appears twice")
    bad_kind = {**header, "columns": [{"name": "age", "kind": "complex"}, header["columns"][1]]}
    _refused(_archive(_with_header(good, bad_kind)), "kind in ['numeric', 'text']")
    not_json = {**good, "header": np.frombuffer(b"{not json", dtype=np.uint8)}
    _refused(_archive(not_json), "member 'header' is not JSON text")
    _refused(_archive({k: v for k, v in good.items() if k != "header"}), "no member 'header'")


def test_members_must_be_what_the_header_says(good: dict[str, np.ndarray]) -> None:
    _refused(_archive({k: v for k, v in good.items() if k != "c1_offsets"}), "member 'c1_offsets' is missing")
    _refused(_archive({**good, "c2_values": np.zeros(3)}), "member 'c2_values' is not part of")
    _refused(
        _archive({**good, "c0_values": good["c0_values"].astype(np.float32)}), "member 'c0_values' is <f4"
    )
    _refused(_archive({**good, "c0_values": np.zeros(4)}), "member 'c0_values'", "expected <f8 of shape (3,)")
    _refused(_archive({**good, "c0_values": np.zeros((3, 1))}), "member 'c0_values'")
    _refused(_archive({**good, "c1_offsets": np.array([0, 2, 1, 2])}), "member 'c1_offsets'")
    _refused(_archive({**good, "c1_missing": np.array([False, False, False])}), "sha256")
    _refused(
        _archive({**good, "c1_missing": np.array([True, False, False])}), "row 0 is missing but has text"
    )
    _refused(
        _archive({**good, "c1_utf8": np.frombuffer(b"\xff\xfe", dtype=np.uint8)}), "row 0 is not valid UTF-8"
    )
    altered = {**good, "c0_values": np.array([31.0, np.nan, 45.6])}
    _refused(_archive(altered), "sha256", "does not match the content")


def test_absurd_sizes_and_broken_archives_are_refused(good: dict[str, np.ndarray]) -> None:
    data = _archive(good)
    _refused(data, "the limit is 100", max_bytes=100)
    _refused(data, "3 rows; the limit is 2", max_rows=2)
    _refused(data[: len(data) // 2], "not a readable npz archive")
    _refused(b"", "not a readable npz archive")
    single = io.BytesIO()
    np.save(single, np.zeros(3))
    _refused(single.getvalue(), "single .npy array")
    # a header claiming far more rows than the members hold
    huge = _header(good) | {"rows": 10**9}
    _refused(_archive(_with_header(good, huge)), "10000000")
