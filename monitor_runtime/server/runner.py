"""Process lifecycle of a monitor pod: load and verify, resume, serve, checkpoint, shut down or crash."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web

from monitor_runtime import json_safe, reference_npz
from monitor_runtime.server import checkpoint as ckpt
from monitor_runtime.server.app import Runtime, build_app, start_threads
from monitor_runtime.server.crash import (
    EXIT_OUT_OF_MEMORY,
    OUT_OF_MEMORY_REASON,
    MemoryReserve,
    exception_signature,
    feedback_record,
    format_traceback,
    termination_log_path,
    write_termination_message,
)
from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.evaluator import (
    CHECKPOINT_FORMAT,
    Evaluator,
    RuntimeState,
    plan_window,
    reference_from_first_window,
)
from monitor_runtime.server.guarding import guard_factory
from monitor_runtime.server.history import EvaluationHistory, decode_history_file
from monitor_runtime.server.host import MonitorHost
from monitor_runtime.server.jsonlog import JsonLogger
from monitor_runtime.server.metrics import RuntimeMetrics
from monitor_runtime.server.parsing import BadRequest
from monitor_runtime.server.prediction_quality import PredictionQuality
from monitor_runtime.server.settings import RuntimeSettings
from monitor_runtime.server.state_fields import integer, list_of, object_of

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_LOAD = 2
# EXIT_OUT_OF_MEMORY = 3 (crash.py): memory ran out without a kernel kill; the record's reason is OOMKilled.


class ListenError(Exception):
    """The HTTP server could not listen on host:port (a port in use, a privileged port, an unknown host)."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        if isinstance(error, socket.gaierror):
            reason = f"the host name does not resolve ({error.strerror}); give an address such as 127.0.0.1"
        else:
            reason = os.strerror(error.errno).lower() if error.errno else str(error)
        if error.errno == errno.EADDRINUSE:
            reason += "; another process listens there: stop it or choose another --port"
        elif error.errno == errno.EACCES:
            reason += "; ports below 1024 need privileges: choose a port above 1023"
        super().__init__(f"cannot listen on {host}:{port}: {reason}")


class LoadFailure(Exception):
    """The version could not be loaded; `record` is the feedback record for the termination log."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(record.get("message", "load failed"))
        self.record = record


def load_monitor(
    code_dir: str, log: JsonLogger, spec_file: str | None = None
) -> tuple[Any, dict[str, Any], MonitorHost]:
    """Verify and import the version, then build its `Monitor` under the guard.

    The spec is the manifest's, or the mounted `spec_file` (a ModelMonitor manifest or a bare spec, YAML
    or JSON) when given. Returns (manifest dict, spec, host); raises LoadFailure with a feedback record.
    """
    from monitor_runtime import contract, toolkit  # toolkit first: the guard refuses imports it did not vet

    guard = guard_factory()
    # Events the generated code emits through the toolkit land in the same JSON log as the runtime's own.
    toolkit.set_event_sink(lambda event_type, details: log.poet_event(event_type, **details))
    identity: dict[str, Any] = {"monitor": Path(code_dir).name, "version": None, "model": ""}
    try:
        manifest = contract.read_manifest(code_dir)
        identity.update(monitor=manifest.monitor, version=manifest.version, model=manifest.model)
        # Files are read and hashed unguarded; only executing the verified bytes happens under the guard.
        manifest, code = contract.verify_version_dir(code_dir)
        code_file = str(Path(code_dir) / contract.CODE_FILE)
        spec = dict(manifest.spec) if spec_file is None else read_spec_file(spec_file)
        host = MonitorHost(None, guard)

        def build() -> Any:
            module = contract.import_code(
                code, module_name=f"poet_monitor_v{manifest.version}", filename=code_file
            )
            return contract.monitor_class_of(module, filename=code_file)(dict(spec), toolkit)

        host.construct(build)
    except contract.ContractError as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, BaseException) else exc
        raise LoadFailure(_load_record(identity, exc, cause)) from exc
    except Exception as exc:
        raise LoadFailure(_load_record(identity, exc, exc)) from exc
    info = manifest.to_dict()
    log.bind(monitor=manifest.monitor, version=manifest.version)
    if spec_file is not None:
        log("runtime.spec_file", path=spec_file, same_as_manifest=spec == dict(manifest.spec))
    return info, spec, host


class SpecFileError(ValueError):
    """A mounted spec file that cannot be used."""


def read_spec_file(path: str) -> dict[str, Any]:
    """The spec mapping of a mounted file: the `spec` of a ModelMonitor manifest, or a bare spec."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecFileError(f"spec file {path}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise SpecFileError(f"spec file {path}: not valid YAML or JSON ({exc})") from None
    if isinstance(data, Mapping) and data.get("kind") == "ModelMonitor":
        data = data.get("spec")
    if not isinstance(data, Mapping) or "model" not in data:
        raise SpecFileError(
            f"spec file {path}: expected a ModelMonitor manifest or a spec mapping with `model`"
        )
    return dict(data)


def _load_record(identity: Mapping[str, Any], exc: BaseException, cause: BaseException) -> dict[str, Any]:
    return feedback_record(
        phase="load",
        signature=exception_signature(cause),
        version=identity.get("version"),
        monitor=str(identity.get("monitor", "")),
        model=str(identity.get("model", "")),
        message=str(exc),
        traceback_text=format_traceback(cause),
        profile={},
        failures={},
    )


class MonitorProcess:
    """One running monitor: the runtime, its HTTP server, the checkpoint loop and the exit code."""

    def __init__(
        self,
        manifest: Mapping[str, Any],
        spec: Mapping[str, Any],
        host: MonitorHost,
        *,
        settings: RuntimeSettings,
        log: JsonLogger,
        checkpoint_dir: str | None,
        termination_log: str | None,
        reference_file: str | None = None,
        history_file: str | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.checkpoint_dir = checkpoint_dir
        self.reference_file = reference_file
        self.history_file = history_file
        self.termination_log = termination_log
        self.exit_code = EXIT_OK
        self.stop_event = asyncio.Event()
        generator = manifest.get("generator") or {}
        self.identity = {
            "monitor": manifest.get("monitor"),
            "model": manifest.get("model"),
            "version": manifest.get("version"),
            "generator": generator.get("kind", "") if isinstance(generator, Mapping) else str(generator),
            "code_sha256": manifest.get("codeSha256"),
        }
        predictions = spec.get("predictions") or {}
        self.metrics = RuntimeMetrics(
            max_features=settings.max_metric_features,
            log=log,
            classes=predictions.get("classes") if isinstance(predictions, Mapping) else None,
            max_classes=settings.max_metric_classes,
        )
        self.metrics.set_info(
            monitor=str(self.identity["monitor"]),
            model=str(self.identity["model"]),
            version=str(self.identity["version"]),
            generator=str(self.identity["generator"]),
        )
        reference = spec.get("reference") or {}
        self.reserve = MemoryReserve()
        self.evaluator = Evaluator(
            host,
            plan=plan_window(spec),
            settings=settings,
            metrics=self.metrics,
            log=log,
            identity=self.identity,
            on_fatal=self._fatal,
            bootstrap_reference=reference_from_first_window(spec),
            reference_size=reference.get("size") if isinstance(reference, Mapping) else None,
            reserve=self.reserve,
        )
        self.runtime = Runtime(
            evaluator=self.evaluator,
            metrics=self.metrics,
            settings=settings,
            identity=self.identity,
            spec=spec,
        )
        if spec.get("allowUnknownFeatures", spec.get("allow_unknown_features", True)) is False:
            self.runtime.settings = replace(settings, unknown_columns="reject")
        self.runtime.on_reference_changed = self._checkpoint_soon
        self._pending_checkpoint: asyncio.Task[bool] | None = None
        self.evaluator.on_history_changed = self._save_history_soon
        self._history_writer: asyncio.Task[None] | None = None
        self._history_unsaved = False
        # One checkpoint at a time: the periodic, the reference's and the final one share a file.
        self._checkpoint_lock = asyncio.Lock()
        self.app = build_app(self.runtime)

    def _checkpoint_soon(self) -> None:
        """A checkpoint now, in the background (one at a time), instead of at the next periodic one."""
        if self.checkpoint_dir and (self._pending_checkpoint is None or self._pending_checkpoint.done()):
            self._pending_checkpoint = asyncio.get_running_loop().create_task(
                self.checkpoint(), name="poet-checkpoint-reference"
            )

    def _save_history_soon(self) -> None:
        """Save the history beside the checkpoint now, in the background: one write at a time, and one more
        after it when the history changed meanwhile (no write is skipped, none piles up)."""
        if not self.checkpoint_dir:
            return
        self._history_unsaved = True
        if self._history_writer is None or self._history_writer.done():
            self._history_writer = asyncio.get_running_loop().create_task(
                self._write_history(self.checkpoint_dir), name="poet-history"
            )

    async def _write_history(self, checkpoint_dir: str) -> None:
        loop = asyncio.get_running_loop()
        while self._history_unsaved:
            self._history_unsaved = False
            # Entries never change once added: a copy of the list can be encoded off the event loop.
            history = self.evaluator.history.to_json()
            try:
                text = await loop.run_in_executor(None, json_safe.dumps, history)
                await loop.run_in_executor(None, ckpt.save_history, checkpoint_dir, text)
            except Exception as exc:
                self.metrics.errors.labels("checkpoint").inc()
                self.log("history.save_failed", level="error", error=repr(exc)[:500])
                return

    # ------------------------------------------------------------ crash

    async def _fatal(self, record: dict[str, Any]) -> None:
        """Generated code kept failing, or memory ran out: write the feedback record and stop with a non-zero
        code (3 when the record's reason is `OOMKilled`, else 1)."""
        data = write_termination_message(self.termination_log, record)
        self.log(
            "runtime.crash",
            level="error",
            termination_log=self.termination_log,
            bytes=len(data),
            signature=record.get("signature"),
            reason=record.get("message"),
            # Without a termination log the log line is the record's only copy.
            **({} if self.termination_log else {"record": record}),
        )
        self.log.poet_event(
            "runtime.crashed", signature=record.get("signature"), version=record.get("version")
        )
        out_of_memory = record.get("reason") == OUT_OF_MEMORY_REASON
        self.exit_code = EXIT_OUT_OF_MEMORY if out_of_memory else EXIT_CRASH
        self.stop_event.set()

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """MemoryErrors no handler sees (asyncio's own socket reads drop the connection) count as the
        requests' own do; everything goes on to asyncio's default handler, which logs it."""
        if isinstance(context.get("exception"), MemoryError) and not self.evaluator.fatal:
            try:
                loop.create_task(self.evaluator.request_memory_error(context["exception"], "(connection)"))
            except MemoryError:
                # Not even the task that counts it could be made: with no room at all the loop would only
                # spin on this error (its wake-up reads fail too). The reserve is for ending well.
                self.reserve.release()
                with contextlib.suppress(MemoryError):
                    loop.create_task(self.evaluator.out_of_memory(context["exception"], "no memory left"))
        with contextlib.suppress(MemoryError):
            loop.default_exception_handler(context)

    # ------------------------------------------------------------ checkpoints

    async def checkpoint(self) -> bool:
        """Write a checkpoint now (monitor `state()` plus runtime state); False when it was not written."""
        if not self.checkpoint_dir:
            return False
        async with self._checkpoint_lock:
            return await self._write_checkpoint(self.checkpoint_dir)

    async def _write_checkpoint(self, checkpoint_dir: str) -> bool:
        try:
            monitor_state, runtime_state = await self.evaluator.snapshot()
            # Clean as of this snapshot: what changes while it is written (an evaluation that finishes
            # meanwhile) marks the state dirty again and goes into the next checkpoint. Cleared after the
            # write instead, that evaluation was never written until something else changed.
            self.evaluator.dirty = False
            state = {
                "format": CHECKPOINT_FORMAT,
                "code_sha256": self.identity["code_sha256"],
                "version": self.identity["version"],
                "saved_at": time.time(),
                "monitor_state": monitor_state,
                "runtime": runtime_state,
                "reference_kinds": self.runtime.reference_kinds,
                "batches": self.runtime.batches,
                "unknown_columns": sorted(self.runtime.unknown_columns),
            }
            loop = asyncio.get_running_loop()
            # The trackers copy their data under their own locks on the pool thread, with the encoding.
            trackers = (self.runtime.distributions, self.runtime.quality)
            path = await loop.run_in_executor(None, _save_checkpoint, checkpoint_dir, state, *trackers)
        except Exception as exc:
            self.evaluator.dirty = True  # not written: the next tick tries again
            self.metrics.errors.labels("checkpoint").inc()
            self.log(
                "checkpoint.failed", level="error", error=repr(exc)[:500], traceback=format_traceback(exc)
            )
            return False
        self.log(
            "checkpoint.saved",
            path=str(path),
            rows_ingested=runtime_state["rows_ingested"],
            rows_evaluated=runtime_state["rows_evaluated"],
        )
        return True

    async def resume(self) -> None:
        """Resume from the checkpoint directory: the checkpoint when it holds this very code, then the
        history saved beside it (newer than the checkpoint's when the process was killed between two)."""
        await self._resume_checkpoint()
        await self._merge_saved_history()

    async def _merge_saved_history(self) -> None:
        if not self.checkpoint_dir:
            return
        path = Path(self.checkpoint_dir) / ckpt.HISTORY_NAME
        loop = asyncio.get_running_loop()
        try:
            # Its own file, written by this runtime: the size bound is only a sanity check.
            entries = await loop.run_in_executor(None, _read_history_file, str(path), 1 << 30)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            self.log("history.unreadable", level="warning", path=str(path), error=str(exc)[:500])
            return
        held = self.evaluator.history.merge(entries)
        self.log("history.resumed", path=str(path), entries=len(entries), held=held)

    async def _resume_checkpoint(self) -> None:
        if not self.checkpoint_dir:
            return
        try:
            state = await asyncio.get_running_loop().run_in_executor(
                None, ckpt.load_checkpoint, self.checkpoint_dir
            )
        except (ckpt.CheckpointError, OSError, ValueError) as exc:
            self.log("checkpoint.unreadable", level="warning", error=str(exc)[:500])
            return
        if state is None:
            return
        # The history is plain data, kept across versions: the report marks where the version changed.
        runtime = state.get("runtime")
        history = runtime.get("history") if isinstance(runtime, Mapping) else None
        if isinstance(history, Mapping):
            self.evaluator.history = EvaluationHistory.from_json(history, self.settings.history_size)
        if state.get("code_sha256") != self.identity["code_sha256"]:
            self.log(
                "checkpoint.skipped",
                level="warning",
                reason="checkpoint was written by other code; starting fresh",
                checkpoint_version=state.get("version"),
            )
            return
        try:
            # Everything the runtime restores is read and checked before the monitor's state is touched.
            restored = _RestoredState.from_state(state)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            # A checkpoint that cannot be restored must not stop the pod from starting, again and again.
            self.log("checkpoint.unreadable", level="warning", error=str(exc)[:500])
            return
        try:
            await self.evaluator.host.call("restore", state.get("monitor_state"))
        except Exception as exc:
            self.metrics.errors.labels("checkpoint").inc()
            self.log(
                "checkpoint.restore_failed",
                level="error",
                error=repr(exc)[:500],
                signature=exception_signature(exc),
                traceback=format_traceback(exc),
            )
            return
        self.evaluator.restore_runtime_state(restored.runtime)
        self.runtime.reference_kinds = restored.reference_kinds
        if restored.distributions is not None:
            self.runtime.distributions = restored.distributions
            self.evaluator.on_evaluated = self.runtime.distributions.add_current
        if restored.quality is not None:
            self.runtime.quality = restored.quality
        self.runtime.batches = restored.batches
        self.runtime.unknown_columns = restored.unknown_columns
        self.log.poet_event(
            "runtime.resumed",
            saved_at=state.get("saved_at"),
            rows_ingested=self.evaluator.rows_ingested,
            pending_rows=self.evaluator.pending_rows,
        )

    async def load_reference_file(self) -> bool:
        """Take the reference from `--reference-file` (npz) when the checkpoint did not restore one.

        The file goes through the same path as `POST /v1/reference`. A missing file is the normal case
        before any pod of the monitor had a reference; an unusable one is logged and ignored, since the
        monitor can still get its reference from the first window or an upload. True when it was loaded.
        """
        path = self.reference_file
        if not path:
            return False
        if self.evaluator.has_reference:
            held = self.evaluator.reference
            self.log(
                "reference.file_skipped",
                path=path,
                reason="the checkpoint restored a reference",
                sha256=held.encoded.sha256 if held is not None else None,
            )
            return False
        try:
            body = await asyncio.get_running_loop().run_in_executor(
                None, _read_reference_file, path, self.settings
            )
        except FileNotFoundError:
            self.log("reference.file_absent", path=path)
            return False
        except (OSError, ValueError) as exc:
            self._reference_file_refused(path, None, str(exc))
            return False
        try:
            status, answer = await self.runtime.reference_from_body(
                body, reference_npz.MEDIA_TYPE, source="file"
            )
        except BadRequest as exc:
            status, answer = exc.status, exc.body()
        if status != 200:
            self._reference_file_refused(path, status, str(answer.get("error")))
            return False
        self.log(
            "reference.file_loaded",
            path=path,
            rows=answer.get("reference_rows"),
            sha256=answer.get("sha256"),
        )
        return True

    async def load_history_file(self) -> bool:
        """Merge the history of `--history-file` (what the operator kept at the last promotion) into the one
        the checkpoint restored. Merging is idempotent (one entry per time and code), so a restarted
        container that merges the same file again holds the same history. A missing file is the normal case
        before any promotion; an unusable one is logged and ignored: the history only draws the report's
        charts, never a reason to stop. True when it was merged."""
        path = self.history_file
        if not path:
            return False
        limit = self.settings.max_body_bytes
        try:
            entries = await asyncio.get_running_loop().run_in_executor(None, _read_history_file, path, limit)
        except FileNotFoundError:
            self.log("history.file_absent", path=path)
            return False
        except (OSError, ValueError) as exc:
            self.log(
                "history.file_refused",
                level="error",
                path=path,
                error=str(exc)[:1000],
                consequence="the file is ignored: the history holds this pod's own evaluations only",
            )
            return False
        held = self.evaluator.history.merge(entries)
        self.evaluator.history_changed()
        versions = sorted({str(e.get("version")) for e in entries})
        self.log("history.file_loaded", path=path, entries=len(entries), held=held, versions=versions)
        return True

    def _reference_file_refused(self, path: str, status: int | None, error: str) -> None:
        self.log(
            "reference.file_refused",
            level="error",
            path=path,
            status=status,
            error=error[:1000],
            consequence="the file is ignored: the monitor waits for POST /v1/reference or its first window",
        )

    async def _checkpoint_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.checkpoint_interval_s)
            if self.evaluator.dirty:
                await self.checkpoint()

    # ------------------------------------------------------------ serving

    async def start(self, host: str, port: int) -> int:
        """Resume, bind and start evaluating; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        loop.set_exception_handler(self._loop_exception)
        await start_threads()
        await self.resume()
        await self.load_reference_file()
        await self.load_history_file()
        self._runner = web.AppRunner(
            self.app,
            shutdown_timeout=self.settings.shutdown_grace_s,
            access_log=None,
            # The app decodes Content-Encoding itself, with JSON errors and the decoded size capped.
            auto_decompress=False,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ListenError(host, port, exc) from None
        addresses = self._runner.addresses
        bound_port = int(addresses[0][1]) if addresses else port
        self.evaluator.start()
        # Everything loaded so far (modules, the monitor, the reference) lives as long as the process: out
        # of the collector's sight, each full collection no longer walks it. Measured: 0.2-0.4 ms less CPU per
        # request (gc.freeze's purpose; objects frozen here are still freed by reference counting).
        gc.freeze()
        self._ticker = loop.create_task(self._checkpoint_loop(), name="poet-checkpoints")
        self.runtime.ready = True
        self.log(
            "runtime.started",
            host=host,
            port=bound_port,
            pid=os.getpid(),
            window=self.evaluator.plan.as_dict(),
            has_reference=self.evaluator.has_reference,
            reference=self.evaluator.reference.summary() if self.evaluator.reference is not None else None,
        )
        return bound_port

    async def wait(self) -> int:
        """Serve until SIGTERM/SIGINT, `stop()` or a crash, then shut down gracefully; the exit code."""
        await self.stop_event.wait()
        # Readiness goes first, in-flight requests finish, then evaluation, then the last checkpoint; all of
        # it within `shutdown_deadline_s`, so the pod is never killed mid-way by its grace period.
        deadline = time.monotonic() + self.settings.shutdown_deadline_s
        self.runtime.shutting_down = True
        self.log("runtime.stopping", exit_code=self.exit_code)
        self._ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticker
        await self._drain(min(self.settings.shutdown_grace_s, _left(deadline)))
        try:
            # aiohttp's cleanup waits for handlers still running (a slow reference call) on its own timer.
            await asyncio.wait_for(self._runner.cleanup(), timeout=max(0.1, _left(deadline)))
        except TimeoutError:
            self.log("runtime.drain_timeout", level="warning", in_flight=self.runtime.in_flight)
        if not await self.evaluator.stop(timeout=max(0.1, _left(deadline))):
            self.log(
                "runtime.shutdown_deadline",
                level="warning",
                message="the evaluation in progress was abandoned at the shutdown deadline; the last "
                "periodic checkpoint stands",
                deadline_s=self.settings.shutdown_deadline_s,
            )
        elif self.exit_code == EXIT_OUT_OF_MEMORY:
            # The window may be half updated, and saving it needs memory there is none of: the last periodic
            # checkpoint stands, as when the kernel kills a container at its limit.
            self.log("checkpoint.skipped", reason="out of memory: the last periodic checkpoint stands")
        elif not self.evaluator.host.stuck:  # a stuck worker would never answer state()
            if self._history_writer is not None and not self._history_writer.done():
                await asyncio.wait([self._history_writer], timeout=max(0.1, _left(deadline)))
            try:
                await asyncio.wait_for(self.checkpoint(), timeout=_left(deadline))
            except TimeoutError:
                # The write is atomic (temporary file, then rename): the previous checkpoint stays valid.
                self.evaluator.host.abandon()
                self.log(
                    "runtime.shutdown_deadline",
                    level="warning",
                    message="the final checkpoint did not finish by the shutdown deadline; the last "
                    "periodic checkpoint stands",
                    deadline_s=self.settings.shutdown_deadline_s,
                )
        self.evaluator.host.close()
        self.log("runtime.stopped", exit_code=self.exit_code)
        return self.exit_code

    async def _drain(self, timeout: float) -> None:
        """Close the listener, then let requests in progress finish (bodies still arriving included).

        aiohttp's own cleanup stops reading from connections at once, which would cut off a request
        whose body is still in transit; so the runtime waits for its own in-flight count first.
        """
        for site in list(self._runner.sites):
            await site.stop()
        try:
            await asyncio.wait_for(self.runtime.idle.wait(), timeout=timeout)
        except TimeoutError:
            self.log("runtime.drain_timeout", level="warning", in_flight=self.runtime.in_flight)

    def stop(self) -> None:
        """Ask the process to shut down (as SIGTERM does)."""
        self.stop_event.set()

    async def run(self, host: str, port: int) -> int:
        """Start, serve until told to stop, shut down; the exit code."""
        await self.start(host, port)
        return await self.wait()

    def _on_signal(self, sig: signal.Signals) -> None:
        self.log("runtime.signal", signal=sig.name)
        self.stop_event.set()


def _save_checkpoint(
    directory: str, state: dict[str, Any], distributions: DistributionTracker, quality: PredictionQuality
) -> Path:
    """Write the checkpoint with the report's trackers as data (runs on a pool thread)."""
    return ckpt.save_checkpoint(
        directory, {**state, "distributions": distributions.to_state(), "quality": quality.to_state()}
    )


@dataclass
class _RestoredState:
    """What the runtime takes back from a checkpoint of its own code, read and checked as a whole."""

    runtime: RuntimeState
    reference_kinds: dict[str, str]
    distributions: DistributionTracker | None
    quality: PredictionQuality | None
    batches: int
    unknown_columns: set[str]

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> _RestoredState:
        """ValueError naming the field that is wrong."""
        layout = state.get("format")
        if layout != CHECKPOINT_FORMAT:
            raise ValueError(f"format: checkpoint layout {layout!r}; this runtime reads {CHECKPOINT_FORMAT}")
        kinds = object_of(state.get("reference_kinds", {}), "reference_kinds")
        unknown = list_of(state.get("unknown_columns", []), "unknown_columns")
        if not all(isinstance(v, str) for v in [*kinds.values(), *unknown]):
            raise ValueError("reference_kinds, unknown_columns: expected column kinds and names as str")
        distributions, quality = state.get("distributions"), state.get("quality")
        return cls(
            runtime=RuntimeState.from_state(state.get("runtime", {})),
            reference_kinds=dict(kinds),
            distributions=None if distributions is None else DistributionTracker.from_state(distributions),
            quality=None if quality is None else PredictionQuality.from_state(quality),
            batches=integer(state.get("batches", 0), "batches"),
            unknown_columns=set(unknown),
        )


def _read_reference_file(path: str, settings: RuntimeSettings) -> bytes:
    size = os.stat(path).st_size
    if size > settings.max_reference_bytes:
        raise ValueError(
            f"{size} bytes; the limit is {settings.max_reference_bytes} (POET_MAX_REFERENCE_BYTES)"
        )
    return Path(path).read_bytes()


def _read_history_file(path: str, max_bytes: int) -> list[dict[str, Any]]:
    size = os.stat(path).st_size
    if size > max_bytes:
        raise ValueError(f"{size} bytes; the limit is {max_bytes} (POET_MAX_BODY_BYTES)")
    return decode_history_file(Path(path).read_bytes(), max_bytes=max_bytes)


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def serve(
    code_dir: str,
    host: str = "0.0.0.0",
    port: int = 8080,
    checkpoint_dir: str | None = None,
    termination_log: str | None = None,
    reference_file: str | None = None,
    history_file: str | None = None,
) -> int:
    """`poetmon serve`: run one monitor version until told to stop; the process exit code.

    `termination_log` None means the pod default inside a pod and no file elsewhere (`termination_log_path`).
    A version that cannot load or an address that cannot be bound ends the process with EXIT_LOAD and one
    line on stderr, besides the JSON log on stdout.
    """
    log = JsonLogger()
    termination_log = termination_log_path(termination_log)
    try:
        settings = RuntimeSettings.from_env()
    except ValueError as exc:
        record = feedback_record(
            phase="load",
            signature={"exception": "ValueError", "location": "settings"},
            version=None,
            monitor=Path(code_dir).name,
            message=str(exc),
        )
        write_termination_message(termination_log, record)
        log("runtime.bad_settings", level="error", error=str(exc))
        _say(f"invalid settings: {exc}")
        return EXIT_LOAD
    checkpoint_dir = checkpoint_dir or os.environ.get("POET_CHECKPOINT_DIR") or None
    try:
        manifest, spec, host_ = load_monitor(code_dir, log, os.environ.get("POET_SPEC_FILE") or None)
    except LoadFailure as failure:
        data = write_termination_message(termination_log, failure.record)
        log(
            "runtime.load_failed",
            level="error",
            code_dir=code_dir,
            error=failure.record.get("message"),
            termination_log=termination_log,
            bytes=len(data),
            # A refused version (a file missing or unreadable, a wrong hash) is explained by its message;
            # the traceback would only show the runtime's own frames. Generated code's failures keep it.
            traceback=None if _refused_version(failure.record) else failure.record.get("traceback"),
        )
        _say(f"cannot load the version in {code_dir}: {failure.record.get('message')}")
        return EXIT_LOAD
    proc = MonitorProcess(
        manifest,
        spec,
        host_,
        settings=settings,
        log=log,
        checkpoint_dir=checkpoint_dir,
        termination_log=termination_log,
        reference_file=reference_file,
        history_file=history_file,
    )
    runner = asyncio.Runner()
    try:
        code = runner.run(proc.run(host, port))
    except ListenError as exc:
        # Nothing in the version is at fault, so no feedback record: the operator must not regenerate it.
        _close_loop(runner, log)
        host_.close()
        log("runtime.listen_failed", level="error", host=host, port=port, error=str(exc))
        _say(str(exc))
        return EXIT_LOAD
    closed = _close_loop(runner, log)
    if host_.stuck or not closed:
        # The abandoned worker thread, or an executor left unjoined, would keep the interpreter from exiting
        # (or fail it on the way out and change its status); the record is written.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _close_loop(runner: asyncio.Runner, log: JsonLogger) -> bool:
    """Close the event loop; False when that failed. Out of memory (the case that ends with status 3), the
    loop's executor cannot start the thread that joins its workers ("can't start new thread", as under
    RLIMIT_AS), and the exit status decided before must not become that error's."""
    try:
        runner.close()
    except (RuntimeError, MemoryError) as exc:
        with contextlib.suppress(Exception):
            log("runtime.shutdown_incomplete", level="warning", error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def _refused_version(record: Mapping[str, Any]) -> bool:
    signature = record.get("signature") or {}
    return isinstance(signature, Mapping) and signature.get("exception") == "ContractError"


def _say(message: str) -> None:
    """One line for a person at a terminal (stdout carries the JSON log)."""
    line = " ".join(message.split())  # one line, whatever the exception's text holds
    print(f"poetmon serve: {line}", file=sys.stderr, flush=True)


__all__ = [
    "EXIT_OUT_OF_MEMORY",
    "ListenError",
    "LoadFailure",
    "MonitorProcess",
    "load_monitor",
    "read_spec_file",
    "serve",
]
