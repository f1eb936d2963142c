"""The last evaluations of a monitor, in bounded memory, as plain JSON-able data.

Each evaluation leaves one entry: when, which monitor version ran it, the overall score and health, and per
feature its score, threshold, adjusted p-value and verdict. The history is data (lists, dicts, numbers,
strings), so it survives a checkpoint written by one version and read by the next: the report draws where
the version changed.

A history also follows a monitor across pods: the report carries a small summary of it (`summary()`, the
versions present and when each last evaluated) from which the operator decides to hand a stable pod's history
to a canary (`POST /v1/history`), and at a promotion the operator keeps the merged history as a file every
new pod merges at start (`poetmon serve --history-file`, written by `encode_history_file`).
"""

from __future__ import annotations

import gzip
import io
import json
import math
import zlib
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

from monitor_runtime import json_safe

#: Evaluations kept by default (POET_HISTORY_SIZE changes it).
DEFAULT_LIMIT = 100
#: Features recorded per entry: every drifted one, then the rest in result order up to this many.
MAX_FEATURES = 200


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _label(value: Any) -> str | None:
    # Generated code's verdict labels as text: an entry is data, whatever type the result used.
    return None if value is None else value if type(value) is str else str(value)


def history_entry(
    result: Mapping[str, Any],
    *,
    at: float,
    version: Any,
    code_sha256: str | None,
    rows: int,
    max_features: int = MAX_FEATURES,
) -> dict[str, Any]:
    """The history entry of one evaluation's drift result (pure)."""
    features = result.get("features") or {}
    drifted = [n for n, f in features.items() if isinstance(f, Mapping) and f.get("drift_detected")]
    names = list(dict.fromkeys([*drifted, *features]))[:max_features]
    summary = result.get("summary") or {}
    entry_features: dict[str, dict[str, Any]] = {}
    for name in names:
        f = features[name]
        if not isinstance(f, Mapping):
            continue
        decision = f.get("decision") if isinstance(f.get("decision"), Mapping) else {}
        entry_features[str(name)] = {
            "score": _num(f.get("score")),
            "threshold": _num(f.get("threshold")),
            "p_value_adjusted": _num(f.get("p_value_adjusted")),
            "drift": bool(f.get("drift_detected")),
            "missing_rate": _num(f.get("missing_rate")),
            "decided_by": _label(decision.get("decided_by")),
        }
    return {
        "at": float(at),
        "version": version,
        "code_sha256": code_sha256,
        "rows": int(rows),
        "overall_drift_score": _num(result.get("overall_drift_score")),
        "overall_health": _label(result.get("overall_health")),
        "critical_score": _num(summary.get("critical_score")),
        "alpha": _num(summary.get("alpha")),
        "n_drifted": len(drifted),
        "features": entry_features,
    }


class EvaluationHistory:
    """A ring of the last `limit` history entries."""

    def __init__(self, limit: int = DEFAULT_LIMIT, entries: Iterable[Mapping[str, Any]] = ()) -> None:
        self.limit = max(1, int(limit))
        self.entries: deque[dict[str, Any]] = deque((dict(e) for e in entries), maxlen=self.limit)

    def add(self, entry: Mapping[str, Any]) -> None:
        self.entries.append(dict(entry))

    def as_list(self) -> list[dict[str, Any]]:
        return list(self.entries)

    def to_json(self) -> dict[str, Any]:
        """What `GET /v1/history` returns and checkpoints keep."""
        return {"limit": self.limit, "evaluations": self.as_list()}

    def merge(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Add another pod's entries (`POST /v1/history`): all entries by time, one per (time, code), the
        newest `limit` kept. Returns how many entries are held afterwards."""
        merged = {(float(e["at"]), e.get("code_sha256")): dict(e) for e in [*entries, *self.entries]}
        ordered = sorted(merged.values(), key=lambda e: float(e["at"]))
        self.entries = deque(ordered[-self.limit :], maxlen=self.limit)
        return len(self.entries)

    def summary(self) -> dict[str, Any]:
        """What the report says of the history: how many entries, and per code version how many and the
        time of its newest (what the operator compares between pods; never the entries themselves)."""
        versions: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            key = str(entry.get("version"))
            seen = versions.setdefault(key, {"evaluations": 0, "newest_at": None})
            seen["evaluations"] += 1
            at = _num(entry.get("at"))
            if at is not None and (seen["newest_at"] is None or at > seen["newest_at"]):
                seen["newest_at"] = at
        return {"evaluations": len(self.entries), "limit": self.limit, "versions": versions}

    @classmethod
    def from_json(cls, data: Any, limit: int = DEFAULT_LIMIT) -> EvaluationHistory:
        """A history from `to_json()` data; entries that are not mappings are left out."""
        entries = data.get("evaluations") if isinstance(data, Mapping) else None
        if not isinstance(entries, list):
            return cls(limit)
        return cls(limit, [e for e in entries if isinstance(e, Mapping) and "at" in e])


def parse_history(data: Any) -> list[dict[str, Any]]:
    """The entries of a `GET /v1/history` body; ValueError naming the entry and field that is wrong."""
    if not isinstance(data, Mapping) or not isinstance(data.get("evaluations"), list):
        raise ValueError('expected {"evaluations": [...]}, as GET /v1/history returns')
    out = []
    for i, entry in enumerate(data["evaluations"]):
        if not isinstance(entry, Mapping):
            raise ValueError(f"evaluations[{i}]: expected an object, got {type(entry).__name__}")
        at = entry.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
            raise ValueError(f"evaluations[{i}].at: expected a time in seconds since the epoch, got {at!r}")
        if not isinstance(entry.get("features", {}), Mapping):
            raise ValueError(f"evaluations[{i}].features: expected an object of feature name to numbers")
        out.append(dict(entry))
    return out


#: gzip's first two bytes: a history file may be compressed (as the operator stores it) or plain JSON.
_GZIP_MAGIC = b"\x1f\x8b"


def encode_history_file(
    entries: Iterable[Mapping[str, Any]], *, limit: int, max_bytes: int
) -> tuple[bytes, int]:
    """A history as a file new pods merge at start: gzip of compact JSON (`GET /v1/history`'s form), the
    oldest entries left out until it is at most `max_bytes` (close to the most that fit). Returns (bytes,
    entries kept). Deterministic (no time in the gzip header): the same history gives the same bytes."""
    ordered = sorted((dict(e) for e in entries), key=lambda e: float(e["at"]))

    def encode(kept: list[dict[str, Any]]) -> bytes:
        text = json_safe.dumps({"limit": limit, "evaluations": kept}, separators=(",", ":"))
        return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)

    data = encode(ordered)
    keep = len(ordered)
    # The compressed size grows about in proportion to the count: a few shrinking steps land just under.
    while len(data) > max_bytes and keep > 0:
        keep = max(0, min(keep - 1, int(keep * max_bytes / len(data) * 0.98)))
        data = encode(ordered[len(ordered) - keep :])
    return data, keep


def decode_history_file(data: bytes, *, max_bytes: int) -> list[dict[str, Any]]:
    """The entries of a history file (gzip or plain JSON); ValueError saying what is wrong with it. The
    decompressed size is capped at `max_bytes`, so a small file cannot expand without bound."""
    if data[:2] == _GZIP_MAGIC:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                text = stream.read(max_bytes + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"not a readable gzip file ({exc})") from None
        if len(text) > max_bytes:
            raise ValueError(f"more than {max_bytes} bytes once decompressed")
    else:
        text = data
    try:
        body = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    return parse_history(body)
