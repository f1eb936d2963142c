"""Structured POET events: what the engine did, for whom, and why.

Every step of the pipeline emits one `PoetEvent` (type, execution id, monitor, version, details) through a
sink. Sinks are pluggable: `ListSink` keeps events in memory (tests, the CLI summary), `JsonLinesSink` writes
one JSON object per line to a stream or a logger, and `FanOutSink` sends to several.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO


@dataclass(frozen=True)
class PoetEvent:
    """One thing the engine did. `type` is dotted, e.g. `poet.operate.completed`."""

    type: str
    execution_id: str
    monitor: str
    version: int | None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable mapping with a stable key order."""
        return {
            "type": self.type,
            "execution_id": self.execution_id,
            "monitor": self.monitor,
            "version": self.version,
            "timestamp": round(self.timestamp, 6),
            "details": _jsonable(self.details),
        }


class EventSink(Protocol):
    """Anything that accepts events."""

    def publish(self, event: PoetEvent) -> None: ...


class ListSink:
    """Keeps every event in order; `of_type` filters them."""

    def __init__(self) -> None:
        self.events: list[PoetEvent] = []

    def publish(self, event: PoetEvent) -> None:
        self.events.append(event)

    def of_type(self, event_type: str) -> list[PoetEvent]:
        """Events whose type equals `event_type`."""
        return [e for e in self.events if e.type == event_type]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


class JsonLinesSink:
    """Writes each event as one JSON line, to a text stream or through a `logging.Logger`."""

    def __init__(self, target: TextIO | logging.Logger | None = None) -> None:
        self._target = target if target is not None else sys.stderr

    def publish(self, event: PoetEvent) -> None:
        line = json.dumps(event.to_dict(), sort_keys=False, default=str)
        if isinstance(self._target, logging.Logger):
            self._target.info(line)
        else:
            self._target.write(line + "\n")
            self._target.flush()


class NullSink:
    """Discards events."""

    def publish(self, event: PoetEvent) -> None:
        return None


class FanOutSink:
    """Publishes every event to each of several sinks."""

    def __init__(self, sinks: Iterable[EventSink]) -> None:
        self._sinks = list(sinks)

    def publish(self, event: PoetEvent) -> None:
        for sink in self._sinks:
            sink.publish(event)


class EventEmitter:
    """Binds a sink to one POET execution so callers only say what happened."""

    def __init__(
        self,
        sink: EventSink | None,
        *,
        monitor: str,
        version: int | None,
        execution_id: str | None = None,
    ) -> None:
        self.sink: EventSink = sink if sink is not None else NullSink()
        self.monitor = monitor
        self.version = version
        self.execution_id = execution_id or uuid.uuid4().hex[:16]

    def emit(self, event_type: str, **details: Any) -> PoetEvent:
        """Publish one event and return it."""
        event = PoetEvent(
            type=event_type,
            execution_id=self.execution_id,
            monitor=self.monitor,
            version=self.version,
            details=details,
        )
        self.sink.publish(event)
        return event


def _jsonable(value: Any) -> Any:
    """Details may carry tuples, sets or objects with `to_dict`; make them plain JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)
