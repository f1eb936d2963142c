"""The POET pipeline: Perceive, Operate, Enforce, Train, and the version directory it produces.

- Perceive reads the spec, the feedback, the previous version and the lessons, and decides what the next
  version must change (remedies), what must be proven (extra enforce scenarios from crashing batches) and
  what must not be retried (escalations).
- Operate writes the code: the template generator, or the LLM generator with a fallback to the template.
- Enforce proves it (static policy, sandboxed contract scenarios); nothing that fails is written.
- Train turns the outcome into data: lessons for other monitors when an earlier remedy held.

Every step emits a `PoetEvent`. `generate_command` is `poetmon generate`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor_runtime import contract
from poet_operator.poet.enforce import (
    PROFILES_KEY,
    EnforceReport,
    SandboxLimits,
    enforce_code,
    scenario_from_profile,
)
from poet_operator.poet.enforce.scenarios import ProfileError, Scenario
from poet_operator.poet.events import EventEmitter, EventSink, JsonLinesSink
from poet_operator.poet.generators.llm import (
    ChatClient,
    CheckResult,
    LLMBudget,
    LLMConfig,
    LLMGenerator,
    LLMOutcome,
)
from poet_operator.poet.generators.prompt import CONTRACT_FALLBACK, PromptContext
from poet_operator.poet.generators.template import TemplateError, TemplatePlan, render
from poet_operator.poet.train.escalation import Escalation, find_escalations
from poet_operator.poet.train.feedback import Feedback, FeedbackError, clean_signature, load_feedback_file
from poet_operator.poet.train.lessons import (
    Lesson,
    LessonStore,
    LessonStoreError,
    conditions_for,
    monitor_profile,
)
from poet_operator.poet.train.remedies import REMEDY_DESCRIPTIONS, Remedy, remedy_for
from poet_operator.spec import MonitorSpec, SpecError, load_document_file

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_ESCALATED = 3

_REPO_DOCS = Path(__file__).resolve().parents[3] / "docs"


class PoetError(RuntimeError):
    """The pipeline could not produce a version; the message says why and what to do."""


@dataclass(frozen=True)
class PreviousVersion:
    """The version the feedback is about: its manifest (as a dict) and its code."""

    manifest: dict[str, Any]
    code: str

    @property
    def number(self) -> int:
        return int(self.manifest["version"])

    @property
    def poet(self) -> dict[str, Any]:
        return dict(self.manifest.get("poet") or {})

    @classmethod
    def load(cls, directory: str | Path) -> PreviousVersion:
        """Read (never import) a version directory after verifying its manifest and hash."""
        try:
            manifest, code = contract.verify_version_dir(directory)
        except UnicodeDecodeError as exc:
            raise contract.ContractError(
                f"{Path(directory) / contract.MANIFEST_FILE} is not UTF-8 text (byte {exc.start}); "
                "pass a version directory written by poetmon generate"
            ) from None
        try:
            text = code.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise contract.ContractError(
                f"{Path(directory) / contract.CODE_FILE} is not UTF-8 text (byte {exc.start})"
            ) from None
        return cls(manifest.to_dict(), text)


@dataclass(frozen=True)
class AppliedRemedy:
    """A remedy in the plan and why: `feedback` (new), `carried` (an earlier version's) or `lesson`."""

    signature: str
    remedy: str
    origin: str

    def to_dict(self) -> dict[str, str]:
        return {"signature": self.signature, "remedy": self.remedy, "origin": self.origin}


@dataclass
class Plan:
    """What Perceive decided: the input to Operate, Enforce and Train."""

    spec: MonitorSpec
    monitor: str
    version: int
    generator: str
    feedback: list[Feedback]
    remedies: list[AppliedRemedy]
    lessons_applied: list[Lesson]
    escalations: list[Escalation]
    profiles: list[dict[str, Any]]
    previous: PreviousVersion | None = None
    held_remedies: list[AppliedRemedy] = field(default_factory=list)

    @property
    def regenerations(self) -> int:
        """Consecutive versions generated from feedback, this one included."""
        if not self.feedback:
            return 0
        return (int(self.previous.poet.get("regenerations", 0)) if self.previous else 0) + 1

    @property
    def blocked(self) -> bool:
        """True when every feedback signature is escalated: a new version would change nothing."""
        if not self.feedback or not self.escalations:
            return False
        escalated = {e.signature for e in self.escalations}
        return all(f.signature in escalated for f in self.feedback)

    def template_plan(self) -> TemplatePlan:
        remedies = sorted({(r.signature, r.remedy) for r in self.remedies if r.origin != "lesson"})
        lessons = sorted({(r.signature, r.remedy) for r in self.remedies if r.origin == "lesson"})
        return TemplatePlan(self.spec, self.spec.spec_hash(), tuple(remedies), tuple(lessons))

    def scenarios(self) -> list[Scenario]:
        return [scenario_from_profile(p, name=f"{PROFILES_KEY}[{i}]") for i, p in enumerate(self.profiles)]


@dataclass
class OperateResult:
    """The code Operate produced and how."""

    code: str
    generator: dict[str, Any]
    choices: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] | None = None
    report: EnforceReport | None = None  # the LLM path already enforced the accepted code


@dataclass
class PoetResult:
    """The outcome of one run of the pipeline."""

    status: str  # written | enforce_failed | escalated
    plan: Plan
    operate: OperateResult | None = None
    report: EnforceReport | None = None
    manifest: contract.VersionManifest | None = None
    lessons_recorded: list[Lesson] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"written": EXIT_OK, "escalated": EXIT_ESCALATED}.get(self.status, EXIT_FAILED)


# -- Perceive ------------------------------------------------------------------------------------------------


def perceive(
    spec: MonitorSpec,
    *,
    monitor: str,
    feedback: Sequence[Feedback] = (),
    lessons: LessonStore | None = None,
    previous: PreviousVersion | None = None,
    version: int | None = None,
    generator: str | None = None,
    events: EventEmitter | None = None,
) -> Plan:
    """Decide what the next version must do, from the spec, the feedback, the previous version and lessons."""
    events = events or EventEmitter(None, monitor=monitor, version=version)
    kind = generator or spec.generator.kind
    number = version if version is not None else (previous.number + 1 if previous else 1)
    previous_manifest = previous.manifest if previous else None
    escalations = find_escalations(feedback, previous_manifest, generator=kind)
    regenerations = int(previous.poet.get("regenerations", 0)) if previous else 0
    budget = spec.rollout.regeneration_budget
    if feedback and regenerations >= budget:
        # Consecutive versions made from feedback are capped: past the budget a person has to look.
        listed = {e.signature for e in escalations}
        reason = (
            f"regeneration budget spent: {regenerations} consecutive versions from feedback (budget {budget})"
        )
        escalations += [
            Escalation(f.signature, reason, None, f.version) for f in feedback if f.signature not in listed
        ]
    escalated = {e.signature for e in escalations}
    for escalation in escalations:
        events.emit("poet.train.escalated", **escalation.to_dict())

    remedies: list[AppliedRemedy] = []
    in_effect: set[str] = set()

    def add(signature: str, remedy: str, origin: str) -> None:
        if remedy not in in_effect:
            in_effect.add(remedy)
            remedies.append(AppliedRemedy(signature, remedy, origin))

    # Earlier remedies stay: a new version must not reintroduce a fixed failure.
    for entry in previous.poet.get("remedies", []) if previous else []:
        known = isinstance(entry, Mapping) and str(entry.get("remedy")) in {r.value for r in Remedy}
        if not known or "signature" not in entry:
            events.emit("poet.perceive.remedy_skipped", entry=str(entry)[:200], reason="not a known remedy")
            continue
        add(clean_signature(entry["signature"]), str(entry["remedy"]), "carried")
    for record in feedback:
        remedy = remedy_for(record)
        if remedy is not None and record.signature not in escalated:
            add(record.signature, remedy.value, "feedback")
    applied_lessons: list[Lesson] = []
    for lesson in lessons.matching(monitor_profile(spec)) if lessons else []:
        if lesson.remedy not in in_effect:
            add(lesson.signature, lesson.remedy, "lesson")
            applied_lessons.append(lesson)
            events.emit(
                "poet.perceive.lesson_applied",
                signature=lesson.signature,
                remedy=lesson.remedy,
                conditions=lesson.conditions,
            )

    profiles = []
    for data_profile in _profiles(feedback, previous):
        try:
            scenario_from_profile(data_profile)
        except ProfileError as exc:
            # A profile the scenarios cannot replay must not block the fix; say so and go on.
            events.emit("poet.perceive.profile_skipped", reason=str(exc))
            continue
        profiles.append(data_profile)
    held = _held_remedies(feedback, previous)
    plan = Plan(
        spec,
        monitor,
        number,
        kind,
        list(feedback),
        remedies,
        applied_lessons,
        escalations,
        profiles,
        previous,
        held,
    )
    events.emit(
        "poet.perceive.completed",
        generator=kind,
        feedback=[f.signature for f in feedback],
        remedies=[r.to_dict() for r in remedies],
        lessons_applied=[{"signature": x.signature, "remedy": x.remedy} for x in applied_lessons],
        escalations=[e.signature for e in escalations],
        extra_scenarios=len(profiles),
    )
    return plan


def _profiles(feedback: Sequence[Feedback], previous: PreviousVersion | None) -> list[dict[str, Any]]:
    """Crashing batches' profiles (normalised), carried forward so every later version is tested on them."""
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    carried = list(previous.manifest.get(PROFILES_KEY) or []) if previous else []
    for profile in [*carried, *(f.data_profile for f in feedback if f.data_profile)]:
        normal = dict(profile)
        # The runtime's crash record says `rows`; scenarios read `n_rows`.
        if "n_rows" not in normal and isinstance(normal.get("rows"), int):
            normal["n_rows"] = normal.pop("rows")
        key = json.dumps(normal, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(normal)
    return out


def _held_remedies(feedback: Sequence[Feedback], previous: PreviousVersion | None) -> list[AppliedRemedy]:
    """Remedies of the previous version whose signature did not come back although the version ran.

    Evidence that the version ran is feedback about it (a later, different failure); without feedback on it
    the operator confirms health with `confirm_healthy_version`.
    """
    if previous is None:
        return []
    about_previous = [f for f in feedback if f.version == previous.number]
    if not about_previous:
        return []
    returned = {f.signature for f in about_previous}
    return [
        AppliedRemedy(str(r["signature"]), str(r["remedy"]), "held")
        for r in previous.poet.get("remedies", [])
        if r.get("origin") == "feedback" and r["signature"] not in returned
    ]


# -- Operate -------------------------------------------------------------------------------------------------


def operate(
    plan: Plan,
    *,
    events: EventEmitter,
    chat_client: ChatClient | None = None,
    enforce_fn: Callable[[str], EnforceReport] | None = None,
    limits: SandboxLimits | None = None,
    llm_api_key: str | None = None,
) -> OperateResult:
    """Generate code for the plan: template, or LLM with a template fallback."""
    events.emit("poet.operate.started", generator=plan.generator)
    template_code, choices = render(plan.template_plan())
    template_info = {"kind": "template", "model": None, "template": plan.spec.template}
    if plan.generator != "llm":
        events.emit("poet.operate.completed", generator="template", code_bytes=len(template_code))
        return OperateResult(template_code, template_info, choices.to_dict())

    check_report = enforce_fn or (
        lambda code: enforce_code(code, plan.spec, extra_scenarios=plan.scenarios(), limits=limits)
    )
    config = LLMConfig.from_spec(plan.spec.generator.llm)
    if llm_api_key:
        config = dataclasses.replace(config, api_key=llm_api_key)
    spent = (plan.previous.poet.get("llm") or {}).get("budget") if plan.previous else None
    budget = LLMBudget.starting_from(config, spent)

    def on_attempt(attempt: Any) -> None:
        events.emit("poet.operate.llm_attempt", **attempt.to_dict())

    generator = LLMGenerator(config, budget, client=chat_client, on_attempt=on_attempt)

    def check(code: str) -> CheckResult:
        report = check_report(code)
        return CheckResult(report.passed, report.reasons(), report)

    outcome = generator.generate(prompt_context(plan, starting_point=template_code), check)
    llm_record = _llm_record(config, outcome)
    if outcome.accepted and outcome.code is not None:
        events.emit(
            "poet.operate.completed",
            generator="llm",
            model=config.model,
            rounds=len(outcome.attempts),
            budget=budget.to_dict(),
        )
        info = {"kind": "llm", "model": config.model, "baseUrl": config.base_url}
        report = outcome.check.report if outcome.check else None
        return OperateResult(outcome.code, info, {}, llm_record, report)
    events.emit(
        "poet.operate.fallback",
        from_generator="llm",
        to_generator="template",
        reason=outcome.failure,
        budget=budget.to_dict(),
    )
    info = {
        **template_info,
        "fallbackFrom": "llm",
        "fallbackReason": outcome.failure,
        "llmModel": config.model,
    }
    return OperateResult(template_code, info, choices.to_dict(), llm_record)


def _llm_record(config: LLMConfig, outcome: LLMOutcome) -> dict[str, Any]:
    return {
        "model": config.model,
        "accepted": outcome.accepted,
        "failure": outcome.failure,
        "attempts": [a.to_dict() for a in outcome.attempts],
        "budget": outcome.budget.to_dict(),
    }


def prompt_context(plan: Plan, *, starting_point: str | None = None) -> PromptContext:
    """What the LLM is told: domain, contract, toolkit, spec, previous code, feedback, remedies, lessons."""
    return PromptContext(
        spec=plan.spec.to_dict(),
        contract_text=contract_text(),
        toolkit_text=toolkit_text(),
        previous_code=plan.previous.code if plan.previous else None,
        previous_version=plan.previous.number if plan.previous else None,
        feedback=list(plan.feedback),
        remedies=[
            {**r.to_dict(), "description": REMEDY_DESCRIPTIONS[Remedy(r.remedy)]}
            for r in plan.remedies
            if r.origin != "lesson"
        ],
        lessons=[{"signature": x.signature, "remedy": x.remedy} for x in plan.lessons_applied],
        starting_point=starting_point,
    )


def contract_text() -> str:
    """docs/contract.md when the source tree is at hand, else the contract module's own summary."""
    path = _REPO_DOCS / "contract.md"
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return CONTRACT_FALLBACK + "\n" + (contract.__doc__ or "")


def toolkit_text() -> str:
    """The toolkit's public functions with their signatures and first docstring line."""
    from monitor_runtime import toolkit

    lines = [(toolkit.__doc__ or "").strip(), ""]
    for name in getattr(toolkit, "__all__", []):
        obj = getattr(toolkit, name, None)
        if obj is None or name == "set_event_sink":
            continue
        target = obj.fit if name == "Reference" else obj
        try:
            signature = str(inspect.signature(target))
        except (TypeError, ValueError):
            signature = "(...)"
        doc = (inspect.getdoc(target) or "").split("\n", 1)[0]
        label = "Reference.fit" if name == "Reference" else name
        lines.append(f"- toolkit.{label}{signature}: {doc}")
    lines.append("- Reference.detect(current) -> drift result (docs/drift-result.md)")
    return "\n".join(lines)


# -- Enforce -------------------------------------------------------------------------------------------------


def enforce(
    plan: Plan, code: str, *, events: EventEmitter, limits: SandboxLimits | None = None
) -> EnforceReport:
    """Prove the code with the spec's scenarios plus the crashing batches' profiles."""
    report = enforce_code(code, plan.spec, extra_scenarios=plan.scenarios(), limits=limits)
    events.emit(
        "poet.enforce.completed",
        passed=report.passed,
        checks=len(report.checks),
        failed=[c.name for c in report.failed_checks],
        seconds=round(float(report.timings.get("total", 0.0)), 3),
    )
    return report


# -- Train ---------------------------------------------------------------------------------------------------


def train(plan: Plan, *, lessons: LessonStore | None, events: EventEmitter) -> list[Lesson]:
    """Record lessons for remedies that held on the previous version."""
    if lessons is None or not plan.held_remedies or plan.previous is None:
        return []
    return record_lessons(
        plan.spec,
        plan.held_remedies,
        lessons,
        evidence={
            "monitor": plan.monitor,
            "fixed_in_version": plan.previous.number,
            "observed": "the version ran and its later feedback did not repeat the signature",
            "later_signatures": sorted({f.signature for f in plan.feedback}),
        },
        events=events,
    )


def confirm_healthy_version(
    manifest: Mapping[str, Any],
    lessons: LessonStore,
    *,
    evidence: Mapping[str, Any],
    events: EventEmitter | None = None,
) -> list[Lesson]:
    """A version passed its canary: every remedy it introduced for feedback becomes a lesson."""
    spec = MonitorSpec.from_mapping(manifest["spec"], path_prefix="manifest.spec")
    remedies = [
        AppliedRemedy(str(r["signature"]), str(r["remedy"]), "held")
        for r in (manifest.get("poet") or {}).get("remedies", [])
        if r.get("origin") == "feedback"
    ]
    emitter = events or EventEmitter(
        None, monitor=str(manifest.get("monitor")), version=manifest.get("version")
    )
    return record_lessons(
        spec,
        remedies,
        lessons,
        evidence={
            "monitor": manifest.get("monitor"),
            "fixed_in_version": manifest.get("version"),
            **evidence,
        },
        events=emitter,
    )


def record_lessons(
    spec: MonitorSpec,
    remedies: Sequence[AppliedRemedy],
    lessons: LessonStore,
    *,
    evidence: Mapping[str, Any],
    events: EventEmitter,
) -> list[Lesson]:
    profile = monitor_profile(spec)
    recorded = []
    for remedy in remedies:
        lesson = lessons.record(
            remedy.signature, remedy.remedy, conditions_for(remedy.remedy, profile), dict(evidence)
        )
        recorded.append(lesson)
        events.emit(
            "poet.train.lesson_recorded",
            signature=remedy.signature,
            remedy=remedy.remedy,
            conditions=lesson.conditions,
        )
    return recorded


# -- the whole pipeline --------------------------------------------------------------------------------------


def run_poet(
    spec: MonitorSpec,
    output_dir: str | Path,
    *,
    monitor: str,
    feedback: Sequence[Feedback] = (),
    lessons: LessonStore | None = None,
    previous: PreviousVersion | None = None,
    version: int | None = None,
    generator: str | None = None,
    sink: EventSink | None = None,
    chat_client: ChatClient | None = None,
    limits: SandboxLimits | None = None,
    llm_api_key: str | None = None,
) -> PoetResult:
    """Perceive, Operate, Enforce, Train; write the version directory only when Enforce passed."""
    problem = version_problem(version, previous)
    if problem:
        raise PoetError(problem)
    number = version if version is not None else (previous.number + 1 if previous else 1)
    events = EventEmitter(sink, monitor=monitor, version=number)
    plan = perceive(
        spec,
        monitor=monitor,
        feedback=feedback,
        lessons=lessons,
        previous=previous,
        version=number,
        generator=generator,
        events=events,
    )
    if plan.blocked:
        events.emit("poet.generate.escalated", signatures=[e.signature for e in plan.escalations])
        return PoetResult("escalated", plan)
    result = operate(plan, events=events, chat_client=chat_client, limits=limits, llm_api_key=llm_api_key)
    report = result.report if result.report is not None and result.report.passed else None
    if report is None:
        report = enforce(plan, result.code, events=events, limits=limits)
    else:
        events.emit(
            "poet.enforce.completed",
            passed=True,
            checks=len(report.checks),
            failed=[],
            seconds=round(float(report.timings.get("total", 0.0)), 3),
            reused=True,
        )
    if not report.passed:
        return PoetResult("enforce_failed", plan, result, report)
    recorded = train(plan, lessons=lessons, events=events)
    manifest = contract.write_version_dir(
        output_dir,
        code=result.code,
        version=plan.version,
        monitor=monitor,
        model=spec.model,
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash(),
        generator=result.generator,
        answers_feedback=[f.signature for f in plan.feedback],
        lessons_applied=[
            {"signature": x.signature, "remedy": x.remedy, "conditions": x.conditions}
            for x in plan.lessons_applied
        ],
        enforce=report.to_dict(),
        extra={
            PROFILES_KEY: plan.profiles,
            "poet": {
                "executionId": events.execution_id,
                "regenerations": plan.regenerations,
                "remedies": [r.to_dict() for r in plan.remedies],
                "escalations": [e.to_dict() for e in plan.escalations],
                "feedback": [f.to_dict() for f in plan.feedback],
                "choices": result.choices,
                "llm": result.llm,
            },
        },
    )
    events.emit(
        "poet.version.written",
        directory=str(output_dir),
        code_sha256=manifest.code_sha256,
        generator=result.generator.get("kind"),
    )
    return PoetResult("written", plan, result, report, manifest, recorded)


def generate_command(
    spec_file: str,
    output_dir: str,
    feedback_files: Sequence[str] = (),
    lessons_file: str | None = None,
    generator: str | None = None,
    version_number: int | None = None,
    previous_dir: str | None = None,
    events_file: str | None = None,
) -> int:
    """`poetmon generate`: write a version directory.

    Exit status: 0 written, 1 enforce failed, 2 bad input, 3 every feedback signature escalated.

    A human summary goes to stdout, the POET events as JSON lines to stderr (or `events_file`). Every input
    and the output location are checked before any code is generated, so a mistake costs no enforce run.
    """
    try:
        document = load_document_file(spec_file)
        feedback = [record for path in feedback_files for record in load_feedback_file(path)]
        lessons = LessonStore.load(lessons_file) if lessons_file else None
        previous = PreviousVersion.load(previous_dir) if previous_dir else None
    except (SpecError, FeedbackError, LessonStoreError, contract.ContractError, ProfileError) as exc:
        return _bad_input(str(exc))
    problem = version_problem(version_number, previous) or output_problem(Path(output_dir))
    if problem:
        return _bad_input(problem)
    try:
        handle = open(events_file, "a", encoding="utf-8") if events_file else None  # noqa: SIM115
    except OSError as exc:
        return _bad_input(f"cannot open the events file {events_file}: {exc.strerror or exc}")
    try:
        sink = JsonLinesSink(handle or sys.stderr)
        try:
            result = run_poet(
                document.spec,
                output_dir,
                monitor=document.name,
                feedback=feedback,
                lessons=lessons,
                previous=previous,
                version=version_number,
                generator=generator,
                sink=sink,
            )
        except (contract.ContractError, ProfileError, PoetError) as exc:
            return _bad_input(str(exc))
        except TemplateError as exc:
            print(f"poetmon generate: the template could not be rendered: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except OSError as exc:
            where = f" {exc.filename}" if exc.filename else ""
            target = Path(output_dir)
            if not (target / contract.MANIFEST_FILE).exists():
                # The output held no version before this run, so a code file without a manifest is ours.
                with contextlib.suppress(OSError):
                    (target / contract.CODE_FILE).unlink(missing_ok=True)
            events_note = f" and the events file {events_file}" if handle else ""
            print(
                f"poetmon generate: cannot write{where}: {exc.strerror or exc}; no version was written, "
                f"check the output directory {output_dir}{events_note}",
                file=sys.stderr,
            )
            return EXIT_FAILED
    finally:
        if handle is not None:
            with contextlib.suppress(OSError):  # the write error, if any, was reported above
                handle.close()
    if lessons is not None and result.lessons_recorded:
        try:
            lessons.save()
        except OSError as exc:
            print(
                f"poetmon generate: the version was written but the lessons file {lessons.path} could not be "
                f"saved: {exc.strerror or exc}",
                file=sys.stderr,
            )
            print(summarise(result))
            return EXIT_FAILED
    print(summarise(result))
    return result.exit_code


def _bad_input(message: str) -> int:
    print(f"poetmon generate: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def version_problem(version: int | None, previous: PreviousVersion | None) -> str | None:
    """Why `version` cannot be the next version number (None when it can)."""
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"--version-number {version!r} is not a positive integer; versions start at 1"
    if previous is not None and version <= previous.number:
        return (
            f"--version-number {version} is not above the previous version {previous.number}; "
            f"use {previous.number + 1} or leave it out"
        )
    return None


def output_problem(target: Path) -> str | None:
    """Why a version directory cannot be written at `target` (None when it can).

    The check creates what is missing and writes a probe file, then removes both: only trying tells whether
    a path is writable (permissions, read-only mounts, /proc), and the result must be known before the
    minutes of generating and enforcing are spent.
    """
    if target.exists() and not target.is_dir():
        return f"output {target} exists and is not a directory; give a new directory path"
    if (target / contract.CODE_FILE).exists() or (target / contract.MANIFEST_FILE).exists():
        return f"{target} already holds a version; versions are immutable, choose a new output directory"
    created: list[Path] = []
    try:
        missing = [p for p in (target, *target.parents) if not p.exists()]
        for directory in reversed(missing):
            directory.mkdir()
            created.append(directory)
        fd, probe = tempfile.mkstemp(prefix=".poet-write-check-", dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        where = exc.filename or target
        return f"cannot write the output directory {target} ({where}: {exc.strerror or exc}); choose another"
    finally:
        for directory in reversed(created):
            try:
                directory.rmdir()
            except OSError:
                break
    return None


def summarise(result: PoetResult) -> str:
    """A few lines a person reads after `poetmon generate`."""
    plan = result.plan
    lines = []
    if result.status == "escalated":
        lines.append(f"no new version for {plan.monitor}: every feedback signature is escalated")
    elif result.status == "enforce_failed" and result.report is not None:
        lines.append(f"version {plan.version} of {plan.monitor} was NOT written: enforce failed")
        lines += [f"  {reason}" for reason in result.report.reasons()]
    elif result.manifest is not None and result.operate is not None:
        generator = result.operate.generator
        made_by = generator["kind"] + (f" ({generator['model']})" if generator.get("model") else "")
        if generator.get("fallbackFrom"):
            made_by += (
                f", after the {generator['fallbackFrom']} generator failed: {generator['fallbackReason']}"
            )
        lines.append(f"wrote version {plan.version} of {plan.monitor} (generator {made_by})")
        lines.append(f"  enforce passed: {len(result.report.checks) if result.report else 0} checks")
    for remedy in plan.remedies:
        lines.append(f"  remedy {remedy.remedy} for {remedy.signature} ({remedy.origin})")
    for escalation in plan.escalations:
        lines.append(f"  escalated {escalation.signature}: {escalation.reason}")
    for lesson in result.lessons_recorded:
        lines.append(f"  lesson recorded: {lesson.signature} -> {lesson.remedy}")
    return "\n".join(lines)
