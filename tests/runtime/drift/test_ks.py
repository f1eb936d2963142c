"""KS statistic and p-values equal scipy's ks_2samp, in every regime scipy has."""

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.drift.ks import (
    NEGLIGIBLE_MIN_N,
    NEGLIGIBLE_P,
    ks_precision_needed,
    ks_pvalues,
    ks_statistic_sorted,
)


def _pair(rng: np.random.Generator, n1: int, n2: int, shift: float, ties: bool):
    if ties:
        return rng.integers(0, 6, n1).astype(float), (rng.integers(0, 6, n2) + (shift > 0.5)).astype(float)
    return rng.normal(size=n1), rng.normal(shift, size=n2)


@pytest.mark.parametrize("seed", range(4))
def test_exact_regime_matches_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n1 = int(rng.integers(1, 2500))
        n2 = n1 if rng.random() < 0.4 else int(rng.integers(1, 2500))
        a, b = _pair(rng, n1, n2, float(rng.choice([0.0, 0.1, 0.3, 1.0])), ties=rng.random() < 0.35)
        expected = stats.ks_2samp(a, b)
        d = ks_statistic_sorted(np.sort(a), np.sort(b))
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        assert float(ks_pvalues(d, n1, n2)) == pytest.approx(expected.pvalue, abs=1e-9)


def test_equal_sizes_at_the_exact_limit_match_scipy() -> None:
    rng = np.random.default_rng(7)
    for shift in (0.0, 0.02, 0.05, 0.2):
        a, b = rng.normal(size=10_000), rng.normal(shift, size=10_000)
        expected = stats.ks_2samp(a, b)
        d = ks_statistic_sorted(np.sort(a), np.sort(b))
        assert float(ks_pvalues(d, 10_000, 10_000)) == pytest.approx(expected.pvalue, abs=1e-9)


@pytest.mark.parametrize("shift", [0.0, 0.004, 0.01, 0.02, 0.05, 0.3])
def test_asymptotic_regime_matches_scipy(shift: float) -> None:
    rng = np.random.default_rng(int(shift * 1000))
    for n1, n2 in ((60_000, 60_000), (12_000, 300), (40_000, 25_000)):
        a, b = rng.normal(size=n1), rng.normal(shift, size=n2)
        expected = stats.ks_2samp(a, b)
        d = ks_statistic_sorted(np.sort(a), np.sort(b))
        assert d == pytest.approx(expected.statistic, abs=1e-12)
        assert float(ks_pvalues(d, n1, n2)) == pytest.approx(expected.pvalue, abs=1e-9)


def test_heavy_ties_across_samples_match_scipy() -> None:
    rng = np.random.default_rng(3)
    a = np.round(rng.normal(size=3000), 1)
    b = np.round(rng.normal(0.05, size=2000), 1)
    expected = stats.ks_2samp(a, b)
    assert ks_statistic_sorted(np.sort(a), np.sort(b)) == pytest.approx(expected.statistic, abs=1e-12)


def test_pvalues_vectorise_and_handle_empty_samples() -> None:
    d = np.array([0.05, 0.1, 0.2])
    p = ks_pvalues(d, np.array([100, 200, 0]), 150)
    assert p.shape == (3,)
    assert np.isnan(p[2])
    assert p[0] == pytest.approx(float(ks_pvalues(0.05, 100, 150)))


@pytest.mark.parametrize("n1,n2", [(5, 7), (40, 55), (300, 1_000), (2_000, 2_500), (9_000, 10_000)])
def test_the_exact_series_is_skipped_only_where_it_cannot_matter(n1: int, n2: int) -> None:
    # Every statistic these sizes allow from near 0 to 1 (on the lattice of h / lcm), including those
    # whose p-value is around NEGLIGIBLE_P: skipping the exact series must keep scipy's p-value to 1e-9.
    lcm = np.lcm(n1, n2)
    steps = np.unique(np.round(np.geomspace(1, lcm, 60))).astype(np.int64)
    if n1 * n2 > 5_000_000:  # the exact series is slow here: the boundary region and the far tail only
        steps = steps[-25::2]
    d = steps / lcm
    needed = ks_precision_needed(d, n1, n2)
    fast = ks_pvalues(d, n1, n2, needed)
    exact = ks_pvalues(d, n1, n2, True)
    assert np.max(np.abs(fast - exact)) <= 1e-9
    skipped = ~needed
    assert np.all(exact[skipped] < 1e4 * NEGLIGIBLE_P)  # only where the exact p-value is negligible too
    assert np.all(needed[exact > 1e-6])
    assert ks_precision_needed(d, n1, n2, False).sum() == 0  # never more than was asked for
    # A strongly drifted feature of enough values really does skip it; small samples never do.
    assert skipped.any() == (min(n1, n2) >= NEGLIGIBLE_MIN_N)
