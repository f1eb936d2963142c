"""The report over real HTTP: prediction quality with `_score`, the history endpoint, history across
versions through the checkpoint, and the page before the first evaluation."""

from __future__ import annotations

import asyncio
import gzip
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from monitor_runtime.server.history import decode_history_file, encode_history_file

from .runtime_server_helpers import (
    GOOD_MONITOR,
    SPEC,
    columns_json,
    frame,
    http,
    running_monitor,
    wait_until,
    write_version,
)


async def _get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as resp:
        return resp.status, await resp.text()


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.json()


async def _wait(session: aiohttp.ClientSession, url: str, predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    body: Any = None
    while time.monotonic() < deadline:
        status, text = await _get(session, url)
        body = json.loads(text) if status == 200 else None
        if body is not None and predicate(body):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never satisfied the condition: {json.dumps(body)[:2000]}")


def _with_predictions(n: int, seed: int, *, quality: float, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Feature columns plus `_prediction`, `_actual` and `_score`; `quality`: how well the score separates."""
    rng = np.random.default_rng(seed)
    cols = frame(n, seed, shift=shift)
    actual = rng.integers(0, 2, n)
    score = np.clip(quality * actual + rng.normal((1 - quality) / 2 + 0.1, 0.2, n), 0, 1).round(4)
    cols["_prediction"] = (score > 0.5).astype(float)
    cols["_actual"] = actual.astype(float)
    cols["_score"] = score
    return cols


async def test_score_column_gives_auc_for_reference_period_and_current_window(tmp_path: Path) -> None:
    spec = {**SPEC, "predictions": {"task": "classification"}}
    code_dir = write_version(tmp_path / "v1", spec=spec)
    # `reject`: columns outside the spec are refused, so `_score` must be known as the score column.
    async with (
        running_monitor(code_dir, unknown_columns="reject") as (_, base),
        aiohttp.ClientSession() as s,
    ):
        status, answer = await _post(
            s, base + "/v1/reference", columns_json(_with_predictions(800, 1, quality=0.7))
        )
        assert status == 200 and "_score" not in answer["columns"]
        status, answer = await _post(
            s, base + "/v1/batches", columns_json(_with_predictions(400, 2, quality=0.2))
        )
        assert status == 202, answer
        report = await _wait(s, base + "/v1/report", lambda r: (r.get("quality") or {}).get("current"))
        assert sorted(report["features"]) == ["age", "income", "segment"]  # `_score` is not a feature
        quality = report["quality"]
        assert quality["task"] == "classification"
        assert quality["reference"]["auc"] > 0.9 and quality["current"]["auc"] < quality["reference"]["auc"]
        assert quality["current"]["n"] == 400 and len(quality["current"]["confusion_matrix"]) == 2
        assert report["predictions"]["n"] == 400  # the monitor's own result is still reported as before
        _, html = await _get(s, base + "/report")
        assert "<th>AUC</th>" in html and html.count("<table class='cm'>") == 2


async def test_history_endpoint_keeps_the_last_evaluations(version_dir: Path) -> None:
    async with running_monitor(version_dir, history_size=2) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)))
        for i in range(3):
            await _post(s, base + "/v1/batches", columns_json(frame(200, 10 + i, shift=float(i))))
            await _wait(
                s, base + "/v1/report", lambda r, i=i: r["ingestion"]["rows_evaluated"] >= 200 * (i + 1)
            )
        history = await _wait(s, base + "/v1/history", lambda h: len(h["evaluations"]) == 2)
        assert history["limit"] == 2
        first, last = history["evaluations"]
        assert first["at"] <= last["at"] and last["version"] == 1 and last["rows"] == 200
        assert set(last["features"]) == {"age", "income", "segment"}
        age = last["features"]["age"]
        assert age["drift"] and age["threshold"] == 0.025 and age["decided_by"] == "distribution"
        _, html = await _get(s, base + "/report")
        assert "score over the last evaluations" in html and "2 evaluations, oldest first" in html


async def test_history_survives_a_new_version_and_marks_the_change(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    v1 = write_version(tmp_path / "v1")
    async with running_monitor(v1, checkpoint_dir=checkpoints) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)))
        for i in range(2):
            await _post(s, base + "/v1/batches", columns_json(frame(200, 20 + i)))
            await _wait(
                s, base + "/v1/report", lambda r, i=i: r["ingestion"]["rows_evaluated"] >= 200 * (i + 1)
            )
    # Version 2 is other code: its monitor starts fresh, but the history (plain data) carries over.
    v2 = write_version(tmp_path / "v2", code=GOOD_MONITOR + "\n# version 2\n", version=2)
    async with running_monitor(v2, checkpoint_dir=checkpoints) as (_, base), aiohttp.ClientSession() as s:
        _, text = await _get(s, base + "/v1/history")
        assert [e["version"] for e in json.loads(text)["evaluations"]] == [1, 1]
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)))
        await _post(s, base + "/v1/batches", columns_json(frame(200, 30, shift=2.0)))
        history = await _wait(s, base + "/v1/history", lambda h: len(h["evaluations"]) == 3)
        assert [e["version"] for e in history["evaluations"]] == [1, 1, 2]
        _, html = await _get(s, base + "/report")
        assert ">v2</text>" in html and "1 version change marked" in html


async def test_before_the_first_window_the_page_counts_reference_rows(tmp_path: Path) -> None:
    spec = {**SPEC, "reference": {"source": "first_window"}}
    code_dir = write_version(tmp_path / "v1", spec=spec)
    async with running_monitor(code_dir) as (_, base), aiohttp.ClientSession() as s:
        _, html = await _get(s, base + "/report")
        assert "0 of 400 reference rows received" in html
        await _post(s, base + "/v1/batches", columns_json(frame(150, 1)))
        _, html = await _get(s, base + "/report")
        assert "150 of 400 reference rows received" in html and "No evaluation yet" in html
        report = json.loads((await _get(s, base + "/v1/report"))[1])
        assert report["window"]["reference_size"] == 400 and report["window"]["reference_from_first_window"]


async def test_a_new_versions_pod_takes_the_history_of_the_one_before(tmp_path: Path) -> None:
    v1 = write_version(tmp_path / "v1")
    v2 = write_version(tmp_path / "v2", code=GOOD_MONITOR + "\n# version 2\n", version=2)
    async with (
        running_monitor(v1) as (_, old),
        running_monitor(v2) as (_, new),
        aiohttp.ClientSession() as s,
    ):
        await _post(s, old + "/v1/reference", columns_json(frame(600, 1)))
        for i in range(2):
            await _post(s, old + "/v1/batches", columns_json(frame(200, 40 + i)))
            await _wait(
                s, old + "/v1/report", lambda r, i=i: r["ingestion"]["rows_evaluated"] >= 200 * (i + 1)
            )
        await _post(s, new + "/v1/reference", columns_json(frame(600, 1)))
        await _post(s, new + "/v1/batches", columns_json(frame(200, 50, shift=2.0)))
        await _wait(s, new + "/v1/report", lambda r: r["status"] == "ok")
        # As an operator hands a reference over: GET from the old pod, POST to the new one.
        _, body = await _get(s, old + "/v1/history")
        async with s.post(
            new + "/v1/history", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 200 and await resp.json() == {"received": 2, "evaluations": 3}
        history = await _wait(s, new + "/v1/history", lambda h: len(h["evaluations"]) == 3)
        assert [e["version"] for e in history["evaluations"]] == [1, 1, 2]
        _, html = await _get(s, new + "/report")
        assert ">v2</text>" in html
        bad = json.dumps({"evaluations": [{"at": "yesterday"}]}).encode()
        async with s.post(
            new + "/v1/history", data=bad, headers={"Content-Type": "application/json"}
        ) as resp:
            assert resp.status == 400
            assert "evaluations[0].at" in (await resp.json())["error"]


async def _evaluate_twice(base: str, s: aiohttp.ClientSession, seed: int) -> dict[str, Any]:
    await _post(s, base + "/v1/reference", columns_json(frame(600, 1)))
    for i in range(2):
        await _post(s, base + "/v1/batches", columns_json(frame(200, seed + i)))
        await _wait(s, base + "/v1/report", lambda r, i=i: r["ingestion"]["rows_evaluated"] >= 200 * (i + 1))
    _, text = await _get(s, base + "/v1/history")
    return json.loads(text)


async def test_the_report_summarises_the_history_by_version(tmp_path: Path) -> None:
    async with running_monitor(write_version(tmp_path / "v1")) as (_, base), aiohttp.ClientSession() as s:
        _, text = await _get(s, base + "/v1/report")
        assert json.loads(text)["history"] == {"evaluations": 0, "limit": 100, "versions": {}}
        history = await _evaluate_twice(base, s, 40)
        _, text = await _get(s, base + "/v1/report")
        summary = json.loads(text)["history"]
    newest = max(e["at"] for e in history["evaluations"])
    assert summary == {
        "evaluations": 2,
        "limit": 100,
        "versions": {"1": {"evaluations": 2, "newest_at": newest}},
    }


async def test_a_history_file_is_merged_at_start_and_the_version_change_is_marked(tmp_path: Path) -> None:
    """What a promoted version's new pod does with the history the operator kept: starts with it."""
    async with running_monitor(write_version(tmp_path / "v1")) as (_, base), aiohttp.ClientSession() as s:
        kept = (await _evaluate_twice(base, s, 50))["evaluations"]
    data, count = encode_history_file(kept, limit=100, max_bytes=900 * 1024)
    assert count == 2 and data[:2] == b"\x1f\x8b"
    history_file = tmp_path / "mounted" / "history.json.gz"
    history_file.parent.mkdir()
    history_file.write_bytes(data)
    checkpoints = tmp_path / "checkpoints-v2"
    v2 = write_version(tmp_path / "v2", code=GOOD_MONITOR + "\n# version 2\n", version=2)
    async with (
        running_monitor(v2, checkpoint_dir=checkpoints, history_file=history_file) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        _, text = await _get(s, base + "/v1/history")
        assert json.loads(text)["evaluations"] == kept  # entry for entry, as the old pod held them
        await _post(s, base + "/v1/reference", columns_json(frame(600, 1)))
        await _post(s, base + "/v1/batches", columns_json(frame(200, 60, shift=2.0)))
        history = await _wait(s, base + "/v1/history", lambda h: len(h["evaluations"]) == 3)
        assert [e["version"] for e in history["evaluations"]] == [1, 1, 2]
        _, text = await _get(s, base + "/v1/report")
        assert set(json.loads(text)["history"]["versions"]) == {"1", "2"}
        _, html = await _get(s, base + "/report")
        assert ">v2</text>" in html and "1 version change marked" in html
        loaded = [json.loads(x) for x in proc.log.stream.getvalue().splitlines()]
        assert next(e for e in loaded if e["event"] == "history.file_loaded")["entries"] == 2
    # The container restarts in the same pod: checkpoint and file again, and still one entry each.
    async with (
        running_monitor(v2, checkpoint_dir=checkpoints, history_file=history_file) as (_, base),
        aiohttp.ClientSession() as s,
    ):
        _, text = await _get(s, base + "/v1/history")
        assert [e["version"] for e in json.loads(text)["evaluations"]] == [1, 1, 2]


async def test_an_absent_or_unusable_history_file_is_logged_and_ignored(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1")
    history_file = tmp_path / "history.json.gz"
    cases = [
        (None, "history.file_absent", ""),
        (b"\x1f\x8b\x08\x00 not really gzip", "history.file_refused", "not a readable gzip file"),
        (b"{ nope", "history.file_refused", "not JSON"),
        (json.dumps({"evaluations": [{"at": "noon"}]}).encode(), "history.file_refused", "evaluations[0].at"),
        (gzip.compress(b"[1, 2]"), "history.file_refused", 'expected {"evaluations": [...]}'),
    ]
    for content, event, fragment in cases:
        if content is not None:
            history_file.write_bytes(content)
        async with (
            running_monitor(code_dir, history_file=history_file) as (proc, base),
            aiohttp.ClientSession() as s,
        ):
            assert (await _get(s, base + "/readyz"))[0] == 200  # serving: the file never stops a pod
            history = await _evaluate_twice(base, s, 70)
            assert [e["version"] for e in history["evaluations"]] == [1, 1]
            logged = [json.loads(x) for x in proc.log.stream.getvalue().splitlines()]
            said = [e for e in logged if e["event"] == event]
            assert said and said[0]["path"] == str(history_file), (event, logged)
            if fragment:
                assert said[0]["level"] == "error" and fragment in said[0]["error"], said


def test_a_history_file_keeps_the_newest_entries_that_fit() -> None:
    entries = [
        {
            "at": 1000.0 + i,
            "version": 1 + i // 50,
            "features": {f"f{j}": {"score": (i * j) % 97 / 97} for j in range(40)},
        }
        for i in range(100)
    ]
    whole, count = encode_history_file(reversed(entries), limit=100, max_bytes=10**7)
    assert count == 100 and decode_history_file(whole, max_bytes=10**7) == entries  # oldest first
    assert encode_history_file(entries, limit=100, max_bytes=10**7)[0] == whole  # deterministic bytes
    cut, kept = encode_history_file(entries, limit=100, max_bytes=len(whole) // 3)
    assert 0 < kept < 100 and len(cut) <= len(whole) // 3
    assert decode_history_file(cut, max_bytes=10**7) == entries[-kept:]
    with pytest.raises(ValueError, match="once decompressed"):
        decode_history_file(whole, max_bytes=1000)


def test_poetmon_serve_takes_the_history_file_option(tmp_path: Path, server_factory: Any) -> None:
    entries = [{"at": 1796126400.0, "version": 1, "code_sha256": "a" * 64, "features": {}}]
    history_file = tmp_path / "history.json"
    history_file.write_text(json.dumps({"limit": 100, "evaluations": entries}))  # plain JSON is fine too
    server = server_factory(write_version(tmp_path / "v2", version=2), history_file=history_file)
    server.wait_ready(timeout=60)  # a cold interpreter start on a loaded machine
    assert json.loads(http("GET", server.url + "/v1/history")[1])["evaluations"] == entries
    report = json.loads(http("GET", server.url + "/v1/report")[1])
    assert report["history"]["versions"] == {"1": {"evaluations": 1, "newest_at": 1796126400.0}}


def test_the_history_survives_a_kill_between_checkpoints(tmp_path: Path, server_factory: Any) -> None:
    """An OOM kill comes when it comes: the evaluations made since the last periodic checkpoint stay in the
    history (saved beside the checkpoint after each change), so the report and the next version keep them."""
    code_dir = write_version(tmp_path / "v1")
    env = {"POET_CHECKPOINT_INTERVAL_S": "3600"}  # no periodic checkpoint during the test
    server = server_factory(code_dir, env=env)
    server.wait_ready(timeout=60)
    assert http("POST", server.url + "/v1/reference", columns_json(frame(600, 1)))[0] == 200
    for i in range(2):
        assert http("POST", server.url + "/v1/batches", columns_json(frame(200, 80 + i)))[0] == 202
        wait_until(
            lambda i=i: len(json.loads(http("GET", server.url + "/v1/history")[1])["evaluations"]) > i,
            30,
            what=f"evaluation {i + 1}",
        )
    held = json.loads(http("GET", server.url + "/v1/history")[1])["evaluations"]
    wait_until(
        lambda: (server.checkpoint_dir / "history.json").exists()
        and len(json.loads((server.checkpoint_dir / "history.json").read_text())["evaluations"]) == 2,
        30,
        what="the history saved beside the checkpoint",
    )
    server.signal(signal.SIGKILL)
    server.proc.wait(30)
    again = server_factory(code_dir, env=env)  # the same checkpoint directory, as a container restart
    again.wait_ready(timeout=60)
    assert json.loads(http("GET", again.url + "/v1/history")[1])["evaluations"] == held
    assert any(e.get("event") == "history.resumed" for e in again.log_events())
