"""Sliding-window KS against a fixed reference: identical to scipy per window, and much faster."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from monitor_runtime.windows import sliding_ks


def _scipy(
    reference: np.ndarray, stream: np.ndarray, window: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    results = [
        stats.ks_2samp(reference, stream[i : i + window]) for i in range(0, stream.size - window + 1, step)
    ]
    return np.array([r.statistic for r in results]), np.array([r.pvalue for r in results])


@pytest.mark.parametrize(
    ("n_ref", "window", "step", "rounding"),
    [
        (3000, 1000, 250, None),  # exact p-values, unequal sizes
        (1000, 1000, 400, None),  # equal sizes: the exact square formula
        (2000, 500, 333, 1),  # gcd 1: single-value panes; heavy ties (one decimal)
        (12_000, 800, 800, None),  # asymptotic p-values (reference above 10,000)
        (50, 300, 100, 0),  # tiny reference, integers: most values tie with the reference
    ],
)
def test_statistics_and_p_values_equal_scipy(
    n_ref: int, window: int, step: int, rounding: int | None
) -> None:
    rng = np.random.default_rng(n_ref + window)
    reference = rng.normal(size=n_ref)
    stream = rng.normal(size=12_000)
    stream[7000:] += 0.3  # a change point, so some windows drift
    if rounding is not None:
        reference, stream = np.round(reference * 3, rounding), np.round(stream * 3, rounding)
    d, p = sliding_ks(reference, stream, window, step)
    want_d, want_p = _scipy(reference, stream, window, step)
    assert d.shape == want_d.shape
    np.testing.assert_allclose(d, want_d, rtol=0, atol=1e-12)
    np.testing.assert_allclose(p, want_p, rtol=0, atol=1e-9)


def test_infinities_are_ordinary_values() -> None:
    rng = np.random.default_rng(1)
    reference = np.concatenate([rng.normal(size=500), [np.inf, -np.inf, np.inf]])
    stream = rng.normal(size=3000)
    stream[::97] = np.inf
    stream[::89] = -np.inf
    d, p = sliding_ks(reference, stream, 600, 200)
    want_d, want_p = _scipy(reference, stream, 600, 200)
    np.testing.assert_allclose(d, want_d, atol=1e-12)
    np.testing.assert_allclose(p, want_p, atol=1e-9)


def test_at_least_ten_times_faster_than_scipy_per_window() -> None:
    # The W3 benchmark (1,000,000 values) targets 20x; a shorter stream keeps the suite quick.
    rng = np.random.default_rng(2)
    reference = rng.normal(size=5000)
    stream = rng.normal(size=150_000)
    start = time.perf_counter()
    want_d, _ = _scipy(reference, stream, 5000, 1000)
    scipy_seconds = time.perf_counter() - start
    ours = []
    for _ in range(3):
        start = time.perf_counter()
        d, _ = sliding_ks(reference, stream, 5000, 1000)
        ours.append(time.perf_counter() - start)
    np.testing.assert_allclose(d, want_d, atol=1e-12)
    assert scipy_seconds / min(ours) >= 10, (scipy_seconds, min(ours))


def test_short_stream_gives_no_windows_and_bad_input_is_named() -> None:
    d, p = sliding_ks(np.arange(10.0), np.arange(5.0), 10, 1)
    assert d.size == 0 and p.size == 0
    with pytest.raises(ValueError, match=r"stream has 1 NaN values \(first at position 3\)"):
        sliding_ks(np.arange(10.0), np.array([1.0, 2, 3, np.nan, 5]), 2, 1)
    with pytest.raises(ValueError, match="reference is empty"):
        sliding_ks(np.array([]), np.arange(5.0), 2, 1)
    with pytest.raises(ValueError, match="'step'"):
        sliding_ks(np.arange(10.0), np.arange(5.0), 2, 0)


@settings(max_examples=60, deadline=None)
@given(
    reference=st.lists(st.integers(-5, 5), min_size=1, max_size=40),
    stream=st.lists(st.integers(-6, 6), min_size=1, max_size=120),
    window=st.integers(1, 30),
    step=st.integers(1, 30),
)
def test_matches_scipy_on_arbitrary_small_inputs(
    reference: list[int], stream: list[int], window: int, step: int
) -> None:
    ref = np.array(reference, dtype=float) / 2  # halves: ties within and across samples
    values = np.array(stream, dtype=float) / 2
    d, p = sliding_ks(ref, values, window, step)
    if values.size < window:
        assert d.size == 0
        return
    want_d, want_p = _scipy(ref, values, window, step)
    np.testing.assert_allclose(d, want_d, atol=1e-12)
    np.testing.assert_allclose(p, want_p, atol=1e-9)
