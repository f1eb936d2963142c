"""What the rollout state machine is told about the world: plain, immutable data, no client objects.

The Kubernetes layer builds these from the API (ModelMonitor, ConfigMaps, Deployments, Pods, runtime reports);
the local backend builds them from processes. The machine never asks for more: it decides from these alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from poet_operator.spec import MonitorSpec

Role = Literal["stable", "canary"]
GenerationStatus = Literal["written", "enforce_failed", "escalated", "error"]


@dataclass(frozen=True)
class Terminated:
    """`lastState.terminated` of a runtime container (or how a local process ended)."""

    exit_code: int | None
    reason: str = ""  # OOMKilled, Error, Completed, ...
    message: str = ""  # the termination message (the runtime's JSON crash record) when there is one
    finished_at: str = ""


@dataclass(frozen=True)
class PodObservation:
    """One runtime pod (or process) of a monitor."""

    name: str
    role: Role
    version: int | None
    ready: bool = False
    restart_count: int = 0
    phase: str = "Pending"
    last_terminated: Terminated | None = None
    waiting_reason: str = ""  # CrashLoopBackOff, ImagePullBackOff, CreateContainerConfigError, ...
    waiting_message: str = ""
    log_tail: str = ""  # read when the termination message is empty


@dataclass(frozen=True)
class DeploymentObservation:
    """The live Deployment of one role (or the local process group)."""

    role: Role
    version: int | None
    replicas: int = 1
    ready_replicas: int = 0
    updated_replicas: int = 0
    progress_deadline_exceeded: bool = False

    @property
    def ready(self) -> bool:
        return self.ready_replicas >= max(1, self.replicas) and self.updated_replicas >= max(1, self.replicas)


@dataclass(frozen=True)
class VersionInfo:
    """A stored version (its ConfigMap), as read back from its manifest."""

    number: int
    config_map: str
    spec_hash: str  # the code-relevant spec hash (see rollout.machine.code_spec_hash)
    generator: str = "template"
    code_sha256: str = ""
    feedback_answered: tuple[str, ...] = ()
    lessons_applied: tuple[str, ...] = ()
    remedies: tuple[str, ...] = ()
    created: str = ""


@dataclass(frozen=True)
class GenerationOutcome:
    """A generation that finished in this process (written versions also show up as a ConfigMap)."""

    version: int
    status: GenerationStatus
    spec_hash: str
    message: str = ""
    info: VersionInfo | None = None


@dataclass(frozen=True)
class RuntimeReport:
    """What a runtime pod's `/v1/report` says, reduced to what decisions need."""

    role: Role
    version: int | None
    health: str = "unknown"  # good | warning | critical | unknown
    drift_score: float | None = None
    drifted_features: tuple[str, ...] = ()
    evaluated_at: str | None = None
    evaluations: int = 0
    error_rate: float | None = None  # share of failed evaluations over the runtime's failure window
    reference_sha256: str | None = None
    history_evaluations: int = 0  # entries in the pod's evaluation history (GET /v1/history)
    # Per code version in that history, the time (seconds since the epoch) of its newest entry.
    history_newest: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Observation:
    """Everything the machine may look at for one decision about one monitor."""

    now: datetime
    generation: int
    spec: MonitorSpec | None
    spec_problems: tuple[tuple[str, str], ...] = ()
    annotations: dict[str, str] = field(default_factory=dict)
    versions: dict[int, VersionInfo] = field(default_factory=dict)  # ConfigMaps that exist
    generating: frozenset[int] = frozenset()  # generations running in this process right now
    outcome: GenerationOutcome | None = None
    stable: DeploymentObservation | None = None
    canary: DeploymentObservation | None = None
    pods: tuple[PodObservation, ...] = ()
    reports: dict[str, RuntimeReport] = field(default_factory=dict)  # by role
    analysis_query: tuple[bool, str] | None = None  # (passed, detail) when a Prometheus query was evaluated
    reference_stored_sha256: str | None = None  # the reference ConfigMap's fingerprint, if any
    history_stored_version: int | None = None  # the promotion the kept history was stored for, if any

    def pods_of(self, role: Role, version: int | None = None) -> list[PodObservation]:
        return [p for p in self.pods if p.role == role and (version is None or p.version == version)]


def as_jsonable(value: Any) -> Any:
    """Observations as plain data, for logs and test failure messages."""
    if hasattr(value, "__dataclass_fields__"):
        return {k: as_jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    if isinstance(value, dict):
        return {str(k): as_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [as_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, MonitorSpec):
        return value.to_dict()
    return value


__all__ = [
    "DeploymentObservation",
    "GenerationOutcome",
    "Observation",
    "PodObservation",
    "Role",
    "RuntimeReport",
    "Terminated",
    "VersionInfo",
]
