"""The drift engine: prepare a reference once, compare batches against it.

Public API (stable): `Reference.fit(...)`, `Reference.detect(...)`, `detect_drift(...)`.
The result format is documented in docs/drift-result.md.
"""

from monitor_runtime.drift.reference import Reference, detect_drift

__all__ = ["Reference", "detect_drift"]
