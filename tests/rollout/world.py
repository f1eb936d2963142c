"""A tiny deterministic world for driving the rollout state machine in tests: no server, no processes.

It plays the backend: it carries out the machine's actions on plain data (ConfigMaps, Deployments, pods,
events) and turns that data back into the next `Observation`. Time moves only when a test says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from poet_operator.rollout.actions import (
    ClearAnnotation,
    Decision,
    DeleteVersions,
    Emit,
    EnsureDeployment,
    Generate,
    HandOffHistory,
    RecordLessons,
    RemoveDeployment,
    StoreHistory,
)
from poet_operator.rollout.machine import Policy, code_spec_hash, decide
from poet_operator.rollout.observations import (
    DeploymentObservation,
    GenerationOutcome,
    Observation,
    PodObservation,
    RuntimeReport,
    Terminated,
    VersionInfo,
)
from poet_operator.rollout.status import MonitorStatus
from poet_operator.spec import MonitorSpec, SpecError

START = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)
OOM_MESSAGE = ""
CRASH_RECORD = json.dumps(
    {
        "kind": "poet.feedback/v1",
        "source": "crash",
        "phase": "run",
        "signature": {"exception": "KeyError", "location": "monitor.py:42 in monitor_features"},
        "message": "3 consecutive failed evaluations; last: KeyError: 'brand_new'",
        "traceback": 'Traceback (most recent call last):\n  File "monitor.py", line 42, in monitor_features\n'
        "KeyError: 'brand_new'\n",
        "version": 2,
    }
)


@dataclass
class Pod:
    name: str
    role: str
    version: int
    ready: bool = False
    restarts: int = 0
    terminated: Terminated | None = None
    waiting: str = ""
    history: set[tuple[float, int]] = field(default_factory=set)  # (time, version) of its evaluations


@dataclass
class World:
    """The backend side of a monitor, as plain data."""

    spec: dict[str, Any]
    generation: int = 1
    now: datetime = START
    status: MonitorStatus = field(default_factory=MonitorStatus)
    annotations: dict[str, str] = field(default_factory=dict)
    configmaps: dict[int, VersionInfo] = field(default_factory=dict)
    generating: dict[int, Generate] = field(default_factory=dict)
    outcome: GenerationOutcome | None = None
    deployments: dict[str, int] = field(default_factory=dict)  # role -> version
    pods: dict[str, Pod] = field(default_factory=dict)
    events: list[Emit] = field(default_factory=list)
    lessons_recorded: list[int] = field(default_factory=list)
    deleted_versions: list[int] = field(default_factory=list)
    generate_calls: list[Generate] = field(default_factory=list)
    reject_next: str | None = None  # "enforce_failed" / "escalated": the next generation fails so
    # Versions whose generation always ends so, however often it is redone (a deterministic generator
    # refuses the same input again, e.g. after an operator restart lost the first outcome).
    rejections: dict[int, str] = field(default_factory=dict)
    error_rates: dict[str, float] = field(default_factory=dict)
    reports_visible: bool = True
    query: tuple[bool, str] | None = None
    policy: Policy = field(default_factory=Policy)
    decisions: list[Decision] = field(default_factory=list)
    pod_counter: int = 0
    # The history kept at the last promotion (every new pod starts with it) and the version it is for.
    stored_history: set[tuple[float, int]] = field(default_factory=set)
    history_stored_version: int | None = None
    history_store_fails: bool = False  # the write of the kept history is refused (a 403, say)
    history_actions: list[Any] = field(default_factory=list)

    # -- observation ---------------------------------------------------------------------------------------

    def observe(self) -> Observation:
        try:
            spec: MonitorSpec | None = MonitorSpec.from_mapping(self.spec)
            problems: tuple[tuple[str, str], ...] = ()
        except SpecError as exc:
            spec, problems = None, tuple(exc.problems)
        deployments = {
            role: DeploymentObservation(
                role=role,  # type: ignore[arg-type]
                version=version,
                replicas=1,
                ready_replicas=sum(1 for p in self.pods.values() if p.role == role and p.ready),
                updated_replicas=sum(
                    1 for p in self.pods.values() if p.role == role and p.version == version
                ),
            )
            for role, version in self.deployments.items()
        }
        pods = tuple(
            PodObservation(
                name=p.name,
                role=p.role,  # type: ignore[arg-type]
                version=p.version,
                ready=p.ready,
                restart_count=p.restarts,
                phase="Running",
                last_terminated=p.terminated,
                waiting_reason=p.waiting,
            )
            for p in self.pods.values()
        )
        reports = {}
        if self.reports_visible:
            for role, version in self.deployments.items():
                pod = next((p for p in self.pods.values() if p.role == role and p.ready), None)
                if pod is not None:
                    newest: dict[int, float] = {}
                    for at, number in pod.history:
                        newest[number] = max(at, newest.get(number, at))
                    reports[role] = RuntimeReport(
                        role=role,  # type: ignore[arg-type]
                        version=version,
                        health="warning",
                        drift_score=0.1,
                        drifted_features=("income",),
                        evaluations=10,
                        error_rate=self.error_rates.get(role, 0.0),
                        reference_sha256="abc",
                        history_evaluations=len(pod.history),
                        history_newest=newest,
                    )
        return Observation(
            now=self.now,
            generation=self.generation,
            spec=spec,
            spec_problems=problems,
            annotations=dict(self.annotations),
            versions=dict(self.configmaps),
            generating=frozenset(self.generating),
            outcome=self.outcome,
            stable=deployments.get("stable"),
            canary=deployments.get("canary"),
            pods=pods,
            reports=reports,
            analysis_query=self.query,
            reference_stored_sha256="abc",
            history_stored_version=self.history_stored_version,
        )

    # -- one reconcile ---------------------------------------------------------------------------------------

    def step(self) -> Decision:
        decision = decide(self.status, self.observe(), self.policy)
        self.outcome = None
        self.decisions.append(decision)
        self.status = decision.status
        for action in decision.actions:
            self.apply(action)
        return decision

    def apply(self, action: Any) -> None:
        if isinstance(action, Generate):
            self.generate_calls.append(action)
            if action.version not in self.configmaps:
                self.generating[action.version] = action
        elif isinstance(action, EnsureDeployment):
            if self.deployments.get(action.role) != action.version:
                self.deployments[action.role] = action.version
                for name in [n for n, p in self.pods.items() if p.role == action.role]:
                    del self.pods[name]
                self.pod_counter += 1
                name = f"pod-{action.role}-{self.pod_counter}"
                # A new pod merges the kept history at start (the mounted NAME-history).
                self.pods[name] = Pod(name, action.role, action.version, history=set(self.stored_history))
        elif isinstance(action, RemoveDeployment):
            self.deployments.pop(action.role, None)
            for name in [n for n, p in self.pods.items() if p.role == action.role]:
                del self.pods[name]
        elif isinstance(action, DeleteVersions):
            for number in action.versions:
                self.configmaps.pop(number, None)
                self.deleted_versions.append(number)
        elif isinstance(action, RecordLessons):
            if action.version not in self.lessons_recorded:  # a backend records a version's lessons once
                self.lessons_recorded.append(action.version)
        elif isinstance(action, HandOffHistory):
            self.history_actions.append(action)
            stable = [p for p in self.pods.values() if p.role == "stable" and p.ready]
            for target in [p for p in self.pods.values() if p.role == action.to_role and p.ready]:
                if stable:
                    target.history |= stable[0].history  # a merge: one entry per (time, code)
        elif isinstance(action, StoreHistory):
            self.history_actions.append(action)
            canary = [p for p in self.pods.values() if p.role == "canary" and p.version == action.version]
            if canary and canary[0].ready and not self.history_store_fails:
                stable = [p for p in self.pods.values() if p.role == "stable" and p.ready]
                self.stored_history = canary[0].history | (stable[0].history if stable else set())
                self.history_stored_version = action.version
        elif isinstance(action, Emit):
            self.events.append(action)
        elif isinstance(action, ClearAnnotation):
            self.annotations.pop(action.key, None)

    # -- what the backend does between reconciles --------------------------------------------------------

    def finish_generations(self) -> None:
        """Every running generation completes (the first one possibly rejected, as set by reject_next)."""
        for number, call in sorted(self.generating.items()):
            if self.reject_next or number in self.rejections:
                status = self.reject_next or self.rejections[number]
                self.outcome = GenerationOutcome(number, status, call.spec_hash, "enforce: 2 checks failed")
                self.reject_next = None
            else:
                remedies = tuple(f"{f.signature}:bounded_memory" for f in call.feedback)
                self.configmaps[number] = VersionInfo(
                    number=number,
                    config_map=f"m-v{number}",
                    spec_hash=call.spec_hash,
                    feedback_answered=tuple(sorted({f.signature for f in call.feedback})),
                    remedies=remedies,
                    created=self.now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
        self.generating.clear()

    def pods_ready(self, role: str | None = None) -> None:
        for pod in self.pods.values():
            if role is None or pod.role == role:
                pod.ready = True
                pod.waiting = ""

    def crash(self, role: str, *, reason: str = "OOMKilled", exit_code: int = 137, message: str = "") -> None:
        for pod in self.pods.values():
            if pod.role == role:
                pod.restarts += 1
                pod.ready = False
                pod.terminated = Terminated(exit_code, reason, message, self.now.isoformat())
                pod.waiting = "CrashLoopBackOff"

    def evaluate(self, role: str) -> None:
        """The role's ready pods evaluate a window now: one history entry each."""
        for pod in self.pods.values():
            if pod.role == role and pod.ready:
                pod.history.add((self.now.timestamp(), pod.version))

    def history_versions(self, role: str) -> list[int]:
        """The versions in the history of the role's ready pod, oldest entry first."""
        pod = next(p for p in self.pods.values() if p.role == role and p.ready)
        return [version for _, version in sorted(pod.history)]

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def restart_operator(self) -> None:
        """The operator process dies: running generations and in-memory outcomes are lost."""
        self.generating.clear()
        self.outcome = None

    def settle(self, steps: int = 6) -> Decision:
        """Reconcile until nothing changes, completing generations and readiness on the way."""
        decision = self.step()
        for _ in range(steps):
            self.finish_generations()
            self.pods_ready()
            before = self.status.to_dict()
            decision = self.step()
            if self.status.to_dict() == before and not self.generating:
                break
        return decision

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def with_spec(self, **changes: Any) -> None:
        self.spec = {**self.spec, **changes}
        self.generation += 1


def spec_hash_of(spec: dict[str, Any]) -> str:
    return code_spec_hash(MonitorSpec.from_mapping(spec))


__all__ = ["CRASH_RECORD", "START", "World", "replace", "spec_hash_of"]
