"""Every endpoint over real HTTP on loopback, against an in-process server."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.ipc as ipc
from prometheus_client.parser import text_string_to_metric_families

from .runtime_server_helpers import (
    GOOD_MONITOR,
    SNOOPING_MONITOR,
    SPEC,
    columns_json,
    frame,
    running_monitor,
    write_version,
)


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, await resp.json()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes, ctype: str) -> tuple[int, Any]:
    async with session.post(url, data=body, headers={"Content-Type": ctype}) as resp:
        return resp.status, await resp.json()


async def _wait_report(
    session: aiohttp.ClientSession, base: str, predicate: Any, timeout: float = 15.0
) -> dict:
    deadline = time.monotonic() + timeout
    report: dict = {}
    while time.monotonic() < deadline:
        _, report = await _get_json(session, base + "/v1/report")
        if predicate(report):
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"report never satisfied the condition: {json.dumps(report)[:2000]}")


def _csv(cols: dict) -> bytes:
    names = list(cols)
    lines = [",".join(names)] + [",".join(str(cols[n][i]) for n in names) for i in range(len(cols[names[0]]))]
    return ("\n".join(lines) + "\n").encode()


def _ndjson(cols: dict) -> bytes:
    names = list(cols)
    n = len(cols[names[0]])
    return b"\n".join(
        json.dumps(
            {k: cols[k][i].item() if hasattr(cols[k][i], "item") else cols[k][i] for k in names}
        ).encode()
        for i in range(n)
    )


def _arrow(cols: dict) -> bytes:
    table = pa.table({k: list(v) if v.dtype == object else v for k, v in cols.items()})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


async def test_probes_and_report_before_any_reference(version_dir: Path) -> None:
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        assert (await _get_json(s, base + "/healthz"))[0] == 200
        status, ready = await _get_json(s, base + "/readyz")
        assert status == 200 and ready == {"ready": True, "has_reference": False, "version": 1}
        status, report = await _get_json(s, base + "/v1/report")
        assert status == 200
        assert report["status"] == "waiting_for_reference"
        assert report["version"]["monitor"] == "credit-monitor" and report["version"]["version"] == 1
        assert report["window"]["strategy"] == "sliding" and report["window"]["cadence_rows"] == 200


async def test_reference_and_batches_in_every_format_reach_the_report(version_dir: Path) -> None:
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        status, body = await _post(s, base + "/v1/reference", _csv(frame(1000, 1)), "text/csv")
        assert status == 200 and body["reference_rows"] == 1000
        shifted = frame(300, 2, shift=1.5)
        parts = [{k: v[i : i + 60] for k, v in shifted.items()} for i in range(0, 300, 60)]
        rows = [
            {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in parts[1].items()}
            for i in range(60)
        ]
        for payload, ctype in (
            (columns_json(parts[0]), "application/json"),
            (json.dumps({"rows": rows}).encode(), "application/json"),
            (_ndjson(parts[2]), "application/x-ndjson"),
            (_csv(parts[3]), "text/csv"),
            (_arrow(parts[4]), "application/vnd.apache.arrow.stream"),
        ):
            status, body = await _post(s, base + "/v1/batches", payload, ctype)
            assert status == 202, body
            assert body["accepted_rows"] == 60
        report = await _wait_report(
            s, base, lambda r: r["status"] == "ok" and r["ingestion"]["rows_evaluated"] >= 300
        )
        assert "age" in report["drifted_features"]
        assert report["features"]["age"]["drift_detected"] is True
        assert set(report["features"]) >= {"age", "income", "segment"}
        assert report["overall_health"] in {"warning", "critical"}
        assert report["timing"]["evaluation_seconds"] > 0
        assert report["ingestion"] == {
            "rows": 300,
            "batches": 5,
            "rows_evaluated": 300,
            "rows_dropped": 0,
            "last_batch_timestamp": None,
            "unknown_columns": 0,
        }
        assert report["window_config"]["size"] == 400
        assert report["recommendations"]


async def test_bad_requests_get_4xx_and_change_nothing(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1", spec={**SPEC, "allowUnknownFeatures": False})
    async with running_monitor(code_dir, max_body_bytes=4000) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(500, 1)), "application/json")
        await _post(s, base + "/v1/batches", columns_json(frame(10, 2)), "application/json")
        _, before = await _get_json(s, base + "/v1/report")
        cases = [
            (b'{"columns": {"age": [1, 2', "application/json", 400, "malformed JSON"),
            (b'{"columns": {"age": [1, "x"]}}', "application/json", 400, "column 'age' row 1"),
            (b'{"columns": {"age": [1, "NaN"]}}', "application/json", 400, "send null"),
            (b'{"columns": {"age": [1], "zip": [2]}}', "application/json", 400, "unknown column 'zip'"),
            (b'{"columns": {"age": []}}', "application/json", 400, "empty batch"),
            (b"age\nold\n", "text/csv", 400, "'old' is not a number"),
            (b"x" * 5000, "application/json", 413, "limit is 4000"),
        ]
        for body, ctype, status, fragment in cases:
            got, err = await _post(s, base + "/v1/batches", body, ctype)
            assert got == status, (fragment, err)
            assert fragment in err["error"], err

        # A chunked body without Content-Length is cut off at the limit too.
        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 1000

        async with s.post(
            base + "/v1/batches", data=chunks(), headers={"Content-Type": "application/json"}
        ) as r:
            assert r.status == 413
        _, after = await _get_json(s, base + "/v1/report")
        assert after["ingestion"] == before["ingestion"]
        assert after["window"]["pending_rows"] == before["window"]["pending_rows"]
        metrics = await (await s.get(base + "/metrics")).text()
        errors = {
            s.labels["kind"]: s.value
            for fam in text_string_to_metric_families(metrics)
            if fam.name == "poet_monitor_errors"
            for s in fam.samples
            if s.name.endswith("_total")
        }
        assert errors["bad_request"] == 6 and errors["payload_too_large"] == 2


async def test_metrics_follow_the_prometheus_format(version_dir: Path) -> None:
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(1000, 1)), "application/json")
        body = columns_json(frame(400, 3, shift=2.0), predictions=[1] * 400, actuals=[1] * 300 + [0] * 100)
        await _post(s, base + "/v1/batches", body, "application/json")
        await _wait_report(s, base, lambda r: r["status"] == "ok")
        resp = await s.get(base + "/metrics")
        assert resp.headers["Content-Type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
        info = families["poet_monitor_info"].samples[0]
        assert info.labels == {
            "monitor": "credit-monitor",
            "model": "credit-model",
            "version": "1",
            "generator": "template",
        }
        drift = {
            s.labels["feature"]: s.value for s in families["poet_monitor_feature_drift_detected"].samples
        }
        assert drift["age"] == 1.0
        scores = {s.labels["feature"] for s in families["poet_monitor_feature_drift_score"].samples}
        assert scores == {"age", "income", "segment"}
        assert {s.labels["feature"] for s in families["poet_monitor_feature_p_value"].samples} == scores
        assert families["poet_monitor_overall_drift_score"].samples[0].value > 0
        assert families["poet_monitor_health"].samples[0].value in (1.0, 2.0)
        rows = next(s for s in families["poet_monitor_rows_ingested"].samples if s.name.endswith("_total"))
        assert rows.value == 400
        batches = next(
            s for s in families["poet_monitor_batches_ingested"].samples if s.name.endswith("_total")
        )
        assert batches.value == 1
        count = next(
            s for s in families["poet_monitor_evaluation_seconds"].samples if s.name.endswith("_count")
        )
        assert count.value >= 1
        assert any(
            s.name.endswith("_count") and s.value == 1 for s in families["poet_monitor_batch_seconds"].samples
        )
        accuracy = {s.labels["metric"]: s.value for s in families["poet_monitor_prediction_metric"].samples}
        assert accuracy["accuracy"] == 0.75


async def test_feature_series_are_capped(version_dir: Path) -> None:
    async with (
        running_monitor(version_dir, max_metric_features=2) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)), "application/json")
        await _post(s, base + "/v1/batches", columns_json(frame(300, 2, shift=2.0)), "application/json")
        await _wait_report(s, base, lambda r: r["status"] == "ok")
        families = {
            f.name: f for f in text_string_to_metric_families(await (await s.get(base + "/metrics")).text())
        }
        shown = [s.labels["feature"] for s in families["poet_monitor_feature_drift_score"].samples]
        assert len(shown) == 2 and "age" in shown  # the drifted feature is never the one left out
        assert families["poet_monitor_features_omitted"].samples[0].value == 1
        cap = [
            json.loads(line) for line in proc.log.stream.getvalue().splitlines() if "cardinality_cap" in line
        ]
        assert cap and cap[0]["level"] == "warning" and "omitting 1" in cap[0]["message"]


async def test_report_page_is_self_contained_html(version_dir: Path) -> None:
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)), "application/json")
        await _post(s, base + "/v1/batches", columns_json(frame(300, 2, shift=2.0)), "application/json")
        await _wait_report(s, base, lambda r: r["status"] == "ok")
        resp = await s.get(base + "/report")
        assert resp.status == 200 and resp.content_type == "text/html"
        assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
        html = await resp.text()
        for name in ("age", "income", "segment", "credit-monitor"):
            assert name in html
        assert html.count("<svg") == 4  # one distribution chart per feature and the overall history
        # Sorted by importance-weighted severity: the drifted feature comes first.
        assert html.index("<b>age</b>") < html.index("<b>income</b>")
        assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", html)
        assert "<script" not in html


async def test_first_window_becomes_the_reference_and_the_rest_is_evaluated(tmp_path: Path) -> None:
    spec = {**SPEC, "reference": {"source": "first_window"}}
    code_dir = write_version(tmp_path / "v1", spec=spec)
    async with running_monitor(code_dir) as (_, base), aiohttp.ClientSession() as s:
        _, ready = await _get_json(s, base + "/readyz")
        assert ready["has_reference"] is False
        await _post(s, base + "/v1/batches", columns_json(frame(600, 1)), "application/json")
        report = await _wait_report(s, base, lambda r: r["status"] == "ok")
        assert report["window"]["reference_rows"] == 400  # exactly one window
        assert report["ingestion"]["rows_evaluated"] == 200  # the remainder, evaluated against it
        assert report["drifted_features"] == []
        await _post(s, base + "/v1/batches", columns_json(frame(400, 2, shift=2.0)), "application/json")
        report = await _wait_report(s, base, lambda r: r["ingestion"]["rows_evaluated"] >= 600)
        assert "age" in report["drifted_features"]


async def test_the_guard_refuses_file_access_by_generated_code_only(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1", code=SNOOPING_MONITOR)
    ckpt = tmp_path / "ckpt"
    async with running_monitor(code_dir, checkpoint_dir=ckpt, max_consecutive_failures=10) as (proc, base):
        async with aiohttp.ClientSession() as s:
            await _post(s, base + "/v1/reference", columns_json(frame(500, 1)), "application/json")
            await _post(s, base + "/v1/batches", columns_json(frame(200, 2)), "application/json")
            report = await _wait_report(s, base, lambda r: r["failures"]["total"] == 1)
        last = report["failures"]["last"]
        assert last["signature"]["exception"] == "GuardViolation"
        assert last["signature"]["location"].endswith("in monitor_features")
        assert "writing files" not in last["message"] and "reading files outside" in last["message"]
        # The runtime's own file access on other threads is untouched by the guard.
        assert await proc.checkpoint() is True
    assert (ckpt / "checkpoint.poet").exists()


async def test_a_checkpoint_of_other_code_is_not_restored(tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    first = write_version(tmp_path / "v1")
    async with running_monitor(first, checkpoint_dir=ckpt) as (proc, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(500, 1)), "application/json")
        await _post(s, base + "/v1/batches", columns_json(frame(200, 2)), "application/json")
        await _wait_report(s, base, lambda r: r["status"] == "ok")
    # Same code again: everything comes back.
    async with running_monitor(first, checkpoint_dir=ckpt) as (proc, base), aiohttp.ClientSession() as s:
        _, report = await _get_json(s, base + "/v1/report")
        assert report["status"] == "ok" and report["ingestion"]["rows"] == 200
    # Different code (a new version in the same pod's directory): its state is not this code's to restore.
    other = write_version(tmp_path / "v2", code=GOOD_MONITOR + "\n# version 2\n", version=2)
    async with running_monitor(other, checkpoint_dir=ckpt) as (proc, base), aiohttp.ClientSession() as s:
        _, report = await _get_json(s, base + "/v1/report")
        assert report["status"] == "waiting_for_reference" and report["ingestion"]["rows"] == 0
        skipped = [
            json.loads(x) for x in proc.log.stream.getvalue().splitlines() if "checkpoint.skipped" in x
        ]
        assert skipped and skipped[0]["checkpoint_version"] == 1


async def test_pending_rows_stay_bounded_while_evaluation_cannot_run(version_dir: Path) -> None:
    # The reference is uploaded (not yet), so nothing evaluates; the queue keeps at most two windows.
    async with running_monitor(version_dir) as (_, base), aiohttp.ClientSession() as s:
        for seed in range(10):
            status, body = await _post(
                s, base + "/v1/batches", columns_json(frame(200, seed)), "application/json"
            )
            assert status == 202
            assert body["pending_rows"] <= 800
        _, report = await _get_json(s, base + "/v1/report")
        assert report["window"]["pending_rows"] == 800
        assert report["ingestion"]["rows"] == 2000 and report["ingestion"]["rows_dropped"] == 1200
        families = {
            f.name: f for f in text_string_to_metric_families(await (await s.get(base + "/metrics")).text())
        }
        dropped = next(x for x in families["poet_monitor_rows_dropped"].samples if x.name.endswith("_total"))
        assert dropped.value == 1200
