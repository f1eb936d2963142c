"""ADWIN: calibrated on stationary data, quick on a mean shift, compact, and checkpointable."""

from __future__ import annotations

import json

import numpy as np

from monitor_runtime.windows import ADWIN


def test_stationary_streams_rarely_cut() -> None:
    alarms = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        detector = ADWIN()
        for _ in range(40):
            alarms += detector.update(rng.normal(size=500)) > 0
    # delta = 0.002 bounds the false-alarm probability; 20 streams of 20,000 values should see almost none.
    assert alarms <= 1


def test_mean_shift_is_found_quickly_and_the_old_part_dropped() -> None:
    rng = np.random.default_rng(1)
    detector = ADWIN()
    detector.update(rng.normal(0.0, 1.0, 20_000))
    assert detector.width == 20_000
    seen_after = 0
    while detector.n_detections == 0 and seen_after < 10_000:
        detector.update(rng.normal(0.25, 1.0, 100))
        seen_after += 100
    assert detector.n_detections == 1
    assert seen_after <= 1000
    assert detector.width < 2000
    for _ in range(20):
        detector.update(rng.normal(0.25, 1.0, 100))
    # What remains of the old regime after the cut is small next to the new one.
    assert detector.width < 2000 + seen_after + 500
    assert abs(detector.mean - 0.25) < 0.1


def test_buckets_grow_logarithmically_and_nan_is_ignored() -> None:
    rng = np.random.default_rng(2)
    detector = ADWIN()
    for _ in range(100):
        values = rng.normal(size=1000)
        values[::10] = np.nan
        detector.update(values)
    assert detector.width == 90_000
    assert detector.n_buckets < 5 * np.log2(90_000)
    assert abs(detector.mean) < 0.02


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(3)
    detector = ADWIN(0.01)
    detector.update(rng.normal(size=5000))
    copy = ADWIN.from_state(json.loads(json.dumps(detector.state(), allow_nan=False)))
    shifted = rng.normal(1.0, 1.0, 800)
    assert copy.update(shifted) == detector.update(shifted) > 0
    assert copy.width == detector.width
