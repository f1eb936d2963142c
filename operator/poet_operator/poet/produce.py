"""One version produced in memory: what a backend stores (a ConfigMap, a local directory) after POET ran.

Both backends (Kubernetes and local processes) call `produce_version` from a worker thread: it runs the
whole pipeline in a private temporary directory and hands back the two files as text, so no backend ever
imports generated code and the stored bytes are exactly what Enforce proved.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor_runtime import contract
from poet_operator.poet.engine import PoetError, PreviousVersion, run_poet
from poet_operator.poet.events import EventSink, ListSink
from poet_operator.poet.generators.llm import ChatClient
from poet_operator.poet.train.feedback import Feedback
from poet_operator.poet.train.lessons import STORE_FORMAT, Lesson, LessonStore, LessonStoreError
from poet_operator.spec import MonitorSpec


@dataclass(frozen=True)
class ProducedVersion:
    """The outcome of one generation: the files when written, and why not otherwise."""

    version: int
    status: str  # written | enforce_failed | escalated | error
    code: str = ""
    manifest_json: str = ""
    message: str = ""
    generator: str = "template"
    lessons_applied: tuple[str, ...] = ()
    llm_calls: int = 0
    llm_tokens: int = 0
    enforce_checks: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)


def lessons_from_json(text: str | None) -> LessonStore:
    """The shared lesson store from its JSON text (empty when there is none yet)."""
    if not text or not text.strip():
        return LessonStore()
    data = json.loads(text)
    entries = data.get("lessons", []) if isinstance(data, Mapping) else data
    if not isinstance(entries, list):
        raise LessonStoreError("lessons JSON: 'lessons' must be a list")
    return LessonStore([Lesson.from_dict(e, where=f"lesson {i}") for i, e in enumerate(entries)])


def lessons_to_json(store: LessonStore) -> str:
    payload = {"format": STORE_FORMAT, "lessons": [lesson.to_dict() for lesson in store.lessons]}
    return json.dumps(payload, indent=1, sort_keys=True) + "\n"


def produce_version(
    spec: MonitorSpec,
    *,
    monitor: str,
    version: int,
    feedback: Sequence[Feedback] = (),
    previous: PreviousVersion | None = None,
    lessons: LessonStore | None = None,
    chat_client: ChatClient | None = None,
    llm_api_key: str | None = None,
    sink: EventSink | None = None,
) -> ProducedVersion:
    """Perceive, Operate, Enforce and Train for `version`; never raises for a refused version."""
    events = sink or ListSink()
    with tempfile.TemporaryDirectory(prefix="poet-version-") as tmp:
        target = Path(tmp) / f"v{version}"
        try:
            result = run_poet(
                spec,
                target,
                monitor=monitor,
                feedback=feedback,
                lessons=lessons,
                previous=previous,
                version=version,
                chat_client=chat_client,
                llm_api_key=llm_api_key,
                sink=events,
            )
        except (PoetError, contract.ContractError, OSError, ValueError) as exc:
            return ProducedVersion(version, "error", message=str(exc)[:1000])
        attempts = ((result.operate.llm if result.operate else None) or {}).get("attempts") or []
        calls = len(attempts)
        tokens = sum(
            int(a.get("prompt_tokens") or 0) + int(a.get("completion_tokens") or 0) for a in attempts
        )
        lessons_applied = tuple(f"{x.signature}:{x.remedy}" for x in result.plan.lessons_applied)
        if result.status == "escalated":
            reasons = "; ".join(f"{e.signature}: {e.reason}" for e in result.plan.escalations)
            return ProducedVersion(version, "escalated", message=reasons, llm_calls=calls, llm_tokens=tokens)
        if result.status != "written":
            reasons = "; ".join(result.report.reasons()[:5]) if result.report else result.status
            return ProducedVersion(
                version,
                "enforce_failed",
                message=f"Enforce refused the code: {reasons}",
                llm_calls=calls,
                llm_tokens=tokens,
                enforce_checks=len(result.report.checks) if result.report else 0,
            )
        code = (target / contract.CODE_FILE).read_text(encoding="utf-8")
        manifest = (target / contract.MANIFEST_FILE).read_text(encoding="utf-8")
        generator = str((result.operate.generator if result.operate else {}).get("kind") or "template")
    return ProducedVersion(
        version,
        "written",
        code=code,
        manifest_json=manifest,
        generator=generator,
        lessons_applied=lessons_applied,
        llm_calls=calls,
        llm_tokens=tokens,
        enforce_checks=len(result.report.checks) if result.report else 0,
    )


def previous_from_files(code: str, manifest_json: str) -> PreviousVersion:
    """A stored version read back (never imported): its manifest is checked against its code's hash."""
    with tempfile.TemporaryDirectory(prefix="poet-previous-") as tmp:
        directory = Path(tmp)
        (directory / contract.CODE_FILE).write_text(code, encoding="utf-8")
        (directory / contract.MANIFEST_FILE).write_text(manifest_json, encoding="utf-8")
        return PreviousVersion.load(directory)


__all__ = [
    "ProducedVersion",
    "lessons_from_json",
    "lessons_to_json",
    "previous_from_files",
    "produce_version",
]
