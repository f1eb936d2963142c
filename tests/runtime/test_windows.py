"""Window strategies: emission points, contents, missing/new columns, storage options, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor_runtime.windows import AdaptiveWindow, FixedWindow, SlidingWindow, Window, make_window


def _rows(start: int, stop: int) -> dict[str, np.ndarray]:
    idx = np.arange(start, stop)
    return {"x": idx.astype(float), "c": np.array([f"k{i % 3}" for i in idx], dtype=object)}


def test_fixed_window_emits_consecutive_blocks_across_batch_boundaries() -> None:
    window = FixedWindow(100)
    ready = []
    for start in range(0, 1000, 70):  # batches straddle window edges
        ready += window.add(_rows(start, min(start + 70, 1000)))
    assert len(ready) == 10
    for i, w in enumerate(ready):
        np.testing.assert_array_equal(w["x"], np.arange(i * 100, (i + 1) * 100))
        assert w["c"][0] == f"k{(i * 100) % 3}"
    assert window.n_rows == 0 and window.current() == {}


def test_sliding_window_with_step_and_overlap_agree() -> None:
    by_step = SlidingWindow(500, 200)
    by_overlap = make_window({"strategy": "sliding", "size": 500, "overlap": 300})
    a = by_step.add(_rows(0, 1300))
    b = by_overlap.add(_rows(0, 1300))
    # windows end at 500, 700, 900, 1100, 1300
    assert [int(w["x"][-1]) + 1 for w in a] == [500, 700, 900, 1100, 1300]
    for wa, wb in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa["x"], wb["x"])
        np.testing.assert_array_equal(wa["x"], np.arange(wa["x"][0], wa["x"][0] + 500))
    np.testing.assert_array_equal(by_step.current()["x"], np.arange(1000, 1300))  # the next window's head


def test_one_large_batch_yields_every_window_inside_it() -> None:
    window = SlidingWindow(50, 10)
    ready = window.add({"x": np.arange(1000.0)})
    assert len(ready) == (1000 - 50) // 10 + 1
    np.testing.assert_array_equal(ready[-1]["x"], np.arange(950.0, 1000.0))


def test_features_appearing_and_disappearing_are_missing_where_absent() -> None:
    window = FixedWindow(6)
    window.add({"a": [1.0, 2.0], "b": ["u", "v"]})
    window.add({"a": [3.0, 4.0]})  # b disappears
    (out,) = window.add({"a": [5.0, 6.0], "new": [7, 8]})  # new appears
    np.testing.assert_array_equal(out["a"], [1, 2, 3, 4, 5, 6])
    assert out["b"].tolist() == ["u", "v", None, None, None, None]
    np.testing.assert_array_equal(out["new"], [np.nan, np.nan, np.nan, np.nan, 7, 8])
    # A column that is absent for a whole window is not reported in it.
    (later,) = window.add({"a": np.arange(6.0)})
    assert set(later) == {"a"}


def test_column_turning_from_numbers_to_text_becomes_object() -> None:
    window = FixedWindow(4)
    window.add({"v": [1.0, np.nan]})
    (out,) = window.add({"v": ["a", None]})
    assert out["v"].dtype == object
    assert out["v"].tolist() == [1.0, None, "a", None]


@pytest.mark.parametrize("storage", ["exact", "reservoir", "sketch"])
@pytest.mark.parametrize(
    "config",
    [
        {"strategy": "fixed", "size": 2000},
        {"strategy": "sliding", "size": 2000, "step": 500},
        {"strategy": "adaptive", "minSize": 500, "maxSize": 4000, "step": 500},
    ],
)
def test_memory_stays_flat_over_a_long_stream(storage: str, config: dict) -> None:
    rng = np.random.default_rng(3)
    window = make_window({**config, "storage": storage, **({"capacity": 128} if storage != "exact" else {})})
    sizes = []
    for i in range(300):
        n = 173
        window.add({"x": rng.normal(size=n), "y": rng.exponential(size=n), "c": rng.choice(["a", "b"], n)})
        if i >= 100:
            sizes.append(window.nbytes)
    assert max(sizes) <= 1.3 * max(sizes[:50]), (min(sizes), max(sizes))
    if storage != "exact":
        exact_bytes = 3 * 8 * config.get("size", config.get("maxSize", 0))
        assert max(sizes) < exact_bytes


def test_reservoir_window_is_a_uniform_row_aligned_sample() -> None:
    window = make_window(
        {"strategy": "fixed", "size": 10_000, "storage": "reservoir", "capacity": 2000, "seed": 7}
    )
    idx = np.arange(10_000)
    batches = np.array_split(idx, 37)
    ready = []
    for part in batches:
        ready += window.add({"i": part.astype(float), "twice": 2.0 * part})
    (sample,) = ready
    assert sample["i"].size == 2000
    np.testing.assert_array_equal(sample["twice"], 2 * sample["i"])  # rows stay aligned
    assert np.unique(sample["i"]).size == 2000
    # Uniform over the window: each tenth of the window holds about a tenth of the sample.
    counts = np.bincount((sample["i"] // 1000).astype(int), minlength=10)
    assert counts.min() > 140 and counts.max() < 260, counts


def test_sketch_window_reproduces_quantiles_shares_and_missing_rate() -> None:
    rng = np.random.default_rng(11)
    window = make_window(
        {"strategy": "sliding", "size": 20_000, "step": 5000, "storage": "sketch", "capacity": 200}
    )
    ready = []
    all_x = []
    for _ in range(8):
        x = rng.lognormal(size=5000)
        x[rng.random(5000) < 0.1] = np.nan
        all_x.append(x)
        ready += window.add({"x": x, "c": rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])})
    last = ready[-1]
    truth = np.concatenate(all_x[-4:])
    sample = last["x"]
    assert sample.size == 200
    assert abs(np.isnan(sample).mean() - np.isnan(truth).mean()) < 0.01
    qs = [0.1, 0.5, 0.9]
    got = np.nanquantile(sample, qs)
    want = np.nanquantile(truth, qs)
    ranks = np.searchsorted(np.sort(truth[~np.isnan(truth)]), got) / np.sum(~np.isnan(truth))
    assert np.all(np.abs(ranks - qs) < 0.03), (got, want)
    shares = {k: np.mean(last["c"] == k) for k in "abc"}
    assert abs(shares["a"] - 0.5) < 0.02 and abs(shares["c"] - 0.2) < 0.02


@pytest.mark.parametrize("storage", ["exact", "reservoir", "sketch"])
@pytest.mark.parametrize(
    "config",
    [
        {"strategy": "fixed", "size": 300},
        {"strategy": "sliding", "size": 300, "overlap": 200},
        {"strategy": "adaptive", "minSize": 100, "maxSize": 600, "step": 100},
    ],
)
def test_checkpoint_round_trips_through_json_and_resumes_identically(storage: str, config: dict) -> None:
    rng = np.random.default_rng(5)
    full = {**config, "storage": storage, "seed": 9, **({"capacity": 32} if storage != "exact" else {})}
    original = make_window(full)
    for i in range(7):
        original.add({"x": rng.normal(i * 0.5, size=90), "c": rng.choice(["p", "q", None], 90)})
    state = json.loads(json.dumps(original.state(), allow_nan=False))
    resumed = Window.from_state(state)
    in_place = make_window(full)
    in_place.restore(state)
    assert resumed.config() == original.config() == in_place.config()
    batch = {"x": rng.normal(size=400), "c": rng.choice(["p", "q"], 400)}
    expected = original.add(batch)
    for other in (resumed, in_place):
        got = other.add(batch)
        assert len(got) == len(expected) and expected
        for g, e in zip(got, expected, strict=True):
            assert set(g) == set(e)
            np.testing.assert_array_equal(g["x"], e["x"])
            assert g["c"].tolist() == e["c"].tolist()


def test_restore_refuses_a_checkpoint_of_another_configuration() -> None:
    state = FixedWindow(10).state()
    with pytest.raises(ValueError, match="from_state"):
        FixedWindow(20).restore(state)


def test_adaptive_window_drops_the_old_regime_after_a_change() -> None:
    rng = np.random.default_rng(21)
    window = AdaptiveWindow(500, 20_000, step=500)
    ready = []
    for i in range(60):
        ready += window.add({"x": rng.normal(0.0 if i < 40 else 1.0, 1.0, 500)})
    assert window.changes >= 1
    last = ready[-1]
    # Before the change the window had grown to the cap; after it, it holds the new regime only.
    assert ready[38]["x"].size == 19_500
    assert 10_000 <= last["x"].size <= 10_100  # the new regime plus at most a small ADWIN bucket
    assert abs(last["x"].mean() - 1.0) < 0.1


def test_adaptive_window_grows_to_max_size_on_stable_data() -> None:
    rng = np.random.default_rng(22)
    window = make_window({"strategy": "adaptive", "minSize": 1000, "maxSize": 8000})
    sizes = [
        w["x"].size for _ in range(40) for w in window.add({"x": rng.normal(size=500), "c": ["a"] * 500})
    ]
    assert window.changes == 0
    assert sizes[0] == 1000 and sizes[-1] == 8000
    assert sizes == sorted(sizes)


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"strategy": "sliding", "size": 100}, "step"),
        ({"strategy": "sliding", "size": 100, "step": 0}, "step"),
        ({"strategy": "sliding", "size": 100, "step": 200}, "step"),
        ({"strategy": "sliding", "size": 100, "step": 10, "overlap": 50}, "overlap"),
        ({"strategy": "sliding", "size": 100, "overlap": 100}, "overlap"),
        ({"strategy": "fixed"}, "size"),
        ({"strategy": "fixed", "size": -5}, "size"),
        ({"strategy": "fixed", "size": 2.5}, "size"),
        ({"strategy": "fixed", "size": 10, "step": 3}, "step"),
        ({"strategy": "rolling", "size": 10}, "strategy"),
        ({"strategy": "fixed", "size": 10, "storage": "disk"}, "storage"),
        ({"strategy": "fixed", "size": 10, "storage": "sketch", "capacity": 2}, "capacity"),
        ({"strategy": "fixed", "size": 10, "capacity": -1}, "capacity"),
        ({"strategy": "fixed", "size": 10, "windowSize": 3}, "windowSize"),
        ({"strategy": "fixed", "size": 10, "minSize": 3}, "minSize"),
        ({"strategy": "adaptive", "minSize": 10}, "maxSize"),
        ({"strategy": "adaptive", "minSize": 100, "maxSize": 10}, "minSize"),
        ({"strategy": "adaptive", "maxSize": 100, "delta": 2}, "delta"),
        ({"strategy": "adaptive", "maxSize": 100, "watch": "x"}, "watch"),
        ({"strategy": "sliding", "size": 10_007, "step": 10, "storage": "reservoir"}, "step"),
    ],
)
def test_bad_configs_name_the_key(config: dict, key: str) -> None:
    with pytest.raises(ValueError, match=f"'{key}'"):
        make_window(config)


def test_bad_batches_name_the_column() -> None:
    window = FixedWindow(10)
    with pytest.raises(ValueError, match="'b' has 3 rows"):
        window.add({"a": [1, 2], "b": [1, 2, 3]})
    with pytest.raises(ValueError, match="'m' must be one-dimensional"):
        window.add({"m": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="'t' holds dates"):
        window.add({"t": np.array(["2024-01-01"], dtype="datetime64[D]")})
    with pytest.raises(ValueError, match="mapping"):
        window.add([1, 2, 3])  # type: ignore[arg-type]
    assert window.n_rows == 0


def test_empty_batches_are_harmless() -> None:
    window = make_window({"strategy": "sliding", "size": 4, "step": 2, "storage": "sketch", "capacity": 8})
    assert window.add({}) == []
    assert window.add({"x": np.array([])}) == []
    assert window.current() == {}


@pytest.mark.parametrize("storage", ["exact", "reservoir", "sketch"])
def test_checkpoints_are_strict_json_even_with_infinities(storage: str) -> None:
    window = make_window({"strategy": "fixed", "size": 50, "storage": storage, "capacity": 16})
    window.add({"x": [np.inf, -np.inf, np.nan, 1.0, 2.0] * 4, "c": ["a", None, "b", "a", float("nan")] * 4})
    text = json.dumps(window.state(), allow_nan=False)
    resumed = Window.from_state(json.loads(text))
    now, then = window.current(), resumed.current()
    np.testing.assert_array_equal(now["x"], then["x"])
    assert np.isinf(then["x"]).sum() == np.isinf(now["x"]).sum() > 0
    assert now["c"].tolist() == then["c"].tolist()
    assert None in now["c"].tolist() and not any(v != v for v in now["c"].tolist())  # NaN became None


@settings(max_examples=40, deadline=None)
@given(
    size=st.integers(1, 40),
    step=st.integers(1, 40),
    batch_sizes=st.lists(st.integers(0, 60), min_size=1, max_size=15),
)
def test_sliding_windows_equal_naive_slicing(size: int, step: int, batch_sizes: list[int]) -> None:
    step = min(step, size)
    stream = np.arange(float(sum(batch_sizes)))
    window = SlidingWindow(size, step)
    got = []
    offset = 0
    for n in batch_sizes:
        got += window.add({"v": stream[offset : offset + n]})
        offset += n
    expected = [stream[i : i + size] for i in range(0, stream.size - size + 1, step)]
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g["v"], e)


def test_adaptive_config_as_the_spec_resolves_it() -> None:
    # The spec gives adaptive windows a starting size next to minSize and maxSize.
    window = make_window(
        {"strategy": "adaptive", "size": 2000, "minSize": 500, "maxSize": 8000, "storage": "exact", "seed": 0}
    )
    assert isinstance(window, AdaptiveWindow) and window.step == 2000
    sizes = [w["x"].size for w in window.add({"x": np.zeros(10_000)})]
    assert sizes == [2000, 4000, 6000, 8000, 8000]
    assert Window.from_state(window.state()).config() == window.config()
