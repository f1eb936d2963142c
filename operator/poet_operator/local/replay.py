"""Replay a recorded stream (CSV) over HTTP to the monitor's processes, paced by the stream's own clock.

The stream's `timestamp` column (epoch seconds, or ISO 8601) says when each row happened; without one, rows
are taken to arrive at `DEFAULT_ROWS_PER_SECOND`. `speed` compresses that time: at speed 60 a minute of the
stream is replayed in a second. Batches go as CSV bodies (`POST /v1/batches`) to every ready process: the
stable one and, while one runs, the canary, so both see the same data. While no process is ready the replay
waits (the stream's time does not run), as a producer does when its endpoint is down. A process that fails
mid-request simply misses that batch.
"""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from poet_operator.local.dev_backend import http

DEFAULT_ROWS_PER_SECOND = 1000.0
TIMESTAMP_COLUMN = "timestamp"


class StreamError(ValueError):
    """A stream file that cannot be replayed; the message names the file, row and what to do."""


@dataclass(frozen=True)
class Batch:
    rows: int
    first_row: int
    stream_time: float  # seconds since the stream's first row
    body: bytes


def _seconds(value: str, path: Path, row: int) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise StreamError(
            f"{path}: row {row}: timestamp {value!r} is neither epoch seconds nor ISO 8601; fix the row "
            "or drop the timestamp column (rows are then replayed at a steady rate)"
        ) from None


def load_batches(path: str | Path, batch_rows: int = 2000) -> list[Batch]:
    """The stream cut into batches of `batch_rows` rows, each a CSV body without the timestamp column."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise StreamError(f"{file}: cannot read it ({exc.strerror or exc})") from None
    if '"' in text:
        reader: Iterator[list[str]] = csv.reader(io.StringIO(text))
    else:  # no quoting anywhere: a plain split is exact and several times faster than the csv module
        reader = (line.split(",") for line in text.splitlines() if line)
    try:
        header = next(reader)
    except StopIteration:
        raise StreamError(f"{file}: the file is empty; a CSV stream needs a header line and rows") from None
    quoted = '"' in text
    stamp = header.index(TIMESTAMP_COLUMN) if TIMESTAMP_COLUMN in header else None
    keep = [i for i in range(len(header)) if i != stamp]
    head = ",".join(header[i] for i in keep)
    batches: list[Batch] = []
    lines: list[str] = []
    first_time: float | None = None
    batch_time = 0.0
    row = 0
    for row, cells in enumerate(reader, start=1):
        if len(cells) != len(header):
            raise StreamError(
                f"{file}: row {row} has {len(cells)} cells but the header has {len(header)}; fix the row"
            )
        if stamp is not None:
            seconds = _seconds(cells[stamp], file, row)
            first_time = seconds if first_time is None else first_time
            moment = seconds - first_time
        else:
            moment = (row - 1) / DEFAULT_ROWS_PER_SECOND
        if not lines:
            batch_time = moment
        if quoted:
            out = io.StringIO()
            csv.writer(out, lineterminator="").writerow([cells[i] for i in keep])
            lines.append(out.getvalue())
        else:
            lines.append(",".join([cells[i] for i in keep]))
        if len(lines) >= batch_rows:
            batches.append(Batch(len(lines), row - len(lines) + 1, batch_time, _body(head, lines)))
            lines = []
    if lines:
        batches.append(Batch(len(lines), row - len(lines) + 1, batch_time, _body(head, lines)))
    if not batches:
        raise StreamError(f"{file}: the file has a header but no rows")
    return batches


def _body(head: str, lines: list[str]) -> bytes:
    return (head + "\n" + "\n".join(lines) + "\n").encode("utf-8")


class Replay:
    """Sends the batches in a background thread; `progress()` says how far it got."""

    def __init__(
        self,
        batches: list[Batch],
        targets: Callable[[], list[tuple[str, str]]],
        *,
        speed: float = 1.0,
    ) -> None:
        if speed <= 0:
            raise StreamError("--speed must be above 0")
        self.batches = batches
        self.targets = targets
        self.speed = speed
        self.total_rows = sum(b.rows for b in batches)
        self.sent_rows = 0
        self.delivered: dict[str, int] = {}  # role -> rows accepted
        self.missed: dict[str, int] = {}  # role -> rows not accepted (process down or refusing)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poet-replay", daemon=True)
        self.started = False

    def start(self) -> None:
        self.started = True
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    @property
    def done(self) -> bool:
        return self.started and not self._thread.is_alive()

    def progress(self) -> float:
        return self.sent_rows / self.total_rows if self.total_rows else 1.0

    def _run(self) -> None:
        origin = time.monotonic()
        paused = 0.0
        for batch in self.batches:
            due = origin + paused + batch.stream_time / self.speed
            while not self._stop.is_set():
                wait = due - time.monotonic()
                if wait <= 0:
                    break
                self._stop.wait(min(wait, 0.2))
            targets = self.targets()
            while not targets and not self._stop.is_set():
                began = time.monotonic()
                self._stop.wait(0.2)
                paused += time.monotonic() - began
                targets = self.targets()
            if self._stop.is_set():
                return
            for role, url in targets:
                status, _ = http("POST", url + "/v1/batches", batch.body, "text/csv", timeout=30.0)
                book = self.delivered if status == 202 else self.missed
                book[role] = book.get(role, 0) + batch.rows
            self.sent_rows += batch.rows


__all__ = ["Batch", "Replay", "StreamError", "load_batches"]
