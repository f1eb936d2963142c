"""Checkpoints of a real runtime over real HTTP on loopback: what a restart resumes, and what it refuses to
read (the old pickle format, a damaged file, a malformed state) or to write (a state that is not data)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import pathlib
import pickle
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from monitor_runtime import json_safe
from monitor_runtime.server.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint

from .runtime_server_helpers import GOOD_MONITOR, SPEC, columns_json, frame, running_monitor, write_version

# Scores string labels through the toolkit's classification metrics (the fixture's own casts to float).
QUALITY_MONITOR = GOOD_MONITOR.replace(
    """        p = np.asarray(predictions, dtype=float)
        a = np.asarray(actuals, dtype=float)
        ok = np.isfinite(a)
        acc = float(np.mean(p[ok] == a[ok])) if ok.any() else None
        return {"accuracy": acc, "n": int(ok.sum())}""",
    """        return self.tk.evaluate_predictions(predictions, actuals, task="classification")""",
)
assert QUALITY_MONITOR != GOOD_MONITOR
QUALITY_SPEC = {**SPEC, "predictions": {"task": "classification", "positiveLabel": "yes"}}
# Evaluations only when a window step (200 rows) is pending: a smaller batch stays pending until restart.
SETTINGS: dict[str, Any] = {"max_evaluation_interval_s": 3600.0}


def _labelled(n: int, seed: int, *, shift: float = 0.0) -> bytes:
    """Feature columns (some `segment` values missing), string predictions, actuals with gaps, scores."""
    rng = np.random.default_rng(seed)
    cols = frame(n, seed, shift=shift)
    cols["segment"][::7] = None
    truth = rng.random(n) < 0.4
    score = np.clip(truth * 0.5 + rng.normal(0.3, 0.2, n), 0, 1).round(4)
    cols["_score"] = score
    predictions = ["yes" if s > 0.5 else "no" for s in score]
    actuals: list[Any] = ["yes" if t else "no" for t in truth]
    actuals[::10] = [None] * len(actuals[::10])
    return columns_json(cols, predictions=predictions, actuals=actuals)


async def _call(
    s: aiohttp.ClientSession, method: str, url: str, body: bytes | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    async with s.request(method, url, data=body, headers=headers) as resp:
        raw = await resp.read()
        return resp.status, (json.loads(raw) if resp.content_type == "application/json" else raw)


async def _report_when(s: aiohttp.ClientSession, base: str, predicate: Any, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    report: dict = {}
    while time.monotonic() < deadline:
        _, report = await _call(s, "GET", base + "/v1/report")
        if predicate(report):
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"the report never satisfied the condition: {json.dumps(report)[:2000]}")


def _events(proc: Any, name: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, proc.log.stream.getvalue().splitlines()) if e.get("event") == name]


async def _checkpoint_errors(s: aiohttp.ClientSession, base: str) -> float:
    async with s.get(base + "/metrics") as resp:
        text = await resp.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "poet_monitor_errors_total" and sample.labels.get("kind") == "checkpoint"
    )


def _resumable(report: dict[str, Any]) -> dict[str, Any]:
    """What a restart must give back exactly: all of the report but the clock and the last timestamp."""
    keep = {k: v for k, v in report.items() if k not in ("timing", "failures")}
    keep["ingestion"] = {k: v for k, v in report["ingestion"].items() if k != "last_batch_timestamp"}
    keep["evaluated_at"] = report["timing"]["evaluated_at"]
    return keep


async def _snapshot(proc: Any, s: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    _, report = await _call(s, "GET", base + "/v1/report")
    _, reference = await _call(s, "GET", base + "/v1/reference")
    _, history = await _call(s, "GET", base + "/v1/history")
    monitor_state, _ = await proc.evaluator.host.call("state")
    return {
        "report": _resumable(report),
        "reference": reference,
        "history": history,
        # The report page's bins and statistics (NaN statistics compare as their JSON text).
        "distributions": json_safe.dumps(proc.runtime.distributions.snapshot()),
        "monitor_state": monitor_state,
        "pending": [
            {"n_rows": b.n_rows, "columns": b.columns, "predictions": b.predictions, "actuals": b.actuals}
            for b in proc.evaluator.pending
        ],
        "kinds": dict(proc.runtime.reference_kinds),
        "batches": proc.runtime.batches,
    }


async def test_a_restart_resumes_counters_pending_rows_trackers_reference_and_monitor_state(
    tmp_path: Path,
) -> None:
    code_dir = write_version(tmp_path / "v1", code=QUALITY_MONITOR, spec=QUALITY_SPEC)
    ckpt = tmp_path / "ckpt"
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt, **SETTINGS) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        assert (await _call(s, "POST", base + "/v1/reference", _labelled(500, 1)))[0] == 200
        assert (await _call(s, "POST", base + "/v1/batches", _labelled(200, 2, shift=1.0)))[0] == 202
        await _report_when(s, base, lambda r: r["ingestion"]["rows_evaluated"] == 200)
        assert (await _call(s, "POST", base + "/v1/batches", _labelled(150, 3, shift=1.0)))[0] == 202
        report = await _report_when(s, base, lambda r: r["window"]["pending_rows"] == 150)
        assert (
            report["quality"]["reference"]["auc"] is not None and report["quality"]["current"]["n"] == 180
        )  # 20 of 200 without actuals
        before = await _snapshot(proc, s, base)
        assert await proc.checkpoint() is True

    # The file is data: an npz archive after the two header lines, readable without pickle.
    assert load_checkpoint(ckpt)["runtime"]["rows_ingested"] == 350

    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt, **SETTINGS) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        assert [e["type"] for e in _events(proc, "poet.event")] == ["runtime.resumed"]
        after = await _snapshot(proc, s, base)
        assert after["report"] == before["report"]
        assert after["reference"] == before["reference"]  # the very npz bytes, so the same fingerprint
        for key in ("history", "distributions", "kinds", "batches"):
            assert after[key] == before[key], key
        np.testing.assert_equal(after["monitor_state"], before["monitor_state"])
        assert len(after["pending"]) == 1
        np.testing.assert_equal(after["pending"], before["pending"])
        assert after["pending"][0]["columns"]["segment"][0] is None  # text columns keep their gaps
        assert after["pending"][0]["actuals"].dtype == object

        # The pending rows and the trackers go on from where they were: 150 restored + 50 new rows make
        # the next step, and both windows of the report now hold two chunks of 200 rows.
        assert (await _call(s, "POST", base + "/v1/batches", _labelled(50, 4, shift=1.0)))[0] == 202
        report = await _report_when(s, base, lambda r: r["ingestion"]["rows_evaluated"] == 400)
        assert report["window"]["rows_in_last_evaluation"] == 200 and report["window"]["pending_rows"] == 0
        assert report["quality"]["current"]["n"] == 360  # 400 rows, one in ten without actuals
        assert report["quality"]["reference"] == before["report"]["quality"]["reference"]
        assert proc.runtime.distributions.snapshot()["age"]["stats"]["current"]["rows"] == 400
        assert report["history"]["evaluations"] == 2


# A monitor whose state() breaks the contract once it has seen data: a set is not data.
SET_STATE_MONITOR = GOOD_MONITOR.replace(
    '        return {"reference": self.reference_data, "window": self.window}',
    '        return {"reference": self.reference_data, "window": self.window,\n'
    '                "seen": set(self.window) if self.window else []}',
)
assert SET_STATE_MONITOR != GOOD_MONITOR


async def test_a_state_that_is_not_data_fails_the_checkpoint_naming_where_and_keeps_the_last_one(
    tmp_path: Path,
) -> None:
    code_dir = write_version(tmp_path / "v1", code=SET_STATE_MONITOR)
    ckpt = tmp_path / "ckpt"
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        await _call(s, "POST", base + "/v1/reference", columns_json(frame(500, 1)))
        assert await proc.checkpoint() is True  # no data yet: the state is still data
        saved = (ckpt / CHECKPOINT_NAME).read_bytes()
        await _call(s, "POST", base + "/v1/batches", columns_json(frame(200, 2)))
        await _report_when(s, base, lambda r: r["ingestion"]["rows_evaluated"] == 200)
        assert await proc.checkpoint() is False
        (failed,) = _events(proc, "checkpoint.failed")
        assert "monitor_state.seen" in failed["error"] and "set is not data" in failed["error"]
        assert await _checkpoint_errors(s, base) == 1.0
        assert (ckpt / CHECKPOINT_NAME).read_bytes() == saved
        assert sorted(p.name for p in ckpt.iterdir()) == [CHECKPOINT_NAME, "history.json"]


class _Touch:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _history_entry(at: float) -> dict[str, Any]:
    return {"at": at, "version": 0, "code_sha256": "an-older-version", "rows": 100, "features": {}}


async def test_a_pickle_checkpoint_of_an_older_runtime_is_never_unpickled_and_its_history_is_kept(
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    marker = tmp_path / "unpickled"
    payload = pickle.dumps({"format": 1, "code_sha256": "x", "monitor_state": _Touch(marker)})
    digest = hashlib.sha256(payload).hexdigest().encode()
    (ckpt / "checkpoint.pkl").write_bytes(b"POETCKPT1\n" + digest + b"\n" + payload)
    (ckpt / "history.json").write_text(json.dumps({"limit": 100, "evaluations": [_history_entry(1.7e9)]}))
    code_dir = write_version(tmp_path / "v1")
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        (unreadable,) = _events(proc, "checkpoint.unreadable")
        assert "pickle format of an older runtime" in unreadable["error"]
        assert not marker.exists()
        _, report = await _call(s, "GET", base + "/v1/report")
        assert report["status"] == "waiting_for_reference" and report["ingestion"]["rows"] == 0
        _, history = await _call(s, "GET", base + "/v1/history")
        assert [e["code_sha256"] for e in history["evaluations"]] == ["an-older-version"]
        assert await proc.checkpoint() is True
    assert not (ckpt / "checkpoint.pkl").exists() and (ckpt / CHECKPOINT_NAME).exists()
    assert not marker.exists()


async def _one_evaluation(code_dir: Path, ckpt: Path) -> None:
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        await _call(s, "POST", base + "/v1/reference", columns_json(frame(500, 1)))
        await _call(s, "POST", base + "/v1/batches", columns_json(frame(200, 2)))
        await _report_when(s, base, lambda r: r["ingestion"]["rows_evaluated"] == 200)
        assert await proc.checkpoint() is True


async def test_a_truncated_checkpoint_is_reported_and_the_runtime_starts_fresh_with_its_history(
    tmp_path: Path,
) -> None:
    code_dir = write_version(tmp_path / "v1")
    ckpt = tmp_path / "ckpt"
    await _one_evaluation(code_dir, ckpt)
    path = ckpt / CHECKPOINT_NAME
    path.write_bytes(path.read_bytes()[:-100])  # a torn write on a disk that lost its tail
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        (unreadable,) = _events(proc, "checkpoint.unreadable")
        assert "checksum mismatch (truncated or corrupt)" in unreadable["error"]
        _, report = await _call(s, "GET", base + "/v1/report")
        assert report["status"] == "waiting_for_reference" and report["ingestion"]["rows"] == 0
        _, history = await _call(s, "GET", base + "/v1/history")
        assert [e["rows"] for e in history["evaluations"]] == [200]  # history.json beside it still counts


async def test_a_malformed_runtime_state_is_refused_before_the_monitor_is_restored(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1")
    ckpt = tmp_path / "ckpt"
    await _one_evaluation(code_dir, ckpt)
    # A well-formed file (right checksum) whose report tracker is not what this runtime writes.
    state = load_checkpoint(ckpt)
    state["distributions"]["chunks"][0]["rows"] = "two hundred"
    save_checkpoint(ckpt, state)
    async with (
        running_monitor(code_dir, checkpoint_dir=ckpt) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        (unreadable,) = _events(proc, "checkpoint.unreadable")
        assert unreadable["error"].startswith("distributions.chunks[0].rows: expected an integer")
        assert not _events(proc, "poet.event")  # no runtime.resumed
        # Neither the runtime nor the monitor took anything back: the monitor has no reference.
        _, report = await _call(s, "GET", base + "/v1/report")
        assert report["status"] == "waiting_for_reference"
        monitor_state, _ = await proc.evaluator.host.call("state")
        assert monitor_state["reference"] is None and monitor_state["window"] == {}
