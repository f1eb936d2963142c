"""Failure tracking for generated code and the crash feedback record written to the termination log.

The record is the runtime's only message to the operator: Kubernetes copies the termination-message file
(at most 4096 bytes) into the pod status, and Train parses it. Field names are a stable interface
(documented in docs/runtime.md).
"""

from __future__ import annotations

import contextlib
import json
import mmap
import os
import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

FEEDBACK_KIND = "poet.feedback/v1"
TERMINATION_LIMIT = 4096
#: The exit status of a runtime that ran out of memory without the kernel killing it (an allocation
#: failed: `MemoryError`, as under `RLIMIT_AS`). Its record carries `"reason": "OOMKilled"`, the reason the
#: kubelet gives for a container its memory limit killed, so the operator answers both the same way.
EXIT_OUT_OF_MEMORY = 3
OUT_OF_MEMORY_REASON = "OOMKilled"
_MAX_PROFILE_COLUMNS = 64
_MARK = "...[truncated]"


@dataclass
class FailureTracker:
    """Counts evaluation outcomes; `tripped` says when the process should give up and exit."""

    max_consecutive: int = 3
    window: int = 20
    max_rate: float = 0.5
    consecutive: int = 0
    total_failures: int = 0
    evaluations: int = 0
    _recent: deque[bool] = field(default_factory=deque)

    def record(self, ok: bool) -> None:
        """Count one evaluation."""
        self.evaluations += 1
        self._recent.append(ok)
        if len(self._recent) > self.window:
            self._recent.popleft()
        if ok:
            self.consecutive = 0
        else:
            self.consecutive += 1
            self.total_failures += 1

    @property
    def window_rate(self) -> float:
        """Failure rate over the last `window` evaluations."""
        return 0.0 if not self._recent else self._recent.count(False) / len(self._recent)

    def tripped(self) -> str | None:
        """The reason to exit, or None while within the thresholds."""
        if self.consecutive >= self.max_consecutive:
            return f"{self.consecutive} consecutive failed evaluations (limit {self.max_consecutive})"
        if len(self._recent) >= self.window and self.window_rate >= self.max_rate:
            return (
                f"failure rate {self.window_rate:.0%} over the last {len(self._recent)} evaluations "
                f"(limit {self.max_rate:.0%})"
            )
        return None

    def summary(self) -> dict[str, Any]:
        """The counters, for the feedback record and the report."""
        return {
            "consecutive": self.consecutive,
            "total": self.total_failures,
            "evaluations": self.evaluations,
            "window_rate": round(self.window_rate, 4),
            "window": self.window,
            "max_consecutive": self.max_consecutive,
            "max_rate": self.max_rate,
        }


@dataclass
class MemoryErrorTracker:
    """MemoryErrors outside generated code (parsing a batch, answering a request) within a time span.

    One can be a passing peak (an evaluation running at the same moment); several in a short span mean the
    process is at its memory limit and can no longer take its traffic, so `tripped` says it should end.
    """

    max_count: int = 3
    span_s: float = 60.0
    total: int = 0
    _times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> None:
        """Count one MemoryError at monotonic time `now`."""
        self.total += 1
        self._times.append(now)
        while self._times and now - self._times[0] > self.span_s:
            self._times.popleft()

    def tripped(self) -> str | None:
        """The reason to exit, or None while within the threshold."""
        if len(self._times) >= self.max_count:
            return (
                f"{len(self._times)} requests failed with MemoryError within {self.span_s:g} s "
                f"(limit {self.max_count})"
            )
        return None


#: Address space held back from start to end: room to write the record, close the event loop (which starts
#: a thread, with its 8 MB stack) and exit with status 3 once an allocation has failed.
RESERVE_BYTES = 32 * 1024 * 1024


class MemoryReserve:
    """Address space the runtime keeps unused, and gives back when memory runs out.

    Under `RLIMIT_AS` (`poetmon dev` without a cgroup) a failed allocation can leave no room at all, and
    then everything that ends the process well fails too: the record, the log line, the loop's wake-up
    reads (asyncio spins on their MemoryError), the thread that joins the executor. The mapping is never
    touched and read-only, so it costs no resident memory and no commit charge: nothing in a pod, where a
    cgroup counts resident memory.
    """

    def __init__(self, size: int = RESERVE_BYTES) -> None:
        self._map: mmap.mmap | None = None
        with contextlib.suppress(OSError, ValueError, MemoryError):
            self._map = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ)

    def release(self) -> bool:
        """Unmap it (the room is free at once); True when this call gave it back."""
        held, self._map = self._map, None
        if held is None:
            return False
        held.close()
        return True


def batch_profile(columns: Mapping[str, np.ndarray], n_rows: int | None = None) -> dict[str, Any]:
    """Shape, dtypes and missing counts of a batch; never a raw value (data may be personal)."""
    names = list(columns)
    profile: dict[str, Any] = {
        "rows": int(n_rows if n_rows is not None else (len(next(iter(columns.values()))) if columns else 0)),
        "n_columns": len(names),
        "columns": {},
    }
    for name in names[:_MAX_PROFILE_COLUMNS]:
        arr = np.asarray(columns[name])
        if arr.dtype.kind in "fc":
            missing = int(np.count_nonzero(~np.isfinite(arr)))
            kind = "numeric"
        elif arr.dtype.kind in "iub":
            missing, kind = 0, "numeric"
        else:
            missing = int(sum(v is None or (isinstance(v, float) and v != v) for v in arr))
            kind = "categorical"
        profile["columns"][str(name)] = {"dtype": str(arr.dtype), "kind": kind, "missing": missing}
    if len(names) > _MAX_PROFILE_COLUMNS:
        profile["columns_omitted"] = len(names) - _MAX_PROFILE_COLUMNS
    return profile


def exception_signature(exc: BaseException, code_file: str = "monitor.py") -> dict[str, str]:
    """`{"exception": type, "location": "monitor.py:LINE in FUNC"}`, from the deepest generated frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if os.path.basename(f.filename) == code_file]
    frame = (ours or frames or [None])[-1]
    location = (
        "unknown" if frame is None else f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    )
    return {"exception": type(exc).__name__, "location": location}


def format_traceback(exc: BaseException, tb: TracebackType | None = None) -> str:
    """The traceback text of an exception."""
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def feedback_record(
    *,
    phase: str,
    signature: Mapping[str, str],
    version: int | None,
    monitor: str,
    model: str = "",
    message: str = "",
    traceback_text: str = "",
    profile: Mapping[str, Any] | None = None,
    failures: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The feedback record. `source` is always `crash` (Train's vocabulary); `phase` says when:
    `run` (generated code kept failing on data) or `load` (the version was refused at start); `reason`
    is `OOMKilled` when the process ends because memory ran out, and absent otherwise."""
    record: dict[str, Any] = {
        "kind": FEEDBACK_KIND,
        "source": "crash",
        "phase": phase,
        "signature": dict(signature),
        "message": message,
        "traceback": traceback_text,
        "batch_profile": dict(profile or {}),
        "version": version,
        "monitor": monitor,
        "model": model,
        "failures": dict(failures or {}),
    }
    if reason:
        record["reason"] = reason
    return record


def encode_record(record: Mapping[str, Any], limit: int = TERMINATION_LIMIT) -> bytes:
    """JSON of the record within `limit` bytes, shortening the longest field first.

    Strings keep their tail (a traceback's last frames say most), mappings and lists lose their last
    entries; identity fields (`kind`, `source`, `signature`, `version`, `monitor`) are shortened last.
    """
    rec: Any = json.loads(json.dumps(record, default=str))
    protected = {"kind", "source", "phase", "version", "reason"}
    for _ in range(200):
        data = json.dumps(rec, separators=(",", ":")).encode()
        if len(data) <= limit:
            return data
        excess = len(data) - limit
        path = _longest_leaf(rec, (), protected)
        if path is None:
            break
        parent = rec
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        value = parent[key]
        if isinstance(value, str):
            keep = max(0, len(value) - excess - len(_MARK) - 8)
            parent[key] = _MARK + value[len(value) - keep :] if keep else _MARK
        elif isinstance(value, dict):
            items = list(value.items())
            kept = dict(items[: len(items) // 2])
            kept["_truncated"] = len(items) - len(kept)
            parent[key] = kept
        elif isinstance(value, list):
            parent[key] = value[: len(value) // 2]
        else:
            parent[key] = None
    minimal = {k: rec.get(k) for k in ("kind", "source", "phase", "version")}
    if "reason" in rec:
        minimal["reason"] = rec["reason"]
    minimal["signature"] = {"exception": str(rec.get("signature", {}).get("exception", ""))[:200]}
    return json.dumps(minimal, separators=(",", ":")).encode()[:limit]


def _longest_leaf(node: Any, path: tuple, protected: set[str]) -> tuple | None:
    """Path to the child with the longest JSON form that can still be shortened."""
    best: tuple | None = None
    best_len = -1
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        if not path and key in protected:
            continue
        size = len(json.dumps(child, separators=(",", ":")))
        shrinkable = (isinstance(child, str) and child != _MARK) or (
            isinstance(child, dict | list) and len(child) > 0 and child != {"_truncated": 0}
        )
        if shrinkable and size > best_len:
            best, best_len = (*path, key), size
    if best is None:
        return None
    target = node
    for key in best[len(path) :]:
        target = target[key]
    # Descend into a container if one of its children is itself the bulk of it (e.g. a long message).
    if isinstance(target, dict | list) and len(target) > 0:
        inner = _longest_leaf(target, best, protected)
        if inner is not None:
            sub = target
            for key in inner[len(best) :]:
                sub = sub[key]
            if len(json.dumps(sub)) * 2 >= best_len:
                return inner
    return best


#: Where Kubernetes reads a container's termination message by default.
POD_TERMINATION_LOG = "/dev/termination-log"


def termination_log_path(explicit: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The termination-message file to write: the one asked for, else the pod default inside a pod.

    Kubernetes sets KUBERNETES_SERVICE_HOST in every container; outside one, `/dev/termination-log` is
    nobody's file (run as root, the runtime would create it), so the record is only logged.
    """
    if explicit:
        return explicit
    env = os.environ if environ is None else environ
    return POD_TERMINATION_LOG if env.get("KUBERNETES_SERVICE_HOST") else None


def write_termination_message(path: str | os.PathLike[str] | None, record: Mapping[str, Any]) -> bytes:
    """Write the record (<= 4096 bytes) to the termination-message path, if any; return its bytes."""
    data = encode_record(record)
    if path is None:
        return data
    target = Path(path)
    # The termination log is best effort: a missing mount must not hide the crash itself (it is logged).
    with contextlib.suppress(OSError):
        target.write_bytes(data)
    return data
