"""`poetmon run` over the bundled example files, in every output format, and its file readers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from poet_operator.local.files import DataFileError, read_columns
from poet_operator.local.run_once import run_command

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"
SPEC = DATA / "monitor.yaml"


def _poetmon(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "poet_operator.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
    )


def test_run_prints_the_report_in_all_three_formats() -> None:
    common = [
        "run",
        "-f",
        str(SPEC),
        "--reference",
        str(DATA / "reference.csv"),
        "--current",
        str(DATA / "current.csv"),
    ]
    procs = {fmt: _poetmon(*common, "--format", fmt) for fmt in ("table", "json", "html")}
    out = {}
    for fmt, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        out[fmt] = stdout

    report = json.loads(out["json"])
    assert report["drifted_features"] == ["income"]  # the example's one shifted feature, and only it
    assert report["features"]["income"]["drift_detected"] is True
    assert report["version"]["monitor"] == "credit-risk" and report["version"]["generator"] == "template"
    assert report["overall_health"] in {"warning", "critical"}

    table = out["table"].splitlines()
    assert table[0].startswith("monitor credit-risk")
    income_row = next(line for line in table if line.startswith("income "))
    assert "DRIFT" in income_row
    assert next(line for line in table if line.startswith("age ")).split()[1] == "-"
    assert "recommendations:" in out["table"]

    html = out["html"]
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    for name in ("income", "credit_score", "age", "tenure_months", "plan", "region"):
        assert f"<b>{name}</b>" in html
    assert html.count("<svg") == 7  # a distribution chart per feature and the overall history


def test_the_same_columns_come_from_csv_json_lines_and_parquet(tmp_path: Path) -> None:
    from_csv = read_columns(DATA / "reference.csv")
    n = len(from_csv["age"])
    jsonl = tmp_path / "ref.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps(
                {k: (v[i].item() if isinstance(v[i], np.generic) else v[i]) for k, v in from_csv.items()}
            )
            for i in range(n)
        )
    )
    parquet = tmp_path / "ref.parquet"
    pq.write_table(pa.table({k: list(v) if v.dtype == object else v for k, v in from_csv.items()}), parquet)
    for path in (jsonl, parquet):
        cols = read_columns(path)
        assert set(cols) == set(from_csv)
        np.testing.assert_array_equal(cols["income"], from_csv["income"])
        assert list(cols["plan"]) == list(from_csv["plan"])


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("data.xlsx", b"x", "unknown file type '.xlsx'"),
        ("data.csv", b"", "the file is empty; it needs a header line and at least one row"),
        ("data.jsonl", b'{"a": 1}\n{"a": \n', "NDJSON line 2"),
        ("data.parquet", b"not parquet", "not a readable Parquet file"),
    ],
)
def test_unreadable_files_are_named(tmp_path: Path, name: str, content: bytes, fragment: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataFileError) as info:
        read_columns(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_bad_input_exits_2_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command(str(SPEC), str(tmp_path / "missing.csv"), str(DATA / "current.csv"), "table")
    assert code == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "cannot read" in err


def test_read_columns_drops_a_byte_order_mark_and_reads_tsv_by_tabs(tmp_path: Path) -> None:
    csv_file = tmp_path / "data.csv"
    csv_file.write_bytes("\ufeffa,city\n1,x\n2,y\n".encode())
    assert list(read_columns(csv_file)) == ["a", "city"]
    tsv_file = tmp_path / "data.tsv"
    tsv_file.write_bytes("\ufeffa\tcity\n1\tParis, France\n2\tLyon\n".encode())
    columns = read_columns(tsv_file)
    assert list(columns) == ["a", "city"]
    assert list(columns["city"]) == ["Paris, France", "Lyon"]
    np.testing.assert_array_equal(columns["a"], [1.0, 2.0])
