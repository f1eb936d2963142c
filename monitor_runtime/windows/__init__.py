"""Windows over column batches, bounded-memory storage, reference policies and streaming KS.

Public API: the window strategies (`FixedWindow`, `SlidingWindow`, `AdaptiveWindow`) and their factory
`make_window`; the reference policies (`StaticReference`, `AcceptedWindowsReference`) and
`make_reference_policy`; the building blocks `ADWIN` and `KLLSketch`; and `sliding_ks`.
"""

from monitor_runtime.windows.adwin import ADWIN, DEFAULT_DELTA
from monitor_runtime.windows.reference_policy import (
    AcceptedWindowsReference,
    ReferencePolicy,
    StaticReference,
    make_reference_policy,
)
from monitor_runtime.windows.sketches import KLLSketch
from monitor_runtime.windows.strategies import (
    AdaptiveWindow,
    FixedWindow,
    SlidingWindow,
    Window,
    make_window,
)
from monitor_runtime.windows.streaming_ks import sliding_ks

__all__ = [
    "ADWIN",
    "DEFAULT_DELTA",
    "AcceptedWindowsReference",
    "AdaptiveWindow",
    "FixedWindow",
    "KLLSketch",
    "ReferencePolicy",
    "SlidingWindow",
    "StaticReference",
    "Window",
    "make_reference_policy",
    "make_window",
    "sliding_ks",
]
