"""Out of memory without a kernel kill: `poetmon serve` as a real process under a real RLIMIT_AS.

When an allocation fails (`MemoryError`) instead of the kernel killing the process, the runtime must not
go on refusing batches forever: a MemoryError in generated code ends the process at once, and repeated ones
in requests end it after `POET_MAX_MEMORY_ERRORS`; either way with exit status 3 and a record whose reason is
`OOMKilled`, the reason the kubelet gives for a container its memory limit killed.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

from monitor_runtime.server.crash import (
    EXIT_OUT_OF_MEMORY,
    OUT_OF_MEMORY_REASON,
    MemoryErrorTracker,
    encode_record,
    feedback_record,
)

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

MB = 1024**2

# Keeps 50 MB more (touched, so resident) on every evaluation: it runs out of memory on its own.
HOARDING_MONITOR = GOOD_MONITOR.replace(
    "        self._append(batch)\n",
    "        self.hoard = getattr(self, 'hoard', [])\n"
    "        self.hoard.append(np.ones(6_250_000))\n"
    "        self._append(batch)\n",
)
assert HOARDING_MONITOR != GOOD_MONITOR


def _limit(pid: int, room: int) -> None:
    """RLIMIT_AS of a running process: what it maps now plus `room` bytes (as `poetmon dev` does)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            mapped = int(line.split()[1]) * 1024
    resource.prlimit(pid, resource.RLIMIT_AS, (mapped + room, mapped + room))


def test_a_memory_error_in_generated_code_ends_the_process_at_once_as_out_of_memory(
    tmp_path: Path, server_factory
) -> None:
    code_dir = write_version(tmp_path / "v-hoard", code=HOARDING_MONITOR)
    # Three failures in a row would be needed for any other exception; one MemoryError is enough.
    server = server_factory(code_dir, env={"POET_MAX_CONSECUTIVE_FAILURES": "3"})
    server.wait_ready()
    assert http("POST", server.url + "/v1/reference", columns_json(frame(500, 1)))[0] == 200
    _limit(server.proc.pid, 200 * MB)
    answers = []
    for seed in range(2, 30):
        if server.proc.poll() is not None:
            break
        try:
            answers.append(http("POST", server.url + "/v1/batches", columns_json(frame(200, seed)))[0])
        except OSError:  # the listener is closed: the process is ending
            break
        # One evaluation per batch: the next batch goes once this one was evaluated or the process ended.
        sent = len(answers)
        wait_until(
            lambda: server.proc.poll() is not None or _evaluated(server.url) >= sent,  # noqa: B023
            timeout=30,
            what="the batch's evaluation or the end of the process",
        )
    assert server.wait_exit() == EXIT_OUT_OF_MEMORY
    assert set(answers) <= {202, 503}, answers
    record = json.loads(server.termination_log.read_bytes())
    assert record["reason"] == OUT_OF_MEMORY_REASON and record["phase"] == "run"
    assert record["signature"]["exception"] == "MemoryError"
    assert record["signature"]["location"].endswith("in monitor_features")
    assert record["message"].startswith("out of memory: monitor_features could not allocate memory")
    assert record["failures"]["consecutive"] == 1  # the first failure, not the crash threshold
    assert record["batch_profile"]["rows"] == 200
    events = [e["event"] for e in server.log_events()]
    assert "runtime.out_of_memory" in events and "runtime.crash" in events
    # The window may be half updated: no final checkpoint of it.
    skipped = [e for e in server.log_events() if e["event"] == "checkpoint.skipped"]
    assert skipped and "out of memory" in skipped[-1]["reason"]


# Takes memory in ever smaller pieces until not even 4 kB can be had, then fails as the last one did: the
# process ends with no room left at all.
EXHAUSTING_MONITOR = GOOD_MONITOR.replace(
    "        self._append(batch)\n",
    "        self.hoard = getattr(self, 'hoard', [])\n"
    "        for size in (131_072, 8_192, 512):\n"
    "            try:\n"
    "                while True:\n"
    "                    self.hoard.append(np.ones(size))\n"
    "            except MemoryError:\n"
    "                pass\n"
    "        self.hoard.append(np.ones(512))\n"
    "        self._append(batch)\n",
)
assert EXHAUSTING_MONITOR != GOOD_MONITOR


def test_out_of_memory_with_no_room_left_for_a_thread_still_ends_with_status_3(
    tmp_path: Path, server_factory
) -> None:
    """Closing the event loop starts a thread to join its executor; with the address space full that thread
    cannot start, and that failure must not replace the out-of-memory status (it once made it 1)."""
    code_dir = write_version(tmp_path / "v-exhaust", code=EXHAUSTING_MONITOR)
    server = server_factory(code_dir)
    server.wait_ready()
    assert http("POST", server.url + "/v1/reference", columns_json(frame(500, 1)))[0] == 200
    _limit(server.proc.pid, 100 * MB)
    assert http("POST", server.url + "/v1/batches", columns_json(frame(200, 2)))[0] == 202
    assert server.wait_exit() == EXIT_OUT_OF_MEMORY
    record = json.loads(server.termination_log.read_bytes())
    assert record["reason"] == OUT_OF_MEMORY_REASON
    assert record["message"].startswith("out of memory: monitor_features could not allocate memory")
    events = [e["event"] for e in server.log_events()]
    assert "runtime.out_of_memory" in events


def _evaluated(url: str) -> int:
    try:
        status, body = http("GET", url + "/v1/report")
    except OSError:  # the process ended meanwhile
        return 0
    if status != 200:
        return 0
    return int(json.loads(body)["failures"]["evaluations"] or 0)


def _csv_body(rows: int, seed: int) -> bytes:
    cols = frame(rows, seed)
    lines = [f"{a},{b},{c}" for a, b, c in zip(cols["age"], cols["income"], cols["segment"], strict=True)]
    return ("age,income,segment\n" + "\n".join(lines) + "\n").encode()


def test_memory_errors_in_requests_get_503_and_repeated_ones_end_the_process(
    tmp_path: Path, server_factory
) -> None:
    # No reference is uploaded, so nothing is evaluated: batches only queue (up to twice the window), and
    # what runs out of memory is parsing the next one.
    spec = {**SPEC, "window": {"strategy": "sliding", "size": 1_000_000, "step": 500_000}}
    code_dir = write_version(tmp_path / "v-queue", spec=spec)
    env = {"POET_MAX_MEMORY_ERRORS": "3", "POET_MEMORY_ERROR_SPAN_S": "600"}
    server = server_factory(code_dir, env=env)
    server.wait_ready()
    body = _csv_body(60_000, 2)  # about 1.6 MB: parsed on the parsing thread
    # Less room than the queue's cap (960,000 rows, about 20 MB): parsing a later body runs out.
    _limit(server.proc.pid, 12 * MB)
    answers: list[tuple[int, dict]] = []
    health_after_first_refusal = None
    for _ in range(50):
        if server.proc.poll() is not None:
            break
        try:
            status, raw = http("POST", server.url + "/v1/batches", body, "text/csv")
        except OSError:  # the listener is closed: the process is ending
            break
        answers.append((status, json.loads(raw)))
        if status == 503 and health_after_first_refusal is None:
            # One MemoryError is a refused batch, not the end: the process still answers.
            health_after_first_refusal = http("GET", server.url + "/healthz")[0]
    assert server.wait_exit() == EXIT_OUT_OF_MEMORY
    refused = [answer for status, answer in answers if status != 202]
    assert {status for status, _ in answers if status != 202} == {503}, answers
    assert health_after_first_refusal == 200
    # Three refused for memory, then (while it shuts down) refused as shutting down.
    for answer in refused[:3]:
        assert answer["kind"] == "out_of_memory" and answer["error"].startswith("out of memory:")
        assert "nothing of it was accepted: send it again" in answer["error"]
    assert all("shutting down" in answer["error"] for answer in refused[3:]), refused
    record = json.loads(server.termination_log.read_bytes())
    assert record["reason"] == OUT_OF_MEMORY_REASON
    assert record["message"].startswith(
        "out of memory: 3 requests failed with MemoryError within 600 s (limit 3)"
    )
    assert record["failures"]["memory_errors"] == 3
    logged = [e for e in server.log_events() if e["event"] == "request.out_of_memory"]
    assert [e["memory_errors"] for e in logged] == [1, 2, 3]
    assert {e["path"] for e in logged} == {"/v1/batches"}


def test_memory_errors_spread_over_more_than_the_span_do_not_trip() -> None:
    tracker = MemoryErrorTracker(max_count=3, span_s=60.0)
    for moment in (0.0, 40.0, 80.0, 120.0):  # never three within 60 s
        tracker.record(moment)
        assert tracker.tripped() is None
    tracker.record(130.0)  # 80, 120, 130
    assert tracker.tripped() == "3 requests failed with MemoryError within 60 s (limit 3)"
    assert tracker.total == 5


def test_the_out_of_memory_reason_survives_truncation_of_the_record() -> None:
    record = feedback_record(
        phase="run",
        signature={"exception": "MemoryError", "location": "monitor.py:9 in monitor_features"},
        version=1,
        monitor="m",
        message="m" * 5000,
        traceback_text="t" * 9000,
        reason=OUT_OF_MEMORY_REASON,
    )
    out = json.loads(encode_record(record))
    assert out["reason"] == OUT_OF_MEMORY_REASON and out["version"] == 1
    plain = feedback_record(phase="run", signature={"exception": "KeyError"}, version=1, monitor="m")
    assert "reason" not in plain  # only an out-of-memory record carries one


def test_a_csv_body_read_by_arrow_near_the_limit_is_never_a_500(tmp_path: Path, server_factory) -> None:
    # Arrow's CSV reader hands work to worker threads it starts at first use; started only then, with
    # little address space left, they fail to launch ("Unknown error: Failed to launch worker thread")
    # and the batch got a 500. The runtime starts them before it is ready.
    server = server_factory(write_version(tmp_path / "v-arrow"))
    server.wait_ready()
    _limit(server.proc.pid, 16 * MB)
    body = _csv_body(8_000, 3)
    assert len(body) > 64 * 1024  # past the small-body reader: Arrow parses it
    status, raw = http("POST", server.url + "/v1/batches", body, "text/csv")
    internal = [e.get("error") for e in server.log_events() if e["event"] == "http.internal_error"]
    assert status in (202, 503), (raw, internal)
    if status == 503:
        assert json.loads(raw)["kind"] == "out_of_memory"


async def test_a_failure_after_the_out_of_memory_record_does_not_replace_it(tmp_path: Path) -> None:
    # An evaluation in flight when memory ran out may fail after the record is written (here as a thread
    # that cannot start would): the cause stays out of memory, and so does the exit status.
    termination_log = tmp_path / "termination-log"
    code_dir = write_version(tmp_path / "v-oom")
    async with running_monitor(code_dir, termination_log=termination_log, max_consecutive_failures=1) as (
        proc,
        _,
    ):
        await proc.evaluator.out_of_memory(MemoryError(), "a test ran it out of memory")
        cols = frame(50, 4)
        await proc.evaluator._failed(RuntimeError("can't start new thread"), cols, 50, "monitor_features")
        record = json.loads(termination_log.read_bytes())
        assert record["reason"] == OUT_OF_MEMORY_REASON
        assert record["message"].startswith("out of memory: a test ran it out of memory")
    assert proc.exit_code == EXIT_OUT_OF_MEMORY
