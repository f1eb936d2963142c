"""Kubernetes objects read into the rollout machine's observations. Pure: dicts in, dataclasses out."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from poet_operator.rollout.machine import code_spec_hash
from poet_operator.rollout.observations import (
    DeploymentObservation,
    PodObservation,
    Role,
    RuntimeReport,
    Terminated,
    VersionInfo,
)

LABEL_MONITOR = "poet.dev/monitor"
LABEL_VERSION = "poet.dev/version"
LABEL_ROLE = "poet.dev/role"
RUNTIME_CONTAINER = "runtime"


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def belongs_to(obj: Mapping[str, Any], monitor: str) -> bool:
    """True when the object carries this monitor's label (selectors are applied again on the client side)."""
    return _labels(obj).get(LABEL_MONITOR) == monitor


def role_of(obj: Mapping[str, Any]) -> Role | None:
    role = _labels(obj).get(LABEL_ROLE)
    return role if role in ("stable", "canary") else None  # type: ignore[return-value]


def version_info(config_map: Mapping[str, Any]) -> VersionInfo | None:
    """A version ConfigMap as the machine sees it; None for anything that is not a readable version."""
    number = _int(_labels(config_map).get(LABEL_VERSION))
    data = config_map.get("data") or {}
    if number is None or "manifest.json" not in data:
        return None
    try:
        manifest = json.loads(data["manifest.json"])
    except ValueError:
        return None
    if not isinstance(manifest, dict):
        return None
    poet = manifest.get("poet") or {}
    remedies = tuple(
        f"{r.get('signature')}:{r.get('remedy')}"
        for r in poet.get("remedies") or []
        if isinstance(r, Mapping) and r.get("origin") in ("feedback", "carried", "lesson")
    )
    lessons = tuple(
        f"{x.get('signature')}:{x.get('remedy')}"
        for x in manifest.get("lessonsApplied") or []
        if isinstance(x, Mapping)
    )
    spec = manifest.get("spec") or {}
    return VersionInfo(
        number=number,
        config_map=str((config_map.get("metadata") or {}).get("name") or ""),
        spec_hash=code_spec_hash(spec) if isinstance(spec, dict) else "",
        generator=str((manifest.get("generator") or {}).get("kind") or "template"),
        code_sha256=str(manifest.get("codeSha256") or ""),
        feedback_answered=tuple(str(s) for s in manifest.get("answersFeedback") or []),
        lessons_applied=lessons,
        remedies=remedies,
        created=str(manifest.get("createdAt") or ""),
    )


def deployment_observation(deployment: Mapping[str, Any]) -> DeploymentObservation | None:
    role = role_of(deployment)
    if role is None:
        return None
    spec = deployment.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    # Counts describe the current template only once the controller has seen this generation.
    current = (
        _int(status.get("observedGeneration")) == _int(meta.get("generation"))
        or meta.get("generation") is None
    )
    conditions = status.get("conditions") or []
    exceeded = any(
        c.get("type") == "Progressing" and c.get("reason") == "ProgressDeadlineExceeded" for c in conditions
    )
    return DeploymentObservation(
        role=role,
        version=_int(template_labels.get(LABEL_VERSION)),
        replicas=_int(spec.get("replicas")) or 1,
        ready_replicas=(_int(status.get("readyReplicas")) or 0) if current else 0,
        updated_replicas=(_int(status.get("updatedReplicas")) or 0) if current else 0,
        progress_deadline_exceeded=exceeded,
    )


def _container_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == RUNTIME_CONTAINER:
            return status
    return statuses[0] if statuses else {}


def pod_observation(pod: Mapping[str, Any], log_tail: str = "") -> PodObservation | None:
    role = role_of(pod)
    if role is None:
        return None
    meta = pod.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return None  # a pod on its way out says nothing about the version
    container = _container_status(pod)
    last = (container.get("lastState") or {}).get("terminated")
    terminated = None
    if isinstance(last, Mapping):
        terminated = Terminated(
            exit_code=_int(last.get("exitCode")),
            reason=str(last.get("reason") or ""),
            message=str(last.get("message") or ""),
            finished_at=str(last.get("finishedAt") or ""),
        )
    waiting = (container.get("state") or {}).get("waiting") or {}
    return PodObservation(
        name=str(meta.get("name") or ""),
        role=role,
        version=_int(_labels(pod).get(LABEL_VERSION)),
        ready=bool(container.get("ready")),
        restart_count=_int(container.get("restartCount")) or 0,
        phase=str((pod.get("status") or {}).get("phase") or "Pending"),
        last_terminated=terminated,
        waiting_reason=str(waiting.get("reason") or ""),
        waiting_message=str(waiting.get("message") or "")[:500],
        log_tail=log_tail,
    )


def needs_log_tail(pod: Mapping[str, Any], restarts_seen: Mapping[str, int]) -> bool:
    """A new restart whose termination message is empty: the log tail is the only evidence."""
    observed = pod_observation(pod)
    if observed is None or observed.last_terminated is None:
        return False
    if observed.restart_count <= restarts_seen.get(observed.name, 0):
        return False
    return not observed.last_terminated.message.strip() and observed.last_terminated.reason != "OOMKilled"


def runtime_report(report: Mapping[str, Any], role: Role) -> RuntimeReport:
    """A runtime's `/v1/report` reduced to what the machine decides on."""
    version = report.get("version") or {}
    failures = report.get("failures") or {}
    features = report.get("features") or {}
    drifted = report.get("drifted_features")
    if not isinstance(drifted, list):
        drifted = [name for name, f in features.items() if isinstance(f, Mapping) and f.get("drift_detected")]
    timing = report.get("timing") or {}
    evaluated = timing.get("evaluated_at")
    reference = report.get("reference") or {}
    history = report.get("history")
    history = history if isinstance(history, Mapping) else {}
    score = report.get("overall_drift_score")
    return RuntimeReport(
        role=role,
        version=_int(version.get("version")) if isinstance(version, Mapping) else None,
        health=str(report.get("overall_health") or "unknown") if report.get("status") == "ok" else "unknown",
        drift_score=float(score) if isinstance(score, int | float) and score == score else None,
        drifted_features=tuple(str(x) for x in drifted),
        evaluated_at=_epoch_to_rfc3339(evaluated),
        evaluations=_int(failures.get("evaluations")) or 0,
        error_rate=float(failures["window_rate"])
        if isinstance(failures.get("window_rate"), int | float)
        else None,
        reference_sha256=str(reference["sha256"])
        if isinstance(reference, Mapping) and reference.get("sha256")
        else None,
        history_evaluations=_int(history.get("evaluations")) or 0,
        history_newest=history_newest(history),
    )


def history_newest(summary: Mapping[str, Any]) -> dict[int, float]:
    """Version -> time of its newest entry, from a report's history summary (versions that are not numbers,
    or have no time, are left out: they cannot be compared)."""
    versions = summary.get("versions")
    if not isinstance(versions, Mapping):
        return {}
    newest: dict[int, float] = {}
    for key, seen in versions.items():
        number = _int(key)
        at = seen.get("newest_at") if isinstance(seen, Mapping) else None
        if number is not None and isinstance(at, int | float) and not isinstance(at, bool) and at == at:
            newest[number] = float(at)
    return newest


def _epoch_to_rfc3339(value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    from datetime import UTC, datetime

    return datetime.fromtimestamp(float(value), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = [
    "LABEL_MONITOR",
    "LABEL_ROLE",
    "LABEL_VERSION",
    "belongs_to",
    "deployment_observation",
    "history_newest",
    "needs_log_tail",
    "pod_observation",
    "role_of",
    "runtime_report",
    "version_info",
]
