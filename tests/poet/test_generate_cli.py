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


def _generate(*args: str) -> int:
    return main(["generate", "-f", str(EXAMPLES / "minimal.yaml"), *args])


def test_output_and_events_paths_are_checked_before_generating(tmp_path: Path, capsys) -> None:
    events = tmp_path / "events.jsonl"
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["-o", str(a_file)], f"output {a_file} exists and is not a directory"),
        (["-o", str(a_file / "v1")], f"cannot write the output directory {a_file / 'v1'}"),
        (["-o", "/proc/nope/v1"], "cannot write the output directory /proc/nope/v1"),
    ]
    for args, message in cases:
        assert _generate(*args, "--events-file", str(events)) == 2, args
        assert message in capsys.readouterr().err
        assert not events.exists()  # no event at all: nothing was generated or enforced
    assert a_file.read_text() == "x" and not Path("/proc/nope").exists()
    out = tmp_path / "new" / "deeper" / "v1"
    assert _generate("-o", str(out), "--events-file", str(tmp_path / "no-dir" / "e.jsonl")) == 2
    assert f"cannot open the events file {tmp_path / 'no-dir' / 'e.jsonl'}" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # the write check leaves nothing behind


def test_a_failing_events_stream_is_reported_not_raised(tmp_path: Path, capsys) -> None:
    assert _generate("-o", str(tmp_path / "v1"), "--events-file", "/dev/full") == 1
    err = capsys.readouterr().err
    assert "poetmon generate: cannot write" in err and "No space left on device" in err
    assert not (tmp_path / "v1" / "monitor.py").exists()


def test_unreadable_inputs_name_the_file(tmp_path: Path, capsys) -> None:
    binary = tmp_path / "binary.bin"
    binary.write_bytes(b"\xff\xfe\x00model: m\n")
    out = str(tmp_path / "o")
    assert main(["generate", "-f", str(binary), "-o", out]) == 2
    assert f"{binary}" in (err := capsys.readouterr().err) and "is not UTF-8 text" in err
    assert _generate("-o", out, "--feedback", str(binary)) == 2
    assert f"feedback file {binary} is not UTF-8 text" in capsys.readouterr().err
    assert _generate("-o", out, "--lessons", str(binary)) == 2
    assert f"lessons file {binary} is not UTF-8 text" in capsys.readouterr().err
    not_lessons = tmp_path / "settings.json"
    not_lessons.write_text(json.dumps({"model": "m", "window": {}}))
    assert _generate("-o", out, "--lessons", str(not_lessons)) == 2
    assert f"{not_lessons} is not a lessons file: it has no 'lessons' list (its keys: model, window)" in (
        capsys.readouterr().err
    )
    assert json.loads(not_lessons.read_text()) == {"model": "m", "window": {}}
    assert _generate("-o", out, "--lessons", str(tmp_path)) == 2
    assert "is not a file" in capsys.readouterr().err
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "monitor.py").write_text("CONTRACT = 1\n")
    (previous / "manifest.json").write_bytes(binary.read_bytes())
    assert _generate("-o", out, "--previous", str(previous)) == 2
    assert f"{previous / 'manifest.json'} is not UTF-8 text" in capsys.readouterr().err
    assert not Path(out).exists()


def test_version_number_is_checked_before_generating(tmp_path: Path, capsys) -> None:
    from poet_operator.poet.generators.template import TemplatePlan, render
    from poet_operator.spec import load_spec_file

    from monitor_runtime.contract import write_version_dir

    for bad in ("-3", "0"):
        assert _generate("-o", str(tmp_path / "o"), "--version-number", bad) == 2
        assert f"--version-number {bad} is not a positive integer" in capsys.readouterr().err
    spec = load_spec_file(EXAMPLES / "minimal.yaml")
    code, _ = render(TemplatePlan(spec, spec.spec_hash()))
    write_version_dir(
        tmp_path / "v4",
        code=code,
        version=4,
        monitor="m",
        model=spec.model,
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash(),
        generator={"kind": "template"},
    )
    args = ["-o", str(tmp_path / "o"), "--previous", str(tmp_path / "v4"), "--version-number", "4"]
    assert _generate(*args) == 2
    assert "--version-number 4 is not above the previous version 4; use 5 or leave it out" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "o").exists()
