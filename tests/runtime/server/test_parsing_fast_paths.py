"""The parsing speed paths give the same cells and columns as the general readers they stand in for."""

import json

import numpy as np
import pytest

from monitor_runtime.server import parsing
from monitor_runtime.server.parsing import NUMERIC, BadRequest, Schema, parse_body

BODIES = [
    "a,b,c\n1,x,2.5\n2,y,\n3,,nan\n",
    "a,b\r\n1,true\r\n0,false\r\n",
    "only\n1\n2\n",
    'a,b,c\n"1","x",2\n"","y z",3\n',  # plain quoted fields, an empty one
    '"a","b"\n"1.5","alpha"\n"2","beta"',  # all quoted, no final newline
    "a,b\n 1 ,x\n1_000,y\n",  # float()'s rules: spaces and underscores
    "a,b\n1,x\n\n2,y\n",  # a blank line: the csv module's rules
    'a,b\n1,"x,y"\n2,z\n',  # a quoted delimiter
    'a,b\n1,"x""y"\n2,z\n',  # a doubled quote
    'a\n"x\ny"\n',  # a quoted line break
    'a,b\n1,x"y\n2,z\n',  # a quote inside an unquoted field
    "a,b\n1,x\r2,y\n",  # a lone carriage return
    "h1,h2\n",  # header only
]


@pytest.mark.parametrize("text", BODIES)
def test_split_path_equals_the_csv_module(text: str) -> None:
    unquoted = parsing._unquote_plain_fields(text, ",") if '"' in text else text
    split = parsing._split_unquoted(unquoted, ",") if unquoted is not None else None
    try:
        expected = parsing._read_csv_module(text, ",")
    except BadRequest:
        assert split is None  # what the csv module refuses, the fast path leaves to it
        return
    if split is not None:  # where the fast path answers, it answers like the csv module
        assert split[0] == expected[0]
        assert [list(c) for c in split[1]] == [list(c) for c in expected[1]]


@pytest.mark.parametrize(
    ("text", "fast"),
    [("a,b\n1,x\n2,y\n", True), ('"a","b"\n"1","x"\n', True), ('a,b\n1,"x,y"\n', False),
     ('a\n"x\ny"\n', False), ('a,b\n1,x"y\n', False), ("a,b\n1,x\n\n2,y\n", False)],
)
def test_fast_path_taken_only_where_safe(text: str, fast: bool) -> None:
    unquoted = parsing._unquote_plain_fields(text, ",") if '"' in text else text
    taken = unquoted is not None and parsing._split_unquoted(unquoted, ",") is not None
    assert taken is fast


def _columns(body: bytes, ctype: str, schema: Schema | None = None) -> dict[str, list]:
    batch = parse_body(body, ctype, schema or Schema())
    return {k: [None if (isinstance(v, float) and np.isnan(v)) else v for v in col.tolist()]
            for k, col in batch.columns.items()}


def test_csv_large_body_typed_and_inferred_read_alike() -> None:
    rng = np.random.default_rng(0)
    lines = ["x,y,z"] + [f"{rng.normal():.4f},{rng.choice(['a', 'b'])},{i % 2}" for i in range(8_000)]
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > parsing._SMALL_CSV_BYTES
    typed = _columns(body, "text/csv", Schema(kinds={"x": NUMERIC, "z": NUMERIC}))
    assert typed == _columns(body, "text/csv")
    assert typed == _columns(body.replace(b"\n", b"\r\n"), "text/csv")


def test_csv_large_body_bad_number_names_the_cell() -> None:
    lines = ["x,y"] + [f"{i}.5,a" for i in range(5_000)]
    lines[4_001] = "oops,a"
    body = ("\n".join(lines) + "\n").encode()
    with pytest.raises(BadRequest) as err:
        parse_body(body, "text/csv", Schema(kinds={"x": NUMERIC}))
    assert "row 4000" in err.value.message and "'oops'" in err.value.message


def test_ndjson_fast_and_ragged_rows_agree() -> None:
    rows = [{"a": i * 0.5, "b": "x" if i % 2 else "y", "c": i} for i in range(50)]
    body = "\n".join(json.dumps(r) for r in rows).encode()
    reordered = "\n".join(json.dumps(dict(reversed(r.items()))) for r in rows).encode()
    expected = {"a": [r["a"] for r in rows], "b": [r["b"] for r in rows], "c": [float(r["c"]) for r in rows]}
    assert _columns(body, "application/x-ndjson") == expected
    assert _columns(reordered, "application/x-ndjson") == {k: expected[k] for k in ("c", "b", "a")}
    ragged = [*rows[:10], {"a": 1.0, "b": "x", "d": 2}, *rows[10:]]
    out = _columns("\n".join(json.dumps(r) for r in ragged).encode(), "application/x-ndjson")
    assert out["c"][10] is None and out["d"][10] == 2.0 and out["d"][0] is None


def _large_csv(rows: list[str]) -> bytes:
    """A body above the small-CSV size, so Arrow's reader takes it."""
    body = ("\n".join(rows) + "\n").encode()
    while len(body) <= parsing._SMALL_CSV_BYTES:
        body += ("\n".join(rows[1:]) + "\n").encode()
    return body


@pytest.mark.parametrize(
    "later",
    [
        "1.5,a,7",  # the same kinds
        "1e3,a,inf",  # exponent; inf
        ",a,",  # empty cells: a column of nulls
        "true,a,false",  # words: booleans, not floats
        "2024-01-01,a,3",  # a date where a number was
        "x,a,3",  # a string where a number was
        "1,2,3",  # a column of strings turning numeric
        "9007199254740993,a,18446744073709551616",  # beyond 2**53 and 2**64
        # the text column: values only text can be, then values other types may take
        "1.5,alpha beta,7",
        '1.5,"x,y",7',
        "1.5,delta,7",  # text, but of letters a number, a date or a null may hold: inference decides
        "1.5,NA,7",  # a null spelling
        "1.5,true,7",
        "1.5,2024-01-01T10:00:00Z,7",
        "1.5,inf,7",
        "1.5,,7",
    ],
)
def test_csv_numeric_columns_learned_per_header_read_as_fresh_inference_would(later: str) -> None:
    parsing._CSV_TYPES_BY_HEADER.clear()
    first = _large_csv(["x,y,z", *[f"{i},b,{i * 0.25}" for i in range(2_000)]])
    parse_body(first, "text/csv", Schema())
    assert parsing._CSV_TYPES_BY_HEADER  # x and z were learned as numbers
    body = _large_csv(["x,y,z", *[later] * 2_000])
    learned = _columns(body, "text/csv")
    parsing._CSV_TYPES_BY_HEADER.clear()
    assert learned == _columns(body, "text/csv")  # inference from scratch


def test_csv_text_columns_learned_per_header_share_one_str_per_category() -> None:
    parsing._CSV_TYPES_BY_HEADER.clear()
    rows = ["x,y", *[f"{i},{('alpha', 'beta')[i % 2]}" for i in range(4_000)]]
    parse_body(_large_csv(rows), "text/csv", Schema())
    assert parsing._CSV_TYPES_BY_HEADER[(b"x,y", ",")].texts == {"y"}
    rows[3] = "2,"
    y = parse_body(_large_csv(rows), "text/csv", Schema()).columns["y"]
    assert y.dtype == object and y.tolist()[:4] == ["alpha", "beta", None, "beta"]
    assert y[0] is y[4] and y[1] is y[3]  # one str per category (several-letter strs are not cached)


def test_csv_learned_types_still_name_a_bad_cell() -> None:
    parsing._CSV_TYPES_BY_HEADER.clear()
    rows = ["x,y", *[f"{i}.5,a" for i in range(5_000)]]
    parse_body(_large_csv(rows), "text/csv", Schema())
    rows[4_001] = "oops,a"
    with pytest.raises(BadRequest) as err:
        parse_body(_large_csv(rows), "text/csv", Schema(kinds={"x": NUMERIC}))
    assert "row 4000" in err.value.message and "'oops'" in err.value.message


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 2.5, True], [1.0, 2.5, 1.0]),
        ([2**53 + 1, 2**64, -(2**63) - 1], [float(2**53 + 1), float(2**64), float(-(2**63) - 1)]),
        ([1.5, None, 3], [1.5, None, 3.0]),
        ([True, False], [1.0, 0.0]),
        ([None, 2.0], [None, 2.0]),
    ],
)
def test_json_number_columns_by_every_path_read_alike(values: list, expected: list) -> None:
    body = json.dumps({"columns": {"a": values}}).encode()
    out = _columns(body, "application/json")
    assert out == {"a": expected}
    assert parse_body(body, "application/json", Schema()).columns["a"].dtype == np.float64
    rows = "\n".join(json.dumps({"a": v}) for v in values).encode()
    assert _columns(rows, "application/x-ndjson") == {"a": expected}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1, "2"], "got the string '2' in a column of numbers"),
        ([1.5, [2]], "row 1: got list"),
        ([[1], [2]], "row 0: got a nested list"),
        ([1, 10**400], "row 1: number out of range"),
        ([1, {"b": 2}], "row 1: got dict"),
    ],
)
def test_json_number_columns_refuse_what_breaks_them(values: list, message: str) -> None:
    body = json.dumps({"columns": {"a": values}}).encode()
    with pytest.raises(BadRequest) as err:
        parse_body(body, "application/json", Schema())
    assert message in err.value.message and err.value.detail["column"] == "a"


def test_arrow_columns_arrive_final_and_checked_against_the_schema() -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    table = pa.table(
        {
            "f": pa.array([1.5, None, 3.0]),
            "i": pa.array([1, None, 3], pa.int32()),
            "s": pa.array(["a", None, "c"]),
            "nulls": pa.array([None, None, None], pa.string()),
            "t": pa.array([0, 1, 2], pa.timestamp("s")),
        }
    )
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    ctype = "application/vnd.apache.arrow.stream"
    batch = parse_body(body, ctype, Schema())
    assert {k: v.dtype.kind for k, v in batch.columns.items()} == {
        "f": "f",
        "i": "f",
        "s": "O",
        "nulls": "f",
        "t": "O",
    }
    assert _columns(body, ctype)["s"] == ["a", None, "c"] and _columns(body, ctype)["nulls"] == [None] * 3
    with pytest.raises(BadRequest) as err:
        parse_body(body, ctype, Schema(kinds={"s": NUMERIC}))
    assert err.value.detail == {"column": "s", "row": 0, "expected": "number"}


@pytest.mark.parametrize("newline", [b"\n", b"\r\n"])
def test_ndjson_line_endings_read_alike(newline: bytes) -> None:
    rows = [{"a": i * 0.5, "b": "x\r\ny" if i == 3 else "z"} for i in range(20)]
    body = newline.join(json.dumps(r).encode() for r in rows) + newline
    assert _columns(body, "application/x-ndjson") == {
        "a": [r["a"] for r in rows],
        "b": [r["b"] for r in rows],
    }


def test_csv_learned_text_column_with_null_spellings_reads_as_inference_would() -> None:
    parsing._CSV_TYPES_BY_HEADER.clear()
    parse_body(_large_csv(["x,y", *[f"{i},alpha" for i in range(3_000)]]), "text/csv", Schema())
    cells = ["alpha", "NA", "", "null", '""', '"NA"', "N/A", "beta gamma", "nan", "1.5"]
    body = _large_csv(["x,y", *[f"{i},{cells[i % len(cells)]}" for i in range(3_000)]])
    learned = _columns(body, "text/csv")
    parsing._CSV_TYPES_BY_HEADER.clear()
    assert learned == _columns(body, "text/csv")
    assert learned["y"][:3] == ["alpha", None, None] and learned["y"][9] == "1.5"


def test_csv_types_are_learned_under_a_schema_that_names_numbers() -> None:
    # The runtime's schema always names the score column; learning must not wait for a schema without one.
    parsing._CSV_TYPES_BY_HEADER.clear()
    schema = Schema(kinds={"_score": NUMERIC, "x": NUMERIC})
    parse_body(_large_csv(["x,y,z", *[f"{i},a{i % 3},{i * 0.5}" for i in range(3_000)]]), "text/csv", schema)
    learned = parsing._CSV_TYPES_BY_HEADER[(b"x,y,z", ",")]
    assert learned.numbers >= {"z"} and learned.texts == {"y"}
