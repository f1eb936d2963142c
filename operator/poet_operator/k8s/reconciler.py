"""The reconcile loop: read the world, let the rollout machine decide, write the status, carry out actions.

One operator process serves every monitor with a handful of asyncio workers over one queue (no task, thread
or process per monitor). A monitor is never reconciled by two workers at once; a request that arrives while
it is being reconciled runs again right after. Generation runs on a small thread pool and reports back by
queueing the monitor. The status is written before anything else is done and with the resourceVersion it
was read at, so a conflicting writer makes this pass start over from a fresh read instead of being lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poet_operator.k8s import builders
from poet_operator.k8s.api import ApiError, KubeApi, apps_path, core_path, merge_patch_between, monitor_path
from poet_operator.k8s.defaults import SpecDefaults
from poet_operator.k8s.effects import Effects
from poet_operator.k8s.metrics import OperatorMetrics
from poet_operator.k8s.observe import (
    LABEL_MONITOR,
    belongs_to,
    deployment_observation,
    needs_log_tail,
    pod_observation,
    runtime_report,
    version_info,
)
from poet_operator.rollout.actions import Decision
from poet_operator.rollout.machine import Policy, decide
from poet_operator.rollout.observations import Observation, RuntimeReport
from poet_operator.rollout.status import MonitorStatus
from poet_operator.spec import MonitorSpec, SpecError

log = logging.getLogger("poet_operator.reconciler")
Key = tuple[str, str]

RUNTIME_PORT = 8080
LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class OperatorConfig:
    """Operator-wide settings (from `poetmon operator` flags and the chart's values)."""

    runtime_image: str
    operator_namespace: str = "poet-system"
    prometheus_url: str | None = None
    lessons_configmap: str = "poet-monitor-lessons"
    reconcile_workers: int = 4
    generation_workers: int = 2
    report_timeout: float = 3.0
    policy: Policy = field(default_factory=Policy)
    spec_defaults: SpecDefaults = field(default_factory=SpecDefaults)


class Reconciler:
    """A work queue of monitors, each reconciled serially, with delayed re-queues for timed steps."""

    def __init__(
        self,
        api: KubeApi,
        config: OperatorConfig,
        metrics: OperatorMetrics | None = None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.config = config
        self.metrics = metrics or OperatorMetrics()
        self.clock = clock
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._running: set[Key] = set()
        self._again: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._workers: list[asyncio.Task[None]] = []
        self._executor = ThreadPoolExecutor(
            max_workers=config.generation_workers, thread_name_prefix="poet-gen"
        )
        self.effects = Effects(api, config, self.metrics, self._executor, self.enqueue)
        self.reconciled = 0

    # -- the queue -------------------------------------------------------------------------------------------

    def enqueue(self, namespace: str, name: str, *, after: float | None = None) -> None:
        key = (namespace, name)
        if after is not None and after > 0:
            loop = asyncio.get_running_loop()
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            self._timers[key] = loop.call_later(after, self._fire, key)
            return
        if key in self._running:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(*key)

    async def start(self) -> None:
        self._workers = [
            asyncio.create_task(self._worker(), name=f"poet-reconciler-{i}")
            for i in range(self.config.reconcile_workers)
        ]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.effects.cancel_generations()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            self._running.add(key)
            try:
                await self.reconcile(*key)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                self.metrics.reconciles.labels(result="error").inc()
                log.warning("reconcile %s/%s: %s", key[0], key[1], exc)
                self.enqueue(*key, after=10.0)
            except Exception:
                self.metrics.reconciles.labels(result="error").inc()
                log.exception("reconcile %s/%s failed", key[0], key[1])
                self.enqueue(*key, after=30.0)
            finally:
                self._running.discard(key)
                if key in self._again:
                    self._again.discard(key)
                    self.enqueue(*key)

    def stats(self) -> dict[str, int]:
        return {
            "queued": len(self._queued),
            "running": len(self._running),
            "timers": len(self._timers),
            "generating": self.effects.generating_count(),
            "reconciled": self.reconciled,
        }

    # -- one pass --------------------------------------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str) -> Decision | None:
        key = (namespace, name)
        obj = await self.api.get_or_none(monitor_path(namespace, name))
        if obj is None:
            self._forget(key)
            return None
        raw_status = obj.get("status") or {}
        try:
            status = MonitorStatus.from_obj(raw_status)
        except ValueError:
            log.warning("status of %s/%s is unreadable; starting from an empty one", namespace, name)
            status = MonitorStatus()
        observation = await self.observe(obj, status)
        decision = decide(status, observation, self.config.policy)
        new_status = decision.status.to_dict()
        if new_status != raw_status:
            patch: dict[str, Any] = {"status": merge_patch_between(raw_status, new_status)}
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                patch["metadata"] = {"resourceVersion": version}
            try:
                await self.api.merge_patch(monitor_path(namespace, name, "status"), patch)
            except ApiError as exc:
                if exc.conflict:
                    self.metrics.reconciles.labels(result="conflict").inc()
                    self.enqueue(namespace, name)
                    return None
                if exc.not_found:
                    self._forget(key)
                    return None
                raise
        self.effects.consume_outcome(key, observation.outcome)
        await self.effects.carry_out(obj, observation, decision)
        self._record(namespace, name, decision)
        if decision.requeue_after is not None:
            self.enqueue(namespace, name, after=decision.requeue_after)
        self.reconciled += 1
        self.metrics.reconciles.labels(result="ok").inc()
        return decision

    def _forget(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self.effects.forget(key)
        self.metrics.set_phase(key[0], key[1], None)
        self.metrics.set_versions(key[0], key[1], None, None)

    def _record(self, namespace: str, name: str, decision: Decision) -> None:
        status = decision.status
        self.metrics.set_phase(namespace, name, status.phase)
        self.metrics.set_versions(namespace, name, status.stable_version, status.canary_version)
        if decision.rollout is not None:
            self.metrics.rollouts.labels(outcome=decision.rollout).inc()
        if decision.regenerated:
            self.metrics.regenerations.inc()
        if decision.fixed_after_seconds is not None:
            self.metrics.crash_to_fix.observe(decision.fixed_after_seconds)

    # -- observation -----------------------------------------------------------------------------------------

    async def observe(self, obj: Mapping[str, Any], status: MonitorStatus) -> Observation:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        selector = f"{LABEL_MONITOR}={name}"
        spec: MonitorSpec | None = None
        problems: tuple[tuple[str, str], ...] = ()
        try:
            raw_spec = self.config.spec_defaults.apply(obj.get("spec") or {})
            spec = MonitorSpec.from_mapping(raw_spec, path_prefix="spec")
        except SpecError as exc:
            problems = tuple(exc.problems)
        name_problem = builders.monitor_name_problem(name)
        if name_problem is not None:
            # The name becomes Service and label values: refuse it here with a condition, not a crash loop.
            spec, problems = None, (*problems, ("metadata.name", name_problem))
        version_maps, config_maps, deployments, pods = await asyncio.gather(
            self.api.list_items(
                core_path(namespace, "configmaps"), label_selector=f"{selector},{builders.LABEL_VERSION}"
            ),
            # The reference and history ConfigMaps hold up to a few MiB each, and only their annotations
            # are read here: their metadata alone, at every reconcile.
            self.api.list_items(
                core_path(namespace, "configmaps"),
                label_selector=f"{selector},!{builders.LABEL_VERSION}",
                metadata_only=True,
            ),
            self.api.list_items(apps_path(namespace, "deployments"), label_selector=selector),
            self.api.list_items(core_path(namespace, "pods"), label_selector=selector),
        )
        version_maps = [c for c in version_maps if belongs_to(c, name)]
        config_maps = [c for c in config_maps if belongs_to(c, name)]
        versions = {info.number: info for info in map(version_info, version_maps) if info is not None}
        reference = next(
            (
                c
                for c in config_maps
                if (c.get("metadata") or {}).get("name") == builders.reference_configmap_name(name)
            ),
            None,
        )
        stored_sha = (
            ((reference or {}).get("metadata") or {})
            .get("annotations", {})
            .get(builders.ANNOTATION_REFERENCE_SHA256)
        )
        history = next(
            (
                c
                for c in config_maps
                if (c.get("metadata") or {}).get("name") == builders.history_configmap_name(name)
            ),
            None,
        )
        history_annotations = ((history or {}).get("metadata") or {}).get("annotations") or {}
        deps = [
            d
            for d in (deployment_observation(d) for d in deployments if belongs_to(d, name))
            if d is not None
        ]
        pods = [p for p in pods if belongs_to(p, name)]
        tails = await asyncio.gather(*(self._log_tail(namespace, p, status.restarts_seen) for p in pods))
        observed_pods = tuple(
            o
            for o in (pod_observation(p, tail) for p, tail in zip(pods, tails, strict=True))
            if o is not None
        )
        reports = await self._reports(namespace, observed_pods)
        canary = next((d for d in deps if d.role == "canary"), None)
        query = None
        if spec is not None and canary is not None and status.canary_version is not None:
            query = await self.effects.analysis_query(namespace, name, spec, status.canary_version)
        key = (namespace, name)
        return Observation(
            now=self.clock(),
            generation=int(meta.get("generation") or 1),
            spec=spec,
            spec_problems=problems,
            annotations=dict(meta.get("annotations") or {}),
            versions=versions,
            generating=self.effects.generating(key),
            outcome=self.effects.outcome(key),
            stable=next((d for d in deps if d.role == "stable"), None),
            canary=canary,
            pods=observed_pods,
            reports=reports,
            analysis_query=query,
            reference_stored_sha256=stored_sha,
            history_stored_version=_int_or_none(history_annotations.get(builders.ANNOTATION_HISTORY_VERSION)),
        )

    async def _log_tail(self, namespace: str, pod: Mapping[str, Any], seen: Mapping[str, int]) -> str:
        if not needs_log_tail(pod, seen):
            return ""
        name = (pod.get("metadata") or {}).get("name")
        try:
            response = await self.api.call_raw(
                "GET",
                core_path(namespace, "pods", name, "log"),
                query={"container": "runtime", "previous": "true", "tailLines": str(LOG_TAIL_LINES)},
                accept="text/plain",
            )
        except ApiError as exc:
            log.info("no log tail for %s/%s: %s", namespace, name, exc)
            return ""
        return response.body.decode("utf-8", "replace")[-4000:]

    async def _reports(self, namespace: str, pods: tuple[Any, ...]) -> dict[str, RuntimeReport]:
        chosen = {}
        for pod in pods:
            if pod.ready and pod.role not in chosen:
                chosen[pod.role] = pod
        results = await asyncio.gather(*(self._report(namespace, p) for p in chosen.values()))
        return {role: report for role, report in zip(chosen, results, strict=True) if report is not None}

    async def _report(self, namespace: str, pod: Any) -> RuntimeReport | None:
        path = core_path(namespace, "pods", f"{pod.name}:{RUNTIME_PORT}", "proxy/v1/report")
        try:
            body = await self.api.call("GET", path, timeout=self.config.report_timeout)
        except (ApiError, ValueError) as exc:
            log.info("no report from %s/%s: %s", namespace, pod.name, exc)
            return None
        if not isinstance(body, Mapping):
            return None
        return runtime_report(body, pod.role)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["OperatorConfig", "Reconciler"]
