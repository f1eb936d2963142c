"""Manual control of a rollout through annotations on the ModelMonitor: what each command writes.

`promote`, `abort` and `regenerate` are one-shot requests: the value is the time of the request (so a second
request is a new value, and the operator can tell them apart); the operator acts once, records the outcome
in `status.lastManualAction` and removes the annotation. `pause` sets `poet.dev/paused: "true"` until
`resume` removes it. Every command is a JSON merge patch of `metadata.annotations` (null removes a key).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from poet_operator.rollout.machine import ABORT as ANNOTATION_ABORT
from poet_operator.rollout.machine import ONE_SHOT_ANNOTATIONS
from poet_operator.rollout.machine import PAUSED as ANNOTATION_PAUSED
from poet_operator.rollout.machine import PROMOTE as ANNOTATION_PROMOTE
from poet_operator.rollout.machine import REGENERATE as ANNOTATION_REGENERATE

ManualCommand = Literal["promote", "abort", "regenerate", "pause", "resume"]
MANUAL_COMMANDS: tuple[ManualCommand, ...] = ("promote", "abort", "regenerate", "pause", "resume")

_ONE_SHOT: dict[str, str] = {
    "promote": ANNOTATION_PROMOTE,
    "abort": ANNOTATION_ABORT,
    "regenerate": ANNOTATION_REGENERATE,
}


def _rfc3339(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def annotation_patch(command: ManualCommand, now: datetime) -> dict[str, Any]:
    """The merge patch a command sends to the ModelMonitor."""
    if command in _ONE_SHOT:
        value: str | None = _rfc3339(now)
        key = _ONE_SHOT[command]
    elif command == "pause":
        key, value = ANNOTATION_PAUSED, "true"
    elif command == "resume":
        key, value = ANNOTATION_PAUSED, None
    else:
        raise ValueError(f"unknown command {command!r}; expected one of {', '.join(MANUAL_COMMANDS)}")
    return {"metadata": {"annotations": {key: value}}}


# The machine reads poet.dev/paused the same way: any value but these pauses.
_NOT_PAUSED_WORDS = frozenset({"", "false", "0", "no", "off"})


def pause_asked(obj: Mapping[str, Any]) -> bool:
    """What a person asked for with the annotation."""
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(ANNOTATION_PAUSED, "")).strip().lower() not in _NOT_PAUSED_WORDS


def is_paused(obj: Mapping[str, Any]) -> bool:
    """Paused as the operator acknowledged it in status, or as asked and not yet acknowledged."""
    return pause_asked(obj) or bool((obj.get("status") or {}).get("paused"))


def pause_state(obj: Mapping[str, Any]) -> str | None:
    """The pause in words for the status header, or None when the rollout runs."""
    asked, acknowledged = pause_asked(obj), bool((obj.get("status") or {}).get("paused"))
    if asked and acknowledged:
        return "Paused"
    if asked:
        return "Pause requested (waiting for the operator)"
    if acknowledged:
        return "Paused (resume requested, waiting for the operator)"
    return None


def request_message(command: ManualCommand, obj: Mapping[str, Any]) -> str:
    """What the command asked for, in one line, with a note when there is nothing for it to act on."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    name, namespace = meta.get("name", "?"), meta.get("namespace", "?")
    canary, stable = status.get("canaryVersion"), status.get("stableVersion")
    pending = (status.get("pending") or {}).get("version")
    follow = f"; follow it with: kubectl poet status {name} -n {namespace}"
    if command == "promote":
        if canary is None:
            return f"promote requested for {name}, but it has no canary now (stable v{stable}){follow}"
        return f"promote requested for {name}: canary v{canary} replaces stable v{stable}{follow}"
    if command == "abort":
        if canary is None and pending is None:
            return f"abort requested for {name}, but no canary or generation is in progress{follow}"
        target = f"canary v{canary}" if canary is not None else f"the generation of v{pending}"
        return f"abort requested for {name}: {target} is rolled back{follow}"
    if command == "regenerate":
        what = "a new version is generated from the spec and all feedback"
        return f"regenerate requested for {name}: {what}{follow}"
    if command == "pause":
        already = " (it was already paused)" if is_paused(obj) else ""
        return f"{name} paused: no regeneration, promotion or rollback until resumed{already}"
    return f"{name} resumed" + ("" if is_paused(obj) else " (it was not paused)")


__all__ = [
    "ANNOTATION_ABORT",
    "ANNOTATION_PAUSED",
    "ANNOTATION_PROMOTE",
    "ANNOTATION_REGENERATE",
    "MANUAL_COMMANDS",
    "ONE_SHOT_ANNOTATIONS",
    "ManualCommand",
    "annotation_patch",
    "is_paused",
    "pause_asked",
    "pause_state",
    "request_message",
]
