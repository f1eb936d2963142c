"""The HTTP surface of a monitor pod: ingestion, reference, report, probes and metrics (aiohttp)."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from aiohttp import web

from monitor_runtime import json_safe, reference_npz
from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.evaluator import Evaluator, prepare_reference
from monitor_runtime.server.history import parse_history
from monitor_runtime.server.metrics import CONTENT_TYPE_LATEST, RuntimeMetrics
from monitor_runtime.server.parsing import (
    NUMERIC,
    BadRequest,
    Batch,
    Schema,
    column_kinds,
    parse_body,
    spec_kinds,
    warm_up_arrow,
)
from monitor_runtime.server.prediction_quality import SCORE_COLUMN, PredictionQuality, quality_settings
from monitor_runtime.server.report_page import render_report_page
from monitor_runtime.server.settings import RuntimeSettings

RUNTIME_KEY = web.AppKey("runtime", object)


class Runtime:
    """Everything one monitor process holds; the handlers below only translate HTTP to these calls."""

    def __init__(
        self,
        *,
        evaluator: Evaluator,
        metrics: RuntimeMetrics,
        settings: RuntimeSettings,
        identity: Mapping[str, Any],
        spec: Mapping[str, Any],
    ) -> None:
        self.evaluator = evaluator
        self.metrics = metrics
        self.settings = settings
        self.identity = dict(identity)
        self.spec = dict(spec)
        self.started_at = time.time()
        self.ready = False
        self.shutting_down = False
        self.batches = 0
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self.spec_kinds = spec_kinds(spec)
        self.declared_features = _declared_names(spec)
        self.reference_kinds: dict[str, str] = {}
        # Called after a new reference is in force; the runner checkpoints at once, so a container restarted
        # soon after (killed for memory, say) resumes with the reference instead of waiting for another.
        self.on_reference_changed: Callable[[], None] | None = None
        # Unknown column names accepted so far (capped by `max_unknown_columns`).
        self.unknown_columns: set[str] = set()
        self.last_batch_timestamp: str | float | None = None
        self.distributions = DistributionTracker(window_rows=max(1, evaluator.plan.size))
        evaluator.on_reference = self.note_reference
        evaluator.max_columns = len(self.spec_kinds) + settings.max_unknown_columns
        evaluator.on_evaluated = self.distributions.add_current
        task, positive = quality_settings(spec)
        self.quality = PredictionQuality(task, positive, window_rows=max(1, evaluator.plan.size))
        evaluator.on_predictions = self.note_predictions

    def schema(self, *, reference: bool = False) -> Schema:
        """What parsing checks against: known columns and their kinds."""
        kinds = {**self.reference_kinds, **self.spec_kinds}
        reject = self.settings.unknown_columns == "reject" and bool(kinds) and not reference
        # `_score` (the positive class's score, beside `_prediction` and `_actual`): a number, not a feature.
        return Schema(
            kinds={**kinds, SCORE_COLUMN: NUMERIC},
            reject_unknown=reject,
            max_rows=self.settings.max_batch_rows if not reference else 10**9,
        )

    def admit_columns(self, batch: Batch) -> None:
        """Refuse a batch that would take the set of unknown column names past the cap; else note them.

        Runs on the event loop between parse and ingest, so concurrent requests cannot both slip past.
        """
        known = self.spec_kinds.keys() | self.reference_kinds.keys() | {SCORE_COLUMN}
        new = [name for name in batch.columns if name not in known and name not in self.unknown_columns]
        if not new:
            return
        cap = self.settings.max_unknown_columns
        room = cap - len(self.unknown_columns)
        if len(new) > room:
            name = new[max(room, 0)]
            raise BadRequest(
                f"column {name!r}: this monitor already accepted {len(self.unknown_columns)} columns outside "
                f"its spec and reference (the limit is {cap}); send only known columns, declare new ones in "
                "the spec, or raise POET_MAX_UNKNOWN_COLUMNS",
                column=name,
                limit=cap,
                kind="too_many_columns",
            )
        self.unknown_columns.update(new)

    def check_reference(self, batch: Batch, *, built_by_a_pod: bool = False) -> None:
        """Refuse (422) a reference no drift test can use, before it reaches the monitor.

        A reference another pod of this monitor built from its first window (npz, or the mounted file) may
        be as small as the spec's `reference.size`, which that pod accepted.
        """
        need = self.settings.min_reference_rows
        if built_by_a_pod:
            need = min(need, self.evaluator.reference_size)
        if batch.n_rows < need:
            raise BadRequest(
                f"reference has {batch.n_rows} rows; at least {need} are needed: send a larger sample",
                status=422,
                rows=batch.n_rows,
                limit=need,
            )
        if self.declared_features and not self.declared_features & batch.columns.keys():
            raise BadRequest(
                f"reference has none of the declared features {sorted(self.declared_features)[:20]} "
                f"(got {sorted(batch.columns)[:20]}): send the model's feature columns",
                status=422,
            )

    async def reference_from_body(
        self, body: bytes, content_type: str, *, source: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Parse a reference body and hand it to the monitor: (HTTP status, JSON body); BadRequest on 4xx.

        Unless `source` says otherwise, an npz body is a reference another pod of this monitor built
        (`transfer`) and any other format is `uploaded`.
        """
        batch = await _parse(body, content_type, self.schema(reference=True))
        if source is None:
            source = "transfer" if _media_type(content_type) == reference_npz.MEDIA_TYPE else "uploaded"
        return await self.accept_reference(batch, source=source)

    async def accept_reference(self, batch: Batch, *, source: str) -> tuple[int, dict[str, Any]]:
        """Check a parsed reference and hand it to the monitor: (HTTP status, JSON body).

        The one path for `POST /v1/reference` and `--reference-file`, so the monitor sees a reference the
        same way whichever way it came. A reference equal to the one in force (same sha256) is not handed
        over again: the monitor keeps whatever it built on it.
        """
        scores = batch.columns.pop(SCORE_COLUMN, None)
        self.check_reference(batch, built_by_a_pod=source in ("transfer", "file"))
        loop = asyncio.get_running_loop()
        columns, encoded = await loop.run_in_executor(None, prepare_reference, batch.columns)
        held = self.evaluator.reference
        if held is not None and held.encoded.sha256 == encoded.sha256:
            return 200, {
                "reference_rows": batch.n_rows,
                "columns": sorted(batch.columns),
                "sha256": encoded.sha256,
                "source": held.source,
                "unchanged": True,
            }
        refused = await self.evaluator.set_reference(columns, batch.n_rows, encoded=encoded, source=source)
        if refused is not None:
            self.metrics.errors.labels("reference_rejected").inc()
            return 422, {
                "error": f"the monitor refused this reference: {refused['message']}; the previous reference "
                "stays in place",
                "signature": refused.get("signature"),
                "message": refused.get("message"),
            }
        await self.evaluator.observe_predictions("reference", batch.predictions, batch.actuals, scores)
        if self.on_reference_changed is not None:
            self.on_reference_changed()
        return 200, {
            "reference_rows": batch.n_rows,
            "columns": sorted(batch.columns),
            "sha256": encoded.sha256,
            "source": source,
            "unchanged": False,
        }

    def note_reference(self, columns: Mapping[str, np.ndarray], n_rows: int) -> None:
        """Remember the reference's column kinds and bins (for type checks and the report page)."""
        self.reference_kinds = column_kinds(columns)
        self.distributions.set_reference(columns)
        known = self.spec_kinds.keys() | self.reference_kinds.keys()
        self.evaluator.max_columns = len(known) + self.settings.max_unknown_columns

    def note_predictions(
        self, period: str, preds: np.ndarray, acts: np.ndarray, scores: np.ndarray | None
    ) -> None:
        """Score a period's predictions for the report (runs on a pool thread)."""
        if period == "reference":
            self.quality.set_reference(preds, acts, scores)
        else:
            self.quality.add_current(preds, acts, scores)

    def report(self) -> dict[str, Any]:
        """The latest result in the drift-result format plus version, window, timing and failures."""
        ev = self.evaluator
        latest = dict(ev.latest or {})
        status = "ok" if ev.latest else ("waiting_for_data" if ev.has_reference else "waiting_for_reference")
        body: dict[str, Any] = {
            "features": latest.get("features", {}),
            "overall_drift_score": latest.get("overall_drift_score"),
            "overall_health": latest.get("overall_health"),
            "drifted_features": latest.get("drifted_features", []),
            "recommendations": latest.get("recommendations", []),
            "window_config": latest.get("window_config"),
            **{k: v for k, v in latest.items() if k not in _REPORT_CORE},
            "status": status,
            "version": {
                "monitor": self.identity.get("monitor"),
                "model": self.identity.get("model"),
                "version": self.identity.get("version"),
                "generator": self.identity.get("generator"),
                "code_sha256": self.identity.get("code_sha256"),
            },
            "window": {
                **ev.plan.as_dict(),
                "pending_rows": ev.pending_rows,
                "rows_in_last_evaluation": ev.rows_in_last_evaluation,
                "reference_rows": ev.reference_rows,
                "reference_size": ev.reference_size,
                "reference_from_first_window": ev.bootstrap_reference,
            },
            "timing": {
                "evaluated_at": ev.evaluated_at,
                "evaluation_seconds": ev.evaluation_seconds,
                "uptime_seconds": round(time.time() - self.started_at, 3),
            },
            "ingestion": {
                "last_batch_timestamp": self.last_batch_timestamp,
                "unknown_columns": len(self.unknown_columns),
                "rows": ev.rows_ingested,
                "batches": self.batches,
                "rows_evaluated": ev.rows_evaluated,
                "rows_dropped": ev.rows_dropped,
            },
            "predictions": ev.latest_predictions,
            "quality": self.quality.snapshot(),
            "failures": {**ev.tracker.summary(), "last": ev.last_failure},
            "reference": (
                ev.reference.summary()
                if ev.reference is not None
                else {"rows": None, "sha256": None, "source": None}
            ),
            # Versions present and when each last evaluated, not the entries (GET /v1/history has them):
            # the operator decides from it whether a canary still lacks the stable pod's history.
            "history": ev.history.summary(),
        }
        return body


_REPORT_CORE = frozenset(
    {
        "features",
        "overall_drift_score",
        "overall_health",
        "drifted_features",
        "recommendations",
        "window_config",
    }
)


def _declared_names(spec: Mapping[str, Any]) -> set[str]:
    """Names of the spec's declared features, whatever their type."""
    features = spec.get("features") or []
    if isinstance(features, Mapping):
        return {str(name) for name in features}
    return {str(f["name"]) for f in features if isinstance(f, Mapping) and "name" in f}


# ---------------------------------------------------------------- handlers


async def _read_limited(request: web.Request, limit: int) -> bytes:
    """The body, refusing (413) as soon as it passes `limit` bytes, before buffering it all."""
    length = request.content_length
    if length is not None and length > limit:
        raise BadRequest(
            f"request body is {length} bytes; the limit is {limit}: send smaller batches",
            status=413,
            limit=limit,
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_any():
        total += len(chunk)
        if total > limit:
            raise BadRequest(
                f"request body exceeds the limit of {limit} bytes: send smaller batches",
                status=413,
                limit=limit,
            )
        chunks.append(chunk)
    return _decode_content(b"".join(chunks), request.headers.get("Content-Encoding", ""), limit)


def _decode_content(body: bytes, encoding: str, limit: int) -> bytes:
    """Undo `Content-Encoding` (gzip or deflate) with the decoded size capped at `limit`.

    The runtime decodes itself (the server runs with `auto_decompress=False`) so that a broken or
    unsupported encoding gets the same JSON 4xx as any other bad body, and a small compressed body cannot
    expand past the size limit.
    """
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise BadRequest(
            f"unsupported Content-Encoding {coding!r}: send the body uncompressed, gzip or deflate",
            status=415,
            field="Content-Encoding",
        )
    wbits = 16 + zlib.MAX_WBITS if coding != "deflate" else zlib.MAX_WBITS
    what = "gzip" if coding != "deflate" else "deflate (zlib)"
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {what}: {exc}", field="Content-Encoding") from None
    if len(out) > limit or decoder.unconsumed_tail:
        raise BadRequest(
            f"decompressed body exceeds the limit of {limit} bytes: send smaller batches",
            status=413,
            limit=limit,
        )
    if not decoder.eof:
        raise BadRequest(
            f"body is not valid {what}: the compressed stream is truncated", field="Content-Encoding"
        )
    return out


# Bodies above this size are parsed off the event loop so probes and small batches are not held up; below
# it the thread hop costs more than the parse.
_OFFLOAD_BYTES = 1024 * 1024
# One parsing thread, not the default pool: parsing holds the GIL, so more threads add no throughput, only
# parses interleaved every switch interval, each evicting the others' working set from the caches.
_PARSER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poet-parse")


async def start_threads() -> None:
    """Start the parsing thread, Arrow's worker pools and a thread of the default pool now, while memory is
    plentiful: a thread started later, near a memory limit on the address space, may not get its stack or
    thread-local data, and glibc then ends the process at once (exit status 127) instead of raising
    MemoryError."""
    loop = asyncio.get_running_loop()
    # On this thread: small bodies are read here, and pyarrow, called from the main thread, also starts
    # the thread that turns SIGINT into a cancellation.
    warm_up_arrow()
    await loop.run_in_executor(_PARSER, int)
    await loop.run_in_executor(None, int)


async def _parse(body: bytes, content_type: str, schema: Schema) -> Batch:
    if len(body) < _OFFLOAD_BYTES:
        return parse_body(body, content_type, schema)
    return await asyncio.get_running_loop().run_in_executor(_PARSER, parse_body, body, content_type, schema)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME_KEY]  # type: ignore[return-value]


async def post_batch(request: web.Request) -> web.Response:
    """Accept one batch; evaluation happens later, off this path."""
    started = time.perf_counter()
    rt = _runtime(request)
    if rt.evaluator.fatal or rt.shutting_down:
        raise BadRequest("the monitor is shutting down; retry against another replica", status=503)
    body = await _read_limited(request, rt.settings.max_body_bytes)
    batch = await _parse(body, request.content_type, rt.schema())
    rt.admit_columns(batch)
    rt.evaluator.ingest(batch)
    if batch.timestamp is not None:
        rt.last_batch_timestamp = batch.timestamp
    rt.batches += 1
    rt.metrics.rows.inc(batch.n_rows)
    rt.metrics.batches.inc()
    rt.metrics.batch_latency.observe(time.perf_counter() - started)
    return web.json_response(
        {
            "accepted_rows": batch.n_rows,
            "columns": len(batch.columns),
            "pending_rows": rt.evaluator.pending_rows,
        },
        status=202,
    )


async def post_reference(request: web.Request) -> web.Response:
    """Set or replace the reference: any batch format (`uploaded`) or another pod's npz (`transfer`)."""
    rt = _runtime(request)
    if rt.evaluator.fatal or rt.shutting_down:
        raise BadRequest("the monitor is shutting down; retry against another replica", status=503)
    body = await _read_limited(request, rt.settings.max_reference_bytes)
    status, answer = await rt.reference_from_body(body, request.content_type)
    return web.json_response(answer, status=status)


async def get_reference(request: web.Request) -> web.Response:
    """The reference this runtime handed to its monitor, as npz data (404 before there is one)."""
    rt = _runtime(request)
    held = rt.evaluator.reference
    if held is None:
        if rt.evaluator.has_reference:
            message = (
                "this runtime resumed from a checkpoint that holds no copy of its reference; it has one "
                "again after the next POST /v1/reference"
            )
        else:
            message = "no reference yet: waiting for POST /v1/reference or for the first window"
        return web.json_response({"error": message}, status=404)
    e = held.encoded
    return web.Response(
        body=e.npz,
        headers={
            "Content-Type": reference_npz.MEDIA_TYPE,
            "X-Poet-Reference-Sha256": e.sha256,
            "X-Poet-Reference-Rows": str(e.rows),
            "X-Poet-Reference-Source": held.source,
            "ETag": f'"{e.sha256}"',
        },
    )


async def get_report(request: web.Request) -> web.Response:
    return web.json_response(_runtime(request).report(), dumps=_dumps)


async def get_history(request: web.Request) -> web.Response:
    """The last evaluations (bounded), oldest first: what the report page's history charts draw."""
    # Entries are never changed once added, so a copy of the list can be encoded off the event loop (a full
    # history of a wide monitor is megabytes of JSON).
    history = _runtime(request).evaluator.history.to_json()
    text = await asyncio.get_running_loop().run_in_executor(None, _dumps, history)
    return web.Response(text=text, content_type="application/json")


async def post_history(request: web.Request) -> web.Response:
    """Merge another pod's history (a `GET /v1/history` body) into this one: a new version's pod keeps the
    evaluations of the one before it, and the report marks where the version changed."""
    rt = _runtime(request)
    body = await _read_limited(request, rt.settings.max_body_bytes)
    try:
        entries = parse_history(json.loads(body))
    except json.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON in request body: {exc}") from None
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    held = rt.evaluator.history.merge(entries)
    rt.evaluator.history_changed()
    return web.json_response({"received": len(entries), "evaluations": held})


async def get_report_page(request: web.Request) -> web.Response:
    rt = _runtime(request)
    report, history = rt.report(), rt.evaluator.history.as_list()

    def build() -> str:
        return render_report_page(report, rt.distributions.snapshot(), history=history)

    # Binning snapshots and rendering a wide monitor take tens of milliseconds: not on the event loop.
    html = await asyncio.get_running_loop().run_in_executor(None, build)
    # The page is self-contained; the policy makes sure nothing (feature names included) can load or run more.
    csp = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    return web.Response(
        text=html, content_type="text/html", charset="utf-8", headers={"Content-Security-Policy": csp}
    )


async def get_healthz(request: web.Request) -> web.Response:
    """Liveness: the event loop answers."""
    rt = _runtime(request)
    return web.json_response({"status": "ok", "failures": rt.evaluator.tracker.summary()})


async def get_readyz(request: web.Request) -> web.Response:
    """Readiness: loaded, resumed and not shutting down."""
    rt = _runtime(request)
    ready = rt.ready and not rt.shutting_down and not rt.evaluator.fatal
    body = {
        "ready": ready,
        "has_reference": rt.evaluator.has_reference,
        "version": rt.identity.get("version"),
    }
    return web.json_response(body, status=200 if ready else 503)


async def get_metrics(request: web.Request) -> web.Response:
    rt = _runtime(request)
    return web.Response(body=rt.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def _dumps(obj: Any) -> str:
    # NaN, inf or odd keys from generated code must not turn a report into a 500.
    return json_safe.dumps(obj)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bad requests become JSON 4xx bodies; anything unexpected is a logged 500, never a dead process."""
    rt = _runtime(request)
    rt.in_flight += 1
    rt.idle.clear()
    try:
        return await handler(request)
    except BadRequest as exc:
        kind = {413: "payload_too_large", 503: "overload"}.get(exc.status, "bad_request")
        rt.metrics.errors.labels(exc.detail.pop("kind", kind)).inc()
        return web.json_response(exc.body(), status=exc.status)
    except web.HTTPException:
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except MemoryError as exc:
        # The process is at its memory limit: the request is refused whole (nothing of a batch was queued),
        # and the client told to send it again, here or elsewhere. Repeated, it ends the process.
        if not rt.evaluator.fatal:
            await rt.evaluator.request_memory_error(exc, request.path)
        return web.json_response(
            {
                "error": "out of memory: the monitor process could not allocate memory for this request "
                "(MemoryError); nothing of it was accepted: send it again",
                "kind": "out_of_memory",
            },
            status=503,
        )
    except Exception as exc:
        rt.metrics.errors.labels("internal").inc()
        rt.evaluator.log("http.internal_error", level="error", path=request.path, error=repr(exc)[:500])
        return web.json_response({"error": f"internal error: {type(exc).__name__}"}, status=500)
    finally:
        rt.in_flight -= 1
        if rt.in_flight == 0:
            rt.idle.set()


def build_app(runtime: Runtime) -> web.Application:
    """The aiohttp application over a runtime."""
    # Bodies are read by `_read_limited` with per-route limits; the global cap only backs that up.
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=max(runtime.settings.max_body_bytes, runtime.settings.max_reference_bytes) + 1,
    )
    app[RUNTIME_KEY] = runtime
    app.router.add_post("/v1/batches", post_batch)
    app.router.add_post("/v1/reference", post_reference)
    app.router.add_get("/v1/reference", get_reference)
    app.router.add_get("/v1/report", get_report)
    app.router.add_get("/v1/history", get_history)
    app.router.add_post("/v1/history", post_history)
    app.router.add_get("/report", get_report_page)
    app.router.add_get("/healthz", get_healthz)
    app.router.add_get("/readyz", get_readyz)
    app.router.add_get("/metrics", get_metrics)
    return app
