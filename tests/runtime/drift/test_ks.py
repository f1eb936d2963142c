"""KS statistic and p-values equal scipy's ks_2samp, in every regime scipy has."""

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.drift.ks import ks_pvalues, ks_statistic_sorted


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
