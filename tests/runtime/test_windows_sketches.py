"""KLL sketch accuracy and bounded size, category sampling, and the batched reservoir's uniformity."""

from __future__ import annotations

import json

import numpy as np
from scipy import stats

from monitor_runtime.windows.sketches import KLLSketch, counts_sample, reservoir_plan


def _rank_error(sketch: KLLSketch, truth: np.ndarray) -> float:
    truth = np.sort(truth)
    qs = np.linspace(0.01, 0.99, 99)
    est = sketch.quantiles(qs)
    ranks = np.searchsorted(truth, est, side="right") / truth.size
    return float(np.abs(ranks - qs).max())


def test_kll_quantiles_are_accurate_and_size_is_bounded() -> None:
    rng = np.random.default_rng(0)
    sketch = KLLSketch(200, rng=np.random.default_rng(1))
    data = []
    sizes = []
    for i in range(400):
        batch = rng.standard_t(3, size=1000 if i % 2 else 37)
        data.append(batch)
        sketch.update(batch)
        sizes.append(sum(level.size for level in sketch.levels))
    truth = np.concatenate(data)
    assert sketch.n == truth.size
    # Weight is preserved exactly by compaction.
    assert sum(level.size * 2**h for h, level in enumerate(sketch.levels)) == truth.size
    assert _rank_error(sketch, truth) < 0.02
    assert max(sizes) < 3 * 200 + 2 * len(sketch.levels)
    assert max(sizes[200:]) <= 1.2 * max(sizes[:200])


def test_kll_merge_matches_one_sketch_of_everything() -> None:
    rng = np.random.default_rng(2)
    parts = [rng.normal(loc, size=20_000) for loc in (0.0, 3.0, -2.0)]
    merged = KLLSketch(256, rng=np.random.default_rng(3))
    for part in parts:
        piece = KLLSketch(256, rng=np.random.default_rng(4))
        piece.update(part)
        merged.merge(piece)
    assert merged.n == 60_000
    assert _rank_error(merged, np.concatenate(parts)) < 0.02


def test_kll_state_round_trip_and_empty_sketch() -> None:
    sketch = KLLSketch(50, rng=np.random.default_rng(0))
    assert np.isnan(sketch.quantiles([0.5])).all()
    assert sketch.sample(10).size == 0
    sketch.update(np.arange(10_000.0))
    again = KLLSketch.from_state(
        json.loads(json.dumps(sketch.state(), allow_nan=False)), rng=np.random.default_rng(0)
    )
    np.testing.assert_array_equal(again.sample(25), sketch.sample(25))


def test_counts_sample_keeps_shares_with_largest_remainders() -> None:
    out = counts_sample({"a": 5, "b": 3, "c": 2}, 7)
    values, counts = np.unique(out.astype(str), return_counts=True)
    assert dict(zip(values.tolist(), counts.tolist(), strict=True)) == {"a": 4, "b": 2, "c": 1}
    assert counts_sample({}, 5).size == 0


def test_batched_reservoir_includes_every_row_with_equal_probability() -> None:
    capacity, n_rows, trials = 20, 100, 600
    hits = np.zeros(n_rows)
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        slots = np.full(capacity, -1)
        filled = 0
        seen = 0
        for batch in np.array_split(np.arange(n_rows), 13):
            fill, rows, where = reservoir_plan(rng, seen, batch.size, capacity)
            slots[filled : filled + fill.size] = batch[fill]
            filled += fill.size
            slots[where] = batch[rows]
            seen += batch.size
        assert filled == capacity and np.unique(slots).size == capacity
        hits[slots] += 1
    expected = trials * capacity / n_rows
    assert stats.chisquare(hits, np.full(n_rows, expected)).pvalue > 0.001
