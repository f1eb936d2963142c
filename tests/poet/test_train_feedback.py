"""Feedback records: signatures are normalised, termination messages parse, bad files fail clearly."""

from __future__ import annotations

import json

import pytest
from poet_operator.poet.train.feedback import (
    OOM_SIGNATURE,
    Feedback,
    FeedbackError,
    FeedbackSource,
    feedback_from_termination_message,
    load_feedback_file,
    normalise_signature,
    parse_source,
    parse_traceback,
    probe_failure,
)

TRACEBACK = """Traceback (most recent call last):
  File "/srv/monitor_runtime/server/app.py", line 210, in _evaluate
    result = monitor.monitor_features(batch)
  File "/code/monitor.py", line 88, in monitor_features
    column = self._reference[name]
  File "/venv/lib/python3.11/site-packages/numpy/core/x.py", line 5, in _wrapreduction
    raise KeyError(name)
KeyError: 'income_2'
"""


def test_normalise_signature_drops_module_path_and_line_numbers() -> None:
    assert normalise_signature("builtins.KeyError", "/code/monitor.py:monitor_features") == (
        "KeyError@monitor.py:monitor_features"
    )
    assert normalise_signature("ValueError", "monitor.py:12") == "ValueError@monitor.py"
    assert normalise_signature("ValueError") == "ValueError"


def test_parse_traceback_prefers_the_innermost_generated_frame() -> None:
    exc, location, message = parse_traceback(TRACEBACK)
    assert exc == "KeyError"
    assert location == "/code/monitor.py:monitor_features"
    assert message == "'income_2'"


def test_same_failure_on_shifted_lines_has_the_same_signature() -> None:
    moved = TRACEBACK.replace("line 88", "line 131")
    first = feedback_from_termination_message(json.dumps({"traceback": TRACEBACK}))
    second = feedback_from_termination_message(json.dumps({"traceback": moved}))
    assert first.signature == second.signature == "KeyError@monitor.py:monitor_features"


def test_runtime_crash_record_becomes_feedback_with_profile() -> None:
    record = {
        "signature": "KeyError",
        "traceback": TRACEBACK,
        "batch_profile": {"n_rows": 100, "columns": {"income_2": {"dtype": "float64", "missing": 0}}},
        "version": 3,
    }
    fb = feedback_from_termination_message(json.dumps(record), exit_code=1)
    assert fb.source is FeedbackSource.CRASH
    assert fb.version == 3
    assert fb.signature == "KeyError@monitor.py:monitor_features"
    assert fb.data_profile == record["batch_profile"]
    assert fb.evidence["exit_code"] == 1
    assert "income_2" in fb.evidence["termination_message"]


def test_oomkilled_reason_wins_even_without_a_message() -> None:
    fb = feedback_from_termination_message("", reason="OOMKilled", version=2)
    assert fb.source is FeedbackSource.OOM_KILLED
    assert fb.signature == OOM_SIGNATURE
    assert fb.version == 2


def test_plain_text_termination_message() -> None:
    fb = feedback_from_termination_message("ValueError: could not convert string to float: 'abc'")
    assert fb.signature == "ValueError"
    assert "could not convert" in fb.message


def test_round_trip_through_json(tmp_path) -> None:
    fb = probe_failure("liveness", version=4, detail="timed out after 5s")
    path = tmp_path / "fb.json"
    path.write_text(json.dumps([fb.to_dict()]))
    assert load_feedback_file(path) == [fb]


def test_source_aliases_and_errors() -> None:
    assert parse_source("OOMKilled") is FeedbackSource.OOM_KILLED
    with pytest.raises(FeedbackError, match="'source' is 'exploded'; use one of"):
        parse_source("exploded")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        (
            json.dumps([{"source": "crash", "signature": " ", "evidence": {}}]),
            "record 0: .*'signature' is empty",
        ),
        (
            json.dumps({"source": "crash", "signature": "X", "evidence": {}, "version": "v2"}),
            "'version' is 'v2'",
        ),
        (json.dumps([3]), "record 0: feedback must be a JSON object"),
    ],
)
def test_bad_feedback_files_name_the_problem(tmp_path, content: str, expected: str) -> None:
    path = tmp_path / "fb.json"
    path.write_text(content)
    with pytest.raises(FeedbackError, match=expected):
        load_feedback_file(path)


def test_missing_feedback_file_names_the_path(tmp_path) -> None:
    with pytest.raises(FeedbackError, match=r"cannot read feedback file .*nope\.json"):
        load_feedback_file(tmp_path / "nope.json")


def test_feedback_from_dict_accepts_a_raw_crash_record() -> None:
    fb = Feedback.from_dict({"traceback": TRACEBACK, "version": 1})
    assert fb.signature.startswith("KeyError@")


def test_runtime_crash_record_format_is_understood() -> None:
    record = {
        "kind": "poet.feedback/v1",
        "source": "crash",
        "signature": {"exception": "TypeError", "location": "monitor.py:57 in _prepare"},
        "message": "unsupported operand type(s) for -: 'str' and 'float'",
        "traceback": "Traceback (most recent call last):\n  ...\nTypeError: unsupported operand",
        "batch_profile": {
            "rows": 10,
            "n_columns": 1,
            "columns": {"x": {"dtype": "object", "kind": "categorical"}},
        },
        "version": 2,
        "monitor": "m",
        "failures": {"consecutive": 5},
    }
    fb = feedback_from_termination_message(json.dumps(record))
    assert fb.signature == "TypeError@monitor.py:_prepare"
    assert fb.source is FeedbackSource.CRASH
    assert fb.version == 2
    assert fb.message.startswith("unsupported operand")
    assert fb.data_profile["columns"]["x"]["dtype"] == "object"
    load = feedback_from_termination_message(json.dumps({**record, "source": "load"}))
    assert load.source is FeedbackSource.CRASH
