"""The reference as data between pods: GET/POST /v1/reference (npz), --reference-file, checkpoints, report."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from monitor_runtime.reference_npz import (
    MEDIA_TYPE,
    decode_reference,
    encode_reference,
    reference_fingerprint,
)

from .runtime_server_helpers import (
    GOOD_MONITOR,
    SPEC,
    columns_json,
    frame,
    http,
    running_monitor,
    write_version,
)

FIRST_WINDOW = {**SPEC, "reference": {"source": "first_window"}}
# What a drift verdict consists of; timing and ingestion counters differ between pods by nature.
VERDICT_KEYS = ("features", "overall_drift_score", "overall_health", "drifted_features", "recommendations")


async def _json(resp: aiohttp.ClientResponse) -> Any:
    return json.loads(await resp.read())


async def _get(s: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with s.get(url) as resp:
        return resp.status, await _json(resp)


async def _post(s: aiohttp.ClientSession, url: str, body: bytes, ctype: str) -> tuple[int, Any]:
    async with s.post(url, data=body, headers={"Content-Type": ctype}) as resp:
        return resp.status, await _json(resp)


async def _get_reference(s: aiohttp.ClientSession, base: str) -> tuple[bytes, dict[str, str]]:
    async with s.get(base + "/v1/reference") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read(), dict(resp.headers)


async def _wait_report(s: aiohttp.ClientSession, base: str, predicate: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    report: Any = {}
    while time.monotonic() < deadline:
        _, report = await _get(s, base + "/v1/report")
        if predicate(report):
            return report
        await asyncio.sleep(0.05)
    raise AssertionError(f"report never satisfied the condition: {json.dumps(report)[:2000]}")


async def _send_current(s: aiohttp.ClientSession, base: str) -> dict[str, Any]:
    """The same three current batches (age shifted) to any server; its report once all are evaluated."""
    for seed in (11, 12, 13):
        status, _ = await _post(
            s, base + "/v1/batches", columns_json(frame(200, seed, shift=1.0)), "application/json"
        )
        assert status == 202
    return await _wait_report(s, base, lambda r: r["ingestion"]["rows_evaluated"] == 600)


def _verdict(report: dict[str, Any]) -> dict[str, Any]:
    return {key: report[key] for key in VERDICT_KEYS}


async def test_no_reference_yet_is_a_404_and_null_report_fields(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1", spec=FIRST_WINDOW)
    async with running_monitor(code_dir) as (_, base), aiohttp.ClientSession() as s:
        status, body = await _get(s, base + "/v1/reference")
        assert status == 404 and "no reference yet" in body["error"]
        _, report = await _get(s, base + "/v1/report")
        assert report["reference"] == {"rows": None, "sha256": None, "source": None}


async def test_a_first_window_reference_moves_to_another_pod_and_both_give_the_same_verdicts(
    tmp_path: Path,
) -> None:
    code_dir = write_version(tmp_path / "v1", spec=FIRST_WINDOW)
    reference_rows = frame(400, 1)  # exactly one window: it becomes A's reference
    async with running_monitor(code_dir) as (_, a), aiohttp.ClientSession() as s:
        await _post(s, a + "/v1/batches", columns_json(reference_rows), "application/json")
        report_a = await _wait_report(s, a, lambda r: r["reference"]["sha256"] is not None)
        assert report_a["reference"]["rows"] == 400 and report_a["reference"]["source"] == "first_window"
        body, headers = await _get_reference(s, a)
        assert headers["Content-Type"] == MEDIA_TYPE
        assert headers["X-Poet-Reference-Sha256"] == report_a["reference"]["sha256"]
        assert headers["X-Poet-Reference-Rows"] == "400"
        # The served archive holds exactly the rows the monitor was given, in the batch's column order.
        served = decode_reference(body)
        assert list(served) == ["age", "income", "segment"]
        np.testing.assert_array_equal(served["age"], reference_rows["age"])
        assert served["segment"].tolist() == reference_rows["segment"].tolist()
        assert reference_fingerprint(reference_rows) == headers["X-Poet-Reference-Sha256"]
        verdict_a = _verdict(await _send_current(s, a))
        assert "age" in verdict_a["drifted_features"]  # the comparison is not vacuous

        # B is a canary that saw none of A's data: the reference is pushed to it as npz.
        async with running_monitor(code_dir) as (_, b):
            status, answer = await _post(s, b + "/v1/reference", body, MEDIA_TYPE)
            assert status == 200, answer
            assert answer["source"] == "transfer" and answer["unchanged"] is False
            assert answer["sha256"] == headers["X-Poet-Reference-Sha256"] and answer["reference_rows"] == 400
            _, report_b = await _get(s, b + "/v1/report")
            assert report_b["reference"] == {**report_a["reference"], "source": "transfer"}
            # B serves the very same reference back: same fingerprint whichever path it took
            body_b, headers_b = await _get_reference(s, b)
            assert headers_b["X-Poet-Reference-Sha256"] == headers["X-Poet-Reference-Sha256"]
            assert headers_b["X-Poet-Reference-Source"] == "transfer"
            # Pushing it again changes nothing: the monitor is not handed the same reference twice.
            status, again = await _post(s, b + "/v1/reference", body_b, MEDIA_TYPE)
            assert status == 200 and again["unchanged"] is True and again["source"] == "transfer"
            assert _verdict(await _send_current(s, b)) == verdict_a

        # C starts with the reference mounted as a file (the ConfigMap), as a restarted pod elsewhere would.
        ref_file = tmp_path / "reference" / "reference.npz"
        ref_file.parent.mkdir()
        ref_file.write_bytes(body)
        async with running_monitor(code_dir, reference_file=ref_file) as (proc_c, c):
            _, report_c = await _get(s, c + "/v1/report")
            assert report_c["status"] == "waiting_for_data"
            assert report_c["reference"] == {**report_a["reference"], "source": "file"}
            loaded = [json.loads(x) for x in proc_c.log.stream.getvalue().splitlines() if "file_loaded" in x]
            assert loaded and loaded[0]["sha256"] == report_a["reference"]["sha256"]
            assert _verdict(await _send_current(s, c)) == verdict_a


async def test_a_restart_from_the_checkpoint_keeps_the_reference_and_its_fingerprint(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1", spec=FIRST_WINDOW)
    ckpt = tmp_path / "ckpt"
    other_file = tmp_path / "other.npz"
    other_file.write_bytes(encode_reference(frame(400, 99, shift=3.0)).npz)
    async with running_monitor(code_dir, checkpoint_dir=ckpt) as (_, base), aiohttp.ClientSession() as s:
        await _post(s, base + "/v1/batches", columns_json(frame(400, 1)), "application/json")
        before = (await _wait_report(s, base, lambda r: r["reference"]["sha256"] is not None))["reference"]
        body_before, _ = await _get_reference(s, base)
    # The checkpoint's reference wins over a mounted file: the monitor resumes exactly where it was.
    async with running_monitor(code_dir, checkpoint_dir=ckpt, reference_file=other_file) as (proc, base):
        async with aiohttp.ClientSession() as s:
            _, report = await _get(s, base + "/v1/report")
            assert report["reference"] == before
            body_after, headers = await _get_reference(s, base)
            assert body_after == body_before and headers["X-Poet-Reference-Sha256"] == before["sha256"]
        assert '"reference.file_skipped"' in proc.log.stream.getvalue()
    # A new version (other code) does not restore this checkpoint; the mounted file gives it the reference.
    v2 = write_version(tmp_path / "v2", spec=FIRST_WINDOW, code=GOOD_MONITOR + "\n# v2\n", version=2)
    ref_file = tmp_path / "reference.npz"
    ref_file.write_bytes(body_before)
    restarted = running_monitor(v2, checkpoint_dir=ckpt, reference_file=ref_file)
    async with restarted as (_, base), aiohttp.ClientSession() as s:
        _, report = await _get(s, base + "/v1/report")
        assert report["reference"] == {**before, "source": "file"}


async def test_bad_npz_bodies_get_a_400_naming_the_problem_and_change_nothing(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1")
    good = encode_reference(frame(500, 1))
    with np.load(io.BytesIO(good.npz), allow_pickle=False) as npz:
        members = {name: npz[name] for name in npz.files}
    header = json.loads(members["header"].tobytes())

    def archive(**changes: Any) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **{**members, **changes})
        return buffer.getvalue()

    newer = json.dumps({**header, "version": 2}).encode()
    cases = [
        (good.npz[:300], "malformed reference archive: reference is not a readable npz archive"),
        (b"not an archive at all", "not a readable npz archive"),
        (
            archive(c0_values=np.array([{"x": 1}] * 500, dtype=object)),
            "member 'c0_values' holds Python objects",
        ),
        (archive(header=np.frombuffer(newer, dtype=np.uint8)), "unsupported format version 2"),
        (archive(c0_values=np.zeros(499)), "member 'c0_values' is <f8 of shape (499,)"),
    ]
    async with running_monitor(code_dir) as (_, base), aiohttp.ClientSession() as s:
        status, first = await _post(s, base + "/v1/reference", good.npz, MEDIA_TYPE)
        assert status == 200 and first["source"] == "transfer"
        for body, fragment in cases:
            status, answer = await _post(s, base + "/v1/reference", body, MEDIA_TYPE)
            assert status == 400 and fragment in answer["error"], (fragment, answer)
        # too few rows for a reference: the same 422 as every other format
        status, answer = await _post(s, base + "/v1/reference", encode_reference(frame(5, 1)).npz, MEDIA_TYPE)
        assert status == 422 and "at least 30" in answer["error"]
        _, report = await _get(s, base + "/v1/report")
        assert report["reference"] == {"rows": 500, "sha256": good.sha256, "source": "transfer"}
        # a JSON upload of other rows replaces it and is reported as uploaded
        status, answer = await _post(
            s, base + "/v1/reference", columns_json(frame(300, 2)), "application/json"
        )
        assert status == 200 and answer["source"] == "uploaded"
        assert answer["sha256"] == reference_fingerprint(frame(300, 2))
        _, report = await _get(s, base + "/v1/report")
        assert report["reference"]["rows"] == 300 and report["reference"]["source"] == "uploaded"


async def test_an_absent_or_corrupt_reference_file_is_logged_and_ignored(tmp_path: Path) -> None:
    code_dir = write_version(tmp_path / "v1", spec=FIRST_WINDOW)
    ref_file = tmp_path / "mounted" / "reference.npz"
    # Absent (no pod had a reference yet): starts as without the option.
    async with (
        running_monitor(code_dir, reference_file=ref_file) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        _, report = await _get(s, base + "/v1/report")
        assert report["status"] == "waiting_for_reference"
        assert '"reference.file_absent"' in proc.log.stream.getvalue()
    # Corrupt: logged with the reason and ignored; the monitor still takes its first window.
    ref_file.parent.mkdir()
    ref_file.write_bytes(b"PK\x03\x04 truncated")
    async with (
        running_monitor(code_dir, reference_file=ref_file) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        events = [json.loads(line) for line in proc.log.stream.getvalue().splitlines()]
        refused = [e for e in events if e["event"] == "reference.file_refused"]
        assert refused and refused[0]["level"] == "error" and refused[0]["path"] == str(ref_file)
        assert "not a readable npz archive" in refused[0]["error"]
        assert (await _get(s, base + "/v1/reference"))[0] == 404
        await _post(s, base + "/v1/batches", columns_json(frame(400, 1)), "application/json")
        report = await _wait_report(s, base, lambda r: r["reference"]["sha256"] is not None)
        assert report["reference"]["source"] == "first_window"


def test_poetmon_serve_loads_the_reference_file_before_the_first_batch(
    tmp_path: Path, server_factory: Any
) -> None:
    code_dir = write_version(tmp_path / "v1", spec=FIRST_WINDOW)
    encoded = encode_reference(frame(400, 1))
    ref_file = tmp_path / "reference.npz"
    ref_file.write_bytes(encoded.npz)
    server = server_factory(code_dir, reference_file=ref_file)
    server.wait_ready(timeout=60)  # a cold interpreter start on a loaded machine
    report = json.loads(http("GET", server.url + "/v1/report")[1])
    assert report["status"] == "waiting_for_data"
    assert report["reference"] == {"rows": 400, "sha256": encoded.sha256, "source": "file"}
    status, body = http("GET", server.url + "/v1/reference")
    assert status == 200 and reference_fingerprint(decode_reference(body)) == encoded.sha256
    started = [e for e in server.log_events() if e.get("event") == "runtime.started"]
    assert started[0]["reference"] == report["reference"]
    head = urllib.request.Request(server.url + "/v1/reference", method="HEAD")
    with urllib.request.urlopen(head, timeout=10) as resp:  # the fingerprint without the body
        assert resp.headers["X-Poet-Reference-Sha256"] == encoded.sha256 and resp.read() == b""
    server.signal(signal.SIGTERM)
    assert server.wait_exit() == 0
