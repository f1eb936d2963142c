"""A template-generated, enforced version served by `poetmon serve`: the path every monitor pod takes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from poet_operator.poet.engine import run_poet
from poet_operator.poet.events import ListSink
from poet_operator.spec import load_document_file

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"


def _http(method: str, url: str, body: bytes | None = None, ctype: str = "text/csv") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _poll(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met before the deadline")


def test_generated_version_serves_reports_and_stops_cleanly(tmp_path: Path) -> None:
    document = load_document_file(DATA / "monitor.yaml")
    result = run_poet(
        document.spec, tmp_path / "v1", monitor=document.name, generator="template", sink=ListSink()
    )
    assert result.status == "written"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poet_operator.cli",
                "serve",
                "--code-dir",
                str(tmp_path / "v1"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--checkpoint-dir",
                str(tmp_path / "ckpt"),
                "--termination-log",
                str(tmp_path / "termination-log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "POET_MAX_EVALUATION_INTERVAL_S": "0.2"},
        )
        try:
            _poll(lambda: _http("GET", url + "/readyz")[0] == 200)
            assert _http("POST", url + "/v1/reference", (DATA / "reference.csv").read_bytes())[0] == 200
            assert _http("POST", url + "/v1/batches", (DATA / "current.csv").read_bytes())[0] == 202
            report = _poll(
                lambda: (r := json.loads(_http("GET", url + "/v1/report")[1]))["status"] == "ok" and r
            )
            assert report["drifted_features"] == ["income"]
            assert report["window_config"]["strategy"] == "sliding" and report["window_config"]["size"] == 300
            assert report["version"]["monitor"] == "credit-risk"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    kinds = {e.get("type") for e in events if e["event"] == "poet.event"}
    assert {"reference_updated", "drift_detected"} <= kinds  # emitted by the generated code via the toolkit
    assert (tmp_path / "ckpt" / "checkpoint.poet").exists()
