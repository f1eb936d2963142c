"""Kolmogorov-Smirnov statistics of every sliding window of a stream against one fixed reference.

Calling `scipy.stats.ks_2samp` per window re-sorts the reference and merges it with the window every
time. Here the work that does not depend on the window is done once:

1. Each stream value is mapped once (one binary search) to a cell of the reference's value line:
   cell `2k` is the open interval below the k-th distinct reference value, cell `2k + 1` is that value
   itself. Cells are ordered like the values, and a cell fixes both "reference values below" and
   "reference values at or below" (the two counts the ECDF difference needs, ties included).
2. The stream is cut into panes of gcd(window, step) values; each window is a run of whole panes, so
   the cell codes are computed pane-sorted (sorted keys make the binary search cache friendly).
3. Per window, the cell codes are sorted (a radix sort when they fit in 16 bits) and
       D = max(max_j (below_j / n1 - j / n2), max_j ((j + 1) / n2 - at_or_below_j / n1))
   over sorted positions j, which is the supremum of |F_ref - F_window|: F_window - F_ref peaks at a
   window value and F_ref - F_window just before one; members inside a tie group only give smaller
   values, so ties need no special grouping. All terms are exact in float64 (integers times n1 or n2).
4. p-values come from `monitor_runtime.drift.ks.ks_pvalues` (the same as `ks_2samp(method="auto")`),
   evaluated once per distinct statistic.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from monitor_runtime.drift.ks import ks_pvalues

# Windows processed together: big enough to amortise Python overhead, small enough to stay in cache.
_CHUNK_WINDOWS = 32
# numpy releases the GIL in sort and searchsorted, so threads use the other cores for the heavy parts.
_WORKERS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None


def _run_split(fn: Callable[[int, int], Any], total: int) -> list[Any]:
    """Run `fn(start, stop)` over `_WORKERS` contiguous parts of range(total) in threads."""
    global _POOL
    bounds = np.linspace(0, total, min(_WORKERS, max(total, 1)) + 1).astype(int)
    parts = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))
    if len(parts) == 1:
        return [fn(*parts[0])]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="sliding-ks")
    return list(_POOL.map(lambda bounds: fn(*bounds), parts))


def sliding_ks(
    reference: np.ndarray, stream: np.ndarray, window: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """KS statistic and two-sided p-value of each window `stream[i*step : i*step + window]` vs `reference`.

    Windows start at 0, step, 2*step, ... while a whole window fits. Returns `(statistics, p_values)`,
    equal to `scipy.stats.ks_2samp(reference, window_values)` per window. NaN is rejected (drop or
    impute missing values first); infinities are ordinary values.
    """
    ref = np.asarray(reference, dtype=np.float64).ravel()
    values = np.asarray(stream, dtype=np.float64).ravel()
    window = _positive_int("window", window)
    step = _positive_int("step", step)
    if ref.size == 0:
        raise ValueError("reference is empty; the KS test needs at least one reference value")
    for name, array in (("reference", ref), ("stream", values)):
        bad = np.flatnonzero(np.isnan(array))
        if bad.size:
            raise ValueError(
                f"{name} has {bad.size} NaN values (first at position {bad[0]}); drop or impute missing "
                "values before computing sliding KS"
            )
    n_windows = 0 if values.size < window else (values.size - window) // step + 1
    if n_windows == 0:
        return np.empty(0), np.empty(0)

    ref = np.sort(ref)
    n1, n2 = ref.size, window
    distinct = np.concatenate([[True], ref[1:] != ref[:-1]])
    levels = ref[distinct]  # distinct reference values, ascending
    below_level = np.flatnonzero(distinct)  # reference values strictly below each distinct value
    # below[c] / upto[c]: reference values < / <= any value in cell c (see the module docstring).
    cum = np.append(below_level, n1)
    below = np.repeat(cum[:-1], 2)
    below = np.append(below, n1)
    upto = np.empty_like(below)
    upto[0::2] = cum
    upto[1::2] = cum[1:]

    pane = math.gcd(window, step)
    used = (n_windows - 1) * step + window
    panes = values[:used].reshape(-1, pane)
    codes = np.empty(panes.shape, dtype=_code_dtype(levels.size))
    edges = _cell_edges(levels)

    def encode(start: int, stop: int) -> None:
        part = np.sort(panes[start:stop], axis=1) if pane > 1 else panes[start:stop]
        codes[start:stop] = _cell_codes(levels, edges, part.ravel()).reshape(part.shape)

    _run_split(encode, panes.shape[0])

    # Exact-integer tables scaled by n2 so that D * n1 * n2 is a difference of integers.
    exact_dtype = np.int32 if n1 * n2 + max(n1, n2) < np.iinfo(np.int32).max else np.int64
    a_tab = (below * n2).astype(exact_dtype)
    b_tab = (upto * n2).astype(exact_dtype)
    j_n1 = (np.arange(n2) * n1).astype(exact_dtype)
    panes_per_window = window // pane
    panes_per_step = step // pane
    windows = sliding_window_view(codes, (panes_per_window, pane))[::panes_per_step, 0]
    windows = windows.reshape(n_windows, window)
    scaled = np.empty(n_windows, dtype=np.int64)
    kind = "stable" if codes.dtype.itemsize <= 2 else "quicksort"  # radix sort for 16-bit codes

    def statistics(first: int, last: int) -> None:
        for start in range(first, last, _CHUNK_WINDOWS):
            stop = min(start + _CHUNK_WINDOWS, last)
            block = np.sort(windows[start:stop], axis=1, kind=kind)
            d_plus = np.take(a_tab, block)
            d_plus -= j_n1
            d_minus = np.take(b_tab, block)
            np.subtract(j_n1 + n1, d_minus, out=d_minus)
            scaled[start:stop] = np.maximum(np.maximum(d_plus.max(axis=1), d_minus.max(axis=1)), 0)

    _run_split(statistics, n_windows)
    stats = scaled.astype(np.float64)
    stats /= float(n1) * float(n2)
    unique_d, inverse = np.unique(stats, return_inverse=True)
    p_values = np.asarray(ks_pvalues(unique_d, n1, n2), dtype=np.float64)[inverse]
    return stats, p_values


def _cell_edges(levels: np.ndarray) -> np.ndarray:
    """Edges whose right-side search count is the cell code: each level, then the next float above it."""
    edges = np.empty(2 * levels.size)
    edges[0::2] = levels
    edges[1::2] = np.nextafter(levels, np.inf)
    return edges


def _cell_codes(levels: np.ndarray, edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Cell of each value: 2k for the gap below distinct level k, 2k + 1 for level k itself."""
    codes = np.searchsorted(edges, values, side="right").astype(_code_dtype(levels.size))
    if levels[-1] == np.inf:  # nextafter(inf) is inf, so +inf would land one cell too high
        codes[values == np.inf] = 2 * levels.size - 1
    return codes


def _code_dtype(n_levels: int) -> type[np.integer]:
    return np.uint16 if 2 * n_levels + 1 <= np.iinfo(np.uint16).max else np.int64


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"sliding_ks {name!r} must be a positive integer, got {value!r}")
    return int(value)
