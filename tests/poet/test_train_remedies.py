"""Signatures map to remedies; surviving signatures escalate; lessons are recorded and matched."""

from __future__ import annotations

import json

import pytest
from poet_operator.poet.train.escalation import find_escalations
from poet_operator.poet.train.feedback import Feedback, FeedbackSource, probe_failure
from poet_operator.poet.train.lessons import Lesson, LessonStore, LessonStoreError, conditions_for
from poet_operator.poet.train.remedies import Remedy, remedy_for


def crash(signature: str, message: str = "", profile: dict | None = None, version: int = 1) -> Feedback:
    evidence: dict = {"message": message}
    if profile:
        evidence["data_profile"] = profile
    return Feedback(FeedbackSource.CRASH, signature, version, evidence)


@pytest.mark.parametrize(
    ("feedback", "remedy"),
    [
        (Feedback(FeedbackSource.OOM_KILLED, "OOMKilled", 1, {}), Remedy.BOUNDED_MEMORY),
        (crash("MemoryError@monitor.py:update_reference_window"), Remedy.BOUNDED_MEMORY),
        (probe_failure(version=1), Remedy.SAMPLED_EVALUATION),
        (crash("SlowBatch"), Remedy.SAMPLED_EVALUATION),
        (crash("KeyError@monitor.py:detect_drift", "'f9'"), Remedy.DYNAMIC_FEATURES),
        (crash("RuntimeError@monitor.py:f", "unknown feature 'x'"), Remedy.DYNAMIC_FEATURES),
        (crash("ValueError@monitor.py:f", "could not convert string to float: 'a'"), Remedy.DTYPE_COERCION),
        (
            crash("TypeError@monitor.py:f", "bad", {"columns": {"a": {"dtype": "object"}}}),
            Remedy.DTYPE_COERCION,
        ),
        (crash("ValueError@monitor.py:f", "sparse matrix not supported"), Remedy.SPARSE_PATH),
        (
            crash("FloatingPointError@monitor.py:f", "divide", {"columns": {"a": {"zero_rate": 0.97}}}),
            Remedy.SPARSE_PATH,
        ),
        (crash("ZeroDivisionError@monitor.py:f", "division by zero"), None),
    ],
)
def test_signature_to_remedy(feedback: Feedback, remedy: Remedy | None) -> None:
    assert remedy_for(feedback) == remedy


def test_user_may_request_a_remedy() -> None:
    fb = Feedback(FeedbackSource.USER, "user:too-slow", None, {"remedy": "sampled_evaluation"})
    assert remedy_for(fb) is Remedy.SAMPLED_EVALUATION


def manifest(version: int, remedies: list[dict]) -> dict:
    return {"version": version, "poet": {"remedies": remedies}}


def test_signature_that_survives_its_remedy_is_escalated() -> None:
    oom = Feedback(FeedbackSource.OOM_KILLED, "OOMKilled", 2, {})
    previous = manifest(2, [{"signature": "OOMKilled", "remedy": "bounded_memory"}])
    [escalation] = find_escalations([oom], previous, generator="template")
    assert escalation.signature == "OOMKilled"
    assert "survived its remedy 'bounded_memory' in version 2" in escalation.reason
    # The same signature on an older version (before the remedy) is not escalated.
    older = Feedback(FeedbackSource.OOM_KILLED, "OOMKilled", 1, {})
    assert find_escalations([older], previous, generator="template") == []


def test_unknown_signature_escalates_for_the_template_generator_only() -> None:
    fb = crash("ZeroDivisionError@monitor.py:f")
    assert [e.signature for e in find_escalations([fb], None, generator="template")] == [fb.signature]
    assert find_escalations([fb], None, generator="llm") == []


PROFILE = {
    "domain": "ml_monitoring",
    "window_size": 5000,
    "n_features": 4,
    "has_numeric_features": True,
    "infers_feature_types": False,
}


def test_lessons_record_merge_match_and_persist(tmp_path) -> None:
    store = LessonStore()
    conditions = conditions_for("bounded_memory", PROFILE)
    assert conditions == {"domain": "ml_monitoring", "window_size": {"min": 5000}}
    store.record("OOMKilled", "bounded_memory", conditions, {"monitor": "a", "fixed_in_version": 2})
    store.record("OOMKilled", "bounded_memory", conditions, {"monitor": "b", "fixed_in_version": 3})
    assert len(store.lessons) == 1 and len(store.lessons[0].evidence) == 2
    assert store.matching({**PROFILE, "window_size": 10000}) == store.lessons
    assert store.matching({**PROFILE, "window_size": 1000}) == []
    assert store.matching({"window_size": 10000}) == []  # a missing key never matches
    path = store.save(tmp_path / "lessons.json")
    assert LessonStore.load(path).lessons == store.lessons
    assert LessonStore.load(tmp_path / "absent.json").lessons == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{", "is not JSON"),
        (json.dumps({"lessons": {}}), "'lessons' must be a list"),
        (
            json.dumps({"lessons": [{"signature": "X", "remedy": "prayer", "conditions": {}}]}),
            "lesson 0: .*'remedy'",
        ),
        (
            json.dumps({"lessons": [{"signature": "X", "remedy": "sparse_path"}]}),
            "missing field 'conditions'",
        ),
    ],
)
def test_bad_lesson_files_name_the_problem(tmp_path, content: str, expected: str) -> None:
    path = tmp_path / "lessons.json"
    path.write_text(content)
    with pytest.raises(LessonStoreError, match=expected):
        LessonStore.load(path)


def test_lesson_condition_bounds() -> None:
    lesson = Lesson("S", "sparse_path", {"n_features": {"min": 2, "max": 5}, "domain": "ml_monitoring"})
    assert lesson.matches({"n_features": 3, "domain": "ml_monitoring"})
    assert not lesson.matches({"n_features": 6, "domain": "ml_monitoring"})
    assert not lesson.matches({"n_features": True, "domain": "ml_monitoring"})
