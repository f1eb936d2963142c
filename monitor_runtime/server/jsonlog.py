"""Structured logs: one JSON object per line, with the monitor's identity on every line."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}


class JsonLogger:
    """Writes `{"ts", "level", "event", ...}` lines; thread-safe, never raises on unserialisable fields."""

    def __init__(self, stream: TextIO | None = None, *, level: str = "info", **context: Any) -> None:
        self.stream = stream or sys.stdout
        self._min = _LEVELS.get(level, 20)
        self._lock = threading.Lock()
        self.context = dict(context)

    def bind(self, **context: Any) -> None:
        """Add fields to every later line (monitor, version, ...)."""
        self.context.update(context)

    def __call__(self, event: str, *, level: str = "info", **fields: Any) -> None:
        if _LEVELS.get(level, 20) < self._min:
            return
        record = {"ts": round(time.time(), 3), "level": level, "event": event, **self.context, **fields}
        line = json.dumps(record, default=str, separators=(",", ":"))
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def poet_event(self, event_type: str, **details: Any) -> None:
        """A POET event (the operator's event vocabulary): type plus details, on the same log stream."""
        self("poet.event", type=event_type, details=details)
