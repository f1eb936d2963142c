"""Rendering for people: status, history and diff text from plain dicts, with no cluster at all."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from poet_operator.rollout import manual, render
from poet_operator.rollout.render import VersionPayload

from tests.rollout.monitors import NOW, fresh, mid_canary
from tests.rollout.world import World

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _section(text: str, title: str) -> list[str]:
    """The lines under a section title, up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(title) + 1
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def _header(text: str) -> dict[str, str]:
    header = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        if ":" in line and not line.startswith(" " * 4):
            key, value = line.split(":", 1)
            header[key.strip()] = value.strip()
    return header


def test_status_header_of_a_monitor_mid_canary() -> None:
    text = render.render_status(mid_canary(), NOW)
    header = _header(text)
    assert header["Name"] == "fraud" and header["Namespace"] == "ml" and header["Model"] == "fraud-model"
    assert header["Phase"] == "◌ Canary"
    assert header["Message"] == "canary v3 answers OOMKilled; analysing for 300s"
    assert header["Stable"] == "v2 (fraud-v2, template)"
    assert header["Canary"] == "v3 (fraud-v3, template)"
    # readySince is 90 s before NOW, analysis takes 300 s: 30 % of the bar.
    assert header["Analysis"] == "[###-------] ready 90s of 5m, restarts 0/2 tolerated"
    assert header["Verdict"] == "error rate 0.00 vs stable 0.02"
    assert header["Health"] == "⚠ warning, drift score 0.31, 2 drifted: income, country, evaluated 30s ago"
    assert header["Regenerations"] == "1/3 used"
    assert header["Last action"].startswith("poet.dev/regenerate=2026-12-01T09:00:00Z → generated v2")
    assert "\x1b[" not in text  # no color unless asked


def test_status_versions_newest_first_with_state_reason_generator_age_and_answers() -> None:
    rows = _section(render.render_status(mid_canary(), NOW), "VERSIONS")
    assert rows[0].split() == ["VERSION", "STATE", "REASON", "GENERATOR", "AGE", "ANSWERS", "NOTE"]
    assert rows[1].split() == ["v3", "◌", "canary", "crash-feedback", "template", "2m", "OOMKilled"]
    assert rows[2].split() == ["v2", "✔", "stable", "spec-change", "template", "120m", "-"]
    assert rows[3].split() == ["v1", "·", "superseded", "initial", "template", "24h", "-"]


def test_status_keeps_the_newest_versions_and_points_to_history() -> None:
    obj = mid_canary()
    template = obj["status"]["versions"][0]
    obj["status"]["versions"] = [dict(template, number=n, configMap=f"fraud-v{n}") for n in range(1, 13)]
    rows = _section(render.render_status(obj, NOW), "VERSIONS")
    shown = [row.split()[0] for row in rows[1:] if row.split()[0].startswith("v")]
    assert shown == [f"v{n}" for n in range(12, 12 - render.STATUS_VERSION_ROWS, -1)]
    assert rows[-1].strip() == f"… {12 - render.STATUS_VERSION_ROWS} older (kubectl poet history fraud)"


def test_status_last_failure_and_conditions() -> None:
    text = render.render_status(mid_canary(), NOW)
    failure = _section(text, "LAST FAILURE")
    assert failure[0].strip() == "✖ OOMKilled (exit 137) on pod fraud-6d5f7-abcde, v2 stable, 3m ago"
    assert failure[1].split() == ["Signature:", "OOMKilled"]
    assert (
        failure[2].strip() == "Message:    container runtime killed the process: memory limit 256Mi reached"
    )
    conditions = _section(text, "CONDITIONS")
    assert conditions[0].split() == ["TYPE", "STATUS", "REASON", "AGE", "MESSAGE"]
    assert [row.split()[:3] for row in conditions[1:]] == [
        ["Ready", "True", "StableRunning"],
        ["Generated", "True", "VersionWritten"],
        ["CanaryHealthy", "Unknown", "AnalysisRunning"],
        ["Degraded", "False", "Healing"],
    ]


def test_status_of_a_monitor_with_no_status_yet() -> None:
    text = render.render_status(fresh(), NOW)
    header = _header(text)
    assert header["Phase"] == "◌ Pending"
    assert header["Stable"] == "-" and header["Canary"] == "-"
    assert header["Health"] == "? unknown (not evaluated yet)"
    assert "Analysis" not in header and "Message" not in header
    assert _section(text, "VERSIONS") == ["  (none yet)"]
    assert _section(text, "LAST FAILURE") == ["  (none)"]
    assert _section(text, "CONDITIONS") == ["  (none yet)"]


def test_long_messages_wrap_within_the_width_and_lose_nothing() -> None:
    obj = mid_canary()
    words = [f"word{i}" for i in range(400)]
    obj["status"]["message"] = " ".join(words)
    obj["status"]["lastFailure"]["message"] = "x" * 500  # one unbreakable token
    obj["status"]["conditions"][0]["message"] = " ".join(words[:60])
    text = render.render_status(obj, NOW, width=80)
    assert max(len(line) for line in text.splitlines()) <= 80
    message_lines = text.split("Message:", 1)[1].split("Stable:", 1)[0].split()
    assert message_lines == words
    failure = " ".join(_section(text, "LAST FAILURE"))
    assert failure.split("Message:", 1)[1].replace(" ", "") == "x" * 500


def test_paused_backoff_hold_and_pending_requests_are_shown() -> None:
    obj = mid_canary()
    obj["metadata"]["annotations"] = {manual.ANNOTATION_PAUSED: "true", manual.ANNOTATION_PROMOTE: "t"}
    obj["status"].update(
        paused=True,
        regenerations={"used": 3, "budget": 3},
        nextRegenerationAfter=(NOW + timedelta(seconds=40)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        hold="aborted by a person: waiting for a spec change or poet.dev/regenerate",
        pending={
            "version": 4,
            "reason": "crash-feedback",
            "specHash": "h",
            "feedback": ["OOMKilled"],
            "started": "2026-12-01T11:59:48Z",
        },
    )
    header = _header(render.render_status(obj, NOW))
    assert header["Phase"] == "◌ Canary  ॥ Paused"
    assert header["Regenerations"].startswith("3/3 used (budget spent), next not before")
    assert header["Regenerations"].endswith("(in 40s)")
    assert header["Hold"].startswith("aborted by a person")
    assert header["Generating"] == "v4 (crash-feedback, answers OOMKilled) for 12s"
    assert header["Requested"] == "promote (waiting for the operator)"


@pytest.mark.parametrize(
    ("annotation", "acknowledged", "shown"),
    [
        ("true", True, "◌ Canary  ॥ Paused"),
        ("true", False, "◌ Canary  ॥ Pause requested (waiting for the operator)"),
        (None, True, "◌ Canary  ॥ Paused (resume requested, waiting for the operator)"),
        ("false", False, "◌ Canary"),
        (None, False, "◌ Canary"),
    ],
)
def test_pause_as_asked_and_as_acknowledged(annotation: str | None, acknowledged: bool, shown: str) -> None:
    obj = mid_canary()
    if annotation is not None:
        obj["metadata"]["annotations"][manual.ANNOTATION_PAUSED] = annotation
    obj["status"]["paused"] = acknowledged
    assert _header(render.render_status(obj, NOW))["Phase"] == shown


def test_canary_waiting_for_ready_pods() -> None:
    obj = mid_canary()
    obj["status"]["canary"] = {"version": 3, "started": "2026-12-01T11:59:00Z", "restarts": 1}
    assert (
        render.canary_progress(obj, NOW) == "waiting for ready pods (started 60s ago), restarts 1/2 tolerated"
    )


def test_color_marks_symbols_and_keeps_columns_aligned() -> None:
    plain = render.render_status(mid_canary(), NOW)
    colored = render.render_status(mid_canary(), NOW, color=True)
    assert "\x1b[33m◌ Canary\x1b[0m" in colored and "\x1b[32m✔ stable\x1b[0m" in colored
    assert ANSI.sub("", colored) == plain


def test_history_lists_every_version_with_remedies() -> None:
    text = render.render_history(mid_canary(), NOW)
    lines = text.splitlines()
    assert lines[0].split() == [
        "VERSION",
        "STATE",
        "REASON",
        "GENERATOR",
        "CREATED",
        "AGE",
        "CODE",
        "ANSWERS",
    ]
    assert [line.split()[0] for line in lines[1:4]] == ["v3", "v2", "v1"]
    assert lines[1].split()[-2:] == ["c" * 12, "OOMKilled"]
    assert "v3  (fraud-v3)" in lines
    assert "  remedies: OOMKilled:bounded_memory" in lines
    assert [v["number"] for v in render.history_json(mid_canary())] == [3, 2, 1]


def test_history_of_a_monitor_without_versions() -> None:
    assert render.render_history(fresh(), NOW) == "new: no versions yet (phase Pending)\n"
    assert render.history_json(fresh()) == []


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (190, "3m10s"),
        (600, "10m"),
        (7200, "120m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 600, "3h10m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400, "3y"),
    ],
)
def test_ages_read_like_kubectl(seconds: int, text: str) -> None:
    assert render.human_duration(seconds) == text


# -- diff ------------------------------------------------------------------------------------------------

CODE_V2 = """MODEL = 'fraud-model'
REMEDIES = {}
WINDOW = {'size': 500, 'storage': 'exact'}

def run():
    pass
"""
CODE_V3 = """MODEL = 'fraud-model'
# Train: OOMKilled -> bounded_memory
REMEDIES = {'OOMKilled': 'bounded_memory'}
WINDOW = {'size': 250, 'storage': 'reservoir'}

def run():
    pass
"""


def manifest(version: int, *, remedies: list, feedback: list, window: dict, flags: list) -> dict:
    """The shape `run_poet` writes (trimmed to what the diff reads)."""
    return {
        "contract": 1,
        "version": version,
        "monitor": "fraud",
        "model": "fraud-model",
        "specHash": "f" * 64,
        "spec": {"model": "fraud-model", "window": {"size": 500}},
        "generator": {"kind": "template", "model": None, "template": "feature_drift"},
        "answersFeedback": [f["signature"] for f in feedback],
        "lessonsApplied": [],
        "codeSha256": str(version) * 64,
        "createdAt": f"2026-12-01T1{version}:00:00Z",
        "poet": {
            "remedies": remedies,
            "feedback": feedback,
            "escalations": [],
            "choices": {"constants": {"WINDOW": window}, "flags": flags, "notes": []},
        },
    }


def payloads() -> tuple[VersionPayload, VersionPayload]:
    oom = {"source": "oom_killed", "signature": "OOMKilled", "version": 2, "evidence": {"exitCode": 137}}
    a = VersionPayload(
        2,
        "fraud-v2",
        CODE_V2,
        manifest(2, remedies=[], feedback=[], window={"size": 500, "storage": "exact"}, flags=["task"]),
    )
    b = VersionPayload(
        3,
        "fraud-v3",
        CODE_V3,
        manifest(
            3,
            remedies=[{"signature": "OOMKilled", "remedy": "bounded_memory", "origin": "feedback"}],
            feedback=[oom],
            window={"size": 250, "storage": "reservoir"},
            flags=["bounded_memory", "task"],
        ),
    )
    return a, b


def test_diff_shows_the_remedy_in_the_manifest_and_the_code() -> None:
    a, b = payloads()
    text = render.render_diff("fraud", a, b)
    lines = text.splitlines()
    assert lines[0] == "fraud: v2 → v3"
    assert "  generator:    template (template feature_drift) (unchanged)" in lines
    assert "  spec hash:    ffffffffffff (unchanged)" in lines
    assert "  code sha256:  222222222222 → 333333333333" in lines
    manifest_part = text.split("CODE", 1)[0]
    assert "  remedies:\n    + OOMKilled -> bounded_memory (feedback)" in manifest_part
    assert "  feedback:\n    + OOMKilled from oom_killed v2: exitCode=137" in manifest_part
    assert "  answersFeedback:\n    + OOMKilled" in manifest_part
    assert "  choices.flags:\n    + bounded_memory" in manifest_part
    assert "    ~ constants.WINDOW.size: 500 → 250" in manifest_part
    assert "    ~ constants.WINDOW.storage: exact → reservoir" in manifest_part
    assert "escalations" not in manifest_part and "spec:" not in manifest_part
    code = text.split("\nCODE\n", 1)[1].splitlines()
    assert code[0] == "--- fraud-v2/monitor.py" and code[1] == "+++ fraud-v3/monitor.py"
    assert "-REMEDIES = {}" in code and "+REMEDIES = {'OOMKilled': 'bounded_memory'}" in code
    assert "-WINDOW = {'size': 500, 'storage': 'exact'}" in code
    assert " MODEL = 'fraud-model'" in code  # context lines keep their leading space


def test_diff_of_a_version_with_itself_says_so() -> None:
    a, _ = payloads()
    text = render.render_diff("fraud", a, a)
    assert "(no differences in remedies, feedback, escalations, lessons, choices or spec)" in text
    assert "(monitor.py is identical)" in text


def test_diff_json_and_colors() -> None:
    a, b = payloads()
    data = render.diff_json("fraud", a, b)
    json.dumps(data)  # plain data
    assert data["from"] == {"version": 2, "configMap": "fraud-v2"}
    assert {
        "section": "remedies",
        "path": "remedies",
        "kind": "added",
        "before": None,
        "after": "OOMKilled -> bounded_memory (feedback)",
    } in data["manifest"]
    assert "+REMEDIES = {'OOMKilled': 'bounded_memory'}" in data["code"].splitlines()
    colored = render.render_diff("fraud", a, b, color=True)
    assert "\x1b[32m+REMEDIES = {'OOMKilled': 'bounded_memory'}\x1b[0m" in colored
    assert "\x1b[31m-REMEDIES = {}\x1b[0m" in colored


def test_spec_changes_are_listed_by_path() -> None:
    a, b = payloads()
    b.manifest["spec"] = {"model": "fraud-model", "window": {"size": 800}, "rollout": {"restartTolerance": 1}}
    changes = {
        (c.path, c.kind) for c in render.manifest_changes(a.manifest, b.manifest) if c.section == "spec"
    }
    assert changes == {("window.size", "changed"), ("rollout.restartTolerance", "added")}


# -- manual control --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "key", "value"),
    [
        ("promote", "poet.dev/promote", "2026-12-01T12:00:00Z"),
        ("abort", "poet.dev/abort", "2026-12-01T12:00:00Z"),
        ("regenerate", "poet.dev/regenerate", "2026-12-01T12:00:00Z"),
        ("pause", "poet.dev/paused", "true"),
        ("resume", "poet.dev/paused", None),
    ],
)
def test_each_command_is_one_merge_patch_of_one_annotation(command: str, key: str, value: str | None) -> None:
    assert manual.annotation_patch(command, NOW) == {"metadata": {"annotations": {key: value}}}


def test_request_messages_say_what_happens_and_when_there_is_nothing_to_do() -> None:
    obj = mid_canary()
    assert manual.request_message("promote", obj).startswith(
        "promote requested for fraud: canary v3 replaces stable v2"
    )
    assert manual.request_message("abort", obj).startswith(
        "abort requested for fraud: canary v3 is rolled back"
    )
    idle = mid_canary()
    idle["status"].update(canaryVersion=None, canary=None)
    assert "but it has no canary now" in manual.request_message("promote", idle)
    assert "but no canary or generation is in progress" in manual.request_message("abort", idle)
    assert manual.request_message("resume", obj) == "fraud resumed (it was not paused)"


# -- statuses the state machine writes -------------------------------------------------------------------


def _as_object(world: World) -> dict:
    return {
        "metadata": {
            "name": "m",
            "namespace": "ml",
            "generation": world.generation,
            "annotations": dict(world.annotations),
        },
        "spec": world.spec,
        "status": world.status.to_dict(),
    }


def test_render_follows_the_machine_from_crash_to_canary_to_promotion() -> None:
    world = World(spec={"model": "credit", "rollout": {"canaryAnalysisSeconds": 60}})
    world.settle()
    world.crash("stable", reason="OOMKilled", exit_code=137)
    world.step()
    world.finish_generations()
    world.step()
    world.pods_ready("canary")
    world.step()
    world.advance(30)
    world.step()
    mid = render.render_status(_as_object(world), world.now)
    header = _header(mid)
    assert header["Phase"] == "◌ Canary"
    assert header["Stable"].startswith("v1 ") and header["Canary"].startswith("v2 ")
    assert header["Analysis"] == "[#####-----] ready 30s of 60s, restarts 0/2 tolerated"
    assert "Verdict" not in header  # the machine's verdict is the message already
    assert header["Health"] == "⚠ warning, drift score 0.1, 1 drifted: income"
    assert _section(mid, "LAST FAILURE")[0].strip().startswith("✖ OOMKilled (exit 137) on pod pod-stable-")
    assert _section(mid, "VERSIONS")[1].split()[:3] == ["v2", "◌", "canary"]
    world.advance(31)
    world.step()
    done = render.render_status(_as_object(world), world.now)
    assert _header(done)["Canary"] == "-" and _header(done)["Stable"].startswith("v2 ")
    assert "Analysis" not in _header(done)
    history = render.render_history(_as_object(world), world.now).splitlines()
    assert [row.split()[:3] for row in history[1:3]] == [["v2", "✔", "promoted"], ["v1", "·", "superseded"]]
