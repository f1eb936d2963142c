"""Text for people: a ModelMonitor's status, its version history, and what changed between two versions.

Pure functions of plain dicts (the custom resource as the API returns it, the version ConfigMaps' data) and
the current time; no I/O. The layout follows `kubectl argo rollouts get rollout`: a header block readable at a
glance, then tables. Colors are ANSI escapes, added only when the caller says so (a TTY, no NO_COLOR).
"""

from __future__ import annotations

import difflib
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from poet_operator.rollout.manual import ONE_SHOT_ANNOTATIONS, pause_state
from poet_operator.rollout.status import MonitorStatus, VersionEntry

DEFAULT_WIDTH = 100
STATUS_VERSION_ROWS = 8  # the status view shows the newest versions; `history` shows them all
_LABEL_WIDTH = 15  # "Regenerations: " is the longest header label

_RESET = "\x1b[0m"
_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "blue": "34", "cyan": "36"}

PHASE_SYMBOLS: dict[str, tuple[str, str]] = {
    "Running": ("✔", "green"),
    "Canary": ("◌", "yellow"),
    "Pending": ("◌", "dim"),
    "Generating": ("◌", "cyan"),
    "Deploying": ("◌", "cyan"),
    "Degraded": ("✖", "red"),
    "Failed": ("✖", "red"),
}
HEALTH_SYMBOLS: dict[str, tuple[str, str]] = {
    "good": ("✔", "green"),
    "warning": ("⚠", "yellow"),
    "critical": ("✖", "red"),
    "unknown": ("?", "dim"),
}
STATE_SYMBOLS: dict[str, tuple[str, str]] = {
    "stable": ("✔", "green"),
    "canary": ("◌", "yellow"),
    "promoted": ("✔", "green"),
    "superseded": ("·", "dim"),
    "rolled-back": ("↺", "red"),
    "rejected": ("✖", "red"),
}
PAUSED_SYMBOL = "॥"


class Style:
    """ANSI styling that is a no-op when color is off."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def __call__(self, text: str, *styles: str) -> str:
        if not self.color or not styles or not text:
            return text
        return "".join(f"\x1b[{_CODES[s]}m" for s in styles) + text + _RESET


# -- time ------------------------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time (as Kubernetes writes it), or None when absent or unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """A duration the way kubectl prints ages: 45s, 3m12s, 17m, 2h5m, 9h, 3d4h, 12d, 2y."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def age(value: str | None, now: datetime) -> str:
    """How long ago an RFC 3339 time was ("-" when unknown)."""
    then = parse_time(value)
    return human_duration((now - then).total_seconds()) if then is not None else "-"


# -- layout helpers --------------------------------------------------------------------------------------


def _field(label: str, value: str, width: int) -> list[str]:
    """`Label:        value`, the value wrapped under itself when it is long."""
    head = f"{label + ':':<{_LABEL_WIDTH}}"
    return _wrap_after(head, value, width)


def _wrap_after(head: str, value: str, width: int) -> list[str]:
    indent = " " * _visible_len(head)
    room = max(20, width - len(indent))
    lines: list[str] = []
    for paragraph in (value or "").splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, room, break_long_words=True, break_on_hyphens=False) or [""])
    return [head + lines[0], *(indent + line for line in lines[1:])]


def _visible_len(text: str) -> int:
    out, i = 0, 0
    while i < len(text):
        if text[i] == "\x1b":
            i = text.index("m", i) + 1
            continue
        out += 1
        i += 1
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, indent: str = "") -> list[str]:
    """Left-aligned columns, two spaces apart; the last column wraps under itself within `width`."""
    if not rows:
        return []
    widths = [max(_visible_len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lead = sum(w + 2 for w in widths[:-1]) + len(indent)
    room = max(20, width - lead)
    lines = []
    for row in [list(headers), *[list(map(str, r)) for r in rows]]:
        cells = [c + " " * (w - _visible_len(c)) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        last = textwrap.wrap(row[-1], room, break_long_words=True, break_on_hyphens=False) or [""]
        lines.append((indent + "  ".join([*cells, last[0]])).rstrip())
        lines.extend((" " * lead + more).rstrip() for more in last[1:])
    return lines


def _symbol(mapping: Mapping[str, tuple[str, str]], key: str, style: Style, text: str | None = None) -> str:
    symbol, color = mapping.get(key, ("?", "dim"))
    return style(f"{symbol} {text if text is not None else key}", color)


# -- status ----------------------------------------------------------------------------------------------


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _rollout_spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return (obj.get("spec") or {}).get("rollout") or {}


def _version_label(status: MonitorStatus, number: int | None, name: str) -> str:
    if number is None:
        return "-"
    entry = status.version(number)
    details = [entry.config_map or f"{name}-v{number}"] if entry else [f"{name}-v{number}"]
    if entry is not None:
        details.append(entry.generator)
    return f"v{number} ({', '.join(details)})"


def canary_progress(obj: Mapping[str, Any], now: datetime) -> str | None:
    """The canary's analysis in one line: ready time against the analysis time, restarts against tolerance."""
    status = MonitorStatus.from_obj(obj.get("status"))
    canary = status.canary
    if canary is None:
        return None
    rollout = _rollout_spec(obj)
    needed = int(rollout.get("canaryAnalysisSeconds", 300))
    tolerance = int(rollout.get("restartTolerance", 2))
    ready_since = parse_time(canary.ready_since)
    parts = []
    if ready_since is None:
        parts.append(f"waiting for ready pods (started {age(canary.started, now)} ago)")
    else:
        done = max(0.0, (now - ready_since).total_seconds())
        share = 1.0 if needed == 0 else min(1.0, done / needed)
        bar = "#" * round(share * 10) + "-" * (10 - round(share * 10))
        parts.append(f"[{bar}] ready {human_duration(min(done, needed))} of {human_duration(needed)}")
    parts.append(f"restarts {canary.restarts}/{tolerance} tolerated")
    return ", ".join(parts)


def render_status(
    obj: Mapping[str, Any], now: datetime, *, color: bool = False, width: int = DEFAULT_WIDTH
) -> str:
    """`kubectl poet status NAME`: header block, newest versions, last failure, conditions."""
    style = Style(color)
    meta = _meta(obj)
    name = meta.get("name", "?")
    raw_status = obj.get("status") or {}
    status = MonitorStatus.from_obj(raw_status)
    spec = obj.get("spec") or {}
    lines: list[str] = []
    add = lines.extend

    add(_field("Name", style(name, "bold"), width))
    add(_field("Namespace", meta.get("namespace", "-"), width))
    if spec.get("model"):
        add(_field("Model", str(spec["model"]), width))
    phase = _symbol(PHASE_SYMBOLS, status.phase, style)
    paused = pause_state(obj)
    if paused:
        phase += "  " + style(f"{PAUSED_SYMBOL} {paused}", "yellow")
    add(_field("Phase", phase, width))
    if status.message:
        add(_field("Message", status.message, width))
    add(_field("Stable", _version_label(status, status.stable_version, name), width))
    canary = _version_label(status, status.canary_version, name)
    add(_field("Canary", style(canary, "yellow") if status.canary_version else canary, width))
    progress = canary_progress(obj, now)
    if progress:
        add(_field("  Analysis", progress, width))
        verdict = status.canary.analysis if status.canary is not None else ""
        if verdict and verdict not in status.message:  # the message often says it already
            add(_field("  Verdict", verdict, width))
    if status.pending is not None:
        pending = status.pending
        answers = f", answers {', '.join(pending.feedback)}" if pending.feedback else ""
        add(
            _field(
                "Generating",
                f"v{pending.version} ({pending.reason}{answers}) for {age(pending.started, now)}",
                width,
            )
        )
    add(_field("Health", _health_line(status, now, style), width))
    regen = status.regenerations
    regen_text = f"{regen.used}/{regen.budget} used"
    if regen.used >= regen.budget:
        regen_text = style(regen_text + " (budget spent)", "red")
    after = parse_time(status.next_regeneration_after)
    if after is not None and after > now:
        wait = human_duration((after - now).total_seconds())
        regen_text += f", next not before {status.next_regeneration_after} (in {wait})"
    add(_field("Regenerations", regen_text, width))
    if status.hold:
        add(_field("Hold", status.hold, width))
    requested = _requested_actions(obj)
    if requested:
        add(_field("Requested", requested, width))
    if status.last_manual_action is not None:
        action = status.last_manual_action
        text = f"{action.annotation}={action.value}" if action.value else action.annotation
        if action.outcome:
            text += f" → {action.outcome}"
        if action.time:
            text += f" ({age(action.time, now)} ago)"
        add(_field("Last action", text, width))

    lines.append("")
    lines.append(style("VERSIONS", "bold"))
    shown = sorted(status.versions, key=lambda v: v.number, reverse=True)[:STATUS_VERSION_ROWS]
    if shown:
        add(_versions_table(shown, now, style, width))
        hidden = len(status.versions) - len(shown)
        if hidden > 0:
            lines.append(style(f"  … {hidden} older (kubectl poet history {name})", "dim"))
    else:
        lines.append("  (none yet)")

    lines.append("")
    lines.append(style("LAST FAILURE", "bold"))
    add(_failure_lines(status, now, style, width) or ["  (none)"])

    lines.append("")
    lines.append(style("CONDITIONS", "bold"))
    add(_conditions_table(status, meta, now, style, width) or ["  (none yet)"])
    return "\n".join(lines) + "\n"


def _health_line(status: MonitorStatus, now: datetime, style: Style) -> str:
    health = status.health
    text = _symbol(HEALTH_SYMBOLS, health.overall, style)
    if health.last_evaluated is None and health.overall == "unknown":
        return text + " (not evaluated yet)"
    details = []
    if health.drift_score is not None:
        details.append(f"drift score {health.drift_score:.3g}")
    count = health.drifted_count or len(health.drifted_features)
    if count:
        listed = ", ".join(health.drifted_features[:5]) + (" …" if len(health.drifted_features) > 5 else "")
        details.append(f"{count} drifted" + (f": {listed}" if listed else ""))
    else:
        details.append("no drifted features")
    if health.last_evaluated is not None:
        details.append(f"evaluated {age(health.last_evaluated, now)} ago")
    return f"{text}, {', '.join(details)}"


def _requested_actions(obj: Mapping[str, Any]) -> str:
    """One-shot annotations still on the object: asked for, not yet handled by the operator."""
    annotations = _meta(obj).get("annotations") or {}
    asked = [key.split("/", 1)[1] for key in ONE_SHOT_ANNOTATIONS if key in annotations]
    return ", ".join(asked) + " (waiting for the operator)" if asked else ""


def _versions_table(entries: Sequence[VersionEntry], now: datetime, style: Style, width: int) -> list[str]:
    rows = [
        [
            f"v{v.number}",
            _symbol(STATE_SYMBOLS, v.state, style),
            v.reason,
            v.generator,
            age(v.created, now),
            ", ".join(v.feedback_answered) or "-",
            v.message or "",
        ]
        for v in entries
    ]
    return table(
        ["  VERSION", "STATE", "REASON", "GENERATOR", "AGE", "ANSWERS", "NOTE"],
        [["  " + r[0], *r[1:]] for r in rows],
        width,
    )


def _failure_lines(status: MonitorStatus, now: datetime, style: Style, width: int) -> list[str]:
    failure = status.last_failure
    if failure is None:
        return []
    head = failure.reason + (f" (exit {failure.exit_code})" if failure.exit_code is not None else "")
    where = []
    if failure.pod:
        where.append(f"pod {failure.pod}")
    if failure.version is not None:
        where.append(f"v{failure.version}" + (f" {failure.role}" if failure.role else ""))
    line = (
        style(f"✖ {head}", "red")
        + (f" on {', '.join(where)}" if where else "")
        + f", {age(failure.time, now)} ago"
    )
    lines = _wrap_after("  ", line, width)
    if failure.signature:
        lines.extend(_wrap_after("  Signature:  ", failure.signature, width))
    if failure.message:
        lines.extend(_wrap_after("  Message:    ", failure.message, width))
    return lines


def _conditions_table(
    status: MonitorStatus, meta: Mapping[str, Any], now: datetime, style: Style, width: int
) -> list[str]:
    generation = meta.get("generation")
    rows = []
    for c in status.conditions:
        mark = {"True": "green", "False": "red", "Unknown": "dim"}[c.status]
        # Degraded is the one condition that is bad when True.
        if c.type == "Degraded":
            mark = {"True": "red", "False": "green", "Unknown": "dim"}[c.status]
        stale = generation is not None and c.observed_generation and c.observed_generation < generation
        message = c.message + (f" (for generation {c.observed_generation})" if stale else "")
        rows.append(
            ["  " + c.type, style(c.status, mark), c.reason, age(c.last_transition_time, now), message]
        )
    return table(["  TYPE", "STATUS", "REASON", "AGE", "MESSAGE"], rows, width)


# -- history ---------------------------------------------------------------------------------------------


def render_history(
    obj: Mapping[str, Any], now: datetime, *, color: bool = False, width: int = DEFAULT_WIDTH
) -> str:
    """`kubectl poet history NAME`: every version, newest first, with what it answers and applies."""
    style = Style(color)
    meta = _meta(obj)
    status = MonitorStatus.from_obj(obj.get("status"))
    name = meta.get("name", "?")
    entries = sorted(status.versions, key=lambda v: v.number, reverse=True)
    if not entries:
        return f"{name}: no versions yet (phase {status.phase})\n"
    lines = table(
        ["VERSION", "STATE", "REASON", "GENERATOR", "CREATED", "AGE", "CODE", "ANSWERS"],
        [
            [
                f"v{v.number}",
                _symbol(STATE_SYMBOLS, v.state, style),
                v.reason,
                v.generator,
                v.created,
                age(v.created, now),
                v.code_sha256[:12] or "-",
                ", ".join(v.feedback_answered) or "-",
            ]
            for v in entries
        ],
        width,
    )
    for v in entries:
        details = []
        if v.remedies:
            details.append(("remedies", ", ".join(v.remedies)))
        if v.lessons_applied:
            details.append(("lessons", ", ".join(v.lessons_applied)))
        if v.message:
            details.append(("note", v.message))
        if details:
            lines.append("")
            lines.append(style(f"v{v.number}", "bold") + f"  ({v.config_map or f'{name}-v{v.number}'})")
            for label, text in details:
                lines.extend(_wrap_after(f"  {label + ':':<10}", text, width))
    return "\n".join(lines) + "\n"


def history_json(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The version entries, newest first, as the status stores them."""
    status = MonitorStatus.from_obj(obj.get("status"))
    return [v.to_dict() for v in sorted(status.versions, key=lambda v: v.number, reverse=True)]


# -- diff ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VersionPayload:
    """What a version ConfigMap holds: the generated code and its manifest (parsed)."""

    number: int
    config_map: str
    code: str
    manifest: dict[str, Any]


@dataclass(frozen=True)
class Change:
    """One difference between two manifests: `kind` is added, removed or changed; values are JSON-able."""

    section: str
    path: str
    kind: str
    before: Any = None
    after: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "section": self.section,
            "path": self.path,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
        }


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted paths; lists and scalars are leaves."""
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key in sorted(value):
            out.update(_flatten(value[key], f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value} if prefix else {}


def _record_key(section: str, record: Mapping[str, Any]) -> str:
    if section == "remedies":
        return f"{record.get('signature')} -> {record.get('remedy')} ({record.get('origin', '?')})"
    if section == "feedback":
        evidence = record.get("evidence") or {}
        details = ", ".join(f"{k}={_short(v)}" for k, v in sorted(evidence.items()))
        version = f" v{record['version']}" if record.get("version") is not None else ""
        return f"{record.get('signature')} from {record.get('source')}{version}" + (
            f": {details}" if details else ""
        )
    if section == "escalations":
        return f"{record.get('signature')}: {record.get('reason')}"
    if section == "lessonsApplied":
        return (
            f"{record.get('signature')} -> {record.get('remedy')}"
            if isinstance(record, Mapping)
            else str(record)
        )
    return json.dumps(record, sort_keys=True)


def _short(value: Any, limit: int = 80) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _list_changes(section: str, before: Sequence[Any], after: Sequence[Any]) -> list[Change]:
    old = [_record_key(section, r) if isinstance(r, Mapping) else str(r) for r in before or []]
    new = [_record_key(section, r) if isinstance(r, Mapping) else str(r) for r in after or []]
    changes = [Change(section, section, "removed", before=k) for k in old if k not in new]
    changes += [Change(section, section, "added", after=k) for k in new if k not in old]
    return changes


def _dict_changes(section: str, before: Any, after: Any) -> list[Change]:
    old, new = _flatten(before or {}), _flatten(after or {})
    changes = []
    for path in sorted(set(old) | set(new)):
        if path not in new:
            changes.append(Change(section, path, "removed", before=old[path]))
        elif path not in old:
            changes.append(Change(section, path, "added", after=new[path]))
        elif old[path] != new[path]:
            changes.append(Change(section, path, "changed", before=old[path], after=new[path]))
    return changes


def manifest_changes(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[Change]:
    """What POET decided differently between two manifests: remedies, feedback, escalations, lessons,
    generator, the code-shaping choices and the spec."""
    pa, pb = a.get("poet") or {}, b.get("poet") or {}
    changes: list[Change] = []
    for section in ("remedies", "feedback", "escalations"):
        changes += _list_changes(section, pa.get(section) or [], pb.get(section) or [])
    changes += _list_changes(
        "answersFeedback", a.get("answersFeedback") or [], b.get("answersFeedback") or []
    )
    changes += _list_changes("lessonsApplied", a.get("lessonsApplied") or [], b.get("lessonsApplied") or [])
    changes += _dict_changes("generator", a.get("generator"), b.get("generator"))
    choices_a, choices_b = dict(pa.get("choices") or {}), dict(pb.get("choices") or {})
    for key in ("flags", "notes"):  # lists whose members matter one by one
        changes += _list_changes(
            f"choices.{key}", choices_a.pop(key, None) or [], choices_b.pop(key, None) or []
        )
    changes += _dict_changes("choices", choices_a, choices_b)
    changes += _dict_changes("spec", a.get("spec"), b.get("spec"))
    return changes


def code_diff(a: VersionPayload, b: VersionPayload) -> list[str]:
    """A unified diff of monitor.py (lines without trailing newlines)."""
    return list(
        difflib.unified_diff(
            a.code.splitlines(),
            b.code.splitlines(),
            fromfile=f"{a.config_map}/monitor.py",
            tofile=f"{b.config_map}/monitor.py",
            lineterm="",
        )
    )


def _color_diff_line(line: str, style: Style) -> str:
    if line.startswith(("+++", "---")):
        return style(line, "bold")
    if line.startswith("@@"):
        return style(line, "cyan")
    if line.startswith("+"):
        return style(line, "green")
    if line.startswith("-"):
        return style(line, "red")
    return line


def render_diff(
    name: str, a: VersionPayload, b: VersionPayload, *, color: bool = False, width: int = DEFAULT_WIDTH
) -> str:
    """`kubectl poet diff NAME A B`: what the manifest decided differently, then a diff of the code."""
    style = Style(color)
    lines = [style(f"{name}: v{a.number} → v{b.number}", "bold"), ""]
    lines.append(style("MANIFEST", "bold"))
    ma, mb = a.manifest, b.manifest
    summary = (
        ("generator", _generator_text(ma.get("generator")), _generator_text(mb.get("generator"))),
        ("created", str(ma.get("createdAt", "?")), str(mb.get("createdAt", "?"))),
        ("code sha256", str(ma.get("codeSha256", "?"))[:12], str(mb.get("codeSha256", "?"))[:12]),
        ("spec hash", str(ma.get("specHash", "?"))[:12], str(mb.get("specHash", "?"))[:12]),
    )
    for label, before, after in summary:
        text = f"{before} (unchanged)" if before == after else f"{before} → {after}"
        lines.extend(_wrap_after(f"  {label + ':':<14}", text, width))
    changes = manifest_changes(a.manifest, b.manifest)
    if not changes:
        lines.append("  (no differences in remedies, feedback, escalations, lessons, choices or spec)")
    section = None
    for change in changes:
        if change.section != section:
            section = change.section
            lines.append(f"  {section}:")
        lines.extend(_change_lines(change, style, width))
    lines.append("")
    lines.append(style("CODE", "bold"))
    diff = code_diff(a, b)
    if diff:
        lines.extend(_color_diff_line(line, style) for line in diff)
    else:
        lines.append("  (monitor.py is identical)")
    return "\n".join(lines) + "\n"


def _generator_text(generator: Any) -> str:
    if not isinstance(generator, Mapping):
        return "?"
    details = [f"{key} {generator[key]}" for key in ("template", "model") if generator.get(key)]
    return str(generator.get("kind", "?")) + (f" ({', '.join(details)})" if details else "")


def _change_lines(change: Change, style: Style, width: int) -> list[str]:
    is_list = change.path == change.section or change.section.startswith("choices.")
    label = "" if is_list else f"{change.path}: "
    if change.kind == "added":
        return _wrap_after(
            "    " + style("+ ", "green"), style(label + _short(change.after, 200), "green"), width
        )
    if change.kind == "removed":
        return _wrap_after(
            "    " + style("- ", "red"), style(label + _short(change.before, 200), "red"), width
        )
    text = f"{label}{_short(change.before)} → {_short(change.after)}"
    return _wrap_after("    " + style("~ ", "yellow"), text, width)


def diff_json(name: str, a: VersionPayload, b: VersionPayload) -> dict[str, Any]:
    return {
        "name": name,
        "from": {"version": a.number, "configMap": a.config_map},
        "to": {"version": b.number, "configMap": b.config_map},
        "manifest": [c.to_dict() for c in manifest_changes(a.manifest, b.manifest)],
        "code": "\n".join(code_diff(a, b)),
    }


def status_json(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The machine-readable form of `status`: identity, the poet.dev annotations and the raw status."""
    meta = _meta(obj)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith("poet.dev/")}
    return {
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "generation": meta.get("generation"),
        "annotations": annotations,
        "status": obj.get("status") or {},
    }


__all__ = [
    "Change",
    "Style",
    "VersionPayload",
    "age",
    "canary_progress",
    "code_diff",
    "diff_json",
    "history_json",
    "human_duration",
    "manifest_changes",
    "parse_time",
    "render_diff",
    "render_history",
    "render_status",
    "status_json",
    "table",
]
