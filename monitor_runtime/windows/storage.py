"""Where a window keeps its rows: an exact buffer, a uniform reservoir, or quantile sketches.

All three share one small protocol (`append`, `evict`, `contents`, `n_rows`, `nbytes`, `state`) so a
window strategy decides *when* rows enter and leave and the storage decides *how* they are kept.
The bounded storages work on panes: a window of `size` rows that slides by `step` is the union of
panes of gcd(size, step) rows, so sliding means dropping the oldest pane and opening a new one, never
recomputing the whole window.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from monitor_runtime.windows.columns import (
    Columns,
    column_nbytes,
    columns_from_json,
    columns_to_json,
    concat_chunks,
    missing_column,
    missing_mask,
    slice_columns,
    to_object,
)
from monitor_runtime.windows.sketches import (
    KLLSketch,
    count_categories,
    counts_from_json,
    counts_nbytes,
    counts_sample,
    counts_to_json,
    merge_counts,
    reservoir_plan,
)

STORAGE_KINDS = ("exact", "reservoir", "sketch")
# Chunks are merged into one array once there are this many, so tiny batches do not pile up objects.
_MAX_CHUNKS = 64


class ExactStorage:
    """Every row, in arrival order: a ring of row chunks that evicts from the front."""

    kind = "exact"

    def __init__(self) -> None:
        self._chunks: deque[tuple[int, Columns]] = deque()
        self._n_rows = 0

    @property
    def n_rows(self) -> int:
        """Rows currently held."""
        return self._n_rows

    def append(self, columns: Mapping[str, np.ndarray], n_rows: int, rng: np.random.Generator) -> None:
        """Add `n_rows` rows (the random generator is unused: exact storage draws nothing)."""
        if n_rows == 0:
            return
        self._chunks.append((n_rows, dict(columns)))
        self._n_rows += n_rows
        if len(self._chunks) > _MAX_CHUNKS:
            merged = concat_chunks(list(self._chunks))
            self._chunks = deque([(self._n_rows, merged)])

    def evict(self, n_rows: int) -> int:
        """Drop the oldest `n_rows` rows; returns how many were dropped."""
        dropped = 0
        while self._chunks and dropped < n_rows:
            n, cols = self._chunks[0]
            if dropped + n <= n_rows:
                self._chunks.popleft()
                dropped += n
            else:
                cut = n_rows - dropped
                self._chunks[0] = (n - cut, slice_columns(cols, cut, n, n))
                dropped = n_rows
        self._n_rows -= dropped
        return dropped

    def contents(self) -> Columns:
        """All rows held, oldest first."""
        return concat_chunks(list(self._chunks))

    @property
    def nbytes(self) -> int:
        """Bytes of the held arrays."""
        return sum(column_nbytes(cols) for _, cols in self._chunks)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"kind": self.kind, "n_rows": self._n_rows, "columns": columns_to_json(self.contents())}

    def load(self, state: Mapping[str, Any]) -> None:
        """Replace the contents with a saved state."""
        self._chunks = deque()
        self._n_rows = int(state["n_rows"])
        if self._n_rows:
            self._chunks.append((self._n_rows, columns_from_json(state["columns"])))


class _ReservoirPane:
    """A uniform, row-aligned sample of at most `capacity` rows of one pane."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.sample: Columns = {}
        self.filled = 0
        self.n_rows = 0

    def add(self, columns: Mapping[str, np.ndarray], n_rows: int, rng: np.random.Generator) -> None:
        fill, rows, slots = reservoir_plan(rng, self.n_rows, n_rows, self.capacity)
        for name in list(self.sample) + [c for c in columns if c not in self.sample]:
            held = self.sample.get(name)
            incoming = columns.get(name)
            if held is None:
                held = missing_column(self.filled, incoming.dtype)
            if incoming is None:
                incoming = missing_column(n_rows, held.dtype)
            if held.dtype != incoming.dtype:
                held, incoming = to_object(held), to_object(incoming)
            if fill.size:
                held = np.concatenate([held, incoming[fill]])
            if rows.size:
                held[slots] = incoming[rows]
            self.sample[name] = held
        self.filled += fill.size
        self.n_rows += n_rows

    @property
    def nbytes(self) -> int:
        return column_nbytes(self.sample)

    def state(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "filled": self.filled, "sample": columns_to_json(self.sample)}

    @classmethod
    def from_state(cls, capacity: int, state: Mapping[str, Any]) -> _ReservoirPane:
        pane = cls(capacity)
        pane.n_rows = int(state["n_rows"])
        pane.filled = int(state["filled"])
        pane.sample = columns_from_json(state["sample"])
        return pane


class _ColumnSketch:
    """One column of one pane: a KLL sketch of its numbers and exact counts of its categories."""

    def __init__(self, k: int, rng: np.random.Generator) -> None:
        self.kll = KLLSketch(k, rng=rng)
        self.counts: dict[Any, int] = {}

    def add(self, column: np.ndarray) -> None:
        present = column[~missing_mask(column)]
        if column.dtype == object:
            merge_counts(self.counts, count_categories(present))
        else:
            self.kll.update(present)

    @property
    def n_values(self) -> int:
        return self.kll.n + sum(self.counts.values())


class _SketchPane:
    """Per-column sketches of one pane; rows where a column is absent count as missing."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.columns: dict[str, _ColumnSketch] = {}
        self.n_rows = 0

    def add(self, columns: Mapping[str, np.ndarray], n_rows: int, rng: np.random.Generator) -> None:
        for name, column in columns.items():
            if name not in self.columns:
                self.columns[name] = _ColumnSketch(self.k, rng)
            self.columns[name].add(column)
        self.n_rows += n_rows

    @property
    def nbytes(self) -> int:
        return sum(c.kll.nbytes + counts_nbytes(c.counts) for c in self.columns.values())

    def state(self) -> dict[str, Any]:
        return {
            "n_rows": self.n_rows,
            "columns": {
                name: {"kll": c.kll.state(), "counts": counts_to_json(c.counts)}
                for name, c in self.columns.items()
            },
        }

    @classmethod
    def from_state(cls, k: int, state: Mapping[str, Any], rng: np.random.Generator) -> _SketchPane:
        pane = cls(k)
        pane.n_rows = int(state["n_rows"])
        for name, data in state["columns"].items():
            sketch = _ColumnSketch(k, rng)
            sketch.kll = KLLSketch.from_state(data["kll"], rng=rng)
            sketch.counts = counts_from_json(data["counts"])
            pane.columns[name] = sketch
        return pane


class _PanedStorage:
    """Closed panes of `pane_size` rows plus one open pane; eviction drops whole panes."""

    kind = ""

    def __init__(self, pane_size: int, capacity: int) -> None:
        self.pane_size = int(pane_size)
        self.capacity = int(capacity)
        self._closed: deque[Any] = deque()
        self._open = self._new_pane()

    def _new_pane(self) -> Any:
        raise NotImplementedError

    @property
    def n_rows(self) -> int:
        """Rows represented (not rows stored: bounded storages keep less)."""
        return sum(p.n_rows for p in self._closed) + self._open.n_rows

    def append(self, columns: Mapping[str, np.ndarray], n_rows: int, rng: np.random.Generator) -> None:
        """Add rows, closing a pane each time one fills up."""
        start = 0
        while start < n_rows:
            take = min(n_rows - start, self.pane_size - self._open.n_rows)
            self._open.add(slice_columns(columns, start, start + take, n_rows), take, rng)
            start += take
            if self._open.n_rows >= self.pane_size:
                self._closed.append(self._open)
                self._open = self._new_pane()

    def evict(self, n_rows: int) -> int:
        """Drop the oldest closed panes that fit within `n_rows` rows; returns rows dropped."""
        dropped = 0
        while self._closed and dropped + self._closed[0].n_rows <= n_rows:
            dropped += self._closed.popleft().n_rows
        return dropped

    def _panes(self) -> list[Any]:
        return [*self._closed, self._open] if self._open.n_rows else list(self._closed)

    @property
    def nbytes(self) -> int:
        """Bytes held by all panes."""
        return sum(p.nbytes for p in self._panes())

    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (the random generator is saved by the window)."""
        return {
            "kind": self.kind,
            "closed": [p.state() for p in self._closed],
            "open": self._open.state(),
        }


class ReservoirStorage(_PanedStorage):
    """A uniform random sample of the window, at most about `capacity` rows, row-aligned across columns.

    Each pane keeps its own reservoir with the same sampling rate, so the union over the panes of a
    window is a stratified uniform sample of that window.
    """

    kind = "reservoir"

    def __init__(self, pane_size: int, capacity: int, panes_per_window: int) -> None:
        self.pane_capacity = max(1, -(-int(capacity) // max(1, panes_per_window)))
        super().__init__(pane_size, capacity)

    def _new_pane(self) -> _ReservoirPane:
        return _ReservoirPane(self.pane_capacity)

    def contents(self) -> Columns:
        """The sampled rows of every pane, oldest pane first."""
        return concat_chunks([(p.filled, p.sample) for p in self._panes()])

    def load(self, state: Mapping[str, Any], rng: np.random.Generator) -> None:
        """Replace the contents with a saved state."""
        self._closed = deque(_ReservoirPane.from_state(self.pane_capacity, s) for s in state["closed"])
        self._open = _ReservoirPane.from_state(self.pane_capacity, state["open"])


class SketchStorage(_PanedStorage):
    """Numeric columns as KLL sketches (k = `capacity` per pane), categorical columns as exact counts.

    `contents()` returns a representative sample of `sample_size` rows per column: evenly spaced
    quantiles for the numbers, categories repeated in proportion to their counts, and missing values in
    proportion to the missing rate. Columns are independent marginals (rows are not aligned), and a
    drift test on the sample sees `sample_size` values, not the window's full count.
    """

    kind = "sketch"

    def __init__(self, pane_size: int, capacity: int, sample_size: int | None = None) -> None:
        self.sample_size = int(sample_size or capacity)
        super().__init__(pane_size, capacity)

    def _new_pane(self) -> _SketchPane:
        return _SketchPane(self.capacity)

    def contents(self) -> Columns:
        """A representative sample of the window (see the class docstring)."""
        panes = self._panes()
        total = sum(p.n_rows for p in panes)
        size = min(total, self.sample_size)
        names: dict[str, None] = {}
        for pane in panes:
            names.update(dict.fromkeys(pane.columns))
        out: Columns = {}
        for name in names:
            sketches = [p.columns[name] for p in panes if name in p.columns]
            kll = sketches[0].kll.copy()
            counts: dict[Any, int] = dict(sketches[0].counts)
            for extra in sketches[1:]:
                kll.merge(extra.kll)
                merge_counts(counts, extra.counts)
            out[name] = _representative(kll, counts, total, size)
        return out

    def load(self, state: Mapping[str, Any], rng: np.random.Generator) -> None:
        """Replace the contents with a saved state."""
        self._closed = deque(_SketchPane.from_state(self.capacity, s, rng) for s in state["closed"])
        self._open = _SketchPane.from_state(self.capacity, state["open"], rng)


def _representative(kll: KLLSketch, counts: Mapping[Any, int], total: int, size: int) -> np.ndarray:
    if total == 0 or size == 0:
        return np.empty(0, dtype=np.float64)
    n_cat = sum(counts.values())
    n_num = kll.n
    s_num = round(size * n_num / total)
    s_cat = min(round(size * n_cat / total), size - s_num)
    s_missing = size - s_num - s_cat
    numbers = kll.sample(s_num)
    if n_cat == 0:
        return np.concatenate([numbers, np.full(s_missing, np.nan)])
    return np.concatenate(
        [to_object(numbers), counts_sample(counts, s_cat), np.full(s_missing, None, dtype=object)]
    )


def make_storage(
    kind: str, *, window_size: int, pane_size: int, capacity: int
) -> ExactStorage | ReservoirStorage | SketchStorage:
    """Build the storage named `kind` for windows of `window_size` rows cut into panes of `pane_size`."""
    if kind == "exact":
        return ExactStorage()
    panes = max(1, -(-window_size // pane_size))
    if kind == "reservoir":
        return ReservoirStorage(pane_size, capacity, panes)
    if kind == "sketch":
        return SketchStorage(pane_size, capacity)
    raise ValueError(f"storage must be one of {', '.join(STORAGE_KINDS)}, got {kind!r}")
