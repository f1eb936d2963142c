"""Lessons: remedies that worked for one monitor, offered to every monitor whose profile matches.

A lesson is (signature, conditions, remedy, evidence). Conditions are predicates over a monitor profile that
the spec alone determines (domain, template, window size, feature counts, whether feature types are left to
inference), so Perceive can apply a lesson before a new monitor ever sees the data that would crash it.
A condition is either an exact value or a bound: `{"min": x}` / `{"max": x}`.

The store is one JSON file (`{"lessons": [...]}`), written atomically so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poet_operator.poet.train.feedback import clean_signature
from poet_operator.poet.train.remedies import Remedy
from poet_operator.spec import MonitorSpec

STORE_FORMAT = 1


class LessonStoreError(ValueError):
    """A lessons file that cannot be read; the message names the file, the entry and the field."""


@dataclass(frozen=True)
class Lesson:
    """A remedy that fixed a signature, and the kind of monitor it applies to."""

    signature: str
    remedy: str
    conditions: dict[str, Any]
    evidence: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(self, "signature", clean_signature(self.signature))

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.signature, self.remedy, json.dumps(self.conditions, sort_keys=True))

    def matches(self, profile: Mapping[str, Any]) -> bool:
        """True when every condition holds for `profile` (a missing profile key never matches)."""
        return all(_condition_holds(profile.get(k), cond) for k, cond in self.conditions.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "remedy": self.remedy,
            "conditions": self.conditions,
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "lesson") -> Lesson:
        for name in ("signature", "remedy", "conditions"):
            if name not in data:
                raise LessonStoreError(f"{where}: missing field {name!r}")
        try:
            remedy = Remedy(str(data["remedy"])).value
        except ValueError:
            allowed = ", ".join(r.value for r in Remedy)
            raise LessonStoreError(
                f"{where}: field 'remedy' is {data['remedy']!r}; use one of {allowed}"
            ) from None
        conditions = data["conditions"]
        if not isinstance(conditions, Mapping):
            raise LessonStoreError(f"{where}: field 'conditions' must be an object of profile predicates")
        evidence = data.get("evidence") or []
        if not isinstance(evidence, list):
            raise LessonStoreError(f"{where}: field 'evidence' must be a list of objects")
        return cls(str(data["signature"]), remedy, dict(conditions), [dict(e) for e in evidence])


def monitor_profile(spec: MonitorSpec) -> dict[str, Any]:
    """The facts about a monitor that lessons can be conditioned on, read from its spec."""
    types = [feature.type for feature in spec.features]
    return {
        "domain": spec.domain,
        "template": spec.template,
        "optimize_for": spec.optimize_for,
        "window_size": int(spec.window_config()["size"]),
        "n_features": len(types),
        # Types left to inference (auto, or columns outside the spec) mean the monitor may meet any data.
        "infers_feature_types": spec.allow_unknown_features or not types or "auto" in types,
        "has_numeric_features": spec.allow_unknown_features or any(t != "categorical" for t in types),
        "has_categorical_features": "categorical" in types,
    }


def conditions_for(remedy: str, profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile conditions under which a remedy that worked for `profile` should be offered elsewhere."""
    base: dict[str, Any] = {"domain": profile.get("domain", "ml_monitoring")}
    if remedy == Remedy.BOUNDED_MEMORY:
        # Windows at least as large as the one that ran out of memory.
        base["window_size"] = {"min": int(profile.get("window_size") or 0)}
    elif remedy == Remedy.SAMPLED_EVALUATION:
        base["n_features"] = {"min": int(profile.get("n_features") or 0)}
    elif remedy == Remedy.SPARSE_PATH:
        base["has_numeric_features"] = True
    elif remedy == Remedy.DYNAMIC_FEATURES:
        base["infers_feature_types"] = True
    return base


class LessonStore:
    """Lessons kept in one JSON file; loading a missing file gives an empty store."""

    def __init__(self, lessons: Iterable[Lesson] = (), path: Path | None = None) -> None:
        self.lessons: list[Lesson] = list(lessons)
        self.path = path

    @classmethod
    def load(cls, path: str | Path) -> LessonStore:
        file = Path(path)
        if not file.exists():
            return cls(path=file)
        if not file.is_file():
            raise LessonStoreError(f"lessons file {file} is not a file; give the path of a lessons JSON file")
        try:
            text = file.read_text(encoding="utf-8")
            data = json.loads(text) if text.strip() else {"lessons": []}
        except json.JSONDecodeError as exc:
            raise LessonStoreError(
                f"lessons file {file} is not JSON (line {exc.lineno}): {exc.msg}"
            ) from None
        except UnicodeDecodeError as exc:
            raise LessonStoreError(f"lessons file {file} is not UTF-8 text (byte {exc.start})") from None
        except OSError as exc:
            raise LessonStoreError(f"cannot read lessons file {file}: {exc.strerror or exc}") from None
        if isinstance(data, dict) and "lessons" not in data:
            # Another JSON file given by mistake must not be read as an empty store and later overwritten.
            keys = ", ".join(sorted(map(str, data))[:5]) or "none"
            raise LessonStoreError(
                f"{file} is not a lessons file: it has no 'lessons' list (its keys: {keys}); "
                "give a lessons file written by poetmon, or a path that does not exist yet to start one"
            )
        entries = data["lessons"] if isinstance(data, dict) else data
        if not isinstance(entries, list):
            raise LessonStoreError(f"lessons file {file}: 'lessons' must be a list")
        for index, entry in enumerate(entries):
            if not isinstance(entry, Mapping):
                raise LessonStoreError(f"{file} lesson {index}: must be an object with signature, remedy")
        return cls(
            [Lesson.from_dict(e, where=f"{file} lesson {i}") for i, e in enumerate(entries)], path=file
        )

    def save(self, path: str | Path | None = None) -> Path:
        """Write the store atomically (temp file + rename)."""
        target = Path(path or self.path or "lessons.json")
        target.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": STORE_FORMAT, "lessons": [lesson.to_dict() for lesson in self.lessons]}
        fd, tmp = tempfile.mkstemp(prefix=".lessons-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, target)
        return target

    def record(
        self, signature: str, remedy: str, conditions: Mapping[str, Any], evidence: dict[str, Any]
    ) -> Lesson:
        """Add a lesson, or add evidence to the lesson with the same signature, remedy and conditions."""
        new = Lesson(signature, Remedy(remedy).value, dict(conditions), [evidence])
        for index, lesson in enumerate(self.lessons):
            if lesson.key == new.key:
                merged = Lesson(
                    lesson.signature, lesson.remedy, lesson.conditions, [*lesson.evidence, evidence]
                )
                self.lessons[index] = merged
                return merged
        self.lessons.append(new)
        return new

    def matching(self, profile: Mapping[str, Any]) -> list[Lesson]:
        """Lessons whose conditions hold for `profile`, in a stable order."""
        return sorted((lesson for lesson in self.lessons if lesson.matches(profile)), key=lambda x: x.key)


def _condition_holds(value: Any, condition: Any) -> bool:
    if value is None:
        return False
    if isinstance(condition, Mapping):
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        low, high = condition.get("min"), condition.get("max")
        return (low is None or value >= low) and (high is None or value <= high)
    return value == condition
