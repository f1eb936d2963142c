"""The toolkit a generated monitor receives: vetted statistics, windows, quality metrics and events.

Generated code composes these functions and never re-implements statistics. `emit(event_type,
**details)` hands `(event_type, details)` to the sink the runtime installed with `set_event_sink`;
without a sink, events are dropped. `clock()` gives monotonic seconds for latency budgets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from monitor_runtime.drift import Reference, detect_drift
from monitor_runtime.quality import (
    classification_metrics,
    evaluate_predictions,
    prediction_drift,
    regression_metrics,
)
from monitor_runtime.sealing import seal
from monitor_runtime.windows import (
    AcceptedWindowsReference,
    AdaptiveWindow,
    FixedWindow,
    SlidingWindow,
    StaticReference,
    make_reference_policy,
    make_window,
    sliding_ks,
)

EventSink = Callable[[str, dict[str, Any]], None]


def _drop(event_type: str, details: dict[str, Any]) -> None:
    return None


_sink: EventSink = _drop


def set_event_sink(sink: EventSink | None) -> None:
    """Install the callable that receives `(event_type, details)` for every `emit`; None drops events."""
    global _sink
    if sink is not None and not callable(sink):
        raise ValueError(f"event sink must be callable, got {type(sink).__name__}")
    _sink = sink if sink is not None else _drop


def clock() -> float:
    """Monotonic seconds (for latency budgets; only differences are meaningful)."""
    return time.perf_counter()


def emit(event_type: str, **details: Any) -> None:
    """Send an event (for example `emit("drift_detected", features=["age"])`) to the installed sink."""
    if not isinstance(event_type, str) or not event_type:
        raise ValueError(f"event_type must be a non-empty string, got {event_type!r}")
    _sink(event_type, details)


__all__ = [
    "AcceptedWindowsReference",
    "AdaptiveWindow",
    "FixedWindow",
    "Reference",
    "SlidingWindow",
    "StaticReference",
    "classification_metrics",
    "clock",
    "detect_drift",
    "emit",
    "evaluate_predictions",
    "make_reference_policy",
    "make_window",
    "prediction_drift",
    "regression_metrics",
    "set_event_sink",
    "sliding_ks",
]


# Generated code receives this module; it must not patch it for other users in the process.
seal(__name__)
