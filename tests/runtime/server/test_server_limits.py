"""Hostile and broken requests over real HTTP: each gets a JSON 4xx and leaves the monitor as it was."""

from __future__ import annotations

import asyncio
import gzip
import json
import math
import time
import zlib
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from monitor_runtime.server.evaluator import concat_batches
from monitor_runtime.server.parsing import Batch

from .runtime_server_helpers import GOOD_MONITOR, columns_json, frame, running_monitor, write_version


async def _post(
    s: aiohttp.ClientSession, url: str, body: bytes, ctype: str = "application/json", **headers: str
) -> tuple[int, Any]:
    async with s.post(url, data=body, headers={"Content-Type": ctype, **headers}) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def _metrics(s: aiohttp.ClientSession, base: str) -> dict[tuple[str, tuple], float]:
    async with s.get(base + "/metrics") as resp:
        text = await resp.text()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _errors(metrics: dict[tuple[str, tuple], float], kind: str) -> float:
    return metrics[("poet_monitor_errors_total", (("kind", kind),))]


async def _report(s: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    async with s.get(base + "/v1/report") as resp:
        return await resp.json()


async def _wait_report(s: aiohttp.ClientSession, base: str, predicate: Any, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    report: dict = {}
    while time.monotonic() < deadline:
        report = await _report(s, base)
        if predicate(report):
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"report never satisfied the condition: {json.dumps(report)[:2000]}")


async def test_unknown_columns_are_capped_with_a_400_naming_the_column(version_dir: Path) -> None:
    async with (
        running_monitor(version_dir, max_unknown_columns=4) as (_, base),
        aiohttp.ClientSession() as s,
    ):
        assert (await _post(s, base + "/v1/reference", columns_json(frame(500, 1))))[0] == 200
        cols = frame(50, 2)
        first = {**cols, **{f"x{i}": np.arange(50.0) for i in range(3)}}
        status, body = await _post(s, base + "/v1/batches", columns_json(first, timestamp="2026-01-02"))
        assert status == 202, body
        # Two more new names: one fits, the second passes the cap, so the whole batch is refused.
        second = {**cols, "x3": np.arange(50.0), "x4": np.arange(50.0)}
        status, body = await _post(s, base + "/v1/batches", columns_json(second))
        assert status == 400
        assert body["column"] == "x4" and body["limit"] == 4
        assert "POET_MAX_UNKNOWN_COLUMNS" in body["error"]
        # Columns already accepted keep working.
        again = {**cols, "x0": np.arange(50.0)}
        assert (await _post(s, base + "/v1/batches", columns_json(again)))[0] == 202
        report = await _report(s, base)
        assert report["ingestion"]["unknown_columns"] == 3
        assert report["ingestion"]["last_batch_timestamp"] == "2026-01-02"
        assert report["ingestion"]["batches"] == 2
        assert _errors(await _metrics(s, base), "too_many_columns") == 1


def test_concat_batches_caps_the_union_of_columns() -> None:
    batches = [Batch(columns={f"c{i}": np.zeros(3), "a": np.ones(3)}, n_rows=3) for i in range(10)]
    columns, _, _ = concat_batches(batches, max_columns=4)
    assert list(columns) == ["c0", "a", "c1", "c2"]
    assert all(len(col) == 30 for col in columns.values())
    assert np.isnan(columns["c1"][:3]).all() and (columns["c1"][3:6] == 0).all()


async def test_malformed_bodies_and_encodings_get_json_4xx(version_dir: Path) -> None:
    nested = b'{"columns": {"a": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (nested, {}, 400, "nested too deeply"),
        (
            b'{"columns": {"amount": [' + b"9" * 400 + b"]}}",
            {},
            400,
            "column 'amount' row 0: number out of range",
        ),
        (b'{"columns": {"amount": [' + b"9" * 5000 + b"]}}", {}, 400, "number out of range"),
        (b"plainly not gzip", {"Content-Encoding": "gzip"}, 400, "body is not valid gzip"),
        (gzip.compress(columns_json(frame(5, 1)))[:-12], {"Content-Encoding": "gzip"}, 400, "truncated"),
        (b"\x1b\x00\x00", {"Content-Encoding": "br"}, 415, "unsupported Content-Encoding 'br'"),
        (gzip.compress(b" " * 50_000), {"Content-Encoding": "gzip"}, 413, "decompressed body exceeds"),
    ]
    async with (
        running_monitor(version_dir, max_body_bytes=20_000) as (_, base),
        aiohttp.ClientSession(auto_decompress=False) as s,
    ):
        before = await _metrics(s, base)
        for body, headers, status, fragment in cases:
            got, answer = await _post(s, base + "/v1/batches", body, **headers)
            assert (got, fragment in answer["error"]) == (status, True), (fragment, answer)
        after = await _metrics(s, base)
        counted = sum(_errors(after, k) - _errors(before, k) for k in ("bad_request", "payload_too_large"))
        assert counted == len(cases)
        assert _errors(after, "internal") == 0
        # Well-formed compressed bodies are accepted, gzip and deflate alike.
        body = columns_json(frame(20, 1))
        for encoding, packed in (("gzip", gzip.compress(body)), ("deflate", zlib.compress(body))):
            status, answer = await _post(s, base + "/v1/batches", packed, **{"Content-Encoding": encoding})
            assert (status, answer.get("accepted_rows")) == (202, 20), answer


# update_reference_window breaks its own state before refusing a reference with missing ages.
REFUSING_MONITOR = GOOD_MONITOR.replace(
    "    def update_reference_window(self, new_data):\n",
    "    def update_reference_window(self, new_data):\n"
    "        if np.isnan(np.asarray(new_data['age'], dtype=float)).any():\n"
    "            self.reference = None\n"
    "            raise ValueError('age has missing values in the reference')\n",
)
assert REFUSING_MONITOR != GOOD_MONITOR


async def test_a_refused_reference_is_a_422_that_changes_nothing(tmp_path: Path) -> None:
    version = write_version(tmp_path / "v1", code=REFUSING_MONITOR)
    async with (
        running_monitor(version, max_consecutive_failures=2) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        assert (await _post(s, base + "/v1/reference", columns_json(frame(500, 1))))[0] == 200
        bad = frame(400, 3)
        bad["age"][7] = np.nan
        for _ in range(3):  # more than the crash threshold
            status, body = await _post(s, base + "/v1/reference", columns_json(bad))
            assert status == 422, body
            assert "age has missing values" in body["error"] and "previous reference stays" in body["error"]
        status, body = await _post(s, base + "/v1/reference", columns_json(frame(5, 1)))
        assert status == 422 and "at least 30" in body["error"], body
        only_unknown = {"zip": np.arange(100.0)}
        status, body = await _post(s, base + "/v1/reference", columns_json(only_unknown))
        assert status == 422 and "none of the declared features" in body["error"], body
        async with s.get(base + "/readyz") as resp:
            assert resp.status == 200
        # The monitor's state was put back: evaluation still works against the first reference.
        assert (await _post(s, base + "/v1/batches", columns_json(frame(200, 4))))[0] == 202
        report = await _wait_report(s, base, lambda r: r["status"] == "ok")
        assert report["window"]["reference_rows"] == 500
        assert report["failures"]["consecutive"] == 0 and report["failures"]["last"] is None
        assert not proc.evaluator.fatal
        metrics = await _metrics(s, base)
        assert _errors(metrics, "reference_rejected") == 3
        assert _errors(metrics, "monitor_exception") == 0


async def test_health_and_drift_are_nan_until_the_first_evaluation(version_dir: Path) -> None:
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        metrics = await _metrics(s, base)
        for name in (
            "poet_monitor_health",
            "poet_monitor_overall_drift_score",
            "poet_monitor_drifted_features",
        ):
            assert math.isnan(metrics[(name, ())]), name
        await _post(s, base + "/v1/reference", columns_json(frame(500, 1)))
        await _post(s, base + "/v1/batches", columns_json(frame(200, 2)))
        await _wait_report(s, base, lambda r: r["status"] == "ok")
        metrics = await _metrics(s, base)
        assert metrics[("poet_monitor_health", ())] in (0.0, 1.0, 2.0)
        assert 0.0 <= metrics[("poet_monitor_overall_drift_score", ())] <= 1.0
