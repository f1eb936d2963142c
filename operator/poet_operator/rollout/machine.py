"""The rollout state machine: the status and an observation in, the new status and actions out. No I/O.

One call decides one step for one monitor. It is level-triggered: every call states the whole desired world
(which Deployments run which version, which ConfigMaps stay), so a step half done before an operator restart
is completed by the next call, and a call that finds nothing to change returns the same status and no Event.

The rules, in the order they are applied:
1. A spec the operator refuses: a condition and one Event per generation; a running version keeps running.
2. Annotations a person set: pause/resume (a state), promote, abort, regenerate (each acted on once).
3. Failures of runtime pods become `lastFailure`, an Event and POET feedback (restarts already seen are
   remembered per pod, so nothing is counted twice).
4. A finished generation becomes the stable version (the first one) or a canary (every later one).
5. A spec change that alters the generated code starts a new version; other spec changes only patch pods.
6. The canary is analysed: ready and not restarting for `canaryAnalysisSeconds`, an error rate no worse than
   stable's, the Prometheus query when there is one. Pass: promote. Crashes past `restartTolerance` or a
   missed progress deadline: roll back, its crash is feedback.
7. Unanswered feedback regenerates the next version, within `regenerationBudget`, with backoff between tries.
8. The evaluation history follows the monitor across versions: the stable pod's is handed to a canary that
   lacks it, and at a promotion the canary's is stored once for the promoted version's new pods.
9. The phase, conditions, health, the version list and what is kept are derived from the above.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from poet_operator.poet.train.feedback import (
    Feedback,
    FeedbackSource,
    feedback_from_termination_message,
    probe_failure,
)
from poet_operator.rollout.actions import (
    Action,
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
from poet_operator.rollout.observations import Observation, PodObservation, VersionInfo
from poet_operator.rollout.status import (
    MAX_EVIDENCE_CHARS,
    MAX_FEEDBACK_RECORDS,
    MAX_MESSAGE_CHARS,
    MAX_VERSION_ENTRIES,
    CanaryProgress,
    Condition,
    Failure,
    FeedbackRecord,
    Health,
    ManualAction,
    MonitorStatus,
    PendingGeneration,
    VersionEntry,
)
from poet_operator.spec import MonitorSpec

ANNOTATION_PREFIX = "poet.dev/"
PROMOTE = "poet.dev/promote"
ABORT = "poet.dev/abort"
REGENERATE = "poet.dev/regenerate"
PAUSED = "poet.dev/paused"
ONE_SHOT_ANNOTATIONS = (PROMOTE, ABORT, REGENERATE)
_FALSE_WORDS = {"", "false", "0", "no", "off"}

# Waiting reasons that are the platform's problem, not the code's: a new version would not help.
PLATFORM_WAITING_REASONS = {
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class Policy:
    """Operator-wide settings of the machine (the per-monitor ones live in `spec.rollout`)."""

    keep_versions: int = 5  # history entries whose ConfigMaps are kept besides stable and canary
    error_rate_margin: float = 0.05  # a canary may fail this much more often than stable and still pass
    poll_seconds: float = 5.0  # how soon to look again while waiting on pods
    max_backoff_seconds: float = 3600.0
    resync_seconds: float = 60.0  # a settled monitor is looked at again this often (health, reference)
    # After a promotion the canary's pod, which holds the new version's history, is kept at most this long
    # while that history is not yet stored for the promoted version's new pods.
    history_hold_seconds: float = 120.0


def code_spec_hash(spec: MonitorSpec | dict[str, Any]) -> str:
    """Hash of the parts of a spec that shape the generated code: `rollout` and `runtime` only change how
    pods run, so changing them patches Deployments instead of generating a new version."""
    data = spec.to_dict() if isinstance(spec, MonitorSpec) else dict(spec)
    relevant = {k: v for k, v in data.items() if k not in {"rollout", "runtime"}}
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def feedback_from_pod(pod: PodObservation, now: datetime) -> tuple[Failure, FeedbackRecord | None]:
    """A failed runtime container as `lastFailure` and, when the code can be to blame, POET feedback."""
    term = pod.last_terminated
    exit_code = term.exit_code if term else None
    reason = (term.reason if term else "") or "Unknown"
    shown_reason = (
        "CrashLoopBackOff" if pod.waiting_reason == "CrashLoopBackOff" and reason != "OOMKilled" else reason
    )
    message = (term.message if term else "") or ""
    record: Feedback
    if reason == "OOMKilled":
        record = feedback_from_termination_message(
            message, reason="OOMKilled", exit_code=exit_code, version=pod.version
        )
    elif exit_code == 0 or (exit_code in (137, 143) and not message.strip()):
        # The runtime exits 0 on SIGTERM after draining: a restart that ended cleanly, or a kill without a
        # record, is the kubelet acting on failed liveness probes.
        record = probe_failure(
            "liveness", version=pod.version, detail=f"restarted by the kubelet (exit {exit_code})"
        )
        shown_reason = "ProbeFailure"
    else:
        text = message.strip() or pod.log_tail.strip()
        record = feedback_from_termination_message(
            text, reason=reason, exit_code=exit_code, version=pod.version
        )
        if not message.strip() and pod.log_tail:
            record.evidence["log_tail"] = _clip(pod.log_tail, MAX_EVIDENCE_CHARS)
        if record.source is FeedbackSource.OOM_KILLED:
            # The runtime's own out-of-memory exit (status 3, a MemoryError, record reason OOMKilled): the
            # failure the kernel's kill at the memory limit would have been, and shown as such.
            shown_reason = "OOMKilled"
    evidence = {
        k: (_clip(v, MAX_EVIDENCE_CHARS) if isinstance(v, str) else v) for k, v in record.evidence.items()
    }
    summary = str(evidence.get("message") or reason)
    failure = Failure(
        reason=shown_reason,
        exit_code=exit_code,
        signature=record.signature,
        message=_clip(summary, 500),
        pod=pod.name,
        version=pod.version,
        role=pod.role,
        time=rfc3339(now),
    )
    feedback = FeedbackRecord(
        source=record.source.value,
        signature=record.signature,
        version=record.version,
        evidence=evidence,
        time=rfc3339(now),
    )
    return failure, feedback


class _Step:
    """The working state of one decision: a private copy of the status plus what to do."""

    def __init__(self, status: MonitorStatus, obs: Observation, policy: Policy) -> None:
        self.s = status.model_copy(deep=True)
        self.before = status
        self.obs = obs
        self.policy = policy
        self.now = obs.now
        self.stamp = rfc3339(obs.now)
        self.actions: list[Action] = []
        self.requeue: list[float] = []
        self.rollout: Any = None
        self.fixed_after: float | None = None
        self.regenerated = False
        self.new_stable_failures: list[FeedbackRecord] = []
        self.new_canary_failures: list[FeedbackRecord] = []
        self.notes: list[str] = []
        self.degraded: tuple[str, str] | None = None  # re-derived on every pass: what needs a person now
        self.canary_kept_for_history = False  # the promoted canary's pod stays until its history is stored

    # -- small helpers ---------------------------------------------------------------------------------------

    def emit(self, kind: str, reason: str, message: str) -> None:
        self.actions.append(Emit(kind, reason, _clip(message, 1000)))  # type: ignore[arg-type]

    def wake_in(self, seconds: float) -> None:
        self.requeue.append(max(1.0, float(seconds)))

    def set_condition(self, kind: str, status: str, reason: str, message: str) -> None:
        old = self.s.condition(kind)
        changed = old is None or old.status != status
        cond = Condition(
            type=kind,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            reason=reason,
            message=_clip(message),
            last_transition_time=self.stamp if changed or old is None else old.last_transition_time,
            observed_generation=self.obs.generation,
        )
        self.s.conditions = [c for c in self.s.conditions if c.type != kind] + [cond]
        self.s.conditions.sort(
            key=lambda c: ("Ready", "Generated", "CanaryHealthy", "Degraded").index(c.type)
        )

    def of_kind(self, kind: type) -> list[Any]:
        return [a for a in self.actions if isinstance(a, kind)]

    def entry(self, number: int | None) -> VersionEntry | None:
        return self.s.version(number)

    def spec(self) -> MonitorSpec:
        assert self.obs.spec is not None
        return self.obs.spec

    @property
    def name_hint(self) -> str:
        return "kubectl poet status"

    # -- 1. the spec -----------------------------------------------------------------------------------------

    def refuse_spec(self) -> None:
        problems = "; ".join(f"{path}: {msg}" if path else msg for path, msg in self.obs.spec_problems)
        message = f"the spec is refused: {problems or 'it could not be read'}; fix it and apply again"
        before = self.before.condition("Ready")
        already = (
            before is not None
            and before.reason == "InvalidSpec"
            and before.observed_generation == self.obs.generation
        )
        if not already:
            self.emit("Warning", "InvalidSpec", message)
        if self.s.stable_version is not None:
            message += f" (version {self.s.stable_version} keeps running with the previous spec)"
        self.set_condition("Ready", "False", "InvalidSpec", message)
        self.degrade("InvalidSpec", message, event=False)
        self.s.observed_generation = self.obs.generation
        self.s.message = _clip(message, 300)

    # -- 2. annotations --------------------------------------------------------------------------------------

    def handle_annotations(self) -> None:
        annotations = self.obs.annotations
        paused = str(annotations.get(PAUSED, "")).strip().lower() not in _FALSE_WORDS
        if paused != self.s.paused:
            self.s.paused = paused
            word = "Paused" if paused else "Resumed"
            text = (
                "rollout paused by poet.dev/paused: no new versions, promotions or rollbacks "
                "until it is removed"
                if paused
                else "rollout resumed: poet.dev/paused was removed"
            )
            if not paused and self.s.canary is not None:
                # The canary's progress deadline counts from the resume, as its analysis does: a pause
                # longer than the deadline must not roll back a canary that had no time to become ready.
                self.s.canary.started = self.stamp
            self.emit("Normal", word, text)
            self.s.last_manual_action = ManualAction(
                annotation=PAUSED, value=str(annotations.get(PAUSED, "")), outcome=text, time=self.stamp
            )
        for key in ONE_SHOT_ANNOTATIONS:
            if key not in annotations:
                continue
            value = str(annotations[key])
            self.actions.append(ClearAnnotation(key))
            if self.already_handled(key, value):
                continue
            if value.strip().lower() in _FALSE_WORDS:
                outcome = f"{key}={value!r} ignored (set it to true to act)"
            elif key == PROMOTE:
                outcome = self.manual_promote()
            elif key == ABORT:
                outcome = self.manual_abort()
            else:
                outcome = self.manual_regenerate()
            self.emit("Normal", "ManualAction", f"{key}: {outcome}")
            self.s.last_manual_action = ManualAction(
                annotation=key, value=value, outcome=outcome, time=self.stamp
            )

    def already_handled(self, key: str, value: str) -> bool:
        """The request acted on last, seen again because its removal did not land (an operator restart or a
        failed patch after the status was written). `kubectl poet` writes the request time as the value, so
        only such a value tells one request from the next; a plain `true` is acted on each time it is seen."""
        last = self.s.last_manual_action
        return (
            last is not None
            and last.annotation == key
            and last.value == value
            and parse_time(value.strip()) is not None
        )

    def manual_promote(self) -> str:
        if self.s.canary_version is None:
            return "nothing to promote: no canary is running"
        number = self.s.canary_version
        self.promote("promoted by a person (poet.dev/promote) before analysis finished")
        return f"version {number} promoted"

    def manual_abort(self) -> str:
        self.s.hold = "aborted by a person (poet.dev/abort)"
        if self.s.canary_version is not None:
            number = self.s.canary_version
            self.roll_back("aborted by a person (poet.dev/abort)", feedback=False, outcome="aborted")
            return (
                f"canary version {number} removed; automatic regeneration held until the spec changes "
                "or poet.dev/regenerate is set"
            )
        if self.s.pending is not None:
            number = self.s.pending.version
            self.supersede_pending("aborted by a person (poet.dev/abort)")
            return f"generation of version {number} abandoned; automatic regeneration held"
        return "nothing to abort: no canary or generation in progress; automatic regeneration held"

    def manual_regenerate(self) -> str:
        if self.obs.spec is None:
            return "cannot regenerate: the spec is refused (see the Ready condition)"
        if self.s.pending is not None:
            return f"version {self.s.pending.version} is already being generated"
        self.s.hold = None
        self.s.regenerations.used = 0
        if self.s.canary_version is not None:
            self.supersede_canary("superseded by poet.dev/regenerate")
        previous = self.latest_usable()
        number = self.start_generation(
            "manual", previous=previous, feedback=self.unanswered_feedback(previous)
        )
        return f"generating version {number} (regeneration budget reset)"

    # -- 3. failures -----------------------------------------------------------------------------------------

    def observe_pods(self) -> None:
        live = {p.name for p in self.obs.pods}
        seen = {k: v for k, v in self.s.restarts_seen.items() if k in live}
        for pod in self.obs.pods:
            before = seen.get(pod.name, 0)
            if pod.waiting_reason in PLATFORM_WAITING_REASONS:
                self.platform_problem(pod)
            if pod.restart_count <= before:
                continue
            seen[pod.name] = pod.restart_count
            failure, record = feedback_from_pod(pod, self.now)
            self.s.last_failure = failure
            exit_text = f" (exit {failure.exit_code})" if failure.exit_code is not None else ""
            self.emit(
                "Warning",
                "RuntimeFailed" if pod.role == "stable" else "CanaryFailed",
                f"{pod.role} version {pod.version} pod {pod.name}: {failure.reason}{exit_text}: "
                f"{failure.message}; feedback {failure.signature}",
            )
            if record is None:
                continue
            self.add_feedback(record)
            if pod.role == "stable" and pod.version == self.s.stable_version:
                self.new_stable_failures.append(record)
                if self.s.healing_since is None:
                    self.s.healing_since = self.stamp
            elif pod.role == "canary" and pod.version == self.s.canary_version:
                self.new_canary_failures.append(record)
        self.s.restarts_seen = seen

    def platform_problem(self, pod: PodObservation) -> None:
        message = (
            f"{pod.role} pod {pod.name} cannot start: {pod.waiting_reason}"
            f"{': ' + pod.waiting_message if pod.waiting_message else ''}; this is not the generated code's "
            "fault, so no new version is generated: check the runtime image and the pod's events"
        )
        old = self.s.last_failure
        if old is None or old.pod != pod.name or old.reason != pod.waiting_reason:
            self.emit("Warning", pod.waiting_reason, message)
            self.s.last_failure = Failure(
                reason=pod.waiting_reason,
                signature="",
                message=_clip(message, 500),
                pod=pod.name,
                version=pod.version,
                role=pod.role,
                time=self.stamp,
            )

    def add_feedback(self, record: FeedbackRecord) -> None:
        kept = [f for f in self.s.feedback if (f.signature, f.version) != (record.signature, record.version)]
        self.s.feedback = ([*kept, record])[-MAX_FEEDBACK_RECORDS:]

    def unanswered_feedback(self, previous: int | None) -> tuple[FeedbackRecord, ...]:
        """The feedback the next version answers: all kept so far (bounded), so a fix for an earlier failure
        is never dropped; `previous` carries its remedies, and POET escalates a signature its remedy did not
        fix on that very version."""
        del previous
        return tuple(self.s.feedback)

    # -- 4. generations --------------------------------------------------------------------------------------

    def start_generation(
        self, reason: str, *, previous: int | None, feedback: tuple[FeedbackRecord, ...] = ()
    ) -> int:
        number = self.s.latest_version + 1
        spec_hash = code_spec_hash(self.spec())
        self.s.pending = PendingGeneration(
            version=number,
            reason=reason,  # type: ignore[arg-type]
            spec_hash=spec_hash,
            previous=previous,
            feedback=sorted({f.signature for f in feedback}),
            started=self.stamp,
        )
        if reason == "crash-feedback":
            self.s.regenerations.used += 1
            self.regenerated = True
        self.actions.append(Generate(number, reason, spec_hash, previous, feedback))  # type: ignore[arg-type]
        answering = f", answering {', '.join(sorted({f.signature for f in feedback}))}" if feedback else ""
        self.emit("Normal", "Generating", f"generating version {number} ({reason}){answering}")
        self.set_condition(
            "Generated", "Unknown", "Generating", f"version {number} is being generated ({reason})"
        )
        return number

    def resume_or_finish_generation(self) -> None:
        pending = self.s.pending
        if pending is None:
            return
        outcome = (
            self.obs.outcome if self.obs.outcome and self.obs.outcome.version == pending.version else None
        )
        info = self.obs.versions.get(pending.version)
        if info is None and outcome is not None and outcome.status == "written":
            info = outcome.info
        if info is not None and self.s.paused:
            # Stored and enforced, but starting it (as stable or as a canary) is a rollout step: it waits.
            self.set_condition(
                "Generated",
                "True",
                "GeneratedWhilePaused",
                f"version {pending.version} generated and enforced; it starts when the rollout is resumed",
            )
        elif info is not None:
            self.accept_version(pending, info)
        elif outcome is not None:
            self.reject_version(pending, outcome.status, outcome.message)
        elif pending.version not in self.obs.generating and not any(
            isinstance(a, Generate) and a.version == pending.version for a in self.actions
        ):
            # Started before a restart and never stored: do it again (the write adopts an existing ConfigMap).
            feedback = tuple(f for f in self.s.feedback if f.signature in set(pending.feedback))
            self.actions.append(
                Generate(pending.version, pending.reason, pending.spec_hash, pending.previous, feedback)
            )

    def accept_version(self, pending: PendingGeneration, info: VersionInfo) -> None:
        self.s.pending = None
        entry = VersionEntry(
            number=pending.version,
            config_map=info.config_map,
            reason=pending.reason,
            state="stable",
            created=info.created or self.stamp,
            generator=info.generator,
            spec_hash=info.spec_hash,
            code_sha256=info.code_sha256,
            feedback_answered=list(info.feedback_answered) or list(pending.feedback),
            lessons_applied=list(info.lessons_applied),
            remedies=list(info.remedies),
        )
        lessons = f"; lessons applied: {', '.join(info.lessons_applied)}" if info.lessons_applied else ""
        self.set_condition(
            "Generated",
            "True",
            "Generated",
            f"version {entry.number} generated by {entry.generator} and enforced{lessons}",
        )
        if self.obs.spec is not None and info.spec_hash != code_spec_hash(self.spec()):
            entry.state = "superseded"
            entry.message = "the spec changed while it was being generated"
            self.record(entry)
            self.emit(
                "Normal", "Superseded", f"version {entry.number} was generated for an older spec; discarded"
            )
            return
        remedies = f" with remedies {', '.join(info.remedies)}" if info.remedies else ""
        if self.s.stable_version is None:
            self.record(entry)
            self.s.stable_version = entry.number
            self.emit(
                "Normal",
                "Generated",
                f"version {entry.number} generated and enforced{remedies}{lessons}; deploying it",
            )
        else:
            entry.state = "canary"
            self.record(entry)
            self.s.canary_version = entry.number
            self.s.canary = CanaryProgress(version=entry.number, started=self.stamp)
            self.emit(
                "Normal",
                "CanaryStarted",
                f"version {entry.number} generated and enforced{remedies}{lessons}; running it as a canary "
                f"beside stable version {self.s.stable_version}",
            )

    def reject_version(self, pending: PendingGeneration, status: str, message: str) -> None:
        if self.obs.spec is not None and pending.spec_hash != code_spec_hash(self.spec()):
            # Refused for a spec that is no longer asked for: discarded like a written one, not a failure.
            self.supersede_pending("the spec changed while it was being generated")
            return
        self.s.pending = None
        reason = {"enforce_failed": "EnforceRejected", "escalated": "Escalated"}.get(
            status, "GenerationFailed"
        )
        state_message = _clip(message or status, 500)
        self.record(
            VersionEntry(
                number=pending.version,
                config_map=None,
                reason=pending.reason,
                state="rejected",
                created=self.stamp,
                spec_hash=pending.spec_hash,
                feedback_answered=list(pending.feedback),
                message=state_message,
            )
        )
        if status == "escalated":
            text = (
                f"version {pending.version} was not generated: {state_message}. Regenerating would not help; "
                f"a person should look at the last failure ({self.name_hint}), then change the spec or set "
                "poet.dev/regenerate"
            )
            # As the message says: no automatic retry after the backoff, until the spec changes or a person
            # asks (both clear the hold).
            self.s.hold = f"version {pending.version} escalated to a person"
        else:
            text = f"version {pending.version} was rejected ({reason}): {state_message}. " + (
                f"Version {self.s.stable_version} keeps running."
                if self.s.stable_version is not None
                else "No version is running; fix the spec or the generator settings and apply again."
            )
        self.set_condition("Generated", "False", reason, text)
        self.emit("Warning", reason, text)
        # Degraded follows from the Generated condition (sticky_problems) once nothing else is under way, the
        # same in this step as in the next: a regeneration started right away leaves nothing to report.

    def record(self, entry: VersionEntry) -> None:
        others = [v for v in self.s.versions if v.number != entry.number]
        self.s.versions = sorted([*others, entry], key=lambda v: v.number)[-MAX_VERSION_ENTRIES:]

    def supersede_pending(self, why: str) -> None:
        pending = self.s.pending
        if pending is None:
            return
        self.s.pending = None
        self.record(
            VersionEntry(
                number=pending.version,
                reason=pending.reason,
                state="superseded",
                created=self.stamp,
                spec_hash=pending.spec_hash,
                message=why,
            )
        )

    def supersede_canary(self, why: str) -> None:
        entry = self.entry(self.s.canary_version)
        if entry is not None:
            entry.state = "superseded"
            entry.message = why
        self.emit("Normal", "CanaryRemoved", f"canary version {self.s.canary_version} removed: {why}")
        self.s.canary_version = None
        self.s.canary = None

    def latest_usable(self) -> int | None:
        """The newest version that ran (stable, canary or rolled back): the next one builds on its code."""
        ran = [v.number for v in self.s.versions if v.state not in ("rejected", "superseded")]
        return max(ran, default=None)

    # -- 5. spec changes -------------------------------------------------------------------------------------

    def follow_spec(self) -> None:
        desired = code_spec_hash(self.spec())
        self.s.regenerations.budget = self.spec().rollout.regeneration_budget
        if self.s.pending is not None:
            if self.s.pending.spec_hash != desired and self.s.pending.version in self.obs.generating:
                return  # its result will be discarded as superseded when it arrives
            if self.s.pending.spec_hash != desired:
                self.supersede_pending("the spec changed before it was stored")
            else:
                return
        if self.s.paused:
            return
        if not self.s.versions:
            self.start_generation("initial", previous=None)
            return
        target = self.entry(self.s.canary_version) or self.entry(self.s.stable_version)
        if target is None:
            # Nothing runs: generate again only for a spec different from the last attempt's.
            last = self.s.versions[-1]
            if last.spec_hash != desired:
                self.s.regenerations.used = 0
                self.s.hold = None
                self.start_generation("initial", previous=None)
            return
        if target.spec_hash == desired:
            return
        if self.s.canary_version is not None:
            stable = self.entry(self.s.stable_version)
            if stable is not None and stable.spec_hash == desired:
                self.supersede_canary("the spec changed back to the stable version's")
                return
            self.supersede_canary("the spec changed")
        last_attempt = self.s.versions[-1]
        if last_attempt.state == "rejected" and last_attempt.spec_hash == desired:
            return  # this spec was already tried and refused; wait for a change or poet.dev/regenerate
        self.s.regenerations.used = 0
        self.s.hold = None
        self.start_generation("spec-change", previous=self.s.stable_version)

    # -- 6. canary analysis ----------------------------------------------------------------------------------

    def analyse_canary(self) -> None:
        number = self.s.canary_version
        progress = self.s.canary
        if number is None or progress is None:
            return
        rollout = self.spec().rollout if self.obs.spec is not None else None
        tolerance = rollout.restart_tolerance if rollout else 2
        restarts = sum(p.restart_count for p in self.obs.pods_of("canary", number))
        progress.restarts = max(progress.restarts, restarts)
        if self.s.paused:
            # Paused time is not analysis time: once resumed, the canary must be ready for the whole period.
            progress.ready_since = None
            progress.analysis = "paused; the analysis starts again when the rollout is resumed"
            return
        if progress.restarts > tolerance:
            self.roll_back(f"restarted {progress.restarts} times (tolerance {tolerance})", feedback=True)
            return
        deployment = self.obs.canary
        ready = deployment is not None and deployment.version == number and deployment.ready
        started = parse_time(progress.started) or self.now
        deadline = rollout.progress_deadline_seconds if rollout else 600
        if not ready:
            progress.ready_since = None
            if (deployment is not None and deployment.progress_deadline_exceeded) or (
                self.now - started
            ).total_seconds() > deadline:
                self.roll_back(f"not ready within the progress deadline of {deadline} s", feedback=True)
                return
            progress.analysis = "waiting for the canary's pods to become ready"
            self.set_condition(
                "CanaryHealthy", "Unknown", "Progressing", f"canary version {number}: {progress.analysis}"
            )
            self.wake_in(self.policy.poll_seconds)
            return
        if progress.ready_since is None:
            progress.ready_since = self.stamp
        ready_for = (self.now - (parse_time(progress.ready_since) or self.now)).total_seconds()
        needed = rollout.canary_analysis_seconds if rollout else 300
        verdicts: list[str] = [f"ready for {int(ready_for)} of {needed} s", f"{progress.restarts} restarts"]
        passed = ready_for >= needed
        canary_report = self.obs.reports.get("canary")
        stable_report = self.obs.reports.get("stable")
        stable_failing = self.stable_failing()
        if canary_report is None or canary_report.version != number:
            verdicts.append("waiting for the canary's report")
            passed = False
        else:
            canary_rate = canary_report.error_rate or 0.0
            stable_rate = None if stable_report is None else (stable_report.error_rate or 0.0)
            if stable_failing or stable_rate is None:
                verdicts.append(f"error rate {canary_rate:.2f} (stable is not serving)")
            else:
                verdicts.append(f"error rate {canary_rate:.2f} vs stable {stable_rate:.2f}")
                if canary_rate > stable_rate + self.policy.error_rate_margin:
                    self.roll_back(
                        f"its error rate {canary_rate:.2f} is worse than stable's {stable_rate:.2f}",
                        feedback=False,
                    )
                    return
        if self.obs.analysis_query is not None:
            query_passed, detail = self.obs.analysis_query
            verdicts.append(f"query {'passed' if query_passed else 'not passed'}: {detail}")
            passed = passed and query_passed
        progress.analysis = ", ".join(verdicts)
        if passed:
            self.set_condition(
                "CanaryHealthy", "True", "AnalysisPassed", f"canary version {number}: {progress.analysis}"
            )
            self.promote(f"analysis passed: {progress.analysis}")
            return
        self.set_condition(
            "CanaryHealthy", "Unknown", "Analysing", f"canary version {number}: {progress.analysis}"
        )
        self.wake_in(
            min(self.policy.poll_seconds, max(1.0, needed - ready_for))
            if ready_for < needed
            else self.policy.poll_seconds
        )

    def stable_failing(self) -> bool:
        pods = self.obs.pods_of("stable", self.s.stable_version)
        return bool(self.new_stable_failures) or any(
            p.waiting_reason == "CrashLoopBackOff" or (not p.ready and p.restart_count > 0) for p in pods
        )

    def promote(self, why: str) -> None:
        number = self.s.canary_version
        if number is None:
            return
        old = self.entry(self.s.stable_version)
        if old is not None:
            old.state = "superseded"
            old.message = f"replaced by version {number}"
        entry = self.entry(number)
        if entry is not None:
            entry.state = "promoted"
            entry.promoted = self.stamp
        self.emit("Normal", "Promoted", f"version {number} promoted to stable: {why}")
        self.s.stable_version = number
        self.s.canary_version = None
        self.s.canary = None
        self.rollout = "promoted"
        for record in self.s.feedback:
            if record.version == number:
                # Restarts within the canary's tolerance were weighed by the analysis that just passed;
                # they must not regenerate the version that was promoted in spite of them.
                record.evidence["tolerated"] = True
        if entry is not None and entry.reason == "crash-feedback":
            self.actions.append(RecordLessons(number))
        since = parse_time(self.s.healing_since)
        if since is not None and entry is not None and entry.reason in ("crash-feedback", "manual"):
            self.fixed_after = max(0.0, (self.now - since).total_seconds())
        # The failing version is gone whatever replaced it: a later failure starts its own clock.
        self.s.healing_since = None

    def roll_back(self, why: str, *, feedback: bool, outcome: str = "rolled_back") -> None:
        number = self.s.canary_version
        if number is None:
            return
        entry = self.entry(number)
        if entry is not None:
            entry.state = "rolled-back"
            entry.message = _clip(why, 500)
        stable = self.s.stable_version
        text = f"canary version {number} rolled back: {why}; stable version {stable} keeps serving"
        if feedback and any(f.version == number for f in self.s.feedback):
            text += "; its failure is feedback for the next version"
        self.emit("Warning", "RolledBack", text)
        self.set_condition("CanaryHealthy", "False", "RolledBack", text)
        self.s.canary_version = None
        self.s.canary = None
        self.rollout = outcome

    # -- 7. regeneration -------------------------------------------------------------------------------------

    def regenerate_if_needed(self) -> None:
        if self.s.pending is not None or self.s.canary_version is not None or self.s.paused:
            return
        previous = self.latest_usable()
        if previous is None or self.obs.spec is None:
            return
        feedback = self.unanswered_feedback(previous)
        fresh = [
            f
            for f in feedback
            if f.version is not None
            and f.version >= (self.s.stable_version or 0)
            and not f.evidence.get("tolerated")
        ]
        if not fresh:
            return
        rollout = self.spec().rollout
        signatures = ", ".join(sorted({f.signature for f in fresh}))
        if self.s.hold:
            self.sticky_problems()  # a refused last attempt (an escalation) says best what to do
            self.degrade("RegenerationHeld", f"failures ({signatures}) are not being answered: {self.s.hold}")
            return
        if not rollout.auto_regenerate:
            self.degrade(
                "AutoRegenerateOff",
                f"version {self.s.stable_version} fails ({signatures}) and rollout.autoRegenerate is false; "
                "set poet.dev/regenerate=true to generate a fix, or turn autoRegenerate on",
            )
            return
        if self.s.regenerations.used >= rollout.regeneration_budget:
            self.degrade(
                "RegenerationBudgetSpent",
                f"version {self.s.stable_version} keeps failing ({signatures}) and "
                f"{self.s.regenerations.used} of {rollout.regeneration_budget} regenerations are spent; "
                f"look at the last failure ({self.name_hint}), then change the spec (which resets the "
                "budget), raise spec.rollout.regenerationBudget, or set poet.dev/regenerate=true "
                "to try once more",
            )
            return
        not_before = parse_time(self.s.next_regeneration_after)
        if not_before is not None and self.now < not_before:
            wait = (not_before - self.now).total_seconds()
            self.notes.append(f"next regeneration in {int(wait)} s (backoff)")
            self.wake_in(wait)
            return
        self.start_generation("crash-feedback", previous=previous, feedback=feedback)
        used = self.s.regenerations.used
        backoff = min(self.policy.max_backoff_seconds, rollout.regeneration_backoff_seconds * 2 ** (used - 1))
        self.s.next_regeneration_after = rfc3339(self.now + timedelta(seconds=backoff))

    def degrade(self, reason: str, message: str, *, event: bool = True) -> None:
        """Something needs a person; said once as an Event, kept as the Degraded condition while it holds."""
        if self.degraded is not None:
            return  # the first reason found is the one to act on
        self.degraded = (reason, message)
        before = self.before.condition("Degraded")
        if event and (before is None or before.status != "True" or before.reason != reason):
            self.emit("Warning", reason, message)

    def sticky_problems(self) -> None:
        """Problems that stay until something changes them: a refused last attempt with nothing after it."""
        if self.s.pending is not None or self.s.canary_version is not None or not self.s.versions:
            return
        last = self.s.versions[-1]
        if last.state == "rejected":
            cond = self.s.condition("Generated")
            self.degrade(
                cond.reason if cond else "EnforceRejected",
                cond.message if cond else last.message,
                event=False,
            )

    # -- 8. derived state ------------------------------------------------------------------------------------

    def desired_objects(self) -> None:
        if self.s.stable_version is not None:
            self.actions.append(EnsureService())
            self.actions.append(EnsureDeployment("stable", self.s.stable_version))
            stable = self.entry(self.s.stable_version)
            if (
                stable is not None
                and stable.state == "promoted"
                and stable.reason == "crash-feedback"
                and not self.of_kind(RecordLessons)
            ):
                # Stated on every pass like the Deployments, so a restart between the promotion and the
                # write cannot lose the lesson; the backend records each version's lessons once.
                self.actions.append(RecordLessons(stable.number))
        if self.s.canary_version is not None:
            self.actions.append(EnsureDeployment("canary", self.s.canary_version))
        elif self.obs.canary is not None or self.obs.pods_of("canary"):
            if self.canary_kept_for_history:
                self.notes.append("the promoted canary's pod stays until its history is stored")
                self.wake_in(self.policy.poll_seconds)
            else:
                self.actions.append(RemoveDeployment("canary"))

    def hand_off_reference(self) -> None:
        stable = self.obs.reports.get("stable")
        if stable is None or not stable.reference_sha256 or stable.version != self.s.stable_version:
            return
        if self.obs.reference_stored_sha256 != stable.reference_sha256:
            self.actions.append(HandOffReference(None))
        canary = self.obs.reports.get("canary")
        if (
            self.s.canary_version is not None
            and canary is not None
            and canary.version == self.s.canary_version
            and canary.reference_sha256 != stable.reference_sha256
        ):
            self.actions.append(HandOffReference("canary"))

    def hand_off_history(self) -> None:
        """A canary lacking the stable pod's history gets it. The canary starts with the history kept at the
        last promotion; what it lacks is what the stable pod evaluated since. Decided from the two reports'
        summaries (newest entry per version), so it happens once, or twice when the stable pod had not
        evaluated since the canary started; never again once the canary holds an entry from after its
        start."""
        number, progress = self.s.canary_version, self.s.canary
        stable, canary = self.obs.reports.get("stable"), self.obs.reports.get("canary")
        if number is None or progress is None or stable is None or canary is None:
            return
        if stable.version != self.s.stable_version or canary.version != number:
            return
        stable_newest = max(stable.history_newest.values(), default=None)
        if stable_newest is None:
            return  # nothing to hand over
        inherited = max((t for v, t in canary.history_newest.items() if v != number), default=None)
        started = parse_time(progress.started)
        if inherited is None or (
            inherited < stable_newest and (started is None or inherited < started.timestamp())
        ):
            self.actions.append(HandOffHistory("canary"))

    def store_history(self) -> None:
        """Once per promotion, the promoted canary's history is stored for the new version's pods, before the
        stable Deployment moves (this action comes first in the step). Level-triggered on the stored copy's
        mark: a restart between the promotion and the write does it on the next pass, and the canary's pod
        is kept (for `history_hold_seconds` at most) until the mark says it is done."""
        number = self.s.stable_version
        if number is None or self.s.canary_version is not None or self.obs.history_stored_version == number:
            return
        canary = self.obs.reports.get("canary")
        pods = self.obs.pods_of("canary", number)
        if canary is not None and canary.version == number and canary.history_evaluations > 0:
            self.actions.append(StoreHistory(number))
        elif canary is not None or not any(p.ready for p in pods):
            return  # a canary with no history, or none serving: nothing to keep
        entry = self.entry(number)
        promoted = parse_time(entry.promoted if entry is not None else None)
        if promoted is not None and (self.now - promoted).total_seconds() < self.policy.history_hold_seconds:
            self.canary_kept_for_history = True

    def collect_garbage(self) -> None:
        keep = {self.s.stable_version, self.s.canary_version}
        if self.s.pending is not None:
            keep.add(self.s.pending.version)
        history = [v.number for v in self.s.versions if v.config_map and v.number not in keep]
        keep.update(history[len(history) - self.policy.keep_versions :] if self.policy.keep_versions else [])
        doomed = tuple(sorted(n for n in self.obs.versions if n not in keep))
        if doomed:
            self.actions.append(DeleteVersions(doomed))
            for entry in self.s.versions:
                if entry.number in doomed:
                    entry.config_map = None

    def derive_health(self) -> None:
        report = self.obs.reports.get("stable")
        if report is None or report.version != self.s.stable_version:
            return
        overall = report.health if report.health in ("good", "warning", "critical") else "unknown"
        self.s.health = Health(
            overall=overall,  # type: ignore[arg-type]
            drift_score=report.drift_score,
            drifted_features=list(report.drifted_features)[:50],
            drifted_count=len(report.drifted_features),
            last_evaluated=report.evaluated_at,
        )

    def derive_phase(self) -> None:
        self.sticky_problems()
        stable_dep = self.obs.stable
        stable_ready = (
            self.s.stable_version is not None
            and stable_dep is not None
            and stable_dep.version == self.s.stable_version
            and stable_dep.ready
        )
        failing = self.s.stable_version is not None and self.stable_failing()
        if self.s.pending is not None:
            phase = "Generating"
        elif self.s.canary_version is not None:
            phase = "Canary"
        elif self.s.stable_version is None:
            phase = "Failed" if self.degraded is not None else "Pending"
        elif self.degraded is not None or failing:
            phase = "Degraded"
        elif stable_ready:
            phase = "Running"
        else:
            phase = "Deploying"
        self.s.phase = phase  # type: ignore[assignment]
        if phase in ("Deploying", "Generating") or failing:
            self.wake_in(self.policy.poll_seconds)
        if stable_ready and not failing:
            self.set_condition("Ready", "True", "Serving", f"version {self.s.stable_version} is serving")
        elif self.obs.spec is not None:
            if failing:
                reason, why = "Failing", f"version {self.s.stable_version} is failing"
            elif self.s.stable_version is None:
                reason = phase
                why = {
                    "Generating": "the first version is being generated",
                    "Failed": "no version could be generated",
                }.get(phase, "nothing generated yet")
            else:
                reason, why = "NotReady", f"version {self.s.stable_version} is not ready yet"
            self.set_condition("Ready", "False", reason, why)
        if self.s.condition("CanaryHealthy") is None:
            self.set_condition("CanaryHealthy", "Unknown", "NoCanary", "no canary is running")
        if self.degraded is not None:
            self.set_condition("Degraded", "True", *self.degraded)
        else:
            self.set_condition("Degraded", "False", "Healthy", "nothing needs a person")
        if self.degraded is not None:
            self.s.message = _clip(self.degraded[1], 300)
        elif phase == "Canary" and self.s.canary is not None:
            self.s.message = f"canary version {self.s.canary_version}: {self.s.canary.analysis or 'starting'}"
        elif phase == "Generating" and self.s.pending is not None:
            self.s.message = f"generating version {self.s.pending.version} ({self.s.pending.reason})"
        elif failing:
            last = self.s.last_failure
            self.s.message = f"version {self.s.stable_version} is failing" + (
                f": {last.reason} ({last.signature})" if last is not None else ""
            )
        elif phase == "Running":
            self.s.message = f"version {self.s.stable_version} serving"
        elif phase == "Deploying":
            self.s.message = f"waiting for version {self.s.stable_version} to become ready"

    # -- the whole step --------------------------------------------------------------------------------------

    def run(self) -> Decision:
        self.observe_pods()
        if self.obs.spec is None:
            self.refuse_spec()
            self.desired_objects()
            self.derive_health()
            # A refused spec needs a person whether or not an older version still runs.
            self.s.phase = "Failed" if self.s.stable_version is None else "Degraded"
            self.set_condition("Degraded", "True", *self.degraded)  # type: ignore[misc]
            return self.finish()
        self.handle_annotations()
        self.resume_or_finish_generation()
        self.follow_spec()
        self.analyse_canary()
        self.regenerate_if_needed()
        self.hand_off_history()
        self.store_history()  # before the Deployments change: the promoted canary's pod is still there
        self.desired_objects()
        self.hand_off_reference()
        self.collect_garbage()
        self.derive_health()
        self.s.observed_generation = self.obs.generation
        self.derive_phase()
        return self.finish()

    def finish(self) -> Decision:
        if not self.requeue and self.s.stable_version is not None:
            self.wake_in(self.policy.resync_seconds)
        return Decision(
            status=self.s,
            actions=tuple(self.actions),
            requeue_after=min(self.requeue) if self.requeue else None,
            rollout=self.rollout,
            fixed_after_seconds=self.fixed_after,
            regenerated=self.regenerated,
            notes=tuple(self.notes),
        )


def decide(status: MonitorStatus, observation: Observation, policy: Policy | None = None) -> Decision:
    """One step of the rollout for one monitor. Pure: the input status is never modified."""
    return _Step(status, observation, policy or Policy()).run()


__all__ = ["Policy", "code_spec_hash", "decide", "feedback_from_pod", "parse_time", "rfc3339"]
