"""The grid KS path (no sort of the batch) gives scipy's statistic and p-value on adversarial data."""

import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.drift import Reference
from monitor_runtime.drift.categorical import CategoricalReference
from monitor_runtime.drift.columns import to_column
from monitor_runtime.drift.ks import GRID_MIN_CURRENT, GridKS, _count_dtype


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
    # Equal values a few at a time (fewer than a tie cell takes), in both samples and across them: the
    # refinement counts a sample's own values by position, exact only at the last of equal values.
    "light ties, current lower": lambda r, n1, n2: (
        np.round(r.normal(size=n1), 3),
        np.round(r.normal(-0.05, size=n2), 3),
    ),
    "light ties, current higher": lambda r, n1, n2: (
        np.round(r.normal(size=n1), 3),
        np.round(r.normal(0.05, size=n2), 3),
    ),
    "light ties from one pool": lambda r, n1, n2: (
        (pool := np.sort(r.normal(size=max(n1, n2) // 4)))[r.integers(0, pool.size, n1)],
        pool[np.minimum(r.geometric(3.0 / pool.size, n2), pool.size - 1)],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    ("n1", "n2"),
    [(GRID_MIN_CURRENT, GRID_MIN_CURRENT), (GRID_MIN_CURRENT, 60_000), (60_000, GRID_MIN_CURRENT),
     (20_000, 20_000), (3_001, 7_919)],
)
def test_grid_statistic_equals_scipy(case: str, n1: int, n2: int) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{case} {n1} {n2}".encode()))  # str hashes vary by process
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
    _assert_detect_matches_scipy(prepared, ref, cur)


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


# The grid's compact state: per-cell reference counts in the narrowest type that holds the largest (1, 2
# or 4 bytes), their running sum taken per batch in reused scratch, and tie values kept only for the tie
# cells. Each width and the scratch reuse must give scipy's statistic exactly.


@pytest.mark.parametrize(
    ("largest", "dtype"),
    [(0, np.uint8), (255, np.uint8), (256, np.uint16), (65_535, np.uint16), (65_536, np.uint32),
     (2**32 - 1, np.uint32), (2**32, np.uint64)],
)
def test_count_width_is_the_narrowest_that_holds_the_largest_cell(largest: int, dtype: type) -> None:
    assert _count_dtype(largest) is dtype


def _tied_reference(rng: np.random.Generator, n1: int, tied: int, value: float) -> np.ndarray:
    """``tied`` copies of ``value`` among ``n1`` normal values: one cell holds at least ``tied``."""
    return np.concatenate([np.full(tied, value), rng.normal(size=n1 - tied)])


def _batches(rng: np.random.Generator, a: np.ndarray, grid: GridKS) -> list[np.ndarray]:
    """Adversarial batches for a reference: ties on its tie values, cell edges, beyond the grid, all
    equal, resampled, and sizes from the grid's smallest batch to many times the reference."""
    values, counts = np.unique(a, return_counts=True)
    tie = float(values[np.argmax(counts)])
    return [
        rng.normal(0.05, size=GRID_MIN_CURRENT),
        np.full(GRID_MIN_CURRENT, tie),
        np.full(3_000, tie + 1e-9),
        np.where(rng.random(20_000) < 0.5, tie, rng.normal(size=20_000)),
        np.concatenate([_edge_values(grid, rng, 4_000), np.full(1_000, tie)]),
        a[rng.integers(0, a.size, 150_000)],
        np.concatenate([rng.normal(30.0, size=700), np.full(300, np.nextafter(tie, -np.inf))]),
    ]


@pytest.mark.parametrize(
    ("n1", "tied", "dtype"),
    [
        (20_000, 0, np.uint8),  # continuous: a few dozen values a cell at most
        (GRID_MIN_CURRENT, 0, np.uint8),  # the smallest reference with a grid
        (5_000, 2_000, np.uint16),  # one heavy tie group
        (65_535, 60_000, np.uint16),  # the most a 2-byte count holds, in one reference
        (65_536 + 1_500, 65_536, np.uint32),  # one value past it, in one cell
    ],
)
def test_each_count_width_equals_scipy(n1: int, tied: int, dtype: type) -> None:
    rng = np.random.default_rng(n1 + tied)
    a = _tied_reference(rng, n1, tied, 0.0) if tied else rng.normal(size=n1)
    grid = GridKS.prepare(np.sort(a))
    assert grid is not None
    assert grid.counts.dtype == dtype  # the width this case is meant to exercise
    assert int(grid.counts.sum()) == n1
    for b in _batches(rng, a, grid):
        _check(a, b)


def test_a_tie_cell_holding_exactly_255_and_256_values() -> None:
    rng = np.random.default_rng(8)
    base = rng.uniform(-1.0, 1.0, 4_000)
    for tied, dtype in ((255, np.uint8), (256, np.uint16)):
        # The tie value sits alone in the highest cell (beyond the 99.95% quantile, so clipped into it).
        a = np.concatenate([base, np.full(tied, 5.0)])
        grid = GridKS.prepare(np.sort(a))
        assert grid is not None
        assert int(grid.counts.max()) == tied and grid.counts.dtype == dtype
        assert grid.atom_cells is not None and grid.atom_values.tolist() == [5.0]
        for b in _batches(rng, a, grid):
            _check(a, b)


def test_tie_values_kept_only_for_tie_cells() -> None:
    rng = np.random.default_rng(9)
    # Tie groups at the minimum (first cell), inside the range (alone in a gap of the continuous values)
    # and at the maximum (last cell), with a batch whose median falls on one of them and one whose does not.
    spread = np.where(rng.random(8_000) < 0.5, rng.uniform(-2, 0, 8_000), rng.uniform(1, 2, 8_000))
    a = np.concatenate([np.full(3_000, -2.5), np.full(2_500, 0.5), np.full(2_000, 2.5), spread])
    grid = GridKS.prepare(np.sort(a))
    assert grid is not None and grid.atom_cells is not None
    assert grid.atom_values.shape == grid.atom_cells.shape  # one value per tie cell, not one per cell
    assert set(grid.atom_values.tolist()) == {-2.5, 0.5, 2.5}
    lookup = np.full(grid.cells, np.nan)
    lookup[grid.atom_cells] = grid.atom_values
    for k in grid.atom_cells:  # each tie value lies in the cell it is kept for
        assert int(grid._cells(lookup[k : k + 1], np.empty(1), np.empty(1, dtype=np.intp))[0]) == k
    on_tie = np.concatenate([np.full(6_000, 0.5), rng.uniform(-2, 2, 5_000)])
    off_tie = np.concatenate([np.full(2_000, 0.5), rng.uniform(0.6, 2, 5_000), np.full(500, -2.5)])
    for b in (on_tie, off_tie, np.full(GRID_MIN_CURRENT, 2.5), np.full(GRID_MIN_CURRENT, -2.5)):
        _check(a, b)


def test_scratch_reused_across_grids_of_other_sizes_and_threads() -> None:
    """Grids of 64 to 16,384 cells, with and without tie cells, take turns in one thread and run at
    once in several: the per-thread scratch left by one never leaks into another's statistic."""
    rng = np.random.default_rng(10)
    refs = [
        rng.normal(size=600),
        rng.poisson(3, 200_000).astype(float),  # 16,384 cells, with tie cells
        rng.normal(size=150_000),
        _tied_reference(rng, 3_000, 1_000, 0.25),
        rng.lognormal(0, 2.5, 40_000),
    ]
    batches = [rng.normal(0.1, size=5_000), rng.poisson(3.2, 5_000).astype(float), np.full(2_000, 0.25)]
    grids = [GridKS.prepare(np.sort(a)) for a in refs]
    assert {g.cells for g in grids} >= {64, 16_384} and any(g.atom_cells is None for g in grids)
    jobs = [(i, j) for i in range(len(refs)) for j in range(len(batches))] * 2
    expected = {(i, j): (_scipy_raw(refs[i], batches[j]), np.sort(batches[j])[batches[j].size // 2])
                for i, j in set(jobs)}
    serial = [grids[i].statistic(batches[j]) for i, j in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda job: grids[job[0]].statistic(batches[job[1]]), jobs))
    for job, one, other in zip(jobs, serial, threaded, strict=True):
        assert one == other == expected[job]


@pytest.mark.parametrize("n1", [65_535, 65_536 + 2_000])
def test_detect_with_heavy_ties_and_nan_equals_scipy_either_side_of_the_2_byte_limit(n1: int) -> None:
    rng = np.random.default_rng(n1)
    ref = {
        "zero_inflated": np.where(rng.random(n1) < 0.95, 0.0, rng.normal(size=n1)),
        # n1 - 1,000 copies of one value (a 2-byte count below the limit, 4 bytes past it), NaN among the rest
        "mostly_one_value_nan": np.concatenate(
            [np.full(n1 - 1_000, 1.0), np.where(rng.random(1_000) < 0.3, np.nan, rng.normal(size=1_000))]
        ),
        "rounded": np.round(rng.normal(size=n1), 2),
    }
    cur = {
        "zero_inflated": np.where(rng.random(700) < 0.9, 0.0, rng.normal(0.2, size=700)),
        "mostly_one_value_nan": np.where(rng.random(90_000) < 0.2, np.nan, np.where(
            rng.random(90_000) < 0.97, 1.0, rng.normal(size=90_000))),
        "rounded": np.round(rng.normal(0.01, size=GRID_MIN_CURRENT), 2),
    }
    prepared = Reference.fit(ref, features={name: {"type": "continuous"} for name in ref})
    widths = {prepared._features[name].grid.counts.dtype for name in ref}
    assert (np.dtype(np.uint32) in widths) == (n1 > 65_535)
    _assert_detect_matches_scipy(prepared, ref, cur)


def _assert_detect_matches_scipy(
    prepared: Reference, ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]
) -> None:
    """Each column's KS statistic, p-value, median and mean as scipy and numpy give them (finite values)."""
    result = prepared.detect(cur)
    for name in ref:
        a, b = ref[name][np.isfinite(ref[name])], cur[name][np.isfinite(cur[name])]
        expected = stats.ks_2samp(a, b)
        got = result["features"][name]
        assert got["details"]["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
        assert got["p_value"] == pytest.approx(expected.pvalue, abs=1e-9)
        assert got["details"]["current_median"] == np.sort(b)[b.size // 2]
        assert got["details"]["current_mean"] == pytest.approx(b.mean(), rel=1e-12)
