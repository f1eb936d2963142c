"""Evaluation off the request path, at the cadence the spec's window strategy sets.

Ingestion only appends parsed batches to a bounded pending queue. A background task drains the queue
when a window's worth of new rows is pending (fixed: `size`, sliding: `step`, adaptive: the minimum
size) or when `max_evaluation_interval_s` has passed with rows pending, and hands the rows to the
generated `Monitor.monitor_features`, which keeps its own window. When evaluation cannot keep up, the
oldest pending rows are dropped (counted in `poet_monitor_rows_dropped_total`): they would have slid out
of the window before the next evaluation anyway, and memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitor_runtime import json_safe
from monitor_runtime.reference_npz import EncodedReference, canonical_columns, encode_reference
from monitor_runtime.server.crash import (
    OUT_OF_MEMORY_REASON,
    FailureTracker,
    MemoryErrorTracker,
    MemoryReserve,
    batch_profile,
    exception_signature,
    feedback_record,
    format_traceback,
)
from monitor_runtime.server.history import EvaluationHistory, history_entry
from monitor_runtime.server.host import EvaluationTimeout, MonitorHost
from monitor_runtime.server.jsonlog import JsonLogger
from monitor_runtime.server.metrics import RuntimeMetrics
from monitor_runtime.server.parsing import Batch
from monitor_runtime.server.prediction_quality import SCORE_COLUMN
from monitor_runtime.server.settings import RuntimeSettings
from monitor_runtime.server.state_fields import column, integer, list_of, number, object_of

# The layout of the checkpoint's state (runner.py); 2 since it is data (state_codec), not a pickle.
CHECKPOINT_FORMAT = 2


class ContractViolation(Exception):
    """The generated code returned something the contract does not allow."""


@dataclass(frozen=True)
class WindowPlan:
    """How many new rows make an evaluation due, derived from the spec's `window`."""

    strategy: str
    size: int
    step: int
    cadence_rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "size": self.size,
            "step": self.step,
            "cadence_rows": self.cadence_rows,
        }


def _get(mapping: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return default


# Mirrors the spec's defaults (the runtime never imports the operator): window size by optimizeFor.
DEFAULT_WINDOW_SIZE = {"accuracy": 2000, "real_time": 500, "cost": 1000}


def plan_window(spec: Mapping[str, Any]) -> WindowPlan:
    """The evaluation cadence for a spec (camelCase or snake_case keys), defaults as the spec documents."""
    window = spec.get("window") or {}
    optimize_for = str(_get(spec, "optimizeFor", "optimize_for", default="accuracy"))
    strategy = str(_get(window, "strategy", default="sliding"))
    size = int(_get(window, "size", default=DEFAULT_WINDOW_SIZE.get(optimize_for, 2000)))
    if strategy == "fixed":
        step = size
    elif strategy == "adaptive":
        step = int(_get(window, "minSize", "min_size", default=max(2, size // 4)))
    else:
        step = _get(window, "step")
        if step is None:
            overlap = _get(window, "overlap")
            if overlap is None:
                step = max(1, size // 2)
            elif 0 < float(overlap) < 1:
                # A fraction of the window, rounded down to whole rows as the spec documents.
                step = size - min(size - 1, math.floor(size * float(overlap)))
            else:
                step = size - int(overlap)
        step = int(step)
    step = max(1, min(step, size))
    return WindowPlan(strategy=strategy, size=size, step=step, cadence_rows=step)


def reference_from_first_window(spec: Mapping[str, Any]) -> bool:
    """True unless the spec says the reference is uploaded (then the runtime waits for POST /v1/reference)."""
    reference = spec.get("reference") or {}
    return str(reference.get("source", "first_window")) != "uploaded"


def concat_batches(
    batches: list[Batch], max_columns: int | None = None
) -> tuple[dict[str, np.ndarray], np.ndarray | None, np.ndarray | None]:
    """Concatenate batches column-wise; a column missing from some batches is missing (NaN/None) there.

    Each column is dense over all rows, so the union of names is capped at `max_columns` (in order of
    first appearance); ingestion already refuses batches past its own cap, this only bounds the cost.
    """
    names: dict[str, None] = {}
    for b in batches:
        names.update(dict.fromkeys(b.columns))
        if max_columns is not None and len(names) >= max_columns:
            names = dict.fromkeys(list(names)[:max_columns])
    columns: dict[str, np.ndarray] = {}
    for name in names:
        parts = []
        is_object = any(b.columns[name].dtype == object for b in batches if name in b.columns)
        for b in batches:
            arr = b.columns.get(name)
            if arr is None:
                arr = np.full(b.n_rows, None, dtype=object) if is_object else np.full(b.n_rows, np.nan)
            parts.append(arr.astype(object) if is_object and arr.dtype != object else arr)
        columns[name] = parts[0] if len(parts) == 1 else np.concatenate(parts)
    preds = acts = None
    if any(b.predictions is not None for b in batches):
        sel = [b for b in batches if b.predictions is not None]
        preds = np.concatenate([b.predictions for b in sel])
        acts = np.concatenate(
            [b.actuals if b.actuals is not None else np.full(b.n_rows, np.nan) for b in sel]
        )
    return columns, preds, acts


def lift_scores(batches: list[Batch], columns: dict[str, np.ndarray]) -> np.ndarray | None:
    """Take the `_score` column out of the features (it is not one); the scores line up with the
    predictions `concat_batches` returns (rows of batches without predictions are left out)."""
    if columns.pop(SCORE_COLUMN, None) is None:
        return None
    parts = []
    for b in batches:
        if b.predictions is None:
            continue
        raw = b.columns.get(SCORE_COLUMN)
        try:
            part = np.full(b.n_rows, np.nan) if raw is None else np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):  # parsing checks `_score` is numeric; this only keeps rows aligned
            part = np.full(b.n_rows, np.nan)
        parts.append(part)
    return np.concatenate(parts) if parts else None


PredictionObserver = Callable[[str, np.ndarray, np.ndarray, "np.ndarray | None"], None]


# Where the reference the runtime handed to the monitor came from (shown in the report).
REFERENCE_SOURCES = ("uploaded", "first_window", "file", "transfer")


@dataclass(frozen=True)
class HeldReference:
    """The runtime's copy of the reference it handed to the monitor, as npz data, and where it came from.

    Kept encoded (compressed, immutable): generated code may change the arrays it was given, and the copy is
    served as is (`GET /v1/reference`) and written into checkpoints.
    """

    encoded: EncodedReference
    source: str

    def __post_init__(self) -> None:
        if self.source not in REFERENCE_SOURCES:
            raise ValueError(f"reference source {self.source!r} is not one of {REFERENCE_SOURCES}")

    def summary(self) -> dict[str, Any]:
        return {"rows": self.encoded.rows, "sha256": self.encoded.sha256, "source": self.source}

    def to_state(self) -> dict[str, Any]:
        e = self.encoded
        columns = list(e.columns)
        return {"npz": e.npz, "sha256": e.sha256, "rows": e.rows, "columns": columns, "source": self.source}

    @classmethod
    def from_state(cls, state: Any, where: str = "reference") -> HeldReference:
        """The held reference from `to_state()` data; ValueError naming the field that is wrong."""
        state = object_of(state, where)
        npz, sha256, source = state.get("npz"), state.get("sha256"), state.get("source")
        columns = list_of(state.get("columns"), f"{where}.columns")
        if not isinstance(npz, bytes):
            raise ValueError(f"{where}.npz: expected the archive's bytes, got {type(npz).__name__}")
        if not isinstance(sha256, str) or not isinstance(source, str):
            raise ValueError(f"{where}: sha256 and source must be str, got {sha256!r} and {source!r}")
        if not all(isinstance(c, str) for c in columns):
            raise ValueError(f"{where}.columns: expected a list of column names")
        encoded = EncodedReference(
            npz=npz, sha256=sha256, rows=integer(state.get("rows"), f"{where}.rows"), columns=tuple(columns)
        )
        return cls(encoded=encoded, source=source)


def prepare_reference(columns: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], EncodedReference]:
    """The columns in the form every pod hands to its monitor, and their npz encoding (CPU-bound)."""
    canon = canonical_columns(columns)
    return canon, encode_reference(canon)


FatalHandler = Callable[[dict[str, Any]], Awaitable[None]]


class Evaluator:
    """Pending rows, the evaluation task, the latest result and the failure tracking."""

    def __init__(
        self,
        host: MonitorHost,
        *,
        plan: WindowPlan,
        settings: RuntimeSettings,
        metrics: RuntimeMetrics,
        log: JsonLogger,
        identity: Mapping[str, Any],
        on_fatal: FatalHandler,
        bootstrap_reference: bool = True,
        reference_size: int | None = None,
        reserve: MemoryReserve | None = None,
    ) -> None:
        self.host = host
        self.reserve = reserve
        self.plan = plan
        self.settings = settings
        self.metrics = metrics
        self.log = log
        self.identity = dict(identity)
        self._on_fatal = on_fatal
        self.bootstrap_reference = bootstrap_reference
        self.reference_size = max(1, reference_size or plan.size)
        self.tracker = FailureTracker(
            max_consecutive=settings.max_consecutive_failures,
            window=settings.failure_window,
            max_rate=settings.max_failure_rate,
        )
        self.memory_errors = MemoryErrorTracker(settings.max_memory_errors, settings.memory_error_span_s)
        self.pending: deque[Batch] = deque()
        self.pending_rows = 0
        self.max_pending = max(plan.size, plan.cadence_rows, self.reference_size) * 2
        self.max_pending = min(self.max_pending, settings.max_pending_rows)
        # Set by the runtime: declared features plus the unknown-column cap.
        self.max_columns: int | None = None
        self.has_reference = False
        self.reference_rows = 0
        self.reference: HeldReference | None = None
        self.latest: dict[str, Any] | None = None
        self.latest_predictions: dict[str, Any] | None = None
        self.last_failure: dict[str, Any] | None = None
        self.evaluated_at: float | None = None
        self.evaluation_seconds: float | None = None
        self.rows_evaluated = 0
        self.rows_in_last_evaluation = 0
        self.rows_ingested = 0
        self.rows_dropped = 0
        self.references_refused = 0
        self.dirty = False
        self.fatal = False
        self._wake = asyncio.Event()
        self._last_run = time.monotonic()
        self._not_before = 0.0
        self._stop_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Runtime-side observers (report-page bins); run on a pool thread, outside the guard.
        self.on_reference: Callable[[dict[str, np.ndarray], int], None] | None = None
        self.on_evaluated: Callable[[dict[str, np.ndarray], int], None] | None = None
        # ("reference" | "current", predictions, actuals, scores) for the report's prediction quality.
        self.on_predictions: PredictionObserver | None = None
        self.history = EvaluationHistory(settings.history_size)
        # Called on the event loop whenever the history changed (an evaluation, a merge): it is saved apart
        # from the periodic checkpoint, so a kill between checkpoints does not lose it.
        self.on_history_changed: Callable[[], None] | None = None
        self._busy = asyncio.Lock()

    def history_changed(self) -> None:
        """The history gained entries (an evaluation, a merge): due in the next checkpoint, saved now."""
        self.dirty = True
        if self.on_history_changed is not None:
            self.on_history_changed()

    # ------------------------------------------------------------ ingestion side (event loop, no awaits)

    def ingest(self, batch: Batch) -> None:
        """Queue a parsed batch; never blocks on evaluation."""
        self.pending.append(batch)
        self.pending_rows += batch.n_rows
        self.rows_ingested += batch.n_rows
        self.dirty = True
        while self.pending_rows > self.max_pending and len(self.pending) > 1:
            old = self.pending.popleft()
            self.pending_rows -= old.n_rows
            self.rows_dropped += old.n_rows
            self.metrics.rows_dropped.inc(old.n_rows)
        self.metrics.pending_rows.set(self.pending_rows)
        if self.pending_rows >= self._due_rows():
            self._wake.set()

    def _due_rows(self) -> int:
        # Until a reference exists, the first full window becomes the reference (or, when the spec says the
        # reference is uploaded, nothing is due until it arrives).
        if self.has_reference:
            return self.plan.cadence_rows
        return self.reference_size if self.bootstrap_reference else 2**62

    # ------------------------------------------------------------ the evaluation task

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="poet-evaluator")

    async def stop(self, timeout: float | None = None) -> bool:
        """Stop the task; an evaluation in progress finishes first, for at most `timeout` seconds.

        False when the evaluation was still running at the deadline: it is abandoned on its thread (the
        host is marked stuck, so nothing calls into the monitor again) and its rows are not reported.
        """
        if self._task is None:
            return True
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            self.host.abandon()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
            return False
        self._task = None
        return True

    async def _loop(self) -> None:
        interval = self.settings.max_evaluation_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            self._wake.clear()
            if self._stopping:
                return
            if self.fatal or not self.pending_rows:
                continue
            overdue = time.monotonic() - self._last_run >= interval
            if self.pending_rows >= self._due_rows() or (overdue and self.has_reference):
                # Keep evaluation within its share of the time; rows keep arriving meanwhile.
                pause = self._not_before - time.monotonic()
                if pause > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stop_requested.wait(), timeout=pause)
                    if self._stopping:
                        return
                started = time.monotonic()
                async with self._busy:
                    try:
                        await self.evaluate_pending()
                    except MemoryError as exc:
                        # The runtime's own part of an evaluation (joining the batches, binning for the
                        # report) could not allocate: the window cannot be kept either.
                        await self.out_of_memory(exc, "an evaluation could not allocate memory")
                spent = time.monotonic() - started
                share = min(1.0, max(0.01, self.settings.max_evaluation_share))
                self._not_before = time.monotonic() + spent * (1.0 / share - 1.0)

    async def evaluate_pending(self) -> None:
        """Drain the queue and run one evaluation (or bootstrap the reference from the first window)."""
        if not self.has_reference and not self.bootstrap_reference:
            return
        batches = list(self.pending)
        self.pending.clear()
        self.pending_rows = 0
        self.metrics.pending_rows.set(0)
        self._last_run = time.monotonic()
        if not batches:
            return
        columns, preds, acts = concat_batches(batches, self.max_columns)
        scores = lift_scores(batches, columns)
        n_rows = sum(b.n_rows for b in batches)
        if not self.has_reference:
            # Exactly `reference_size` rows form the reference; the rest wait for the first evaluation
            # (predictions that arrived before there was a reference are not scored).
            k = min(n_rows, self.reference_size)
            if k < n_rows:
                rest = Batch(columns={name: col[k:] for name, col in columns.items()}, n_rows=n_rows - k)
                self.pending.appendleft(rest)
                self.pending_rows += rest.n_rows
                self.metrics.pending_rows.set(self.pending_rows)
                self._wake.set()
            if await self._set_reference({name: col[:k] for name, col in columns.items()}, k, bootstrap=True):
                await self.observe_predictions("reference", preds, acts, scores)
            return
        method = "monitor_features"
        try:
            timeout = self.settings.max_evaluation_seconds
            result, seconds = await self.host.call(method, columns, timeout=timeout)
            _check_result(result)
            pred_result = None
            if preds is not None:
                method = "monitor_predictions"
                pred_result, pred_seconds = await self.host.call(method, preds, acts, timeout=timeout)
                seconds += pred_seconds
        except Exception as exc:
            await self._failed(exc, columns, n_rows, method)
            return
        self.tracker.record(True)
        self.metrics.evaluations.labels("ok").inc()
        self.metrics.evaluation_latency.observe(seconds)
        self.latest = result
        self.evaluated_at = time.time()
        self.evaluation_seconds = seconds
        self.rows_evaluated += n_rows
        self.rows_in_last_evaluation = n_rows
        self.metrics.record_result(result)
        self.metrics.last_evaluation.set(self.evaluated_at)
        # With the latest result, before any await: a report that shows this evaluation shows its history
        # entry and its prediction metrics too.
        self.history.add(
            history_entry(
                result,
                at=self.evaluated_at,
                version=self.identity.get("version"),
                code_sha256=self.identity.get("code_sha256"),
                rows=n_rows,
            )
        )
        self.history_changed()
        if isinstance(pred_result, Mapping):
            self.latest_predictions = dict(pred_result)
            self.metrics.record_predictions(pred_result)
        await self._observe(self.on_evaluated, columns, n_rows)
        await self.observe_predictions("current", preds, acts, scores)
        for event in result.get("events") or []:
            if isinstance(event, Mapping):
                self.log.poet_event(
                    str(event.get("type", "monitor.event")), **dict(event.get("details") or {})
                )
        self.log(
            "evaluation.completed",
            rows=n_rows,
            seconds=round(seconds, 6),
            overall_health=result.get("overall_health"),
            overall_drift_score=result.get("overall_drift_score"),
            drifted_features=list(result.get("drifted_features") or [])[:50],
        )
        self.dirty = True

    async def set_reference(
        self,
        columns: dict[str, np.ndarray],
        n_rows: int,
        *,
        encoded: EncodedReference,
        source: str,
    ) -> dict[str, Any] | None:
        """Replace the reference (POST /v1/reference, --reference-file); None when done, else why the
        monitor refused it. `columns` are canonical (`prepare_reference`) and `encoded` is their copy.

        The reference comes from a client, so the monitor raising on it is a bad request, not a failure
        of the code: it does not count toward the crash thresholds, and the monitor's state from before
        the call is put back. Only a call that never returns (the worker is lost) still ends the process.
        """
        async with self._busy:
            timeout = self.settings.max_evaluation_seconds
            try:
                before, _ = await self.host.call("state", timeout=timeout)
            except EvaluationTimeout as exc:
                await self._failed(exc, columns, n_rows, "state")
                return {"message": str(exc), "signature": {"exception": "EvaluationTimeout"}}
            except Exception:
                before = None  # no way back; the attempt goes ahead all the same
            try:
                _, seconds = await self.host.call("update_reference_window", columns, timeout=timeout)
            except EvaluationTimeout as exc:
                await self._failed(exc, columns, n_rows, "update_reference_window")
                return {"message": str(exc), "signature": {"exception": "EvaluationTimeout"}}
            except MemoryError as exc:
                # Not the client's fault, and the monitor may hold half of the new reference: out of memory.
                why = "update_reference_window could not allocate memory"
                await self.out_of_memory(exc, why, batch_profile(columns, n_rows))
                raise
            except Exception as exc:
                refused = {
                    "message": f"{type(exc).__name__}: {exc}"[:1000],
                    "signature": exception_signature(exc),
                }
                self.references_refused += 1
                self.log(
                    "reference.refused",
                    level="warning",
                    signature=refused["signature"],
                    error=refused["message"],
                    traceback=format_traceback(exc),
                    batch_profile=batch_profile(columns, n_rows),
                )
                if before is not None:
                    await self._put_back(before)
                return refused
            await self._reference_set(columns, n_rows, seconds, HeldReference(encoded, source))
            return None

    async def _put_back(self, state: Any) -> None:
        try:
            await self.host.call("restore", state, timeout=self.settings.max_evaluation_seconds)
        except Exception as exc:
            self.log("reference.restore_failed", level="error", error=repr(exc)[:500])

    async def _set_reference(self, columns: dict[str, np.ndarray], n_rows: int, *, bootstrap: bool) -> bool:
        # The monitor gets exactly what a pod given this reference as npz data would get.
        loop = asyncio.get_running_loop()
        columns, encoded = await loop.run_in_executor(None, prepare_reference, columns)
        held = HeldReference(encoded, "first_window" if bootstrap else "uploaded")
        try:
            _, seconds = await self.host.call(
                "update_reference_window", columns, timeout=self.settings.max_evaluation_seconds
            )
        except Exception as exc:
            await self._failed(exc, columns, n_rows, "update_reference_window")
            return False
        self.tracker.record(True)
        await self._reference_set(columns, n_rows, seconds, held)
        return True

    async def _reference_set(
        self, columns: dict[str, np.ndarray], n_rows: int, seconds: float, held: HeldReference
    ) -> None:
        await self._observe(self.on_reference, columns, n_rows)
        self.has_reference = True
        self.reference_rows = n_rows
        self.reference = held
        self.dirty = True
        self.log.poet_event(
            "runtime.reference.updated",
            rows=n_rows,
            source=held.source,
            sha256=held.encoded.sha256,
            seconds=round(seconds, 6),
        )

    async def _observe(
        self,
        observer: Callable[[dict[str, np.ndarray], int], None] | None,
        columns: dict[str, np.ndarray],
        n: int,
    ) -> None:
        if observer is not None:
            await asyncio.get_running_loop().run_in_executor(None, observer, columns, n)

    async def observe_predictions(
        self, period: str, preds: np.ndarray | None, acts: np.ndarray | None, scores: np.ndarray | None
    ) -> None:
        """Hand a period's predictions, actuals and scores to the report's observer (on a pool thread)."""
        if self.on_predictions is None or preds is None or acts is None:
            return
        observer = self.on_predictions
        await asyncio.get_running_loop().run_in_executor(None, observer, period, preds, acts, scores)

    async def _failed(
        self, exc: Exception, columns: Mapping[str, np.ndarray], n_rows: int, method: str
    ) -> None:
        self.tracker.record(False)
        self.metrics.evaluations.labels("failed").inc()
        self.metrics.errors.labels("monitor_exception").inc()
        profile = batch_profile(columns, n_rows)
        if isinstance(exc, EvaluationTimeout):
            # The traceback would point into the runtime; the generated method is what was slow.
            signature = {"exception": "EvaluationTimeout", "location": f"monitor.py in {exc.method}"}
        else:
            signature = exception_signature(exc)
        tb = format_traceback(exc)
        self.last_failure = {
            "signature": signature,
            "message": f"{type(exc).__name__}: {exc}"[:1000],
            "method": method,
            "at": time.time(),
            "batch_profile": profile,
        }
        self.log(
            "evaluation.failed",
            level="error",
            method=method,
            signature=signature,
            error=str(exc)[:1000],
            traceback=tb,
            batch_profile=profile,
            failures=self.tracker.summary(),
        )
        if isinstance(exc, MemoryError):
            # A window half updated cannot be trusted, and the next evaluation needs the same memory again.
            await self.out_of_memory(exc, f"{method} could not allocate memory", profile)
            return
        if self.fatal:
            # The process is already ending (out of memory, say) and its record is written: an evaluation
            # that was in flight and failed after it must not replace the cause with its own.
            return
        reason = self.tracker.tripped()
        if isinstance(exc, EvaluationTimeout):
            reason = f"{exc}; a stuck call cannot be interrupted, so the process exits"
        if reason is None:
            return
        self.fatal = True
        record = self._run_record(
            signature=signature,
            message=f"{reason}; last: {type(exc).__name__}: {exc}",
            traceback_text=tb,
            profile=profile,
            failures=self.tracker.summary(),
        )
        await self._on_fatal(record)

    def _run_record(self, **fields: Any) -> dict[str, Any]:
        """The feedback record of a failure while running, with this monitor's identity."""
        return feedback_record(
            phase="run",
            version=self.identity.get("version"),
            monitor=str(self.identity.get("monitor", "")),
            model=str(self.identity.get("model", "")),
            **fields,
        )

    # ------------------------------------------------------------ out of memory

    async def request_memory_error(self, exc: MemoryError, path: str) -> None:
        """A request failed with MemoryError outside generated code (it is answered 503): count it, and end
        the process when too many came within the span (`POET_MAX_MEMORY_ERRORS`)."""
        self.memory_errors.record(time.monotonic())
        self.metrics.errors.labels("out_of_memory").inc()
        self.log(
            "request.out_of_memory",
            level="error",
            path=path,
            memory_errors=self.memory_errors.total,
            traceback=format_traceback(exc),
        )
        reason = self.memory_errors.tripped()
        if reason is not None:
            await self.out_of_memory(exc, reason)

    async def out_of_memory(
        self, exc: MemoryError, why: str, profile: Mapping[str, Any] | None = None
    ) -> None:
        """Memory ran out: write the record with reason `OOMKilled` and end the process (exit status 3), as
        the kernel would have ended a container at its limit. The kernel leaves no record; this one adds
        the traceback and the batch profile."""
        if self.reserve is not None:
            self.reserve.release()  # first: ending well needs room, and the failed allocation may leave none
        if self.fatal:
            return
        self.fatal = True
        signature = exception_signature(exc)
        record = self._run_record(
            signature=signature,
            message=f"out of memory: {why}; last: MemoryError: {exc}".rstrip(": "),
            traceback_text=format_traceback(exc),
            profile=profile,
            failures={**self.tracker.summary(), "memory_errors": self.memory_errors.total},
            reason=OUT_OF_MEMORY_REASON,
        )
        self.log("runtime.out_of_memory", level="error", reason=why, signature=signature)
        await self._on_fatal(record)

    # ------------------------------------------------------------ checkpoints

    async def snapshot(self) -> tuple[Any, dict[str, Any]]:
        """(monitor `state()`, runtime state) taken together, between evaluations, so they agree."""
        async with self._busy:
            monitor_state, _ = await self.host.call("state", timeout=self.settings.max_evaluation_seconds)
            return monitor_state, self.runtime_state()

    def runtime_state(self) -> dict[str, Any]:
        """What the runtime itself needs to resume (the monitor's own state comes from `state()`), as data:
        `RuntimeState.from_state` reads it back."""
        return {
            "has_reference": self.has_reference,
            "reference_rows": self.reference_rows,
            # npz bytes (data), so a restarted container serves the very reference its monitor holds
            "reference": self.reference.to_state() if self.reference is not None else None,
            # Results of generated code, kept as the report serves them (strict JSON, whatever their types).
            "latest": json_safe.plain(self.latest),
            "latest_predictions": json_safe.plain(self.latest_predictions),
            "evaluated_at": self.evaluated_at,
            "evaluation_seconds": self.evaluation_seconds,
            "rows_evaluated": self.rows_evaluated,
            "rows_in_last_evaluation": self.rows_in_last_evaluation,
            "rows_ingested": self.rows_ingested,
            "rows_dropped": self.rows_dropped,
            "history": self.history.to_json(),  # data: entries are built from numbers and labels
            "pending": [
                {"columns": b.columns, "n_rows": b.n_rows, "predictions": b.predictions, "actuals": b.actuals}
                for b in self.pending
            ],
        }

    def restore_runtime_state(self, state: RuntimeState) -> None:
        """Resume counters, the latest result and pending rows from a checkpoint."""
        self.has_reference = state.has_reference
        self.reference_rows = state.reference_rows
        self.reference = state.reference
        self.latest = state.latest
        self.latest_predictions = state.latest_predictions
        self.evaluated_at = state.evaluated_at
        self.evaluation_seconds = state.evaluation_seconds
        self.rows_evaluated = state.rows_evaluated
        self.rows_in_last_evaluation = state.rows_in_last_evaluation
        self.rows_ingested = state.rows_ingested
        self.rows_dropped = state.rows_dropped
        if state.history is not None:
            self.history = EvaluationHistory.from_json(state.history, self.settings.history_size)
        for batch in state.pending:
            self.pending.append(batch)
            self.pending_rows += batch.n_rows
        if self.latest:
            self.metrics.record_result(self.latest)
        if isinstance(self.latest_predictions, Mapping):
            self.metrics.record_predictions(self.latest_predictions)
        self.metrics.pending_rows.set(self.pending_rows)


@dataclass
class RuntimeState:
    """The runtime's own part of a checkpoint (`Evaluator.runtime_state()`), read and checked by
    `from_state` before anything is restored."""

    has_reference: bool = False
    reference_rows: int = 0
    reference: HeldReference | None = None
    latest: dict[str, Any] | None = None
    latest_predictions: dict[str, Any] | None = None
    evaluated_at: float | None = None
    evaluation_seconds: float | None = None
    rows_evaluated: int = 0
    rows_in_last_evaluation: int = 0
    rows_ingested: int = 0
    rows_dropped: int = 0
    history: Mapping[str, Any] | None = None
    pending: list[Batch] = field(default_factory=list)

    @classmethod
    def from_state(cls, state: Any, where: str = "runtime") -> RuntimeState:
        """ValueError naming the field that is wrong."""
        state = object_of(state, where)
        held = state.get("reference")
        out = cls(
            has_reference=bool(state.get("has_reference")),
            reference_rows=integer(state.get("reference_rows", 0), f"{where}.reference_rows"),
            reference=None if held is None else HeldReference.from_state(held, f"{where}.reference"),
            latest=_optional_object(state.get("latest"), f"{where}.latest"),
            latest_predictions=_optional_object(
                state.get("latest_predictions"), f"{where}.latest_predictions"
            ),
            history=_optional_object(state.get("history"), f"{where}.history"),
        )
        for key in ("evaluated_at", "evaluation_seconds"):
            if state.get(key) is not None:
                setattr(out, key, number(state[key], f"{where}.{key}"))
        for key in ("rows_evaluated", "rows_in_last_evaluation", "rows_ingested", "rows_dropped"):
            setattr(out, key, integer(state.get(key, 0), f"{where}.{key}"))
        for i, item in enumerate(list_of(state.get("pending", []), f"{where}.pending")):
            out.pending.append(_batch_from_state(item, f"{where}.pending[{i}]"))
        return out


def _optional_object(value: Any, where: str) -> dict[str, Any] | None:
    return None if value is None else dict(object_of(value, where))


def _batch_from_state(state: Any, where: str) -> Batch:
    state = object_of(state, where)
    n_rows = integer(state.get("n_rows"), f"{where}.n_rows")
    columns = {
        str(name): column(values, f"{where}.columns[{name!r}]")
        for name, values in object_of(state.get("columns"), f"{where}.columns").items()
    }
    sides = {
        key: None if state.get(key) is None else column(state[key], f"{where}.{key}")
        for key in ("predictions", "actuals")
    }
    if any(len(arr) != n_rows for arr in [*columns.values(), *(a for a in sides.values() if a is not None)]):
        raise ValueError(f"{where}: a column's length differs from n_rows ({n_rows})")
    return Batch(columns=columns, n_rows=n_rows, **sides)


def _check_result(result: Any) -> None:
    if not isinstance(result, Mapping):
        raise ContractViolation(
            f"monitor_features returned {type(result).__name__}; the contract requires a dict"
        )
    if not isinstance(result.get("features"), Mapping):
        raise ContractViolation("monitor_features result has no 'features' mapping")
