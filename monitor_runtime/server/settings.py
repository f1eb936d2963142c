"""Runtime settings: limits, thresholds and intervals, read from `POET_*` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class RuntimeSettings:
    """Every knob of the runtime process; each field maps to the env var `POET_<FIELD NAME UPPER>`."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_reference_bytes: int = 256 * 1024 * 1024
    max_batch_rows: int = 100_000
    # accept: columns outside the reference and the spec are passed on (the monitor reports them as new
    # features); reject: such a batch gets a 400 naming the column.
    unknown_columns: str = "accept"
    # Crash policy: exit after this many consecutive failed evaluations, or when the failure rate over the
    # last `failure_window` evaluations reaches `max_failure_rate` (once at least `failure_window` ran).
    max_consecutive_failures: int = 3
    failure_window: int = 20
    max_failure_rate: float = 0.5
    # Out of memory without a kernel kill (an allocation fails: MemoryError). One in generated code or during
    # an evaluation ends the process at once; outside it (parsing a batch, answering a request) the request
    # gets a 503 and this many within `memory_error_span_s` seconds end the process. Either way the exit
    # status is 3 and the record's reason `OOMKilled`, as for a container its memory limit killed.
    max_memory_errors: int = 3
    memory_error_span_s: float = 60.0
    checkpoint_interval_s: float = 30.0
    # Evaluate at least this often while rows are pending, whatever the window's row cadence says.
    max_evaluation_interval_s: float = 5.0
    # Under sustained load evaluation takes at most this share of wall time, so ingestion stays responsive;
    # windows are then evaluated less often (the latest data wins) rather than ingestion slowing down.
    max_evaluation_share: float = 0.5
    # A call into generated code that runs longer than this is a failure that ends the process (a thread
    # cannot be interrupted; Kubernetes restarts the pod and the operator reads the record).
    max_evaluation_seconds: float = 120.0
    # Rows kept waiting for evaluation; beyond this the oldest pending rows are dropped (and counted).
    max_pending_rows: int = 1_000_000
    max_metric_features: int = 200
    # Distinct column names outside the spec and the reference accepted over the process lifetime; a batch
    # that would pass the cap gets a 400 naming the column (every column costs memory in each pending
    # window, and a client that invents names per batch would otherwise grow both without bound).
    max_unknown_columns: int = 256
    # Per-class prediction series when the spec declares no `predictions.classes`: the first labels seen.
    max_metric_classes: int = 20
    # A reference with fewer rows is refused (422): no drift test says anything useful on it.
    min_reference_rows: int = 30
    # Evaluations kept for the report's history charts and GET /v1/history.
    history_size: int = 100
    shutdown_grace_s: float = 10.0
    # Everything after SIGTERM (draining, the evaluation in progress, the final checkpoint) ends within this
    # time; keep it below the pod's terminationGracePeriodSeconds (Kubernetes' default is 30 s).
    shutdown_deadline_s: float = 25.0

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RuntimeSettings:
        """Settings from `POET_*` variables; a malformed value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            key = f"POET_{f.name.upper()}"
            if key not in env:
                continue
            raw = env[key]
            kind = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{key}={raw!r} is not a valid {kind.__name__}") from exc
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.unknown_columns not in ("accept", "reject"):
            raise ValueError(f"POET_UNKNOWN_COLUMNS={settings.unknown_columns!r}: use 'accept' or 'reject'")
        return settings
