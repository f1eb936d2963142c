"""Request parsing: every format to the same columns, every kind of bad input to a precise 4xx."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from monitor_runtime.server.parsing import CATEGORICAL, NUMERIC, BadRequest, Schema, parse_body

SCHEMA = Schema(kinds={"age": NUMERIC, "segment": CATEGORICAL}, max_rows=1000)
EXPECTED_AGE = np.array([31.0, np.nan, 45.5])
EXPECTED_SEGMENT = np.array(["a", None, "b"], dtype=object)


def _check(batch) -> None:
    assert batch.n_rows == 3
    np.testing.assert_array_equal(batch.columns["age"], EXPECTED_AGE)
    assert batch.columns["age"].dtype == np.float64
    assert list(batch.columns["segment"]) == list(EXPECTED_SEGMENT)


def test_json_columns_rows_ndjson_csv_and_arrow_agree() -> None:
    columns = {"columns": {"age": [31, None, 45.5], "segment": ["a", None, "b"]}, "timestamp": "2026-01-01"}
    batch = parse_body(json.dumps(columns).encode(), "application/json", SCHEMA)
    _check(batch)
    assert batch.timestamp == "2026-01-01"

    rows = {
        "rows": [{"age": 31, "segment": "a"}, {"age": None, "segment": None}, {"age": 45.5, "segment": "b"}]
    }
    _check(parse_body(json.dumps(rows).encode(), "application/json; charset=utf-8", SCHEMA))

    ndjson = b'{"age": 31, "segment": "a"}\n{"segment": null}\n\n{"age": 45.5, "segment": "b"}\n'
    _check(parse_body(ndjson, "application/x-ndjson", SCHEMA))

    csv = b"age,segment\n31,a\n,\n45.5,b\n"
    _check(parse_body(csv, "text/csv", SCHEMA))

    table = pa.table({"age": [31.0, None, 45.5], "segment": ["a", None, "b"]})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    _check(parse_body(sink.getvalue(), "application/vnd.apache.arrow.stream", SCHEMA))


def test_predictions_and_actuals_in_json_and_reserved_csv_columns() -> None:
    body = {"columns": {"age": [1, 2]}, "predictions": [1, 0], "actuals": [1, 1]}
    batch = parse_body(json.dumps(body).encode(), "application/json", SCHEMA)
    np.testing.assert_array_equal(batch.predictions, [1.0, 0.0])
    np.testing.assert_array_equal(batch.actuals, [1.0, 1.0])
    batch = parse_body(b"age,_prediction,_actual\n1,1,0\n2,0,0\n", "text/csv", SCHEMA)
    assert set(batch.columns) == {"age"}
    np.testing.assert_array_equal(batch.predictions, [1.0, 0.0])


@pytest.mark.parametrize(
    ("body", "ctype", "status", "fragments"),
    [
        (b'{"columns": {"age": [1, 2}', "application/json", 400, ["malformed JSON", "line 1 column"]),
        (b"[1, 2]", "application/json", 400, ["must be an object"]),
        (
            b'{"columns": {"age": [1]}, "colums": {}}',
            "application/json",
            400,
            ["unknown top-level field 'colums'"],
        ),
        (
            b'{"columns": {"age": [1, "x", 3]}}',
            "application/json",
            400,
            ["column 'age' row 1", "expected a number"],
        ),
        (b'{"columns": {"age": [1, "NaN"]}}', "application/json", 400, ["row 1", "'NaN'", "send null"]),
        (
            b'{"columns": {"segment": ["a", {"b": 1}]}}',
            "application/json",
            400,
            ["column 'segment' row 1", "dict"],
        ),
        (
            b'{"columns": {"age": ["old", "young"]}}',
            "application/json",
            400,
            ["column 'age'", "holds numbers"],
        ),
        (
            b'{"columns": {"age": [1, 2], "segment": ["a"]}}',
            "application/json",
            400,
            ["'segment' has 1 values"],
        ),
        (b'{"columns": {"age": []}}', "application/json", 400, ["empty batch"]),
        (b'{"rows": []}', "application/json", 400, ["empty batch"]),
        (b'{"columns": {}}', "application/json", 400, ["empty batch"]),
        (b'{"columns": {"age": 3}}', "application/json", 400, ["column 'age'", "expected a list"]),
        (b'{"columns": {"age": [[1], [2]]}}', "application/json", 400, ["nested list"]),
        (
            b'{"columns": {"age": [1]}, "predictions": [1, 2]}',
            "application/json",
            400,
            ["'predictions' has 2"],
        ),
        (b"   ", "application/json", 400, ["empty request body"]),
        (b'{"age": 1}\n{"age": 2,\n', "application/x-ndjson", 400, ["NDJSON line 2"]),
        (b'{"age": 1}\n\n\n[1]\n', "application/x-ndjson", 400, ["row 1: expected an object"]),
        (b'{"age": 1}\n\n{"age": }\n', "application/x-ndjson", 400, ["NDJSON line 3"]),
        (b"age,segment\n1,a\nold,b\n", "text/csv", 400, ["column 'age' row 1", "'old' is not a number"]),
        (b"age\n1\n", "application/xml", 415, ["unsupported content type"]),
        (b"age,segment\n1,a\n2\n", "text/csv", 400, ["row 1 has 1 cells but the header has 2"]),
        (b"age,age\n1,2\n", "text/csv", 400, ["names column 'age' twice"]),
        (b"not arrow", "application/vnd.apache.arrow.stream", 400, ["malformed Arrow"]),
    ],
)
def test_bad_requests_name_the_problem(body: bytes, ctype: str, status: int, fragments: list[str]) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(body, ctype, SCHEMA)
    assert info.value.status == status
    for fragment in fragments:
        assert fragment in info.value.message


def test_error_body_carries_column_row_and_expected_type() -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(b'{"columns": {"age": [1, 2, "abc"]}}', "application/json", SCHEMA)
    assert info.value.body() == {
        "error": info.value.message,
        "column": "age",
        "row": 2,
        "expected": "number or null",
    }


def test_unknown_columns_rejected_only_when_the_schema_says_so() -> None:
    body = b'{"columns": {"age": [1], "surprise": [2]}}'
    assert "surprise" in parse_body(body, "application/json", SCHEMA).columns
    strict = Schema(kinds=SCHEMA.kinds, reject_unknown=True)
    with pytest.raises(BadRequest, match="unknown column 'surprise'"):
        parse_body(body, "application/json", strict)


def test_row_limit_is_a_413_with_the_limit() -> None:
    small = Schema(max_rows=5)
    with pytest.raises(BadRequest) as info:
        parse_body(json.dumps({"columns": {"x": list(range(6))}}).encode(), "application/json", small)
    assert info.value.status == 413
    assert "limit is 5" in info.value.message


def test_bare_nan_tokens_and_booleans_are_numbers() -> None:
    batch = parse_body(
        b'{"columns": {"x": [NaN, 1, Infinity], "flag": [true, false, true]}}', "application/json", Schema()
    )
    assert np.isnan(batch.columns["x"][0]) and np.isinf(batch.columns["x"][2])
    np.testing.assert_array_equal(batch.columns["flag"], [1.0, 0.0, 1.0])


def test_numeric_codes_are_accepted_for_categorical_features() -> None:
    batch = parse_body(b'{"columns": {"segment": [1, 2, 2]}}', "application/json", SCHEMA)
    assert batch.columns["segment"].dtype == np.float64


def test_small_and_large_csv_bodies_give_the_same_columns() -> None:
    rng = np.random.default_rng(5)
    n = 10_000  # above the size where the Arrow reader takes over
    ages = rng.normal(40, 10, n).round(3)
    segs = rng.choice(["a", "b", "NA"], n)
    flags = rng.choice(["true", "false", "TRUE", ""], n)
    # A byte-order mark, as spreadsheet exports write it.
    lines = ["\ufeffage,segment,flag"] + [
        f"{'' if i % 7 == 0 else ages[i]},{segs[i]},{flags[i]}" for i in range(n)
    ]
    body = ("\n".join(lines) + "\n").encode()
    large = parse_body(body, "text/csv", Schema(max_rows=10**6))
    small = parse_body(("\n".join(lines[:200]) + "\n").encode(), "text/csv", Schema())
    assert len(body) > 64 * 1024
    assert list(small.columns) == list(large.columns) == ["age", "segment", "flag"]
    np.testing.assert_array_equal(small.columns["age"], large.columns["age"][:199])
    assert list(small.columns["segment"]) == list(large.columns["segment"][:199])
    assert small.columns["segment"][list(segs[:199]).index("NA")] is None
    assert small.columns["flag"].dtype == large.columns["flag"].dtype == np.float64
    np.testing.assert_array_equal(small.columns["flag"], large.columns["flag"][:199])
    np.testing.assert_array_equal(
        small.columns["flag"][:4], [np.nan if f == "" else f in ("true", "TRUE") for f in flags[:4]]
    )
    # A numeric column in the spec accepts booleans from a small body as it does from a large one.
    numeric = Schema(kinds={"flag": NUMERIC})
    assert parse_body(b"flag\ntrue\nfalse\n", "text/csv", numeric).columns["flag"].tolist() == [1.0, 0.0]


@pytest.mark.parametrize(
    ("body", "ctype", "fragment"),
    [
        (b'age,segment\n1,"a\n2,b\n', "text/csv", "quoted field is not terminated"),
        (b'{"age": 1},{"age": 2}\n{"age": 3}\n', "application/x-ndjson", "NDJSON line 1: Extra data"),
        (b'{"age": 1},{"age": 2}', "application/x-ndjson", "NDJSON line 1"),
        (
            b'{"columns": {"country": ["us", 3, null]}}',
            "application/json",
            "column 'country' row 1: got the number 3 in a column of strings",
        ),
        (
            b'{"columns": {"age": [1], "_prediction": [1]}, "predictions": [0]}',
            "application/json",
            "both the column '_prediction' and the field 'predictions'",
        ),
    ],
)
def test_strict_formats_and_precise_messages(body: bytes, ctype: str, fragment: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_body(body, ctype, Schema())
    assert fragment in info.value.message


def test_reserved_columns_are_lifted_out_of_json_columns_and_rows() -> None:
    for doc in (
        {"columns": {"age": [1, 2], "_prediction": [1, 0], "_actual": [1, 1]}},
        {"rows": [{"age": 1, "_prediction": 1, "_actual": 1}, {"age": 2, "_prediction": 0, "_actual": 1}]},
    ):
        batch = parse_body(json.dumps(doc).encode(), "application/json", SCHEMA)
        assert set(batch.columns) == {"age"}
        np.testing.assert_array_equal(batch.predictions, [1.0, 0.0])
        np.testing.assert_array_equal(batch.actuals, [1.0, 1.0])


def test_tab_separated_bodies_keep_commas_in_cells() -> None:
    batch = parse_body(b"\xef\xbb\xbfcity\tage\nParis, France\t3\n", "text/tab-separated-values", Schema())
    assert list(batch.columns["city"]) == ["Paris, France"]
    assert batch.columns["age"].tolist() == [3.0]
