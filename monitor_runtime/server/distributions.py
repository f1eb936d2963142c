"""Binned reference-vs-current distributions for the report page, in bounded memory.

The drift result says how much each feature moved; a person also wants to see how. The reference is
binned once (quantile edges for numbers, the most frequent categories plus "other" for strings) and
each evaluated chunk adds its bin counts to a ring of at most one window's worth of rows, so memory is
features x bins x chunks-per-window whatever the traffic.

Each chunk also keeps, per feature, its row and missing counts, the sum and sum of squares of its numbers
(about the reference mean, for precision) and its 101 percentiles. Summary statistics of the current window
follow from those: counts, mean and standard deviation exactly, quantiles by merging the chunks' percentiles
(exact for a window of one chunk, within about one percentile otherwise).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor_runtime.drift.columns import MISSING_STRINGS
from monitor_runtime.server.state_fields import float_array, integer, list_of, number, object_of

_BINS = 20
_PERCENTILES = np.linspace(0, 100, 101)
#: Quantiles shown in the summary statistics (as fractions).
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_TOP_CATEGORIES = 12
_MAX_FEATURES = 200


@dataclass
class ChunkSummary:
    """One chunk's contribution to a feature's summary statistics (numbers: moments and percentiles)."""

    rows: int
    missing: int
    n_numbers: int = 0
    sum: float = 0.0
    sum_squares: float = 0.0
    low: float = math.nan
    high: float = math.nan
    percentiles: np.ndarray | None = None


@dataclass
class FeatureBins:
    """Bins of one feature and the reference's share in each (last bin of categoricals is "other")."""

    kind: str
    edges: np.ndarray | None
    categories: list[str] | None
    reference: np.ndarray
    shift: float = 0.0
    reference_summary: ChunkSummary | None = None

    def numbers(self, values: np.ndarray) -> np.ndarray:
        """The values as floats (NaN where missing or not a number)."""
        kind = values.dtype.kind
        return np.asarray(values, dtype=np.float64) if kind in "biuf" else _tonumber(values.astype(object))

    def count(self, values: np.ndarray) -> np.ndarray:
        """Bin counts of `values` (missing values are not counted)."""
        return self.measure(values)[0]

    def measure(self, values: np.ndarray) -> tuple[np.ndarray, ChunkSummary]:
        """Bin counts and summary of `values`."""
        if self.kind == "numeric":
            v = self.numbers(values)
            v = v[np.isfinite(v)]
            idx = np.clip(np.searchsorted(self.edges, v, side="right") - 1, 0, len(self.edges) - 2)
            counts = np.bincount(idx, minlength=len(self.edges) - 1).astype(np.float64)
            summary = ChunkSummary(rows=len(values), missing=len(values) - v.size, n_numbers=int(v.size))
            if v.size:
                centred = v - self.shift
                summary.sum = float(centred.sum())
                summary.sum_squares = float(np.dot(centred, centred))
                summary.percentiles = np.percentile(v, _PERCENTILES)
                summary.low, summary.high = float(summary.percentiles[0]), float(summary.percentiles[-1])
            return counts, summary
        assert self.categories is not None
        cats = np.asarray(self.categories, dtype=object)
        v = np.asarray(values, dtype=object)
        v = v[v != None]  # noqa: E711 - element-wise comparison on an object array
        keys = v.astype(str)
        blank = np.isin(keys, list(MISSING_STRINGS))
        if blank.any():
            keys = keys[~blank]
        summary = ChunkSummary(rows=len(values), missing=len(values) - keys.size)
        order = np.argsort(cats.astype(str))
        sorted_cats = cats.astype(str)[order]
        pos = np.searchsorted(sorted_cats, keys)
        pos = np.clip(pos, 0, len(sorted_cats) - 1)
        hit = sorted_cats[pos] == keys
        counts = np.zeros(len(cats) + 1)
        np.add.at(counts, order[pos[hit]], 1)
        counts[-1] = np.count_nonzero(~hit)
        return counts, summary


def _tonumber(values: np.ndarray) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for_mask = np.array([isinstance(x, int | float) for x in values], dtype=bool)
    out[for_mask] = values[for_mask].astype(np.float64)
    return out


def fit_bins(values: np.ndarray) -> FeatureBins | None:
    """Bins for one reference column, or None when it has no usable values."""
    if values.dtype.kind not in "biufO":  # text, bytes, dates: count them as categories
        values = values.astype(object)
    if values.dtype != object:
        v = values.astype(np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            return None
        edges = np.unique(np.quantile(v, np.linspace(0, 1, _BINS + 1)))
        if edges.size < 2:
            edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
        bins = FeatureBins("numeric", edges, None, np.zeros(edges.size - 1), shift=float(np.median(v)))
    else:
        v = values[values != None]  # noqa: E711
        if v.size == 0:
            return None
        cats, counts = np.unique(v.astype(str), return_counts=True)
        top = cats[np.argsort(-counts, kind="stable")][:_TOP_CATEGORIES]
        bins = FeatureBins("categorical", None, [str(c) for c in top], np.zeros(len(top) + 1))
    bins.reference, bins.reference_summary = bins.measure(values)
    return bins


@dataclass
class DistributionTracker:
    """Reference bins plus a ring of current-chunk counts covering at most `window_rows` rows.

    Updates run on a pool thread while the event loop renders pages, hence the lock.
    """

    window_rows: int
    features: dict[str, FeatureBins] = field(default_factory=dict)
    chunks: deque[tuple[int, dict[str, tuple[np.ndarray, ChunkSummary]]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def to_state(self) -> dict[str, Any]:
        """The tracker as data for a checkpoint (JSON values and numpy arrays); `from_state` reads it."""
        with self._lock:
            features = dict(self.features)
            chunks = list(self.chunks)
        return {
            "window_rows": self.window_rows,
            "features": {name: _bins_state(bins) for name, bins in features.items()},
            "chunks": [
                {
                    "rows": n_rows,
                    "features": {
                        name: {"counts": counts, "summary": _summary_state(summary)}
                        for name, (counts, summary) in measured.items()
                    },
                }
                for n_rows, measured in chunks
            ],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> DistributionTracker:
        """A tracker from `to_state()` data; ValueError naming the field that is wrong."""
        where = "distributions"
        state = object_of(state, where)
        features = {
            str(name): _bins_from_state(bins, f"{where}.features[{name!r}]")
            for name, bins in object_of(state.get("features"), f"{where}.features").items()
        }
        chunks: deque[tuple[int, dict[str, tuple[np.ndarray, ChunkSummary]]]] = deque()
        for i, chunk in enumerate(list_of(state.get("chunks"), f"{where}.chunks")):
            at = f"{where}.chunks[{i}]"
            chunk = object_of(chunk, at)
            measured = {}
            for name, item in object_of(chunk.get("features"), f"{at}.features").items():
                item_at = f"{at}.features[{name!r}]"
                item = object_of(item, item_at)
                measured[str(name)] = (
                    float_array(item.get("counts"), f"{item_at}.counts"),
                    _summary_from_state(item.get("summary"), f"{item_at}.summary"),
                )
            chunks.append((integer(chunk.get("rows"), f"{at}.rows"), measured))
        window_rows = integer(state.get("window_rows"), f"{where}.window_rows")
        return cls(window_rows=window_rows, features=features, chunks=chunks)

    def set_reference(self, columns: Mapping[str, np.ndarray]) -> None:
        """Bin a new reference; current counts restart because the bins changed."""
        features = {}
        for name in list(columns)[:_MAX_FEATURES]:
            bins = fit_bins(np.asarray(columns[name]))
            if bins is not None:
                features[name] = bins
        with self._lock:
            self.features = features
            self.chunks.clear()

    def add_current(self, columns: Mapping[str, np.ndarray], n_rows: int) -> None:
        """Count an evaluated chunk and forget chunks that fell out of the window."""
        with self._lock:
            features = self.features  # replaced, never mutated, by set_reference
        counts = {
            name: bins.measure(np.asarray(columns[name]))
            for name, bins in features.items()
            if name in columns
        }
        with self._lock:
            if features is not self.features:
                return  # a new reference arrived meanwhile; these counts belong to the old bins
            self.chunks.append((n_rows, counts))
            total = sum(n for n, _ in self.chunks)
            while len(self.chunks) > 1 and total - self.chunks[0][0] >= self.window_rows:
                total -= self.chunks.popleft()[0]

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Per feature: kind, bin labels, reference and current shares."""
        with self._lock:
            features = dict(self.features)
            chunks = list(self.chunks)
        out: dict[str, dict[str, Any]] = {}
        for name, bins in features.items():
            current = np.zeros_like(bins.reference)
            parts = []
            for _, counts in chunks:
                if name in counts:
                    current += counts[name][0]
                    parts.append(counts[name][1])
            if bins.kind == "numeric":
                labels = [f"{a:.4g}" for a in bins.edges[:-1]]
            else:
                labels = [*bins.categories, "other"]
            ref_summary = [bins.reference_summary] if bins.reference_summary is not None else []
            out[name] = {
                "kind": bins.kind,
                "labels": labels,
                "edges": None if bins.edges is None else bins.edges.tolist(),
                "reference": _shares(bins.reference),
                "current": _shares(current),
                "stats": {
                    "reference": summary_statistics(ref_summary, bins.shift),
                    "current": summary_statistics(parts, bins.shift),
                },
            }
        return out


def _bins_state(bins: FeatureBins) -> dict[str, Any]:
    return {
        "kind": bins.kind,
        "edges": bins.edges,
        "categories": bins.categories,
        "reference": bins.reference,
        "shift": bins.shift,
        "reference_summary": None
        if bins.reference_summary is None
        else _summary_state(bins.reference_summary),
    }


def _bins_from_state(state: Any, where: str) -> FeatureBins:
    state = object_of(state, where)
    kind = state.get("kind")
    if kind == "numeric":
        edges = float_array(state.get("edges"), f"{where}.edges")
        if edges.ndim != 1 or edges.size < 2:
            raise ValueError(f"{where}.edges: expected at least two bin edges")
        categories = None
    elif kind == "categorical":
        edges = None
        categories = list_of(state.get("categories"), f"{where}.categories")
        if not all(isinstance(c, str) for c in categories):
            raise ValueError(f"{where}.categories: expected a list of str")
    else:
        raise ValueError(f"{where}.kind: expected 'numeric' or 'categorical', got {kind!r}")
    summary = state.get("reference_summary")
    return FeatureBins(
        kind,
        edges,
        categories,
        float_array(state.get("reference"), f"{where}.reference"),
        shift=number(state.get("shift"), f"{where}.shift"),
        reference_summary=None
        if summary is None
        else _summary_from_state(summary, f"{where}.reference_summary"),
    )


def _summary_state(summary: ChunkSummary) -> dict[str, Any]:
    return {
        "rows": summary.rows,
        "missing": summary.missing,
        "n_numbers": summary.n_numbers,
        "sum": summary.sum,
        "sum_squares": summary.sum_squares,
        "low": summary.low,
        "high": summary.high,
        "percentiles": summary.percentiles,
    }


def _summary_from_state(state: Any, where: str) -> ChunkSummary:
    state = object_of(state, where)
    percentiles = state.get("percentiles")
    return ChunkSummary(
        rows=integer(state.get("rows"), f"{where}.rows"),
        missing=integer(state.get("missing"), f"{where}.missing"),
        n_numbers=integer(state.get("n_numbers"), f"{where}.n_numbers"),
        sum=number(state.get("sum"), f"{where}.sum"),
        sum_squares=number(state.get("sum_squares"), f"{where}.sum_squares"),
        low=number(state.get("low"), f"{where}.low"),
        high=number(state.get("high"), f"{where}.high"),
        percentiles=None if percentiles is None else float_array(percentiles, f"{where}.percentiles"),
    )


def summary_statistics(parts: list[ChunkSummary], shift: float) -> dict[str, Any]:
    """Rows, missing share and (for numbers) mean, standard deviation, min, quantiles and max of chunks."""
    rows = sum(p.rows for p in parts)
    missing = sum(p.missing for p in parts)
    out: dict[str, Any] = {"rows": rows, "missing_share": missing / rows if rows else None}
    numbers = [p for p in parts if p.n_numbers and p.percentiles is not None]
    n = sum(p.n_numbers for p in numbers)
    if not n:
        return out
    mean_c = sum(p.sum for p in numbers) / n
    var = max(0.0, sum(p.sum_squares for p in numbers) / n - mean_c**2)
    out.update(mean=shift + mean_c, std=math.sqrt(var), min=min(p.low for p in numbers))
    out["max"] = max(p.high for p in numbers)
    out["quantiles"] = dict(
        zip((f"p{round(q * 100)}" for q in QUANTILES), _merged_quantiles(numbers, n), strict=True)
    )
    return out


def _merged_quantiles(parts: list[ChunkSummary], n: int) -> list[float]:
    """Quantiles of the union of chunks, each chunk standing for its percentiles weighted by its size."""
    if len(parts) == 1:
        assert parts[0].percentiles is not None
        return [float(np.interp(q * 100, _PERCENTILES, parts[0].percentiles)) for q in QUANTILES]
    points = np.concatenate([p.percentiles for p in parts if p.percentiles is not None])
    weights = np.concatenate([np.full(_PERCENTILES.size, p.n_numbers / _PERCENTILES.size) for p in parts])
    order = np.argsort(points, kind="stable")
    points, weights = points[order], weights[order]
    cumulative = (np.cumsum(weights) - weights / 2) / n
    return [float(np.interp(q, cumulative, points)) for q in QUANTILES]


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).round(6).tolist() if total > 0 else [0.0] * len(counts)
