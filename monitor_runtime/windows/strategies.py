"""Window strategies over column batches: fixed (tumbling), sliding and adaptive (ADWIN).

Every window has the same protocol: `add(batch)` returns the windows that became complete,
`current()` returns what is held now, `state()` / `restore(state)` / `from_state(state)` checkpoint and
resume through JSON, and `nbytes` reports memory for accounting. How rows are kept (exactly, as a
reservoir, or as sketches) is the `storage` option, independent of the strategy.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from monitor_runtime.limits import MAX_PANES_PER_WINDOW
from monitor_runtime.windows.adwin import ADWIN, DEFAULT_DELTA
from monitor_runtime.windows.columns import Batch, Columns, normalise_batch, slice_columns
from monitor_runtime.windows.storage import (
    STORAGE_KINDS,
    ExactStorage,
    ReservoirStorage,
    SketchStorage,
    make_storage,
)

DEFAULT_CAPACITY = {"exact": 0, "reservoir": 1024, "sketch": 200}

Storage = ExactStorage | ReservoirStorage | SketchStorage


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    return dict(rng.bit_generator.state)


def _rng_from_state(state: Mapping[str, Any]) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = dict(state)
    return rng


class Window:
    """Common behaviour of all window strategies (not used directly: use a subclass or `make_window`)."""

    strategy: ClassVar[str] = ""

    def __init__(self, *, storage: str = "exact", capacity: int | None = None, seed: int = 0) -> None:
        if storage not in STORAGE_KINDS:
            raise ValueError(f"window 'storage' must be one of {', '.join(STORAGE_KINDS)}, got {storage!r}")
        self.storage_kind = storage
        self.capacity = int(capacity if capacity is not None else DEFAULT_CAPACITY[storage])
        if storage == "reservoir" and self.capacity < 1:
            raise ValueError(f"window 'capacity' must be at least 1 for a reservoir, got {self.capacity}")
        if storage == "sketch" and self.capacity < 8:
            raise ValueError(f"window 'capacity' must be at least 8 for a sketch, got {self.capacity}")
        self.seed = int(seed)
        self._rng = np.random.default_rng(self.seed)
        self.rows_seen = 0
        self.windows_emitted = 0
        self._storage: Storage = ExactStorage()

    # -- protocol -------------------------------------------------------------------------------------
    def add(self, batch: Batch) -> list[Columns]:
        """Add a batch of rows; return the windows that became complete, oldest first."""
        raise NotImplementedError

    def current(self) -> Columns:
        """The current contents (for bounded storages: the sample or sketch summary)."""
        return self._storage.contents()

    @property
    def n_rows(self) -> int:
        """Rows the current contents stand for."""
        return self._storage.n_rows

    @property
    def nbytes(self) -> int:
        """Bytes held by the window's buffers, for memory accounting."""
        return self._storage.nbytes

    def config(self) -> dict[str, Any]:
        """The window's configuration in the spec's camelCase keys (accepted by `make_window`)."""
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint: configuration, contents, counters and random state."""
        return {
            "config": self.config(),
            "storage": self._storage.state(),
            "rng": _rng_state(self._rng),
            "rows_seen": self.rows_seen,
            "windows_emitted": self.windows_emitted,
            **self._extra_state(),
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint made by `state()` of a window with the same configuration."""
        if dict(state["config"]) != self.config():
            raise ValueError(
                f"cannot restore a checkpoint of window {state['config']} into window {self.config()}; "
                "use from_state() to rebuild the saved window instead"
            )
        self._rng = _rng_from_state(state["rng"])
        if isinstance(self._storage, ExactStorage):
            self._storage.load(state["storage"])
        else:
            self._storage.load(state["storage"], self._rng)
        self.rows_seen = int(state["rows_seen"])
        self.windows_emitted = int(state["windows_emitted"])
        self._load_extra(state)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Window:
        """Rebuild a window (of whatever strategy it was) from a checkpoint."""
        window = make_window(state["config"])
        window.restore(state)
        return window

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        return None

    def _storage_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"storage": self.storage_kind, "seed": self.seed}
        if self.storage_kind != "exact":
            out["capacity"] = self.capacity
        return out


class SlidingWindow(Window):
    """Windows of `size` rows, one every `step` rows (`step = size - overlap`).

    The first window is emitted after `size` rows, then one more every `step` rows. Rows leave the
    buffer `step` at a time, so each window costs the rows that entered, not a rebuild.
    """

    strategy = "sliding"

    def __init__(
        self,
        size: int,
        step: int | None = None,
        *,
        overlap: int | None = None,
        storage: str = "exact",
        capacity: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(storage=storage, capacity=capacity, seed=seed)
        self.size = _positive("size", size)
        self.step = _resolve_step(self.size, step, overlap)
        pane = math.gcd(self.size, self.step)
        if storage != "exact" and self.size // pane > MAX_PANES_PER_WINDOW:
            raise ValueError(
                f"window 'step' {self.step} and 'size' {self.size} share only the divisor {pane}, so "
                f"'{storage}' storage would keep {self.size // pane} panes per window; choose a step "
                f"that divides size (or shares a divisor of at least {self.size // MAX_PANES_PER_WINDOW})"
            )
        self._storage = make_storage(storage, window_size=self.size, pane_size=pane, capacity=self.capacity)

    def add(self, batch: Batch) -> list[Columns]:
        """Add a batch; return every window that completed inside it."""
        columns, n_rows = normalise_batch(batch)
        ready: list[Columns] = []
        start = 0
        # One iteration per completed window, not per row.
        while start < n_rows:
            take = min(n_rows - start, self.size - self._storage.n_rows)
            self._storage.append(slice_columns(columns, start, start + take, n_rows), take, self._rng)
            start += take
            if self._storage.n_rows >= self.size:
                ready.append(self._storage.contents())
                self._storage.evict(self.step)
                self.windows_emitted += 1
        self.rows_seen += n_rows
        return ready

    def config(self) -> dict[str, Any]:
        """The configuration in the spec's keys."""
        return {"strategy": self.strategy, "size": self.size, "step": self.step, **self._storage_config()}


class FixedWindow(SlidingWindow):
    """Tumbling windows: consecutive, non-overlapping blocks of `size` rows."""

    strategy = "fixed"

    def __init__(
        self, size: int, *, storage: str = "exact", capacity: int | None = None, seed: int = 0
    ) -> None:
        super().__init__(size, size, storage=storage, capacity=capacity, seed=seed)

    def config(self) -> dict[str, Any]:
        """The configuration in the spec's keys."""
        return {"strategy": self.strategy, "size": self.size, **self._storage_config()}


class AdaptiveWindow(Window):
    """A window whose length follows the data: it grows while the data is stable and shrinks at a change.

    One ADWIN detector per watched numeric column (all numeric columns unless `watch` names some) sees
    every value. When a detector finds that the older part of its window has a different mean, the
    window drops the rows before the change, so the next emitted window describes the new regime only.
    The window never exceeds `max_size` rows and is emitted every `step` rows once it holds at least
    `min_size` rows. With bounded storage the cut falls on a pane boundary (panes are `step` rows).
    """

    strategy = "adaptive"

    def __init__(
        self,
        min_size: int,
        max_size: int,
        *,
        step: int | None = None,
        delta: float = DEFAULT_DELTA,
        watch: list[str] | None = None,
        storage: str = "exact",
        capacity: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(storage=storage, capacity=capacity, seed=seed)
        self.min_size = _positive("minSize", min_size)
        self.max_size = _positive("maxSize", max_size)
        if self.min_size > self.max_size:
            raise ValueError(
                f"window 'minSize' ({self.min_size}) must not exceed 'maxSize' ({self.max_size})"
            )
        self.step = _positive("step", step if step is not None else self.min_size)
        if self.step > self.max_size:
            raise ValueError(f"window 'step' ({self.step}) must not exceed 'maxSize' ({self.max_size})")
        if not (isinstance(delta, int | float) and 0.0 < float(delta) < 1.0):
            raise ValueError(f"window 'delta' must be a number in (0, 1), got {delta!r}")
        self.delta = float(delta)
        self.watch = None if watch is None else [str(w) for w in watch]
        self._storage = make_storage(
            storage, window_size=self.max_size, pane_size=self.step, capacity=self.capacity
        )
        self.detectors: dict[str, ADWIN] = {}
        # (rows, {column: finite values}) per appended chunk, to map a detector's width to rows.
        self._records: deque[tuple[int, dict[str, int]]] = deque()
        self.changes = 0

    def add(self, batch: Batch) -> list[Columns]:
        """Add a batch; return the windows emitted inside it (one per `step` rows once `minSize` is held)."""
        columns, n_rows = normalise_batch(batch)
        ready: list[Columns] = []
        start = 0
        while start < n_rows:
            take = min(n_rows - start, self.step - self.rows_seen % self.step)
            chunk = slice_columns(columns, start, start + take, n_rows)
            self._storage.append(chunk, take, self._rng)
            self._observe(chunk, take)
            start += take
            self.rows_seen += take
            excess = self._storage.n_rows - self.max_size
            if excess > 0:
                self._evict(excess, round_up=True)
            if self.rows_seen % self.step == 0 and self._storage.n_rows >= self.min_size:
                ready.append(self._storage.contents())
                self.windows_emitted += 1
        return ready

    def _observe(self, chunk: Mapping[str, np.ndarray], n_rows: int) -> None:
        counts: dict[str, int] = {}
        keep_rows = None
        for name, column in chunk.items():
            if column.dtype == object or (self.watch is not None and name not in self.watch):
                continue
            counts[name] = int(np.isfinite(column).sum())  # the values the detector sees
            detector = self.detectors.setdefault(name, ADWIN(self.delta))
            if detector.update(column):
                rows = self._rows_holding(name, detector.width, counts[name], n_rows)
                keep_rows = rows if keep_rows is None else min(keep_rows, rows)
        self._records.append((n_rows, counts))
        if keep_rows is not None:
            self.changes += 1
            self._evict(self._storage.n_rows - keep_rows, round_up=False)

    def _rows_holding(self, name: str, width: int, newest_count: int, newest_rows: int) -> int:
        # Walk the chunk records from the newest until `width` values of the column are covered.
        records = [*self._records, (newest_rows, {name: newest_count})]
        rows = 0
        for n, counts in reversed(records):
            have = counts.get(name, 0)
            if have >= width:
                return rows + math.ceil(n * width / have) if have else rows
            width -= have
            rows += n
        return rows

    def _evict(self, n_rows: int, *, round_up: bool) -> None:
        if n_rows <= 0:
            return
        if round_up and not isinstance(self._storage, ExactStorage):
            n_rows = -(-n_rows // self.step) * self.step
        dropped = self._storage.evict(n_rows)
        while dropped > 0 and self._records:
            n, counts = self._records[0]
            if n <= dropped:
                self._records.popleft()
                dropped -= n
            else:
                left = n - dropped
                self._records[0] = (left, {k: round(v * left / n) for k, v in counts.items()})
                dropped = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer and the detectors."""
        return self._storage.nbytes + sum(d.nbytes for d in self.detectors.values())

    def config(self) -> dict[str, Any]:
        """The configuration in the spec's keys."""
        out: dict[str, Any] = {
            "strategy": self.strategy,
            "minSize": self.min_size,
            "maxSize": self.max_size,
            "step": self.step,
            "delta": self.delta,
            **self._storage_config(),
        }
        if self.watch is not None:
            out["watch"] = list(self.watch)
        return out

    def _extra_state(self) -> dict[str, Any]:
        return {
            "detectors": {name: d.state() for name, d in self.detectors.items()},
            "records": [[n, counts] for n, counts in self._records],
            "changes": self.changes,
        }

    def _load_extra(self, state: Mapping[str, Any]) -> None:
        self.detectors = {name: ADWIN.from_state(s) for name, s in state["detectors"].items()}
        self._records = deque((int(n), {k: int(v) for k, v in c.items()}) for n, c in state["records"])
        self.changes = int(state["changes"])


def _positive(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"window '{key}' must be a positive integer, got {value!r}")
    return int(value)


def _resolve_step(size: int, step: Any, overlap: Any) -> int:
    if step is None and overlap is None:
        raise ValueError("a sliding window needs 'step' or 'overlap' (rows shared by consecutive windows)")
    if overlap is not None:
        if isinstance(overlap, bool) or not isinstance(overlap, int | np.integer) or not 0 <= overlap < size:
            raise ValueError(f"window 'overlap' must be an integer in [0, size={size}), got {overlap!r}")
        from_overlap = size - int(overlap)
        if step is not None and _positive("step", step) != from_overlap:
            raise ValueError(
                f"window 'step' ({step}) and 'overlap' ({overlap}) disagree: step must equal size - overlap "
                f"= {from_overlap}; give only one of them"
            )
        return from_overlap
    step = _positive("step", step)
    if step > size:
        raise ValueError(
            f"window 'step' ({step}) must not exceed 'size' ({size}); rows between windows would be skipped"
        )
    return step


WINDOW_CONFIG_KEYS = (
    "strategy",
    "size",
    "step",
    "overlap",
    "minSize",
    "maxSize",
    "storage",
    "capacity",
    "seed",
    "delta",
    "watch",
)
STRATEGIES = ("fixed", "sliding", "adaptive")


def make_window(config: Mapping[str, Any]) -> Window:
    """Build a window from the spec's window configuration.

    Keys (camelCase, as in the ModelMonitor resource): `strategy` (fixed | sliding | adaptive, default
    fixed), `size`, `step`, `overlap`, `minSize`, `maxSize`, `storage` (exact | reservoir | sketch,
    default exact), `capacity` (reservoir rows, or KLL k for sketches), `seed` (default 0), and for
    adaptive windows `delta` (ADWIN confidence, default 0.002) and `watch` (columns to watch).
    For adaptive windows `size` is the starting size (the default `step`, so the first window has
    `size` rows) when `maxSize` is given, and stands in for `maxSize` when it is not; `minSize`
    defaults to maxSize / 10. `capacity` bounds memory: a reservoir keeps about `capacity` rows per
    window (fewer in an adaptive window shortly after a change), a sketch keeps a KLL sketch of size
    `capacity` per pane and emits `capacity` representative values per column.
    Raises ValueError naming the key for anything missing, unknown or out of range.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"window config must be a mapping, got {type(config).__name__}")
    unknown = [key for key in config if key not in WINDOW_CONFIG_KEYS]
    if unknown:
        raise ValueError(
            f"unknown window config key {unknown[0]!r}; allowed keys: {', '.join(WINDOW_CONFIG_KEYS)}"
        )
    strategy = config.get("strategy", "fixed")
    if strategy not in STRATEGIES:
        raise ValueError(f"window 'strategy' must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    common: dict[str, Any] = {
        "storage": config.get("storage", "exact"),
        "capacity": config.get("capacity"),
        "seed": config.get("seed", 0),
    }
    if common["capacity"] is not None:
        common["capacity"] = _non_negative("capacity", common["capacity"])
    common["seed"] = _non_negative("seed", common["seed"])
    if strategy != "adaptive":
        for key in ("minSize", "maxSize", "delta", "watch"):
            if key in config:
                raise ValueError(f"window key {key!r} applies to adaptive windows only, not {strategy!r}")
    if strategy == "fixed":
        if config.get("step") not in (None, config.get("size")) or config.get("overlap") not in (None, 0):
            raise ValueError(
                "window keys 'step' and 'overlap' do not apply to fixed windows; use strategy 'sliding'"
            )
        if "size" not in config:
            raise ValueError("window 'size' is required for a fixed window")
        return FixedWindow(_positive("size", config["size"]), **common)
    if strategy == "sliding":
        if "size" not in config:
            raise ValueError("window 'size' is required for a sliding window")
        return SlidingWindow(
            _positive("size", config["size"]), config.get("step"), overlap=config.get("overlap"), **common
        )
    max_size = config.get("maxSize", config.get("size"))
    if max_size is None:
        raise ValueError("window 'maxSize' (or 'size') is required for an adaptive window")
    max_size = _positive("maxSize", max_size)
    min_size = config.get("minSize", max(1, max_size // 10))
    if "overlap" in config:
        raise ValueError("window key 'overlap' does not apply to adaptive windows; use 'step'")
    watch = config.get("watch")
    if watch is not None and (isinstance(watch, str) or not all(isinstance(w, str) for w in watch)):
        raise ValueError(f"window 'watch' must be a list of column names, got {watch!r}")
    step = config.get("step")
    if step is None and "maxSize" in config and config.get("size") is not None:
        step = _positive("size", config["size"])  # the starting size: the first window has `size` rows
    return AdaptiveWindow(
        _positive("minSize", min_size),
        max_size,
        step=step,
        delta=config.get("delta", DEFAULT_DELTA),
        watch=None if watch is None else list(watch),
        **common,
    )


def _non_negative(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"window '{key}' must be a non-negative integer, got {value!r}")
    return int(value)
