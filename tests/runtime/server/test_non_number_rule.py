"""`poetmon run` and `poetmon serve` refuse a non-number in a continuous feature alike, with one message.

Both read data through `parsing.parse_body` with the spec's feature kinds (`parsing.spec_kinds`); these tests
drive the real commands (a subprocess for `run`, HTTP to a `poetmon serve` process) with the same data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from monitor_runtime.server.parsing import NUMERIC, spec_kinds

from .runtime_server_helpers import REPO, SPEC, http, write_version

BAD_ROW, BAD_VALUE = 3, "12k"


def _rows(n: int, seed: int) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    return [
        {"age": int(a), "income": float(i), "segment": str(s)}
        for a, i, s in zip(
            rng.integers(18, 80, n),
            rng.normal(50_000, 9_000, n).round(2),
            rng.choice(["a", "b", "c"], n),
            strict=True,
        )
    ]


def _encode(rows: list[dict[str, object]], fmt: str) -> bytes:
    if fmt == "csv":
        lines = [",".join(rows[0]), *(",".join(str(v) for v in r.values()) for r in rows)]
        return ("\n".join(lines) + "\n").encode()
    return "\n".join(json.dumps(r) for r in rows).encode()


def _poetmon_run(spec_file: Path, reference: Path, current: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "poet_operator.cli",
            "run",
            "-f",
            str(spec_file),
            "--reference",
            str(reference),
            "--current",
            str(current),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=dict(os.environ),
        timeout=120,
    )


def test_spec_kinds_reads_continuous_and_categorical_features() -> None:
    kinds = spec_kinds(SPEC)
    assert kinds == {"age": NUMERIC, "income": NUMERIC, "segment": "categorical"}
    assert spec_kinds({"features": {"x": {"type": "continuous"}, "y": {"type": "auto"}}}) == {"x": NUMERIC}


@pytest.mark.parametrize(
    ("fmt", "ctype", "suffix"), [("csv", "text/csv", ".csv"), ("ndjson", "application/x-ndjson", ".jsonl")]
)
def test_run_and_serve_refuse_the_same_non_number_with_the_same_message(
    tmp_path: Path, server_factory, fmt: str, ctype: str, suffix: str
) -> None:
    reference, current = _rows(300, 1), _rows(200, 2)
    current[BAD_ROW]["income"] = BAD_VALUE
    ref_file, cur_file = tmp_path / f"reference{suffix}", tmp_path / f"current{suffix}"
    ref_file.write_bytes(_encode(reference, fmt))
    cur_file.write_bytes(_encode(current, fmt))
    spec_file = tmp_path / "monitor.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))

    server = server_factory(write_version(tmp_path / "v1"))
    run = _poetmon_run(spec_file, ref_file, cur_file)  # runs while the server starts
    server.wait_ready(timeout=90)  # `poetmon run` starts alongside it on a shared machine

    status, body = http("POST", server.url + "/v1/batches", cur_file.read_bytes(), ctype)
    assert status == 400, body
    refusal = json.loads(body)
    assert refusal["column"] == "income" and refusal["row"] == BAD_ROW
    assert BAD_VALUE in refusal["error"] and "income" in refusal["error"]

    assert run.returncode == 2, (run.stdout[-2000:], run.stderr[-2000:])
    assert run.stdout == ""
    assert run.stderr.strip() == f"poetmon run: {cur_file}: {refusal['error']}"

    # The same data with the cell fixed goes through both.
    current[BAD_ROW]["income"] = 51_000.0
    cur_file.write_bytes(_encode(current, fmt))
    assert http("POST", server.url + "/v1/batches", cur_file.read_bytes(), ctype)[0] == 202
    fixed = _poetmon_run(spec_file, ref_file, cur_file)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    assert json.loads(fixed.stdout)["features"]["income"]["n_current"] == len(current)


def test_a_feature_numeric_in_the_reference_is_refused_alike_by_run_and_serve(
    tmp_path: Path, server_factory
) -> None:
    """No spec declaration: the reference makes `tenure` numeric, for the server and for `poetmon run`."""

    def with_tenure(rows: list[dict[str, object]]) -> list[dict[str, object]]:
        return [{**r, "tenure": float(i % 40)} for i, r in enumerate(rows)]

    reference, current = with_tenure(_rows(300, 1)), with_tenure(_rows(200, 2))
    current[BAD_ROW]["tenure"] = BAD_VALUE
    # CSV: a column of text is a categorical column to the reader; only the reference's kind refuses it.
    ref_file, cur_file = tmp_path / "reference.csv", tmp_path / "current.csv"
    ref_file.write_bytes(_encode(reference, "csv"))
    cur_file.write_bytes(_encode(current, "csv"))
    spec_file = tmp_path / "monitor.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    assert "tenure" not in spec_kinds(SPEC)

    server = server_factory(write_version(tmp_path / "v1"))
    run = _poetmon_run(spec_file, ref_file, cur_file)
    server.wait_ready(timeout=90)  # `poetmon run` starts alongside it on a shared machine
    ctype = "text/csv"
    assert http("POST", server.url + "/v1/reference", ref_file.read_bytes(), ctype)[0] == 200
    status, body = http("POST", server.url + "/v1/batches", cur_file.read_bytes(), ctype)
    assert status == 400, body
    refusal = json.loads(body)
    assert refusal["column"] == "tenure" and refusal["row"] == BAD_ROW

    assert run.returncode == 2, (run.stdout[-2000:], run.stderr[-2000:])
    assert run.stderr.strip() == f"poetmon run: {cur_file}: {refusal['error']}"
