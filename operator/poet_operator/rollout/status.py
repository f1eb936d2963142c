"""The ModelMonitor status: what the operator knows of a monitor and all it needs to resume after a restart.

The status is the rollout state machine's memory. Everything in it is plain data (camelCase JSON in the
custom resource), so an operator that restarts reads it back and carries on; the CRD's status schema is
generated from these models, so the API server never prunes a field the operator writes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

Phase = Literal["Pending", "Generating", "Deploying", "Running", "Canary", "Degraded", "Failed"]
VersionReason = Literal["initial", "spec-change", "crash-feedback", "manual"]
VersionState = Literal["stable", "canary", "promoted", "rolled-back", "rejected", "superseded"]
ConditionType = Literal["Ready", "Generated", "CanaryHealthy", "Degraded"]
ConditionStatus = Literal["True", "False", "Unknown"]
Role = Literal["stable", "canary"]

CONDITION_TYPES: tuple[str, ...] = ("Ready", "Generated", "CanaryHealthy", "Degraded")
# Bounds that keep the status object small however long a monitor lives (etcd objects stay well under 1 MiB).
MAX_VERSION_ENTRIES = 50
MAX_FEEDBACK_RECORDS = 20
MAX_MESSAGE_CHARS = 2000
MAX_EVIDENCE_CHARS = 3000


class _StatusModel(BaseModel):
    """Status models: camelCase on the wire; unknown keys ignored (newer operators may add some)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Condition(_StatusModel):
    """A Kubernetes condition; `observedGeneration` is the spec generation it was computed for."""

    type: ConditionType
    status: ConditionStatus
    reason: str = Field(..., description="CamelCase reason, e.g. CanaryAnalysisPassed")
    message: str = Field("", description="what happened and, when something is wrong, what to do")
    last_transition_time: str = Field(..., description="RFC 3339 time the status last changed")
    observed_generation: int = Field(0, description="metadata.generation this condition was computed for")


class VersionEntry(_StatusModel):
    """One generated version (accepted or not)."""

    number: int = Field(..., ge=1)
    config_map: str | None = Field(None, description="ConfigMap holding monitor.py and manifest.json")
    reason: VersionReason
    state: VersionState
    created: str = Field(..., description="RFC 3339 time the version was generated")
    generator: str = Field("template", description="template or llm")
    spec_hash: str = Field("", description="hash of the code-relevant part of the spec it was generated for")
    code_sha256: str = Field("", description="sha256 of monitor.py")
    feedback_answered: list[str] = Field(default_factory=list, description="feedback signatures it answers")
    lessons_applied: list[str] = Field(default_factory=list, description="lessons (signature:remedy) applied")
    remedies: list[str] = Field(default_factory=list, description="remedies in effect (signature:remedy)")
    message: str = Field("", description="why it ended in its state (rejection reason, rollback cause)")
    promoted: str | None = Field(None, description="RFC 3339 time it was promoted from canary to stable")


class Failure(_StatusModel):
    """The latest failure observed on a runtime pod."""

    reason: str = Field(..., description="OOMKilled, Error, CrashLoopBackOff, ProbeFailure, ...")
    exit_code: int | None = None
    signature: str = Field("", description="feedback signature, e.g. OOMKilled or KeyError@monitor.py:f")
    message: str = ""
    pod: str = ""
    version: int | None = None
    role: Role | None = None
    time: str = Field(..., description="RFC 3339 time the failure was observed")


class FeedbackRecord(_StatusModel):
    """A failure turned into POET feedback, kept so the next generation answers all feedback so far."""

    source: str
    signature: str
    version: int | None = None
    evidence: dict[str, Any] = Field(default_factory=dict)
    time: str = ""


class Health(_StatusModel):
    """The stable version's latest drift verdict, read from its report."""

    overall: Literal["good", "warning", "critical", "unknown"] = "unknown"
    drift_score: float | None = None
    drifted_features: list[str] = Field(default_factory=list)
    drifted_count: int = Field(0, description="number of drifted features (a printer column)")
    last_evaluated: str | None = None


class Regenerations(_StatusModel):
    """Versions generated from feedback since the spec last changed (or a person asked), and the budget."""

    used: int = 0
    budget: int = 3


class PendingGeneration(_StatusModel):
    """A generation that was started and has not produced a ConfigMap yet; redone after a restart."""

    version: int
    reason: VersionReason
    spec_hash: str
    previous: int | None = Field(
        None, description="version whose remedies carry over (the feedback's version)"
    )
    feedback: list[str] = Field(default_factory=list, description="signatures answered")
    started: str


class CanaryProgress(_StatusModel):
    """Where the canary's analysis stands."""

    version: int
    started: str
    ready_since: str | None = None
    restarts: int = 0
    analysis: str = Field("", description="the last analysis verdict in words")


class ManualAction(_StatusModel):
    """The last annotation a person set, and what the operator did about it."""

    annotation: str
    value: str = ""
    outcome: str = ""
    time: str = ""


class MonitorStatus(_StatusModel):
    """`.status` of a ModelMonitor."""

    phase: Phase = "Pending"
    observed_generation: int = 0
    stable_version: int | None = None
    canary_version: int | None = None
    versions: list[VersionEntry] = Field(default_factory=list)
    last_failure: Failure | None = None
    health: Health = Field(default_factory=Health)
    regenerations: Regenerations = Field(default_factory=Regenerations)
    conditions: list[Condition] = Field(default_factory=list)
    # The machine's own bookkeeping, kept in status so a restarted operator resumes where it was.
    pending: PendingGeneration | None = None
    canary: CanaryProgress | None = None
    feedback: list[FeedbackRecord] = Field(default_factory=list)
    restarts_seen: dict[str, int] = Field(
        default_factory=dict, description="restart count already turned into feedback, per pod name"
    )
    next_regeneration_after: str | None = Field(None, description="backoff: no regeneration before this time")
    healing_since: str | None = Field(None, description="time of the failure the current fix answers")
    last_manual_action: ManualAction | None = None
    paused: bool = Field(False, description="rollout steps stopped by the poet.dev/paused annotation")
    hold: str | None = Field(
        None,
        description="why automatic regeneration is held (an abort), until the spec changes or a person asks",
    )
    message: str = Field("", description="one line on what the monitor is doing or waiting for")

    @classmethod
    def from_obj(cls, data: Any) -> MonitorStatus:
        """Status from the custom resource's `.status` (missing or foreign keys tolerated)."""
        if not isinstance(data, dict):
            return cls()
        return cls.model_validate(data)

    def version(self, number: int | None) -> VersionEntry | None:
        return next((v for v in self.versions if v.number == number), None) if number is not None else None

    def condition(self, kind: str) -> Condition | None:
        return next((c for c in self.conditions if c.type == kind), None)

    @property
    def latest_version(self) -> int:
        numbers = [v.number for v in self.versions]
        if self.pending is not None:
            numbers.append(self.pending.version)
        return max(numbers, default=0)


__all__ = [
    "CONDITION_TYPES",
    "CanaryProgress",
    "Condition",
    "Failure",
    "FeedbackRecord",
    "Health",
    "ManualAction",
    "MonitorStatus",
    "PendingGeneration",
    "Regenerations",
    "VersionEntry",
]
