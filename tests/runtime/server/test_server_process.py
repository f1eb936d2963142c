"""`poetmon serve` as a real process: crash feedback, load refusal, checkpoint and resume, SIGTERM."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

from monitor_runtime.server.crash import FEEDBACK_KIND, TERMINATION_LIMIT

from .runtime_server_helpers import (
    GOOD_MONITOR,
    HANGING_MONITOR,
    columns_json,
    frame,
    http,
    wait_until,
    write_version,
)


def _report(url: str) -> dict:
    status, body = http("GET", url + "/v1/report")
    assert status == 200
    return json.loads(body)


def test_code_that_raises_on_a_new_feature_exits_with_a_feedback_record(
    crashing_version_dir: Path, server_factory
) -> None:
    server = server_factory(crashing_version_dir, env={"POET_MAX_CONSECUTIVE_FAILURES": "2"})
    server.wait_ready()
    assert http("POST", server.url + "/v1/reference", columns_json(frame(500, 1)))[0] == 200
    # Known features evaluate fine.
    assert http("POST", server.url + "/v1/batches", columns_json(frame(200, 2)))[0] == 202
    wait_until(lambda: _report(server.url)["status"] == "ok", what="first evaluation")
    # A new column makes the generated code raise; the runtime survives one failure ...
    assert http("POST", server.url + "/v1/batches", columns_json(frame(200, 3, extra=True)))[0] == 202
    wait_until(lambda: _report(server.url)["failures"]["total"] == 1, what="first failure")
    assert server.proc.poll() is None
    # ... and exits at the threshold with the record in the termination log.
    http("POST", server.url + "/v1/batches", columns_json(frame(200, 4, extra=True)))
    code = server.wait_exit()
    assert code != 0
    raw = server.termination_log.read_bytes()
    assert 0 < len(raw) <= TERMINATION_LIMIT
    record = json.loads(raw)
    assert record["kind"] == FEEDBACK_KIND and record["source"] == "crash" and record["phase"] == "run"
    assert record["signature"]["exception"] == "KeyError"
    assert record["signature"]["location"].startswith("monitor.py:")
    assert record["signature"]["location"].endswith("in monitor_features")
    assert "KeyError: 'brand_new'" in record["traceback"]
    assert record["version"] == 1 and record["monitor"] == "credit-monitor"
    profile = record["batch_profile"]
    assert profile["rows"] == 200 and profile["columns"]["brand_new"] == {
        "dtype": "float64",
        "kind": "numeric",
        "missing": 0,
    }
    assert record["failures"]["consecutive"] == 2
    # Never raw values: no number of the offending batch appears in the record.
    assert str(frame(200, 4, extra=True)["age"][0]) not in raw.decode()
    events = [e["event"] for e in server.log_events()]
    assert "evaluation.failed" in events and "runtime.crash" in events
    failed = next(e for e in server.log_events() if e["event"] == "evaluation.failed")
    assert "Traceback" in failed["traceback"] and failed["batch_profile"]["rows"] == 200


def test_a_tampered_version_is_refused_with_a_termination_message(version_dir: Path, server_factory) -> None:
    code = version_dir / "monitor.py"
    code.write_text(code.read_text() + "\n# edited after enforce\n")
    server = server_factory(version_dir)
    assert server.wait_exit() == 2
    record = json.loads(server.termination_log.read_bytes())
    assert record["kind"] == FEEDBACK_KIND and record["source"] == "crash" and record["phase"] == "load"
    assert "sha256" in record["message"] and record["version"] == 1
    assert record["signature"]["exception"] == "ContractError"


def test_checkpoint_survives_a_kill_and_the_restart_resumes(version_dir: Path, server_factory) -> None:
    env = {"POET_CHECKPOINT_INTERVAL_S": "0.2"}
    first = server_factory(version_dir, env=env)
    first.wait_ready()
    http("POST", first.url + "/v1/reference", columns_json(frame(800, 1)))
    http("POST", first.url + "/v1/batches", columns_json(frame(300, 2, shift=2.0)))
    before = wait_until(lambda: (r := _report(first.url))["status"] == "ok" and r, what="evaluation")
    wait_until(
        lambda: any(
            e["event"] == "checkpoint.saved" and e["rows_evaluated"] == 300 for e in first.log_events()
        ),
        what="a checkpoint after the evaluation",
    )
    first.signal(signal.SIGKILL)  # no chance to write a final checkpoint
    first.wait_exit()

    second = server_factory(version_dir, env=env)
    second.wait_ready()
    after = _report(second.url)
    assert after["features"] == before["features"]
    assert after["ingestion"]["rows"] == 300
    assert any(e["event"] == "poet.event" and e["type"] == "runtime.resumed" for e in second.log_events())
    # The monitor's own state came back too (window and reference), so new data evaluates at once.
    assert http("POST", second.url + "/v1/batches", columns_json(frame(200, 5, shift=2.0)))[0] == 202
    resumed = wait_until(
        lambda: (r := _report(second.url))["ingestion"]["rows_evaluated"] >= 500 and r,
        what="evaluation after resume",
    )
    assert "age" in resumed["drifted_features"]


def test_sigterm_drains_in_flight_requests_checkpoints_and_exits_zero(
    version_dir: Path, server_factory
) -> None:
    server = server_factory(version_dir, env={"POET_CHECKPOINT_INTERVAL_S": "3600"})
    server.wait_ready()
    http("POST", server.url + "/v1/reference", columns_json(frame(800, 1)))
    body = columns_json(frame(1000, 2))
    head = (
        f"POST /v1/batches HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # A reply on a second connection means the server's loop has run past the first one's headers.
        assert http("GET", server.url + "/healthz")[0] == 200
        server.signal(signal.SIGTERM)
        # The server logs `runtime.stopping` just before it closes its listener and starts draining; a
        # readiness probe would race the close (and can stall in the listen backlog under load).
        wait_until(
            lambda: any(e["event"] == "runtime.stopping" for e in server.log_events()),
            what="the server to start shutting down after SIGTERM",
        )
        sock.sendall(body[len(body) // 2 :])
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 202"), reply[:200]
    wait_until(lambda: _refused(server.url), what="the listener to stay closed")
    assert server.wait_exit() == 0
    events = server.log_events()
    names = [e["event"] for e in events]
    assert "runtime.signal" in names and names[-1] == "runtime.stopped"
    # The reference was checkpointed when it came; the final checkpoint follows the stop and holds the
    # drained request's rows.
    last = len(names) - 1 - names[::-1].index("checkpoint.saved")
    assert last > names.index("runtime.stopping")
    assert events[last]["rows_ingested"] == 1000
    assert (server.checkpoint_dir / "checkpoint.poet").exists()


def _refused(url: str) -> bool:
    try:
        status, _ = http("GET", url + "/readyz")
    except OSError:
        return True
    return status == 503


def test_an_evaluation_that_never_returns_ends_the_process_with_a_record(
    tmp_path: Path, server_factory
) -> None:
    code_dir = write_version(tmp_path / "v-hang", code=HANGING_MONITOR)
    server = server_factory(code_dir, env={"POET_MAX_EVALUATION_SECONDS": "0.5"})
    server.wait_ready()
    http("POST", server.url + "/v1/reference", columns_json(frame(500, 1)))
    http("POST", server.url + "/v1/batches", columns_json(frame(200, 2)))
    assert server.wait_exit() == 1
    record = json.loads(server.termination_log.read_bytes())
    assert record["signature"] == {
        "exception": "EvaluationTimeout",
        "location": "monitor.py in monitor_features",
    }
    assert "did not return within 0.5 s" in record["message"]
    assert record["batch_profile"]["rows"] == 200


def test_a_bad_setting_stops_the_start_with_a_record(version_dir: Path, server_factory) -> None:
    server = server_factory(version_dir, env={"POET_MAX_BODY_BYTES": "lots"})
    assert server.wait_exit() == 2
    record = json.loads(server.termination_log.read_bytes())
    assert (
        record["source"] == "crash"
        and record["phase"] == "load"
        and "POET_MAX_BODY_BYTES='lots'" in record["message"]
    )


def test_sigterm_during_a_long_evaluation_exits_by_the_shutdown_deadline(
    tmp_path: Path, server_factory
) -> None:
    code_dir = write_version(tmp_path / "v-hang", code=HANGING_MONITOR)
    server = server_factory(
        code_dir, env={"POET_MAX_EVALUATION_SECONDS": "60", "POET_SHUTDOWN_DEADLINE_S": "1"}
    )
    server.wait_ready()
    http("POST", server.url + "/v1/reference", columns_json(frame(500, 1)))
    # The reference's own checkpoint first, so that any later one could only come from the shutdown.
    wait_until(
        lambda: any(e["event"] == "checkpoint.saved" for e in server.log_events()),
        what="the reference's checkpoint",
    )
    http("POST", server.url + "/v1/batches", columns_json(frame(200, 2)))
    # The queue drains when the evaluation starts; it then never returns.
    wait_until(
        lambda: (
            _report(server.url)["window"]["pending_rows"] == 0
            and _report(server.url)["status"] == "waiting_for_data"
        ),
        what="the evaluation to start",
    )
    started = time.monotonic()
    server.signal(signal.SIGTERM)
    assert server.wait_exit(timeout=10) == 0
    assert time.monotonic() - started < 5
    events = [e for e in server.log_events() if e.get("event") == "runtime.shutdown_deadline"]
    assert len(events) == 1 and "abandoned" in events[0]["message"]
    # Only the reference's own checkpoint (taken when it came) exists: none was written on the way out.
    names = [e.get("event") for e in server.log_events()]
    assert "checkpoint.saved" not in names[names.index("runtime.signal") :]


def test_a_new_reference_is_checkpointed_at_once_and_a_kill_right_after_keeps_it(
    version_dir: Path, server_factory
) -> None:
    # A periodic checkpoint far away: only the reference itself can trigger the one this test needs.
    env = {"POET_CHECKPOINT_INTERVAL_S": "3600"}
    first = server_factory(version_dir, env=env)
    first.wait_ready()
    status, body = http("POST", first.url + "/v1/reference", columns_json(frame(800, 1)))
    assert status == 200
    sha = json.loads(body)["sha256"]
    wait_until(
        lambda: any(e["event"] == "checkpoint.saved" for e in first.log_events()),
        what="a checkpoint after the reference",
    )
    first.signal(signal.SIGKILL)  # as the kernel does when memory runs out
    first.wait_exit()

    second = server_factory(version_dir, env=env)
    second.wait_ready()
    assert _report(second.url)["reference"]["sha256"] == sha


# The same monitor with a large state: 2,000,000 numbers take about a second to write, so an evaluation
# finishes while a checkpoint is being written.
LARGE_STATE_MONITOR = GOOD_MONITOR.replace(
    '        return {"reference": self.reference_data, "window": self.window}',
    '        return {"reference": self.reference_data, "window": self.window, "ballast": [0.5] * 2_000_000}',
)
assert LARGE_STATE_MONITOR != GOOD_MONITOR


def test_an_evaluation_that_finishes_during_a_checkpoint_goes_into_the_next_one(
    tmp_path: Path, server_factory
) -> None:
    server = server_factory(
        write_version(tmp_path / "v-large", code=LARGE_STATE_MONITOR),
        env={"POET_CHECKPOINT_INTERVAL_S": "0.2"},
    )
    server.wait_ready()
    http("POST", server.url + "/v1/reference", columns_json(frame(800, 1)))  # a checkpoint starts
    wait_until(
        lambda: any(e["event"] == "checkpoint.saved" for e in server.log_events()), what="a checkpoint"
    )
    http("POST", server.url + "/v1/batches", columns_json(frame(300, 2, shift=2.0)))  # one starts again
    wait_until(lambda: _report(server.url)["status"] == "ok", what="the evaluation")
    # However the evaluation fell against the checkpoints, one written after it holds it.
    saved = wait_until(
        lambda: [e for e in server.log_events() if e["event"] == "checkpoint.saved" and e["rows_evaluated"]],
        timeout=30,
        what="a checkpoint holding the evaluation",
    )
    assert saved[-1]["rows_evaluated"] == 300
