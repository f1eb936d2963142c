"""Screenshot of the report page for the bundled example (docs/img/report.png), with headless Chromium.

    python docs/report_screenshot.py [--out docs/img/report.png] [--height 2400]
    make report-screenshot

Generates the example's monitor (examples/data/monitor.yaml, template generator), serves it with
`poetmon serve` on a free loopback port, uploads examples/data/reference.csv as the reference, sends
examples/data/current.csv in three batches of 100 rows (one evaluation each, so the history has three
points), and has headless Chromium (Debian's `chromium` package) take the screenshot of `GET /report`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"
BATCH_ROWS = 100


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _request(method: str, url: str, body: bytes | None = None, ctype: str = "text/csv") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError:
        return 0, b""


def _wait(what: str, ready, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise SystemExit(f"report_screenshot: timed out waiting for {what}")


def _rows_evaluated(base: str) -> int:
    status, body = _request("GET", base + "/v1/report")
    return int(json.loads(body)["ingestion"]["rows_evaluated"]) if status == 200 else -1


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        raise SystemExit("report_screenshot: needs headless Chromium: install Debian's `chromium` package")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(REPO / "docs" / "img" / "report.png"))
    parser.add_argument("--height", type=int, default=2400, help="page height captured, in pixels")
    args = parser.parse_args()
    chromium = _chromium()
    sys.path[:0] = [str(REPO), str(REPO / "operator")]
    from poet_operator.local.run_once import generate_version
    from poet_operator.spec import load_document_file

    with tempfile.TemporaryDirectory(prefix="poet-report-shot-") as tmp:
        version_dir = Path(tmp) / "credit-risk"
        generate_version(load_document_file(DATA / "monitor.yaml"), version_dir)
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(REPO), str(REPO / "operator"), os.environ.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
            "POET_MAX_EVALUATION_INTERVAL_S": "0.2",
        }
        server = subprocess.Popen(
            [sys.executable, "-m", "poet_operator.cli", "serve", "--code-dir", str(version_dir),
             "--host", "127.0.0.1", "--port", str(port), "--termination-log", str(Path(tmp) / "termination")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=REPO,
        )  # fmt: skip
        try:
            _wait("the monitor to be ready", lambda: _request("GET", base + "/readyz")[0] == 200)
            status, body = _request("POST", base + "/v1/reference", (DATA / "reference.csv").read_bytes())
            if status != 200:
                raise SystemExit(f"report_screenshot: the reference was refused: {body.decode()[:500]}")
            header, *lines = (DATA / "current.csv").read_text(encoding="utf-8").splitlines()
            for start in range(0, len(lines), BATCH_ROWS):
                chunk = "\n".join([header, *lines[start : start + BATCH_ROWS]]) + "\n"
                _request("POST", base + "/v1/batches", chunk.encode())
                done = start + len(lines[start : start + BATCH_ROWS])
                _wait(f"the evaluation of row {done}", lambda done=done: _rows_evaluated(base) >= done)
            out = Path(args.out).resolve()
            out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={Path(tmp) / 'profile'}",
                 f"--screenshot={out}", f"--window-size=1280,{args.height}", base + "/report"],
                check=True,
                capture_output=True,
                timeout=120,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(30)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
