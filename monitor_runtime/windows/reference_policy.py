"""Reference-update policies: when, if ever, the reference a monitor compares against changes.

`static` keeps the reference it started with. `accepted_windows` folds every window that was evaluated
without drift into the reference (or replaces it), keeping at most `size` of the newest rows, so slow,
accepted change (seasonality, growth) stops raising alarms while a drifted window never contaminates
the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from monitor_runtime.windows.columns import (
    Batch,
    Columns,
    column_nbytes,
    columns_from_json,
    columns_to_json,
    concat_chunks,
    normalise_batch,
)


class ReferencePolicy:
    """Holds the current reference columns and decides whether an evaluated window updates them."""

    refresh: ClassVar[str] = ""

    def __init__(self, reference: Batch | None = None) -> None:
        self._reference: Columns = {}
        self._n_rows = 0
        self.version = 0
        if reference is not None:
            self.set_reference(reference)

    @property
    def reference(self) -> Columns:
        """The current reference columns."""
        return self._reference

    @property
    def n_rows(self) -> int:
        """Rows in the current reference."""
        return self._n_rows

    @property
    def nbytes(self) -> int:
        """Bytes held by the reference arrays."""
        return column_nbytes(self._reference)

    def set_reference(self, reference: Batch) -> None:
        """Replace the reference outright (for example with the training data); bumps `version`."""
        self._reference, self._n_rows = normalise_batch(reference)
        self.version += 1

    def observe(self, window: Batch, *, drift_detected: bool) -> bool:
        """Tell the policy a window was evaluated; returns True when the reference changed."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The policy's configuration in the spec's keys."""
        return {"refresh": self.refresh}

    def state(self) -> dict[str, Any]:
        """JSON-serialisable checkpoint."""
        return {
            "config": self.config(),
            "version": self.version,
            "reference": columns_to_json(self._reference),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ReferencePolicy:
        """Rebuild a policy (of whatever kind it was) from a checkpoint."""
        policy = make_reference_policy(state["config"])
        policy.restore(state)
        return policy

    def restore(self, state: Mapping[str, Any]) -> None:
        """Load a checkpoint made by `state()`."""
        self._reference = columns_from_json(state["reference"])
        self._n_rows = len(next(iter(self._reference.values()))) if self._reference else 0
        self.version = int(state["version"])


class StaticReference(ReferencePolicy):
    """The reference never changes after it is set."""

    refresh = "static"

    def observe(self, window: Batch, *, drift_detected: bool) -> bool:
        """Never changes the reference."""
        return False


class AcceptedWindowsReference(ReferencePolicy):
    """Windows evaluated without drift refresh the reference; at most `size` newest rows are kept.

    `mode="fold"` appends the accepted window and drops the oldest rows beyond `size`; `mode="replace"`
    makes the accepted window (its newest `size` rows) the whole reference.
    """

    refresh = "accepted_windows"

    def __init__(self, size: int, *, mode: str = "fold", reference: Batch | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"reference 'size' must be a positive integer, got {size!r}")
        if mode not in ("fold", "replace"):
            raise ValueError(f"reference 'mode' must be 'fold' or 'replace', got {mode!r}")
        self.size = int(size)
        self.mode = mode
        super().__init__(reference)

    def set_reference(self, reference: Batch) -> None:
        """Replace the reference, keeping its newest `size` rows."""
        columns, n_rows = normalise_batch(reference)
        self._reference, self._n_rows = self._trim(columns, n_rows), min(n_rows, self.size)
        self.version += 1

    def _trim(self, columns: Columns, n_rows: int) -> Columns:
        if n_rows <= self.size:
            return columns
        return {name: col[n_rows - self.size :].copy() for name, col in columns.items()}

    def observe(self, window: Batch, *, drift_detected: bool) -> bool:
        """Fold in (or replace with) the window when it showed no drift."""
        if drift_detected:
            return False
        columns, n_rows = normalise_batch(window)
        if n_rows == 0:
            return False
        if self.mode == "fold" and self._n_rows:
            columns = concat_chunks([(self._n_rows, self._reference), (n_rows, columns)])
            n_rows += self._n_rows
        self._reference = self._trim(columns, n_rows)
        self._n_rows = min(n_rows, self.size)
        self.version += 1
        return True

    def config(self) -> dict[str, Any]:
        """The policy's configuration in the spec's keys."""
        return {"refresh": self.refresh, "size": self.size, "mode": self.mode}


REFERENCE_CONFIG_KEYS = ("refresh", "size", "mode")
REFRESH_KINDS = ("static", "accepted_windows")


def make_reference_policy(config: Mapping[str, Any], reference: Batch | None = None) -> ReferencePolicy:
    """Build a reference policy from the spec's configuration.

    Keys: `refresh` (static | accepted_windows, default static), `size` (most rows the reference keeps;
    required for accepted_windows) and `mode` (fold | replace, default fold). `reference` is the
    starting reference, if already known.
    """
    if not isinstance(config, Mapping):
        raise ValueError(f"reference config must be a mapping, got {type(config).__name__}")
    unknown = [key for key in config if key not in REFERENCE_CONFIG_KEYS]
    if unknown:
        raise ValueError(
            f"unknown reference config key {unknown[0]!r}; allowed keys: {', '.join(REFERENCE_CONFIG_KEYS)}"
        )
    refresh = config.get("refresh", "static")
    if refresh == "static":
        for key in ("size", "mode"):
            if config.get(key) is not None:
                raise ValueError(f"reference key {key!r} applies to refresh 'accepted_windows' only")
        return StaticReference(reference)
    if refresh == "accepted_windows":
        if config.get("size") is None:
            raise ValueError(
                "reference 'size' is required for refresh 'accepted_windows' (the most rows to keep)"
            )
        return AcceptedWindowsReference(config["size"], mode=config.get("mode", "fold"), reference=reference)
    raise ValueError(f"reference 'refresh' must be one of {', '.join(REFRESH_KINDS)}, got {refresh!r}")
