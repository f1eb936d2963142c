"""Carrying out the rollout machine's actions against the Kubernetes API. Every action is idempotent.

Nothing is decided here beyond "does the live object already match": which version runs where, what to
delete and when was decided by the machine. A refused call (403 and the like) becomes a Warning Event naming
the verb and resource, so a missing permission is visible on the monitor instead of only in the log.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from monitor_runtime.server.history import DEFAULT_LIMIT, EvaluationHistory, parse_history
from poet_operator.k8s import builders
from poet_operator.k8s.api import GROUP, VERSION, ApiError, KubeApi, apps_path, core_path, monitor_path
from poet_operator.k8s.metrics import OperatorMetrics
from poet_operator.k8s.observe import version_info
from poet_operator.poet.engine import confirm_healthy_version
from poet_operator.poet.produce import (
    ProducedVersion,
    lessons_from_json,
    lessons_to_json,
    previous_from_files,
    produce_version,
)
from poet_operator.poet.train.feedback import Feedback
from poet_operator.rollout.actions import (
    ClearAnnotation,
    Decision,
    DeleteVersions,
    Emit,
    EnsureDeployment,
    EnsureService,
    Generate,
    HandOffHistory,
    HandOffReference,
    RecordLessons,
    RemoveDeployment,
    StoreHistory,
)
from poet_operator.rollout.machine import rfc3339
from poet_operator.rollout.observations import GenerationOutcome, Observation, PodObservation
from poet_operator.spec import MonitorSpec

if TYPE_CHECKING:
    from poet_operator.k8s.reconciler import OperatorConfig

log = logging.getLogger("poet_operator.effects")
Key = tuple[str, str]
REFERENCE_CONTENT_TYPE = "application/vnd.poet.reference+npz"
RUNTIME_PORT = 8080
#: How soon a failed action is tried again.
RETRY_SECONDS = 15.0


class Effects:
    """The backend of the rollout machine on Kubernetes."""

    def __init__(
        self,
        api: KubeApi,
        config: OperatorConfig,
        metrics: OperatorMetrics,
        executor: ThreadPoolExecutor,
        requeue: Callable[..., None],
    ) -> None:
        self.api = api
        self.config = config
        self.metrics = metrics
        self.executor = executor
        self.requeue = requeue
        self._tasks: dict[Key, dict[int, asyncio.Task[None]]] = {}
        self._outcomes: dict[Key, GenerationOutcome] = {}
        self._event_seq = 0
        self._reference_warned: dict[Key, str] = {}
        self._lessons_recorded: set[tuple[str, str, int]] = set()
        self._failures_said: dict[tuple[str, str], set[tuple[str, str, int]]] = {}

    # -- generation bookkeeping ------------------------------------------------------------------------------

    def generating(self, key: Key) -> frozenset[int]:
        return frozenset(n for n, t in self._tasks.get(key, {}).items() if not t.done())

    def generating_count(self) -> int:
        return sum(len(self.generating(k)) for k in self._tasks)

    def outcome(self, key: Key) -> GenerationOutcome | None:
        return self._outcomes.get(key)

    def consume_outcome(self, key: Key, outcome: GenerationOutcome | None) -> None:
        """The status now records the outcome: it must not be delivered again."""
        if outcome is not None and self._outcomes.get(key) is outcome:
            del self._outcomes[key]

    def forget(self, key: Key) -> None:
        for task in self._tasks.pop(key, {}).values():
            task.cancel()
        self._outcomes.pop(key, None)
        self._failures_said.pop(key, None)

    async def cancel_generations(self) -> None:
        tasks = [t for per_key in self._tasks.values() for t in per_key.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # -- carrying out a decision -----------------------------------------------------------------------------

    async def carry_out(self, obj: Mapping[str, Any], observation: Observation, decision: Decision) -> None:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta["namespace"]), str(meta["name"])
        for action in decision.actions:
            try:
                await self._do(obj, observation, action)
            except ApiError as exc:
                log.warning("%s/%s: %s failed: %s", namespace, name, type(action).__name__, exc)
                if exc.forbidden:
                    await self._say_forbidden(obj, exc)
                elif not exc.conflict:
                    await self._say_failed(obj, exc, RETRY_SECONDS)
                self.requeue(namespace, name, after=RETRY_SECONDS)

    def _first_time(self, obj: Mapping[str, Any], exc: ApiError) -> bool:
        """Whether this refusal of this call is news for the monitor (the retries would repeat it)."""
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        said = self._failures_said.setdefault(key, set())
        if (exc.method, exc.path, exc.status) in said:
            return False
        said.add((exc.method, exc.path, exc.status))
        return True

    async def _say_forbidden(self, obj: Mapping[str, Any], exc: ApiError) -> None:
        """A refused call as a Warning Event, said once per refusal."""
        if self._first_time(obj, exc):
            await self._event(
                obj,
                "Warning",
                "Forbidden",
                f"the operator may not {exc.method} {exc.path}: {exc.message}; "
                "check the operator's ClusterRole (the chart's rbac values)",
            )

    async def _say_failed(self, obj: Mapping[str, Any], exc: ApiError, retry: float) -> None:
        """Any other failed call (a Service the API server cannot allocate, a quota, a webhook) as a Warning
        Event, said once per call and status: otherwise the monitor looks healthy while a part is missing."""
        if self._first_time(obj, exc):
            await self._event(
                obj,
                "Warning",
                "ApiCallFailed",
                f"{exc.method} {exc.path} failed: HTTP {exc.status} {exc.reason}: {exc.message}; "
                f"retried every {retry:g} s",
            )

    async def _do(self, obj: Mapping[str, Any], observation: Observation, action: Any) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        spec = observation.spec
        if isinstance(action, Emit):
            await self._event(obj, action.type, action.reason, action.message)
        elif isinstance(action, Generate):
            self._start_generation(obj, spec, action)
        elif isinstance(action, EnsureService):
            desired = builders.runtime_service(obj)
            await self._ensure(core_path(namespace, "services"), desired, patch_spec=False)
        elif isinstance(action, EnsureDeployment):
            if spec is None:
                return
            image = spec.runtime.image or self.config.runtime_image
            desired = builders.runtime_deployment(obj, spec, action.version, action.role, image)
            await self._ensure(apps_path(namespace, "deployments"), desired)
        elif isinstance(action, RemoveDeployment):
            await self.api.delete(
                apps_path(namespace, "deployments", builders.deployment_name(name, action.role))
            )
        elif isinstance(action, DeleteVersions):
            for number in action.versions:
                await self.api.delete(
                    core_path(namespace, "configmaps", builders.version_configmap_name(name, number))
                )
        elif isinstance(action, ClearAnnotation):
            await self.api.merge_patch(
                monitor_path(namespace, name), {"metadata": {"annotations": {action.key: None}}}
            )
        elif isinstance(action, RecordLessons):
            await self._record_lessons(namespace, name, action.version)
        elif isinstance(action, HandOffReference):
            await self._hand_off_reference(obj, observation, action.to_role)
        elif isinstance(action, HandOffHistory):
            await self._hand_off_history(obj, observation, action.to_role)
        elif isinstance(action, StoreHistory):
            await self._store_history(obj, observation, action.version)

    async def _ensure(self, collection: str, desired: Mapping[str, Any], *, patch_spec: bool = True) -> None:
        name = desired["metadata"]["name"]
        live = await self.api.get_or_none(f"{collection}/{name}")
        if live is None:
            live, created = await self._create_or_read(collection, desired)
            if created:
                return
        wanted: dict[str, Any] = {
            "apiVersion": desired["apiVersion"],
            "kind": desired["kind"],
            "metadata": {"labels": desired["metadata"].get("labels", {})},
        }
        if patch_spec:
            wanted["spec"] = desired["spec"]
        if not builders.is_up_to_date(live, wanted):
            await self.api.merge_patch(
                f"{collection}/{name}", {k: wanted[k] for k in ("metadata", "spec") if k in wanted}
            )

    async def _create_or_read(
        self, collection: str, desired: Mapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """Create `desired`: (the object, True); when another pass created it first, (that one, False)."""
        try:
            return await self.api.call("POST", collection, body=dict(desired)), True
        except ApiError as exc:
            if not exc.conflict:
                raise
        return await self.api.call("GET", f"{collection}/{desired['metadata']['name']}"), False

    # -- events ----------------------------------------------------------------------------------------------

    async def _event(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        meta = obj["metadata"]
        now = rfc3339(self._now())
        self._event_seq += 1
        # Named like client-go's events (object name, a dot, a unique suffix), never left to generateName.
        suffix = f"{time.time_ns():x}{self._event_seq:04x}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{suffix}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelMonitor",
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": "poet-monitor-operator"},
            "reportingComponent": "poet.dev/operator",
            "reportingInstance": os.environ.get("HOSTNAME", "poet-monitor-operator"),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.api.call("POST", core_path(meta["namespace"], "events"), body=event)
        except ApiError as exc:
            log.warning("event %s on %s/%s not recorded: %s", reason, meta["namespace"], meta["name"], exc)

    @staticmethod
    def _now() -> Any:
        from datetime import UTC, datetime

        return datetime.now(UTC)

    # -- generation ------------------------------------------------------------------------------------------

    def _start_generation(self, obj: Mapping[str, Any], spec: MonitorSpec | None, action: Generate) -> None:
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        running = self._tasks.setdefault(key, {})
        task = running.get(action.version)
        if spec is None or (task is not None and not task.done()):
            return
        running[action.version] = asyncio.create_task(
            self._generate(dict(obj), spec, action), name=f"poet-generate-{key[0]}-{key[1]}-v{action.version}"
        )

    async def _generate(self, obj: dict[str, Any], spec: MonitorSpec, action: Generate) -> None:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        try:
            outcome = await self._produce_and_store(obj, spec, action)
        except asyncio.CancelledError:
            raise
        except ApiError as exc:
            # A transient API failure must not reject the version: the pending generation is redone later.
            log.warning("generation of %s/%s v%d interrupted: %s", namespace, name, action.version, exc)
            if exc.forbidden:
                await self._say_forbidden(obj, exc)
            self._tasks.get(key, {}).pop(action.version, None)
            self.requeue(namespace, name, after=10.0)
            return
        self._failures_said.pop(key, None)  # allowed again: a later refusal is news
        self._outcomes[key] = outcome
        self._tasks.get(key, {}).pop(action.version, None)
        self.requeue(namespace, name)

    async def _produce_and_store(
        self, obj: Mapping[str, Any], spec: MonitorSpec, action: Generate
    ) -> GenerationOutcome:
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        cm_name = builders.version_configmap_name(name, action.version)
        existing = await self.api.get_or_none(core_path(namespace, "configmaps", cm_name))
        if existing is not None:
            info = version_info(existing)
            if info is not None:
                return GenerationOutcome(action.version, "written", action.spec_hash, info=info)
        previous = None
        if action.previous is not None:
            cm = await self.api.get_or_none(
                core_path(namespace, "configmaps", builders.version_configmap_name(name, action.previous))
            )
            data = (cm or {}).get("data") or {}
            if "monitor.py" in data and "manifest.json" in data:
                previous = previous_from_files(data["monitor.py"], data["manifest.json"])
        lessons_cm = await self.api.get_or_none(
            core_path(self.config.operator_namespace, "configmaps", self.config.lessons_configmap)
        )
        lessons = lessons_from_json(((lessons_cm or {}).get("data") or {}).get("lessons.json"))
        feedback = [Feedback.from_dict(f.to_dict()) for f in action.feedback]
        api_key = await self._llm_key(namespace, spec)
        loop = asyncio.get_running_loop()
        produced: ProducedVersion = await loop.run_in_executor(
            self.executor,
            lambda: produce_version(
                spec,
                monitor=name,
                version=action.version,
                feedback=feedback,
                previous=previous,
                lessons=lessons,
                llm_api_key=api_key,
            ),
        )
        self.metrics.generations.labels(generator=produced.generator, outcome=produced.status).inc()
        if produced.status == "enforce_failed":
            self.metrics.enforce_rejections.inc()
        if produced.llm_calls:
            self.metrics.llm_calls.inc(produced.llm_calls)
            self.metrics.llm_tokens.inc(produced.llm_tokens)
        if produced.status != "written":
            return GenerationOutcome(action.version, produced.status, action.spec_hash, produced.message)  # type: ignore[arg-type]
        config_map = builders.version_configmap(obj, action.version, produced.code, produced.manifest_json)
        stored, _ = await self._create_or_read(core_path(namespace, "configmaps"), config_map)
        info = version_info(stored) or version_info(config_map)
        return GenerationOutcome(action.version, "written", action.spec_hash, info=info)

    async def _llm_key(self, namespace: str, spec: MonitorSpec) -> str | None:
        llm = spec.generator.llm
        if spec.generator.kind != "llm" or llm is None:
            return None
        if llm.api_key_secret is not None:
            secret = await self.api.get_or_none(core_path(namespace, "secrets", llm.api_key_secret.name))
            value = ((secret or {}).get("data") or {}).get(llm.api_key_secret.key)
            if value:
                import base64

                return base64.b64decode(value).decode("utf-8").strip()
        return os.environ.get(llm.api_key_env) or None

    # -- lessons ---------------------------------------------------------------------------------------------

    async def _record_lessons(self, namespace: str, name: str, version: int) -> None:
        if (namespace, name, version) in self._lessons_recorded:
            return  # asked on every pass; after a restart the store itself says whether it is there
        await self._store_lessons(namespace, name, version)
        self._lessons_recorded.add((namespace, name, version))

    async def _store_lessons(self, namespace: str, name: str, version: int) -> None:
        cm = await self.api.get_or_none(
            core_path(namespace, "configmaps", builders.version_configmap_name(name, version))
        )
        manifest_text = ((cm or {}).get("data") or {}).get("manifest.json")
        if not manifest_text:
            return
        manifest = json.loads(manifest_text)
        path = core_path(self.config.operator_namespace, "configmaps")
        for _ in range(5):
            current = await self.api.get_or_none(f"{path}/{self.config.lessons_configmap}")
            store = lessons_from_json(((current or {}).get("data") or {}).get("lessons.json"))
            already = any(
                e.get("monitor") == name
                and e.get("namespace") == namespace
                and e.get("fixed_in_version") == version
                for lesson in store.lessons
                for e in lesson.evidence
                if isinstance(e, Mapping)
            )
            if already:
                return
            confirm_healthy_version(
                manifest,
                store,
                evidence={"namespace": namespace, "observed": "the version passed its canary analysis"},
            )
            text = lessons_to_json(store)
            try:
                if current is None:
                    await self.api.call(
                        "POST", path, body=builders.lessons_configmap(self.config.operator_namespace, text)
                    )
                else:
                    version_rv = (current.get("metadata") or {}).get("resourceVersion")
                    body: dict[str, Any] = {"data": {"lessons.json": text}}
                    if version_rv:
                        body["metadata"] = {"resourceVersion": version_rv}
                    await self.api.merge_patch(f"{path}/{self.config.lessons_configmap}", body)
                return
            except ApiError as exc:
                if not exc.conflict:
                    raise
        log.warning("lessons of %s/%s v%d not recorded: the store kept changing", namespace, name, version)

    # -- the reference ---------------------------------------------------------------------------------------

    async def _hand_off_reference(
        self, obj: Mapping[str, Any], observation: Observation, to_role: str | None
    ) -> None:
        namespace = obj["metadata"]["namespace"]
        stable = _ready_pod(observation, "stable")
        if stable is None:
            return
        response = await self.api.call_raw(
            "GET",
            _runtime_path(namespace, stable.name, "v1/reference"),
            accept=REFERENCE_CONTENT_TYPE,
        )
        body = response.body
        sha = response.headers.get("x-poet-reference-sha256", "")
        if to_role is not None:
            target = _ready_pod(observation, to_role)
            if target is not None:
                await self.api.call_raw(
                    "POST",
                    _runtime_path(namespace, target.name, "v1/reference"),
                    body=body,
                    content_type=REFERENCE_CONTENT_TYPE,
                )
        if sha and observation.reference_stored_sha256 != sha:
            try:
                desired = builders.reference_configmap(obj, body, sha)
            except ValueError as exc:
                key = (namespace, obj["metadata"]["name"])
                if self._reference_warned.get(key) != sha:
                    self._reference_warned[key] = sha
                    await self._event(
                        obj,
                        "Warning",
                        "ReferenceNotStored",
                        f"the reference could not be kept for new pods: {exc}; a pod started later (a "
                        "canary, a restart elsewhere) gets it from the stable pod while one is running",
                    )
                return
            await self._put_kept_configmap(namespace, desired)

    # -- the evaluation history -----------------------------------------------------------------------------

    def _history_path(self, namespace: str, pod: str) -> str:
        return _runtime_path(namespace, pod, "v1/history")

    async def _hand_off_history(self, obj: Mapping[str, Any], observation: Observation, to_role: str) -> None:
        """The stable pod's history merged into the `to_role` pod's through the pod proxy (JSON)."""
        namespace = obj["metadata"]["namespace"]
        stable = _ready_pod(observation, "stable")
        target = _ready_pod(observation, to_role)
        if stable is None or target is None:
            return
        history = await self.api.call("GET", self._history_path(namespace, stable.name))
        await self.api.call("POST", self._history_path(namespace, target.name), body=history)

    async def _store_history(self, obj: Mapping[str, Any], observation: Observation, version: int) -> None:
        """The promoted canary pod's history, merged with a stable pod's when one answers, stored in
        `NAME-history` marked with `version`: once per promotion, before the stable Deployment moves."""
        meta = obj["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        canary = _ready_pod(observation, "canary", version)
        if canary is None:
            return  # its pod is gone: nothing left to keep (the machine stops asking once none serves)
        body = await self.api.call("GET", self._history_path(namespace, canary.name))
        try:
            entries = parse_history(body)
            merged = EvaluationHistory(int(body.get("limit") or DEFAULT_LIMIT), entries)
        except (ValueError, TypeError) as exc:
            log.warning("%s/%s: the canary's history is unusable, not stored: %s", namespace, name, exc)
            return
        stable = _ready_pod(observation, "stable")
        if stable is not None:
            try:
                merged.merge(
                    parse_history(await self.api.call("GET", self._history_path(namespace, stable.name)))
                )
            except (ApiError, ValueError) as exc:
                # The canary's history holds what was handed to it; only the stable pod's latest are missed.
                log.info("%s/%s: the stable pod's history is not merged in: %s", namespace, name, exc)
        # Compressing (and cutting to size) a wide monitor's history takes a while: not on the event loop.
        desired = await asyncio.get_running_loop().run_in_executor(
            None,
            lambda: builders.history_configmap(obj, merged.as_list(), version=version, limit=merged.limit),
        )
        await self._put_kept_configmap(namespace, desired)

    async def _put_kept_configmap(self, namespace: str, desired: Mapping[str, Any]) -> None:
        """Create a kept ConfigMap (`NAME-reference`, `NAME-history`), or replace its annotations and
        binaryData when it exists (also when another pass created it between the read and the create)."""
        collection = core_path(namespace, "configmaps")
        path = f"{collection}/{desired['metadata']['name']}"
        if await self.api.get_or_none(path) is None and (await self._create_or_read(collection, desired))[1]:
            return
        await self.api.merge_patch(
            path,
            {
                "metadata": {"annotations": desired["metadata"].get("annotations", {})},
                "binaryData": desired.get("binaryData", {}),
            },
        )

    # -- canary analysis query -------------------------------------------------------------------------------

    async def analysis_query(
        self, namespace: str, name: str, spec: MonitorSpec, version: int
    ) -> tuple[bool, str] | None:
        analysis = spec.rollout.analysis
        if analysis.query is None or not self.config.prometheus_url:
            return None
        query = (
            analysis.query.replace("{{name}}", name)
            .replace("{{namespace}}", namespace)
            .replace("{{version}}", str(version))
            .replace("{{role}}", "canary")
        )
        url = (
            self.config.prometheus_url.rstrip("/")
            + "/api/v1/query?"
            + urllib.parse.urlencode({"query": query})
        )
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(None, lambda: _fetch_json(url, timeout=5.0))
        except (OSError, ValueError) as exc:
            return False, f"Prometheus did not answer: {exc}"
        value = prometheus_scalar(payload)
        if value is None:
            return False, f"the query returned no number: {query}"
        ok = (analysis.max_value is None or value <= analysis.max_value) and (
            analysis.min_value is None or value >= analysis.min_value
        )
        bounds = []
        if analysis.min_value is not None:
            bounds.append(f">= {analysis.min_value:g}")
        if analysis.max_value is not None:
            bounds.append(f"<= {analysis.max_value:g}")
        return ok, f"{value:g} (needs {' and '.join(bounds)})"


def _fetch_json(url: str, *, timeout: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def prometheus_scalar(payload: Any) -> float | None:
    """The one number a Prometheus instant query returned (a scalar, or a vector of one sample)."""
    data = (payload or {}).get("data") or {}
    result = data.get("result")
    try:
        if data.get("resultType") == "scalar":
            return float(result[1])
        if data.get("resultType") == "vector" and isinstance(result, list) and len(result) == 1:
            return float(result[0]["value"][1])
    except (TypeError, ValueError, KeyError, IndexError):
        return None
    return None


__all__ = ["Effects", "prometheus_scalar"]


def _runtime_path(namespace: str, pod: str, path: str) -> str:
    """A runtime pod's HTTP endpoint through the API server's pod proxy."""
    return core_path(namespace, "pods", f"{pod}:{RUNTIME_PORT}", f"proxy/{path}")


def _ready_pod(observation: Observation, role: str, version: int | None = None) -> PodObservation | None:
    """A ready pod of `role` (and `version`, when given), or None."""
    return next(
        (
            p
            for p in observation.pods
            if p.role == role and p.ready and (version is None or p.version == version)
        ),
        None,
    )
