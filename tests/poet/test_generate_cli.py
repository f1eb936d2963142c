"""`poetmon generate`: manifests and bare specs in, version directories out, clear errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from poet_operator.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_generate_writes_an_enforced_version_from_a_bare_spec(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v1"
    assert main(["generate", "-f", str(EXAMPLES / "sparse-features.yaml"), "-o", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["version"] == 1 and manifest["enforce"]["passed"] is True
    assert manifest["monitor"] == "recommender-clicks"  # derived from the model of a bare spec
    assert (out / "monitor.py").read_text().startswith('"""')
    captured = capsys.readouterr()
    assert "wrote version 1 of recommender-clicks (generator template)" in captured.out
    events = [json.loads(line) for line in captured.err.splitlines()]
    assert events[-1]["type"] == "poet.version.written"


def test_feedback_previous_and_lessons_through_the_cli(tmp_path: Path, capsys) -> None:
    spec = str(EXAMPLES / "real-time.yaml")
    assert (
        main(["generate", "-f", spec, "-o", str(tmp_path / "v1"), "--events-file", str(tmp_path / "ev")]) == 0
    )
    feedback = tmp_path / "probe.json"
    feedback.write_text(
        json.dumps(
            {
                "source": "probe_failure",
                "signature": "ProbeTimeout",
                "version": 1,
                "evidence": {"message": "liveness probe timed out"},
            }
        )
    )
    args = [
        "generate",
        "-f",
        spec,
        "-o",
        str(tmp_path / "v2"),
        "--previous",
        str(tmp_path / "v1"),
        "--feedback",
        str(feedback),
        "--lessons",
        str(tmp_path / "lessons.json"),
    ]
    assert main(args) == 0
    manifest = json.loads((tmp_path / "v2" / "manifest.json").read_text())
    assert manifest["version"] == 2 and manifest["answersFeedback"] == ["ProbeTimeout"]
    assert "remedy sampled_evaluation for ProbeTimeout (feedback)" in capsys.readouterr().out
    assert "MAX_EVAL_ROWS = 2000" in (tmp_path / "v2" / "monitor.py").read_text()
    assert len((tmp_path / "ev").read_text().splitlines()) >= 5


def test_bad_spec_exits_2_naming_the_field(tmp_path: Path, capsys) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("model: m\noptimizeFor: fastest\n")
    assert main(["generate", "-f", str(spec), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "spec.optimizeFor" in err and "fastest" in err
    assert not (tmp_path / "out").exists()


def test_bad_feedback_file_exits_2_naming_the_file(tmp_path: Path, capsys) -> None:
    feedback = tmp_path / "fb.json"
    feedback.write_text(json.dumps({"source": "meteor", "signature": "X", "evidence": {}}))
    code = main(
        [
            "generate",
            "-f",
            str(EXAMPLES / "minimal.yaml"),
            "-o",
            str(tmp_path / "o"),
            "--feedback",
            str(feedback),
        ]
    )
    assert code == 2
    assert "fb.json record 0: feedback field 'source' is 'meteor'" in capsys.readouterr().err


def test_unremediable_feedback_exits_3_without_writing(tmp_path: Path, capsys) -> None:
    feedback = tmp_path / "crash.txt"
    feedback.write_text(
        'Traceback (most recent call last):\n  File "monitor.py", line 9, in f\nZeroDivisionError: x\n'
    )
    code = main(
        [
            "generate",
            "-f",
            str(EXAMPLES / "minimal.yaml"),
            "-o",
            str(tmp_path / "o"),
            "--feedback",
            str(feedback),
        ]
    )
    assert code == 3
    out = capsys.readouterr().out
    assert "escalated ZeroDivisionError@monitor.py:f: no known remedy" in out
    assert not (tmp_path / "o").exists()


def test_existing_version_directory_is_never_overwritten(tmp_path: Path, capsys) -> None:
    out = tmp_path / "v1"
    out.mkdir()
    (out / "monitor.py").write_text("CONTRACT = 1\n")
    assert main(["generate", "-f", str(EXAMPLES / "minimal.yaml"), "-o", str(out)]) == 2
    assert "already holds a version; versions are immutable" in capsys.readouterr().err
    assert (out / "monitor.py").read_text() == "CONTRACT = 1\n"
