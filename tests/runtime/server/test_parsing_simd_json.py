"""The simdjson reading of JSON column bodies gives the document the general reader gives, or steps aside."""

import json
import math

import numpy as np
import pytest

from monitor_runtime.server import parsing
from monitor_runtime.server.parsing import NUMERIC, BadRequest, Schema, parse_body

pytest.importorskip("simdjson")


def _padded(body: bytes) -> bytes:
    """The body with trailing whitespace, past the size below which the general reader is used anyway."""
    return body + b" " * parsing._SIMD_MIN_BYTES


def _plain(doc: dict) -> dict:
    """The document with float64 columns as lists, for comparing with the general reader's document."""
    columns = doc["columns"]
    return {**doc, "columns": {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in columns.items()}}


def _same(a: object, b: object) -> bool:
    """Equal values of equal types, floats bit for bit (-0.0 is not 0.0; NaN equals NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


def _general(body: bytes) -> dict:
    doc = parsing._loads(body, "request body")
    # The general path turns number columns to float64 in `_column_array`; compare on what it makes.
    return {**doc, "columns": {
        k: [float(x) for x in v] if v and all(type(x) in (int, float) for x in v) else v
        for k, v in doc["columns"].items()
    }}


ANSWERED = [
    b'{"columns": {"a": [1, 2.5, -0, -0.0, 1e-400, 5e-324, 1.7976931348623157e308, '
    b'2.2250738585072011e-308]}}',
    b'{"columns": {"a": [9007199254740993, 9223372036854775807, 18446744073709551615, '
    b'-9223372036854775808]}}',
    b'{"columns": {"a": [1.5, null, 3], "b": ["x", null], "c": [true, false], "d": [null, null]}}',
    b'{"columns": {"a": [1, "2"], "b": [{"x": 1}, 2]}}',  # refused later, by the shared checks
    '{"columns": {"caf\u00e9": ["\u00e9t\u00e9", "\\u00e9", "\\ud83d\\ude00", "a\\"b", "x\\\\y"]}}'.encode(),
    b'\n  {\n  "columns" : {\n    "a" : [ 1 ,\n 2 ] } ,\n "timestamp": 5, "predictions": [1, "a"]}  \n',
    b'{"timestamp": "2026-01-01T00:00:00Z", "columns": {"a": [1E5, 1e+5, -1.5e-3, 0.1]}, "actuals": [0, 1]}',
    b'{"columns": {"a": [1, 2]}, "extra": {"b": 1}, "timestamp": {"c": 1}}',  # refused later, same words
    b'{"columns": {"a": []}}',
]

DECLINED = [
    b'{"rows": [{"a": 1}]}',  # the row form
    b'{"columns": {"a": [[1], [2]]}}',  # nested lists would be flattened
    b'{"columns": {"a": [1, [2], 3]}}',
    b'{"columns": {"a": [1, 2], "b": ["[x]", "y"]}}',  # a bracket in a string: cannot tell, declined
    b'{"columns": {"a": [1]}, "predictions": [[1]]}',
    b'{"columns": {"a": [1]}, "extra": {"b": [1]}}',  # an array outside the columns and side fields
    b'{"columns": {"a": [1], "a": [2]}}',  # duplicate keys: the general reader keeps the last
    b'{"columns": {"a": [1]}, "columns": {"b": [2]}}',
    b'{"columns": {"a": [18446744073709551616]}}',  # beyond 64 bits
    b'{"columns": {"a": [1e400]}}',
    b'{"columns": {"a": [NaN]}}',  # the standard library reads NaN tokens
    b'\xef\xbb\xbf{"columns": {"a": [1]}}',  # byte-order mark
    b'{"columns": {"a": ["\\ud800"]}}',  # a lone surrogate: the standard library reads it
    b'{"columns": {"a": ["\xff"]}}',  # not UTF-8
    b'{"columns": {"a": [1, 2,]}}',
    b'{"columns": {"a": [1]}} x',
    b'{"columns": [1, 2]}',
    b'{"columns": {"a": 1}}',
    b'[{"columns": {"a": [1]}}]',
    b'{"columns": {"a": [1]}}\n{"columns": {"a": [2]}}',
]


@pytest.mark.parametrize("body", ANSWERED)
def test_answers_what_the_general_reader_reads(body: bytes) -> None:
    body = _padded(body)
    doc = parsing._columns_doc(body)
    assert doc is not None
    assert _same(_plain(doc), _general(body))


@pytest.mark.parametrize("body", DECLINED)
def test_steps_aside_where_it_could_differ(body: bytes) -> None:
    assert parsing._columns_doc(_padded(body)) is None


def test_small_bodies_go_the_general_way() -> None:
    assert parsing._columns_doc(b'{"columns": {"a": [1, 2]}}') is None


def test_random_numbers_bit_for_bit() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [
            rng.normal(0, 1, 2_000),
            rng.normal(0, 1e300, 500),
            rng.standard_cauchy(500),
            np.exp(rng.uniform(-700, 700, 1_000)),
            rng.integers(-(2**62), 2**62, 500).astype(np.float64) + 0.5,
        ]
    )
    texts = [repr(float(v)) for v in values] + [f"{v:.17g}" for v in values] + [f"{v:.3e}" for v in values]
    texts += [str(int(v)) for v in rng.integers(-(2**63), 2**63 - 1, 1_000, dtype=np.int64)]
    body = ('{"columns": {"a": [' + ", ".join(texts) + "]}}").encode()
    got = parsing._columns_doc(body)["columns"]["a"]
    expected = np.array([float(json.loads(t)) for t in texts])
    assert got.dtype == np.float64 and np.array_equal(got.view(np.int64), expected.view(np.int64))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"columns": {"a": [1, "2"]}}', "got the string '2' in a column of numbers"),
        (b'{"columns": {"a": [1.5, [2]]}}', "row 1: got list"),
        (b'{"columns": {"a": [[1], [2]]}}', "row 0: got a nested list"),
        (b'{"columns": {"a": [1, 2], "b": [1]}}', "column 'b' has 1 values but column 'a' has 2"),
        (b'{"columns": {"a": [1, 2]}, "predictions": [1]}', "'predictions' has 1 values but the batch has 2"),
        (b'{"columns": {"a": [1]}, "timestamp": {"c": 1}}', "'timestamp' must be a string or a number"),
        (b'{"columns": {"a": [1]}, "extra": 1}', "unknown top-level field 'extra'"),
        (b'{"columns": {"a": []}}', "empty batch"),
        (b'{"columns": {"s": ["x", "y"]}}', "column 's': got strings (row 0: 'x')"),
    ],
)
def test_refusals_word_for_word(body: bytes, message: str) -> None:
    body = _padded(body)
    with pytest.raises(BadRequest) as err:
        parse_body(body, "application/json", Schema(kinds={"s": NUMERIC}))
    assert message in err.value.message


def test_batch_from_the_fast_path() -> None:
    body = _padded(b'{"columns": {"a": [1, 2.5], "s": ["x", null]}, "predictions": [0, 1], "timestamp": 7}')
    assert parsing._columns_doc(body) is not None
    batch = parse_body(body, "application/json", Schema())
    assert batch.columns["a"].tolist() == [1.0, 2.5] and batch.columns["a"].flags.writeable
    assert batch.columns["s"].tolist() == ["x", None] and batch.columns["s"].dtype == object
    assert batch.predictions.tolist() == [0.0, 1.0] and batch.timestamp == 7 and batch.n_rows == 2
