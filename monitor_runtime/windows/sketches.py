"""Fixed-size summaries of a stream: a KLL quantile sketch and exact category counts.

KLL (Karnin, Lang, Liberty 2016) is hand-written here because the maintained implementations
(Apache DataSketches) are not in our dependency set and work one value at a time; this one takes whole
numpy batches, compacts each level with one sort, and round-trips through JSON for checkpoints.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor_runtime.windows.columns import floats_from_json, floats_to_json, json_key

# Level capacity shrinks by this factor per level below the top (the value from the KLL paper).
_KLL_DECAY = 2.0 / 3.0
_KLL_MIN_LEVEL = 2


class KLLSketch:
    """A mergeable quantile sketch whose size stays O(k) however many values it has seen.

    Values are kept in levels; an item at level h stands for 2**h original values. When a level outgrows
    its capacity it is sorted and every other item (random offset) moves up one level, so the total
    weight is preserved exactly and rank error is about 1.7/k of n with high probability.
    """

    def __init__(self, k: int = 200, *, rng: np.random.Generator | None = None) -> None:
        if k < 8:
            raise ValueError(f"KLL sketch size k must be at least 8, got {k}")
        self.k = int(k)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.levels: list[np.ndarray] = [np.empty(0, dtype=np.float64)]
        self.n = 0

    def _capacity(self, level: int) -> int:
        depth = len(self.levels) - 1 - level
        return max(_KLL_MIN_LEVEL, math.ceil(self.k * _KLL_DECAY**depth))

    def update(self, values: np.ndarray) -> None:
        """Add a batch of values (NaN must already be removed)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        self.levels[0] = np.concatenate([self.levels[0], values])
        self.n += int(values.size)
        self._compress()

    def merge(self, other: KLLSketch) -> None:
        """Fold another sketch into this one (level by level, then compact)."""
        while len(self.levels) < len(other.levels):
            self.levels.append(np.empty(0, dtype=np.float64))
        for h, items in enumerate(other.levels):
            self.levels[h] = np.concatenate([self.levels[h], items])
        self.n += other.n
        self._compress()

    def _compress(self) -> None:
        # One level per pass, lowest first, until every level fits; a big batch cascades upwards.
        h = 0
        while h < len(self.levels):
            items = self.levels[h]
            if items.size <= self._capacity(h):
                h += 1
                continue
            items = np.sort(items)
            keep = items[-1:] if items.size % 2 else items[:0]
            even = items[: items.size - keep.size]
            promoted = even[int(self.rng.integers(2)) :: 2]
            self.levels[h] = keep.copy()
            added = h + 1 == len(self.levels)
            if added:
                self.levels.append(np.empty(0, dtype=np.float64))
            self.levels[h + 1] = np.concatenate([self.levels[h + 1], promoted])
            # A new top level shrinks every lower capacity, so recheck from the bottom.
            h = 0 if added else h + 1

    def _weighted(self) -> tuple[np.ndarray, np.ndarray]:
        items = np.concatenate(self.levels)
        weights = np.concatenate(
            [np.full(level.size, float(2**h)) for h, level in enumerate(self.levels)]
        )
        order = np.argsort(items, kind="stable")
        return items[order], np.cumsum(weights[order])

    def quantiles(self, qs: np.ndarray) -> np.ndarray:
        """Approximate quantiles at probabilities `qs` (each in [0, 1])."""
        qs = np.asarray(qs, dtype=np.float64)
        if self.n == 0:
            return np.full(qs.shape, np.nan)
        items, cum = self._weighted()
        idx = np.searchsorted(cum, qs * cum[-1], side="left")
        return items[np.clip(idx, 0, items.size - 1)]

    def sample(self, size: int) -> np.ndarray:
        """A representative sample: `size` evenly spaced quantiles (mid-points of equal-mass slices)."""
        if size <= 0 or self.n == 0:
            return np.empty(0, dtype=np.float64)
        return self.quantiles((np.arange(size) + 0.5) / size)

    def copy(self) -> KLLSketch:
        """An independent copy sharing the random generator."""
        out = KLLSketch(self.k, rng=self.rng)
        out.levels = [level.copy() for level in self.levels]
        out.n = self.n
        return out

    @property
    def nbytes(self) -> int:
        """Bytes held by the levels."""
        return sum(int(level.nbytes) for level in self.levels)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (the generator is saved by the owner)."""
        return {"k": self.k, "n": self.n, "levels": [floats_to_json(level) for level in self.levels]}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, rng: np.random.Generator) -> KLLSketch:
        """Rebuild a sketch saved with `state()`."""
        out = cls(int(state["k"]), rng=rng)
        out.levels = [floats_from_json(level) for level in state["levels"]]
        out.n = int(state["n"])
        return out


def count_categories(values: np.ndarray) -> dict[Any, int]:
    """Exact counts of the (non-missing) values of an object column."""
    if values.size == 0:
        return {}
    try:
        uniques, counts = np.unique(values, return_counts=True)
        return dict(zip(uniques.tolist(), counts.tolist(), strict=True))
    except TypeError:  # unorderable mix such as str and int: Counter hashes instead of sorting
        return dict(Counter(values.tolist()))


def merge_counts(target: dict[Any, int], extra: Mapping[Any, int]) -> None:
    """Add `extra` into `target` in place."""
    for key, count in extra.items():
        target[key] = target.get(key, 0) + count


def counts_sample(counts: Mapping[Any, int], size: int) -> np.ndarray:
    """An object array of `size` values whose category shares match `counts` (largest remainders)."""
    out = np.empty(max(size, 0), dtype=object)
    total = sum(counts.values())
    if size <= 0 or total == 0:
        return out[:0]
    keys = list(counts)
    shares = np.array([counts[k] for k in keys], dtype=np.float64) * size / total
    reps = np.floor(shares).astype(np.int64)
    short = size - int(reps.sum())
    if short > 0:
        reps[np.argsort(-(shares - reps), kind="stable")[:short]] += 1
    key_array = np.empty(len(keys), dtype=object)
    key_array[:] = keys
    return np.repeat(key_array, reps)


def counts_to_json(counts: Mapping[Any, int]) -> list[list[Any]]:
    """Counts as `[[value, count], ...]` (JSON object keys would turn numbers into strings)."""
    return [[json_key(k), int(v)] for k, v in counts.items()]


def counts_from_json(pairs: list[list[Any]]) -> dict[Any, int]:
    """Inverse of `counts_to_json`."""
    return {k: int(v) for k, v in pairs}


def counts_nbytes(counts: Mapping[Any, int]) -> int:
    """Approximate bytes of a counts table: the dict plus its keys."""
    import sys

    return sys.getsizeof(counts) + sum(sys.getsizeof(k) + 28 for k in counts)


def reservoir_plan(
    rng: np.random.Generator, seen: int, n_new: int, capacity: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decide where `n_new` arriving rows go in a uniform reservoir of `capacity` slots.

    Returns `(fill_rows, replace_rows, replace_slots)`: rows (indices into the new batch) appended while
    the reservoir is filling, and rows that overwrite a slot afterwards. This is Algorithm R with all
    draws made at once: row t (1-based over the stream) is kept with probability capacity / t; when two
    kept rows pick the same slot the later one wins, exactly as in sequential processing.
    """
    n_fill = max(0, min(n_new, capacity - seen))
    fill_rows = np.arange(n_fill)
    rest = np.arange(n_fill, n_new)
    if rest.size == 0:
        return fill_rows, rest, rest
    t = seen + rest + 1.0
    kept = rest[rng.random(rest.size) * t < capacity]
    slots = rng.integers(0, capacity, size=kept.size)
    # Keep the last writer of each slot: unique over the reversed order finds last occurrences.
    _, last = np.unique(slots[::-1], return_index=True)
    pick = np.sort(kept.size - 1 - last)
    return fill_rows, kept[pick], slots[pick]
