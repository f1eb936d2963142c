"""The POET pipeline end to end: feedback becomes remedies, crashing profiles become scenarios, remedies that
held become lessons other monitors apply, and a signature that survives its remedy is escalated."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from poet_operator.poet.enforce import SandboxLimits
from poet_operator.poet.engine import PreviousVersion, confirm_healthy_version, perceive, run_poet
from poet_operator.poet.events import EventEmitter, FanOutSink, JsonLinesSink, ListSink
from poet_operator.poet.train.feedback import Feedback, FeedbackSource, feedback_from_termination_message
from poet_operator.poet.train.lessons import LessonStore
from poet_operator.spec import MonitorSpec

from monitor_runtime.contract import write_version_dir

LIMITS = SandboxLimits(cpu_seconds=20, wall_seconds=60.0, memory_bytes=1 << 30)
SPEC = MonitorSpec.from_mapping(
    {
        "model": "fraud-scoring",
        "features": [
            {"name": "amount", "type": "continuous", "importance": 3.0},
            {"name": "clicks", "type": "continuous"},
            {"name": "country", "type": "categorical"},
        ],
    }
)
OTHER_SPEC = MonitorSpec.from_mapping(
    {"model": "ad-ranker", "optimizeFor": "real_time", "features": [{"name": "bid", "type": "continuous"}]}
)
SPARSE_CRASH = {
    "kind": "poet.feedback/v1",
    "source": "crash",
    "signature": {"exception": "FloatingPointError", "location": "monitor.py:140 in _evaluate"},
    "message": "invalid value encountered in divide",
    "traceback": "Traceback (most recent call last):\n  ...\nFloatingPointError: invalid value",
    "batch_profile": {
        "rows": 600,
        "n_columns": 3,
        "columns": {
            "amount": {"dtype": "float64", "kind": "numeric", "missing": 2},
            "clicks": {"dtype": "float64", "kind": "numeric", "missing": 0, "zero_rate": 0.97},
            "country": {"dtype": "object", "kind": "categorical", "missing": 0},
        },
    },
    "version": 2,
}


def manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def test_feedback_chain_remedies_profiles_lessons_and_escalation(tmp_path: Path) -> None:
    lessons = LessonStore(path=tmp_path / "lessons.json")
    v1 = run_poet(SPEC, tmp_path / "v1", monitor="fraud", limits=LIMITS)
    assert v1.status == "written" and v1.manifest.version == 1

    # Version 1 is OOMKilled: version 2 gets bounded memory.
    oom = feedback_from_termination_message("", reason="OOMKilled", version=1)
    v2 = run_poet(
        SPEC,
        tmp_path / "v2",
        monitor="fraud",
        feedback=[oom],
        lessons=lessons,
        previous=PreviousVersion.load(tmp_path / "v1"),
        limits=LIMITS,
    )
    assert v2.status == "written" and v2.manifest.version == 2
    assert manifest(tmp_path / "v2")["poet"]["regenerations"] == 1
    assert "Train (bounded_memory)" in (tmp_path / "v2" / "monitor.py").read_text()
    assert manifest(tmp_path / "v2")["answersFeedback"] == ["OOMKilled"]
    assert lessons.lessons == []  # nothing has proven itself yet

    # Version 2 crashes on a sparse batch: version 3 keeps bounded memory, adds the sparse path, and is
    # enforced on a replay of the crashing batch's shape. OOM did not come back, so it becomes a lesson.
    sparse = feedback_from_termination_message(json.dumps(SPARSE_CRASH), exit_code=1)
    sink = ListSink()
    v3 = run_poet(
        SPEC,
        tmp_path / "v3",
        monitor="fraud",
        feedback=[sparse],
        lessons=lessons,
        previous=PreviousVersion.load(tmp_path / "v2"),
        sink=sink,
        limits=LIMITS,
    )
    assert v3.status == "written"
    code = (tmp_path / "v3" / "monitor.py").read_text()
    assert "Train (bounded_memory)" in code and "Train (sparse_path)" in code
    data = manifest(tmp_path / "v3")
    assert [(r["remedy"], r["origin"]) for r in data["poet"]["remedies"]] == [
        ("bounded_memory", "carried"),
        ("sparse_path", "feedback"),
    ]
    [profile] = data["enforceProfiles"]
    assert profile["n_rows"] == 600 and profile["columns"]["clicks"]["zero_rate"] == 0.97
    replayed = [c for c in data["enforce"]["checks"] if (c["scenario"] or "").startswith("profile:")]
    assert replayed and all(c["passed"] for c in replayed)
    [lesson] = lessons.lessons
    assert (lesson.signature, lesson.remedy) == ("OOMKilled", "bounded_memory")
    assert lesson.evidence[0]["fixed_in_version"] == 2
    assert [e.details["remedy"] for e in sink.of_type("poet.train.lesson_recorded")] == ["bounded_memory"]

    # The sparse crash comes back on version 3 although it carries the sparse path: escalate, write nothing.
    again = Feedback(sparse.source, sparse.signature, 3, dict(sparse.evidence))
    sink = ListSink()
    v4 = run_poet(
        SPEC,
        tmp_path / "v4",
        monitor="fraud",
        feedback=[again],
        previous=PreviousVersion.load(tmp_path / "v3"),
        sink=sink,
        limits=LIMITS,
    )
    assert v4.status == "escalated" and v4.exit_code == 3
    assert not (tmp_path / "v4").exists()
    [escalated] = sink.of_type("poet.train.escalated")
    assert "survived its remedy 'sparse_path' in version 3" in escalated.details["reason"]
    assert "poet.operate.started" not in sink.types


def test_a_lesson_from_one_monitor_spares_another(tmp_path: Path) -> None:
    lessons = LessonStore()
    healthy = {
        "monitor": "fraud",
        "version": 3,
        "spec": SPEC.to_dict(),
        "poet": {
            "remedies": [
                {
                    "signature": "FloatingPointError@monitor.py:_evaluate",
                    "remedy": "sparse_path",
                    "origin": "feedback",
                }
            ]
        },
    }
    [recorded] = confirm_healthy_version(healthy, lessons, evidence={"canary": "passed"})
    assert recorded.conditions == {"domain": "ml_monitoring", "has_numeric_features": True}

    sink = ListSink()
    stream = io.StringIO()
    result = run_poet(
        OTHER_SPEC,
        tmp_path / "ads",
        monitor="ads",
        lessons=lessons,
        sink=FanOutSink([sink, JsonLinesSink(stream)]),
        limits=LIMITS,
    )
    assert result.status == "written"
    # Every step emitted one structured event, all bound to this execution, monitor and version.
    assert sink.types == [
        "poet.perceive.lesson_applied",
        "poet.perceive.completed",
        "poet.operate.started",
        "poet.operate.completed",
        "poet.enforce.completed",
        "poet.version.written",
    ]
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["type"] for line in lines] == sink.types
    assert {(line["execution_id"], line["monitor"], line["version"]) for line in lines} == {
        (sink.events[0].execution_id, "ads", 1)
    }
    assert manifest(tmp_path / "ads")["poet"]["executionId"] == sink.events[0].execution_id
    code = (tmp_path / "ads" / "monitor.py").read_text()
    assert "'bid': {'type': 'auto'" in code and "Train (sparse_path)" in code
    assert "LESSONS = {'FloatingPointError@monitor.py:_evaluate': 'sparse_path'}" in code
    applied = manifest(tmp_path / "ads")["lessonsApplied"]
    assert applied == [
        {
            "signature": "FloatingPointError@monitor.py:_evaluate",
            "remedy": "sparse_path",
            "conditions": {"domain": "ml_monitoring", "has_numeric_features": True},
        }
    ]
    [event] = sink.of_type("poet.perceive.lesson_applied")
    assert event.details["remedy"] == "sparse_path"


def test_lessons_whose_conditions_do_not_hold_are_not_applied() -> None:
    lessons = LessonStore()
    lessons.record(
        "OOMKilled", "bounded_memory", {"domain": "ml_monitoring", "window_size": {"min": 10_000}}, {}
    )
    plan = perceive(OTHER_SPEC, monitor="ads", lessons=lessons)
    assert plan.lessons_applied == [] and plan.remedies == []


def test_template_generator_escalates_signatures_it_cannot_remedy(tmp_path: Path) -> None:
    unknown = Feedback(
        FeedbackSource.CRASH, "ZeroDivisionError@monitor.py:_evaluate", 1, {"message": "division"}
    )
    result = run_poet(SPEC, tmp_path / "v2", monitor="fraud", feedback=[unknown], limits=LIMITS)
    assert result.status == "escalated"
    assert result.plan.escalations[0].reason.startswith("no known remedy")


def test_event_emitter_details_are_plain_json() -> None:
    sink = ListSink()
    event = EventEmitter(sink, monitor="m", version=2, execution_id="x1").emit("t", tags={"b", "a"}, n=(1, 2))
    assert event.to_dict()["details"] == {"tags": ["a", "b"], "n": [1, 2]}
    assert sink.events == [event]


def test_regeneration_budget_stops_endless_regeneration(tmp_path: Path) -> None:
    spec = MonitorSpec.from_mapping({"model": "fraud-scoring", "rollout": {"regenerationBudget": 2}})
    write_version_dir(
        tmp_path / "v3",
        code="CONTRACT = 1\n",
        version=3,
        monitor="fraud",
        model="fraud-scoring",
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash(),
        generator={"kind": "template"},
        extra={"poet": {"regenerations": 2, "remedies": []}},
    )
    oom = feedback_from_termination_message("", reason="OOMKilled", version=3)
    sink = ListSink()
    result = run_poet(
        spec,
        tmp_path / "v4",
        monitor="fraud",
        feedback=[oom],
        sink=sink,
        previous=PreviousVersion.load(tmp_path / "v3"),
        limits=LIMITS,
    )
    assert result.status == "escalated"
    assert "regeneration budget spent: 2 consecutive versions from feedback (budget 2)" in (
        result.plan.escalations[0].reason
    )
    assert not (tmp_path / "v4").exists()


def test_json_lines_sink_writes_through_a_logger(caplog) -> None:
    import logging

    logger = logging.getLogger("poet.events.test")
    with caplog.at_level(logging.INFO, logger="poet.events.test"):
        EventEmitter(JsonLinesSink(logger), monitor="m", version=1, execution_id="e1").emit("poet.x", ok=True)
    [record] = caplog.records
    assert json.loads(record.getMessage())["details"] == {"ok": True}
