"""Escalation: when regenerating would not help, say so instead of looping.

A signature is escalated when it hit a version that already carried the remedy for it (the remedy did not
work), or when the template generator has no remedy for it at all (a new version would be the same code).
Escalated signatures need a person, or a different generator; the engine reports them and does not spend a
version on them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from poet_operator.poet.train.feedback import Feedback
from poet_operator.poet.train.remedies import remedy_for


@dataclass(frozen=True)
class Escalation:
    """One signature that regeneration will not fix, and why."""

    signature: str
    reason: str
    remedy: str | None
    version: int | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "reason": self.reason,
            "remedy": self.remedy,
            "version": self.version,
        }


def remedies_in_effect(manifest: Mapping[str, Any] | None) -> dict[str, str]:
    """signature -> remedy already applied by a version, read from its manifest."""
    if not manifest:
        return {}
    applied = manifest.get("poet", {}).get("remedies", [])
    return {
        str(r["signature"]): str(r["remedy"]) for r in applied if isinstance(r, Mapping) and "signature" in r
    }


def find_escalations(
    feedback: Sequence[Feedback],
    previous_manifest: Mapping[str, Any] | None,
    *,
    generator: str,
) -> list[Escalation]:
    """Feedback signatures that must be escalated rather than regenerated."""
    in_effect = remedies_in_effect(previous_manifest)
    remedy_kinds = set(in_effect.values())
    previous_version = previous_manifest.get("version") if previous_manifest else None
    escalations: list[Escalation] = []
    seen: set[str] = set()
    for record in feedback:
        if record.signature in seen:
            continue
        seen.add(record.signature)
        remedy = remedy_for(record)
        hit_previous = previous_version is None or record.version in (None, previous_version)
        if (
            hit_previous
            and remedy is not None
            and (in_effect.get(record.signature) == remedy.value or remedy.value in remedy_kinds)
        ):
            escalations.append(
                Escalation(
                    record.signature,
                    f"survived its remedy {remedy.value!r} in version {previous_version}",
                    remedy.value,
                    record.version,
                )
            )
        elif remedy is None and generator == "template":
            escalations.append(
                Escalation(
                    record.signature,
                    "no known remedy; the template would regenerate the same code",
                    None,
                    record.version,
                )
            )
    return escalations


def escalated_signatures(escalations: Iterable[Escalation]) -> set[str]:
    return {e.signature for e in escalations}


__all__ = ["Escalation", "escalated_signatures", "find_escalations", "remedies_in_effect"]
