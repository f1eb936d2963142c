"""Binned reference-vs-current distributions for the report page, in bounded memory.

The drift result says how much each feature moved; a person also wants to see how. The reference is
binned once (quantile edges for numbers, the most frequent categories plus "other" for strings) and
each evaluated chunk adds its bin counts to a ring of at most one window's worth of rows, so memory is
features x bins x chunks-per-window whatever the traffic.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_BINS = 20
_TOP_CATEGORIES = 12
_MAX_FEATURES = 200


@dataclass
class FeatureBins:
    """Bins of one feature and the reference's share in each (last bin of categoricals is "other")."""

    kind: str
    edges: np.ndarray | None
    categories: list[str] | None
    reference: np.ndarray

    def count(self, values: np.ndarray) -> np.ndarray:
        """Bin counts of `values` (missing values are not counted)."""
        if self.kind == "numeric":
            kind = values.dtype.kind
            v = np.asarray(values, dtype=np.float64) if kind in "biuf" else _to_float(values.astype(object))
            v = v[np.isfinite(v)]
            idx = np.clip(np.searchsorted(self.edges, v, side="right") - 1, 0, len(self.edges) - 2)
            return np.bincount(idx, minlength=len(self.edges) - 1).astype(np.float64)
        assert self.categories is not None
        cats = np.asarray(self.categories, dtype=object)
        v = np.asarray(values, dtype=object)
        v = v[v != None]  # noqa: E711 - element-wise comparison on an object array
        keys = v.astype(str)
        order = np.argsort(cats.astype(str))
        sorted_cats = cats.astype(str)[order]
        pos = np.searchsorted(sorted_cats, keys)
        pos = np.clip(pos, 0, len(sorted_cats) - 1)
        hit = sorted_cats[pos] == keys
        counts = np.zeros(len(cats) + 1)
        np.add.at(counts, order[pos[hit]], 1)
        counts[-1] = np.count_nonzero(~hit)
        return counts


def _to_float(values: np.ndarray) -> np.ndarray:
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
        bins = FeatureBins("numeric", edges, None, np.zeros(edges.size - 1))
    else:
        v = values[values != None]  # noqa: E711
        if v.size == 0:
            return None
        cats, counts = np.unique(v.astype(str), return_counts=True)
        top = cats[np.argsort(-counts, kind="stable")][:_TOP_CATEGORIES]
        bins = FeatureBins("categorical", None, [str(c) for c in top], np.zeros(len(top) + 1))
    bins.reference = bins.count(values)
    return bins


@dataclass
class DistributionTracker:
    """Reference bins plus a ring of current-chunk counts covering at most `window_rows` rows.

    Updates run on a pool thread while the event loop renders pages, hence the lock.
    """

    window_rows: int
    features: dict[str, FeatureBins] = field(default_factory=dict)
    chunks: deque[tuple[int, dict[str, np.ndarray]]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        # Checkpoints pickle the tracker; a lock cannot be pickled and is recreated on load.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
            name: bins.count(np.asarray(columns[name])) for name, bins in features.items() if name in columns
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
            for _, counts in chunks:
                if name in counts:
                    current += counts[name]
            if bins.kind == "numeric":
                labels = [f"{a:.4g}" for a in bins.edges[:-1]]
            else:
                labels = [*bins.categories, "other"]
            out[name] = {
                "kind": bins.kind,
                "labels": labels,
                "edges": None if bins.edges is None else bins.edges.tolist(),
                "reference": _shares(bins.reference),
                "current": _shares(current),
            }
        return out


def _shares(counts: np.ndarray) -> list[float]:
    total = counts.sum()
    return (counts / total).round(6).tolist() if total > 0 else [0.0] * len(counts)
