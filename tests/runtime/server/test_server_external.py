"""The runtime seen by real tools: a Prometheus server scraping it, headless Chromium rendering it."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import urllib.parse
from pathlib import Path

import pytest

from .runtime_server_helpers import columns_json, engine_report_case, frame, free_port, http, wait_until

pytestmark = pytest.mark.e2e


def _report(url: str) -> dict:
    return json.loads(http("GET", url + "/v1/report")[1])


def _drifted_server(server_factory, version_dir: Path):
    server = server_factory(version_dir)
    server.wait_ready()
    http("POST", server.url + "/v1/reference", columns_json(frame(800, 1)))
    http("POST", server.url + "/v1/batches", columns_json(frame(400, 2, shift=2.0)))
    wait_until(lambda: _report(server.url)["status"] == "ok", what="an evaluation")
    return server


@pytest.mark.skipif(
    shutil.which("prometheus") is None,
    reason="Debian's `prometheus` binary is not installed (.ci/run installs it)",
)
def test_a_real_prometheus_scrapes_the_drift_gauge(version_dir: Path, server_factory, tmp_path: Path) -> None:
    server = _drifted_server(server_factory, version_dir)
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        textwrap.dedent(f"""
        global:
          scrape_interval: 1s
          evaluation_interval: 1s
        scrape_configs:
          - job_name: poet-monitor
            static_configs:
              - targets: ["127.0.0.1:{server.port}"]
    """)
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        query = urllib.parse.quote('poet_monitor_feature_drift_detected{feature="age"}')
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?query={query}"

        def scraped() -> list:
            status, body = http("GET", url)
            data = json.loads(body) if status == 200 else {}
            return data.get("data", {}).get("result", [])

        result = wait_until(scraped, timeout=40, interval=0.25, what="Prometheus to scrape the runtime")
        sample = result[0]
        assert sample["metric"]["feature"] == "age" and sample["metric"]["job"] == "poet-monitor"
        assert float(sample["value"][1]) == 1.0
        info_q = urllib.parse.quote("poet_monitor_info")
        info = json.loads(http("GET", f"http://127.0.0.1:{prom_port}/api/v1/query?query={info_q}")[1])
        assert info["data"]["result"][0]["metric"]["monitor"] == "credit-monitor"
    finally:
        prom.terminate()
        prom.wait(20)
        log.close()


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


_needs_chromium = pytest.mark.skipif(
    _chromium() is None, reason="Debian's `chromium` package is not installed (.ci/run installs it)"
)


def _render_in_chromium(url: str, tmp_path: Path, shot: Path) -> str:
    """Open `url` in headless Chromium: one run writes the screenshot and prints the DOM it built."""
    flags = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
    ]
    return subprocess.run(
        [
            *flags,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1280,900",
            "--dump-dom",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=90,
        text=True,
    ).stdout


@_needs_chromium
def test_headless_chromium_renders_the_report_page(version_dir: Path, server_factory, tmp_path: Path) -> None:
    server = _drifted_server(server_factory, version_dir)
    shot = tmp_path / "report.png"
    dom = _render_in_chromium(server.url + "/report", tmp_path, shot)
    for name in ("age", "income", "segment"):
        assert f"<b>{name}</b>" in dom
    assert dom.count("<svg") == 4 and "<rect" in dom  # a chart per feature and the overall history
    assert "How verdicts are reached" in dom and "Drift in the distribution" in dom
    assert "<th>median</th>" in dom and "share of rows" in dom
    _assert_not_blank(shot)


@_needs_chromium
def test_headless_chromium_shows_each_explanation_and_section(tmp_path: Path) -> None:
    """A page whose data produces every kind of verdict, quality and a version change in the history."""
    import numpy as np

    from monitor_runtime.server.distributions import DistributionTracker
    from monitor_runtime.server.history import EvaluationHistory, history_entry
    from monitor_runtime.server.prediction_quality import PredictionQuality
    from monitor_runtime.server.report_page import render_report_page

    result, reference, current = engine_report_case()
    tracker = DistributionTracker(window_rows=10**9)
    tracker.set_reference(reference)
    tracker.add_current(current, 200_000)
    rng = np.random.default_rng(4)
    actual = rng.integers(0, 2, 500).astype(float)
    score = np.clip(0.6 * actual + rng.normal(0.2, 0.2, 500), 0, 1)
    quality = PredictionQuality("classification", None, window_rows=500)
    quality.set_reference((score > 0.5).astype(float), actual, score)
    quality.add_current((score > 0.6).astype(float), actual, score)
    history = EvaluationHistory(limit=10)
    for i in range(4):
        history.add(history_entry(result, at=1.8e9 + 60 * i, version=1 + i // 2, code_sha256="x", rows=100))
    report = {**result, "status": "ok", "version": {"monitor": "credit-risk", "version": 2}}
    report["quality"] = quality.snapshot()
    page = tmp_path / "report.html"
    page.write_text(render_report_page(report, tracker.snapshot(), history.as_list()), encoding="utf-8")
    shot = tmp_path / "report.png"
    dom = _render_in_chromium(page.as_uri(), tmp_path, shot)
    for phrase in (
        "Drift in the distribution",
        "No drift, decided by the p-value",
        "No drift, decided by the effect size",
        "Drift in missing values: missing values went from 0.0% to 20.0% of rows",
        "never seen in the reference",
        "Low confidence",
        "A feature drifts when two gates both pass",
        "<th>AUC</th>",
        "actual ↓ predicted →",
        ">v2</text>",
        "threshold 0.025",
        "critical 0.25",
        "value (bins: reference quantiles)",
        "share of rows (reference, current)",
    ):
        assert phrase in dom, phrase
    # Five distribution charts, five feature histories and the overall history.
    assert dom.count("<svg") == 11
    _assert_not_blank(shot)


def _assert_not_blank(png: Path) -> None:
    """Decode the screenshot (zlib + PNG filters) and require many distinct colours."""
    import struct
    import zlib

    import numpy as np

    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, ctype = 8, b"", 0, 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, _, ctype = struct.unpack(">IIBB", chunk[:10])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    channels = {2: 3, 6: 4}[ctype]
    raw = np.frombuffer(zlib.decompress(idat), dtype=np.uint8).reshape(height, 1 + width * channels)
    # Filter bytes aside, a blank page compresses to a handful of distinct byte rows; a report has many.
    rows = {bytes(r) for r in raw[:, 1:]}
    assert width == 1280 and height == 900
    assert len(rows) > 50, "the screenshot looks blank"
    assert raw[:, 1:].std() > 5
