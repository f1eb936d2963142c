"""The grid KS path (no sort of the batch) gives scipy's statistic and p-value on adversarial data."""

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.drift import Reference
from monitor_runtime.drift.categorical import CategoricalReference
from monitor_runtime.drift.columns import to_column
from monitor_runtime.drift.ks import GRID_MIN_CURRENT, GridKS


def _scipy_raw(a: np.ndarray, b: np.ndarray) -> float:
    """ks_2samp's statistic before its exact branch rounds it to a multiple of 1/lcm(n1, n2)."""
    a, b = np.sort(a), np.sort(b)
    both = np.concatenate([a, b])
    diffs = np.searchsorted(a, both, side="right") / a.size - np.searchsorted(b, both, side="right") / b.size
    return float(max(np.clip(-diffs.min(), 0, 1), diffs.max()))


def _check(a: np.ndarray, b: np.ndarray) -> None:
    grid = GridKS.prepare(np.sort(a))
    assert grid is not None
    d, median = grid.statistic(b)
    assert d == _scipy_raw(a, b)  # the same float, not merely close
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert median == np.sort(b)[b.size // 2]


def _edge_values(grid: GridKS, rng: np.random.Generator, n: int) -> np.ndarray:
    """Values on cell boundaries and one float either side of them."""
    k = rng.integers(0, grid.cells + 1, n)
    edges = grid.lo + k / grid.scale
    side = rng.integers(-1, 2, n)
    above = np.where(side > 0, np.nextafter(edges, np.inf), edges)
    return np.where(side < 0, np.nextafter(edges, -np.inf), above)


CASES = {
    "normal, small shift": lambda r, n1, n2: (r.normal(size=n1), r.normal(0.03, size=n2)),
    "normal, large shift": lambda r, n1, n2: (r.normal(size=n1), r.normal(3.0, size=n2)),
    "poisson ties": lambda r, n1, n2: (r.poisson(5, n1).astype(float), r.poisson(5.3, n2).astype(float)),
    "rounded ties": lambda r, n1, n2: (np.round(r.normal(size=n1), 1), np.round(r.normal(0.1, size=n2), 1)),
    "ties plus continuous": lambda r, n1, n2: (
        np.where(r.random(n1) < 0.4, 0.0, r.normal(size=n1)),
        np.where(r.random(n2) < 0.45, 0.0, r.normal(size=n2)),
    ),
    "current all equal": lambda r, n1, n2: (r.normal(size=n1), np.full(n2, 0.25)),
    "current equal to a reference value": lambda r, n1, n2: (
        (a := r.normal(size=n1)),
        np.full(n2, a[n1 // 3]),
    ),
    "current resampled from the reference": lambda r, n1, n2: (
        (a := r.normal(size=n1)),
        a[r.integers(0, n1, n2)],
    ),
    "current beyond the grid": lambda r, n1, n2: (r.normal(size=n1), r.normal(50.0, size=n2)),
    "half beyond the grid": lambda r, n1, n2: (
        r.normal(size=n1),
        np.concatenate([r.normal(size=n2 // 2), r.normal(-40.0, size=n2 - n2 // 2)]),
    ),
    "heavy tails": lambda r, n1, n2: (r.standard_cauchy(n1), r.standard_cauchy(n2) * 1.1),
    "skewed": lambda r, n1, n2: (r.lognormal(0, 2.5, n1), r.lognormal(0.05, 2.5, n2)),
    "signed zeros": lambda r, n1, n2: (
        np.where(r.random(n1) < 0.5, 0.0, r.normal(size=n1)),
        np.where(r.random(n2) < 0.5, -0.0, r.normal(size=n2)),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    ("n1", "n2"),
    [(GRID_MIN_CURRENT, GRID_MIN_CURRENT), (GRID_MIN_CURRENT, 60_000), (60_000, GRID_MIN_CURRENT),
     (20_000, 20_000), (3_001, 7_919)],
)
def test_grid_statistic_equals_scipy(case: str, n1: int, n2: int) -> None:
    rng = np.random.default_rng(abs(hash((case, n1, n2))) % 2**32)
    a, b = CASES[case](rng, n1, n2)
    _check(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_values_at_cell_edges(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=int(rng.integers(GRID_MIN_CURRENT, 40_000)))
    grid = GridKS.prepare(np.sort(a))
    assert grid is not None
    # The reference too gets values on the edges: a new grid is cut from it, so aim at the first grid's.
    a_edges = np.concatenate([a, _edge_values(grid, rng, a.size // 3)])
    b = np.concatenate([_edge_values(grid, rng, 5_000), rng.normal(0.05, size=2_000)])
    _check(a, b)
    _check(a_edges, b)
    _check(a_edges, _edge_values(grid, rng, 3_000))


def test_random_shapes_equal_scipy() -> None:
    rng = np.random.default_rng(11)
    for _ in range(60):
        n1, n2 = (int(x) for x in rng.integers(GRID_MIN_CURRENT, 30_000, 2))
        _check(*CASES[sorted(CASES)[int(rng.integers(len(CASES)))]](rng, n1, n2))


def test_no_grid_for_constant_tiny_or_unbounded_references() -> None:
    assert GridKS.prepare(np.zeros(5_000)) is None
    assert GridKS.prepare(np.sort(np.random.default_rng(0).normal(size=GRID_MIN_CURRENT - 1))) is None
    assert GridKS.prepare(np.sort(np.r_[np.full(2_000, -1.7e308), np.full(2_000, 1.7e308)])) is None


def test_detect_on_the_grid_path_equals_scipy_with_nan_and_ties() -> None:
    rng = np.random.default_rng(5)
    n = 30_000
    ref = {
        "normal_nan": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
        "poisson": rng.poisson(4, n).astype(float),
        "inf_and_nan": np.where(
            rng.random(n) < 0.05, np.inf, np.where(rng.random(n) < 0.05, np.nan, rng.normal(size=n))
        ),
    }
    cur = {
        "normal_nan": np.where(rng.random(n // 3) < 0.2, np.nan, rng.normal(0.04, size=n // 3)),
        "poisson": rng.poisson(4.1, 2 * n).astype(float),
        "inf_and_nan": np.where(rng.random(n) < 0.01, -np.inf, rng.normal(size=n)),
    }
    features = {name: {"type": "continuous"} for name in ref}
    prepared = Reference.fit(ref, features=features)
    assert all(prepared._features[name].grid is not None for name in ref)
    result = prepared.detect(cur)
    for name in ref:
        a, b = ref[name][np.isfinite(ref[name])], cur[name][np.isfinite(cur[name])]
        expected = stats.ks_2samp(a, b)
        got = result["features"][name]
        assert got["details"]["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert got["p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
        assert got["details"]["current_median"] == np.sort(b)[b.size // 2]
        assert got["details"]["current_mean"] == pytest.approx(b.mean(), rel=1e-12)


def test_integer_codes_counted_by_offset_equal_a_search() -> None:
    rng = np.random.default_rng(2)
    ref = rng.integers(-3, 9, 5_000).astype(float)
    cur = np.concatenate([
        rng.integers(-5, 12, 5_000).astype(float),  # unseen codes on both sides of the range
        [2.5, -3.5, 1e300, -1e300, -0.0, 8.0000001],  # not whole numbers, huge, signed zero
    ])
    prepared = CategoricalReference(to_column(ref))
    assert prepared._offsets is not None
    column = to_column(cur)
    by_offset = prepared._counts(column)
    codes, _ = prepared._codes(column)
    assert by_offset.tolist() == np.bincount(codes, minlength=prepared.categories.size + 1).tolist()
    outcome = prepared.compare(column)
    assert outcome.details["unseen_count"] == int(by_offset[-1])
    table = np.vstack([prepared.counts[:-1], by_offset[:-1]])
    expected = stats.chi2_contingency(np.column_stack([table, [0, by_offset[-1]]]), correction=False)
    assert outcome.chi2[0] == pytest.approx(expected.statistic, rel=1e-12)
