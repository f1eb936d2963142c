"""What the rollout state machine asks a backend to do. Each action is idempotent: doing it twice (after an
operator restart, say) leaves the world as doing it once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from poet_operator.rollout.status import FeedbackRecord, MonitorStatus, VersionReason

Role = Literal["stable", "canary"]


@dataclass(frozen=True)
class Generate:
    """Run POET for `version` (off the event loop) and store it as the version's ConfigMap. If that
    ConfigMap already exists (a restart after the write), adopt it instead of writing a second one."""

    version: int
    reason: VersionReason
    spec_hash: str
    previous: int | None = None  # the version whose code and remedies carry over
    feedback: tuple[FeedbackRecord, ...] = ()


@dataclass(frozen=True)
class EnsureDeployment:
    """The Deployment of `role` runs `version` (created, or patched only where it differs)."""

    role: Role
    version: int


@dataclass(frozen=True)
class RemoveDeployment:
    """No Deployment of `role` exists (deleted if present)."""

    role: Role


@dataclass(frozen=True)
class EnsureService:
    """The monitor's Service exists."""


@dataclass(frozen=True)
class DeleteVersions:
    """Delete these versions' ConfigMaps (no longer stable, canary or among the kept history)."""

    versions: tuple[int, ...]


@dataclass(frozen=True)
class RecordLessons:
    """A regenerated version proved healthy: its remedies become lessons in the shared store."""

    version: int


@dataclass(frozen=True)
class HandOffReference:
    """Copy the stable pod's reference to the canary (and keep the stored copy current)."""

    to_role: Role | None  # None: only refresh the stored copy


@dataclass(frozen=True)
class HandOffHistory:
    """Merge the stable pod's evaluation history into the canary's (`GET /v1/history` from the one,
    `POST /v1/history` to the other): the canary's report then draws the versions before it. Merging keeps
    one entry per time and code, so doing it again changes nothing."""

    to_role: Role = "canary"


@dataclass(frozen=True)
class StoreHistory:
    """Keep the history of the version just promoted (its canary pod's, merged with a stable pod's) where
    every new runtime pod merges it at start, marked as stored for `version`: the promoted version's new
    stable pods start with the evaluations of the versions before them."""

    version: int


@dataclass(frozen=True)
class Emit:
    """A Kubernetes Event on the monitor (and a line on the local timeline)."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class ClearAnnotation:
    """Remove a handled one-shot annotation (poet.dev/promote, abort, regenerate)."""

    key: str


Action = (
    Generate
    | EnsureDeployment
    | RemoveDeployment
    | EnsureService
    | DeleteVersions
    | RecordLessons
    | HandOffReference
    | HandOffHistory
    | StoreHistory
    | Emit
    | ClearAnnotation
)


@dataclass(frozen=True)
class Decision:
    """The machine's answer: the new status, what to do, and when to look again."""

    status: MonitorStatus
    actions: tuple[Action, ...] = ()
    requeue_after: float | None = None
    rollout: Literal["promoted", "rolled_back", "aborted"] | None = None
    fixed_after_seconds: float | None = None  # first failure to promoted fix, when a promotion closed it
    regenerated: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)

    def of_type(self, kind: type) -> list:
        return [a for a in self.actions if isinstance(a, kind)]


__all__ = [
    "Action",
    "ClearAnnotation",
    "Decision",
    "DeleteVersions",
    "Emit",
    "EnsureDeployment",
    "EnsureService",
    "Generate",
    "HandOffHistory",
    "HandOffReference",
    "RecordLessons",
    "RemoveDeployment",
    "StoreHistory",
]
