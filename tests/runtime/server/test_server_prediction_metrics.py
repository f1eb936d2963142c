"""Prediction-quality series over real HTTP: a fixed set of names, bounded per-class series, none stale."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .runtime_server_helpers import GOOD_MONITOR, SPEC, columns_json, frame, running_monitor, write_version

# Scores labels through the toolkit's classification metrics.
QUALITY_MONITOR = GOOD_MONITOR.replace(
    """            p = np.asarray(predictions, dtype=float)
            a = np.asarray(actuals, dtype=float)
            ok = np.isfinite(a)
            acc = float(np.mean(p[ok] == a[ok])) if ok.any() else None
            return {"accuracy": acc, "n": int(ok.sum())}""".replace("            ", "        "),
    """        return self.tk.evaluate_predictions(predictions, actuals, task="classification")""",
)
assert QUALITY_MONITOR != GOOD_MONITOR
JSON = {"Content-Type": "application/json"}


async def _series(s: aiohttp.ClientSession, base: str) -> dict[str, float]:
    async with s.get(base + "/metrics") as resp:
        text = await resp.text()
    return {
        sample.labels["metric"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "poet_monitor_prediction_metric"
    }


async def _evaluations(s: aiohttp.ClientSession, base: str) -> int:
    async with s.get(base + "/v1/report") as resp:
        return int((await resp.json())["ingestion"]["rows_evaluated"])


async def _send(
    s: aiohttp.ClientSession, base: str, labels: list[Any], actuals: list[Any], seed: int
) -> None:
    """One window (200 rows) with predictions; returns once it has been evaluated."""
    before = await _evaluations(s, base)
    n = 200
    preds = [labels[i % len(labels)] for i in range(n)]
    acts = [actuals[i % len(actuals)] for i in range(n)]
    body = columns_json(frame(n, seed), predictions=preds, actuals=acts)
    async with s.post(base + "/v1/batches", data=body, headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + 15
    while await _evaluations(s, base) < before + n:
        assert time.monotonic() < deadline, "the batch was never evaluated"
        await asyncio.sleep(0.05)


async def test_per_class_series_are_capped_and_stale_series_removed(tmp_path: Path) -> None:
    version = write_version(tmp_path / "v1", code=QUALITY_MONITOR)
    async with (
        running_monitor(version, max_metric_classes=3) as (proc, base),
        aiohttp.ClientSession() as s,
    ):
        async with s.post(base + "/v1/reference", data=columns_json(frame(500, 1)), headers=JSON) as resp:
            assert resp.status == 200
        await _send(s, base, ["k0", "k1"], ["k0", "k1"], seed=2)
        first = await _series(s, base)
        assert first["accuracy"] == 1.0 and first["per_class_k0_f1"] == 1.0 and "macro_f1" in first
        # New labels each window: only the first three labels ever get series, the older ones go away.
        for i in range(2, 8):
            await _send(s, base, [f"k{i}", f"k{i + 1}"], [f"k{i}", f"k{i + 1}"], seed=i + 1)
        series = await _series(s, base)
        assert not any(name.startswith("per_class_") for name in series), series
        assert set(series) <= {
            "n",
            "n_missing",
            "accuracy",
            "precision",
            "recall",
            "f1",
            "macro_precision",
            "macro_recall",
            "macro_f1",
        }
        await _send(s, base, ["k1", "k9"], ["k1", "k9"], seed=20)
        assert {n for n in await _series(s, base) if n.startswith("per_class_")} == {
            f"per_class_k1_{stat}" for stat in ("precision", "recall", "f1", "support")
        }
        logged = [json.loads(line) for line in proc.log.stream.getvalue().splitlines()]
        assert sum(1 for e in logged if e.get("event") == "metrics.class_cap") == 1
        # A window without outcomes has no accuracy: no stale value may stay behind.
        await _send(s, base, ["k0"], [None], seed=30)
        assert await _series(s, base) == {"n": 0.0, "n_missing": 200.0}


async def test_declared_classes_are_the_only_per_class_series(tmp_path: Path) -> None:
    spec = {**SPEC, "predictions": {"task": "classification", "classes": ["yes", "no"]}}
    version = write_version(tmp_path / "v1", code=QUALITY_MONITOR, spec=spec)
    async with running_monitor(version) as (_, base), aiohttp.ClientSession() as s:
        async with s.post(base + "/v1/reference", data=columns_json(frame(500, 1)), headers=JSON) as resp:
            assert resp.status == 200
        await _send(s, base, ["yes", "no", "maybe", "other"], ["yes", "no", "no", "yes"], seed=2)
        per_class = {name for name in await _series(s, base) if name.startswith("per_class_")}
        assert per_class == {
            f"per_class_{c}_{stat}"
            for c in ("yes", "no")
            for stat in ("precision", "recall", "f1", "support")
        }
