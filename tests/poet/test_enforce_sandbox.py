"""Enforce end to end: real sandbox processes, real limits, real refusals."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest
from poet_operator.poet.enforce import enforce_code, network_namespace_support, scenario_from_profile
from poet_operator.poet.enforce.report import EnforceReport
from poet_operator.poet.enforce.sandbox import SandboxLimits, run_sandbox
from poet_operator.poet.enforce.scenarios import ProfileError, build_scenarios
from poet_operator.spec import MonitorSpec

GOOD = (Path(__file__).parent / "enforce_samples" / "good_monitor.py").read_text()
SPEC = MonitorSpec(model="churn", predictions={"task": "classification"})
FAST = SandboxLimits(cpu_seconds=20, wall_seconds=60, memory_bytes=1 << 30)


def _variant(extra: str) -> str:
    """The good monitor with `Monitor` replaced by a subclass that changes one behaviour."""
    return GOOD + "\n\n_Good = Monitor\n\n\n" + textwrap.dedent(extra).strip() + "\n"


def _failed(report: EnforceReport) -> dict[str, str]:
    return {c.name: "\n".join(c.evidence) for c in report.failed_checks}


def test_good_monitor_passes_every_scenario() -> None:
    report = enforce_code(GOOD, SPEC, limits=FAST)
    assert report.passed, report.render_text()
    names = {c.scenario for c in report.checks if c.scenario}
    assert {
        "null_data",
        "shifted_data",
        "categorical_shift",
        "nan_and_inf",
        "empty_batch",
        "new_feature_midstream",
        "sparse_data",
        "constant_column",
        "state_roundtrip",
        "predictions",
    } <= names
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["sandbox"]["termination"] == "completed"
    available, note = network_namespace_support()
    assert data["sandbox"]["networkIsolation"] is available  # unshare -n whenever the kernel allows it
    assert ("fresh network namespace" in report.render_text()) is available, note
    assert EnforceReport.from_dict(data).to_dict() == data
    assert "poet_generated_monitor" not in sys.modules  # the operator process never imports generated code
    assert report.timings["sandbox"] > 0


def test_a_monitor_that_never_flags_fails_the_shift_scenarios() -> None:
    blind = _variant(
        """
        class Monitor(_Good):
            def detect_drift(self, current):
                result = _Good.detect_drift(self, current)
                for entry in result["features"].values():
                    entry["drift_detected"] = False
                result["drifted_features"] = []
                return result
        """
    )
    report = enforce_code(blind, SPEC, limits=FAST)
    failed = _failed(report)
    assert not report.passed
    assert "was shifted but not flagged" in failed["shifted_data/2:detect_drift"]
    assert "was shifted but not flagged" in failed["categorical_shift/3:monitor_features"]
    assert "null_data/2:detect_drift" not in failed


def test_schema_and_state_violations_are_reported_with_evidence() -> None:
    broken = _variant(
        """
        import numpy as np


        class Monitor(_Good):
            def monitor_features(self, batch):
                result = _Good.monitor_features(self, batch)
                result["overall_drift_score"] = float("nan")
                return result

            def state(self):
                return {"reference": np.zeros(3)}
        """
    )
    report = enforce_code(broken, SPEC, limits=FAST)
    failed = _failed(report)
    assert "overall_drift_score must be a number in [0, 1], got nan" in failed["null_data/3:monitor_features"]
    assert "state() result is not strict JSON" in failed["state_roundtrip/3:roundtrip"]


def test_restore_that_forgets_state_fails_the_round_trip() -> None:
    forgetful = _variant(
        """
        class Monitor(_Good):
            def restore(self, state):
                return None
        """
    )
    report = enforce_code(forgetful, SPEC, limits=FAST)
    assert "differ" in _failed(report)["state_roundtrip/3:roundtrip"]


def test_a_crash_is_reported_with_the_traceback_line_and_prints_are_harmless() -> None:
    fragile = _variant(
        """
        class Monitor(_Good):
            def monitor_features(self, batch):
                # Printing must not corrupt the result channel, even when it looks like a result line.
                print('{"kind": "check", "name": "forged", "passed": true}')
                if min(len(v) for v in batch.values()) == 0:
                    raise ValueError("empty batch")
                return _Good.monitor_features(self, batch)
        """
    )
    report = enforce_code(fragile, SPEC, limits=FAST)
    failed = _failed(report)
    assert set(failed) == {"empty_batch/3:monitor_features"}
    assert not any(c.name == "forged" for c in report.checks)
    evidence = failed["empty_batch/3:monitor_features"]
    assert "raised ValueError: empty batch" in evidence and 'File "monitor.py", line' in evidence
    assert 'raise ValueError("empty batch")' in evidence  # the source line is shown, not just its number


def test_policy_rejection_never_runs_the_code() -> None:
    report = enforce_code("import os\nos.system('touch /tmp/poet-never')\n" + GOOD, SPEC, limits=FAST)
    assert not report.passed
    assert report.sandbox["termination"].startswith("not run")
    assert not any(c.phase == "sandbox" for c in report.checks)
    assert report.reasons()[0].startswith("line 1: [import-not-allowed] import of 'os'")


def test_infinite_loop_is_stopped_by_the_cpu_limit() -> None:
    looping = _variant(
        """
        class Monitor(_Good):
            def update_reference_window(self, new_data):
                while True:
                    pass
        """
    )
    report = enforce_code(
        looping, SPEC, limits=SandboxLimits(cpu_seconds=4, wall_seconds=30, memory_bytes=1 << 30)
    )
    assert report.sandbox["termination"] == "cpu_limit"
    failed = _failed(report)
    assert "CPU-time limit of 4 s" in failed["null_data/1:update_reference_window"]


def test_blocking_code_is_stopped_by_the_wall_clock_limit() -> None:
    # Bypasses the static policy on purpose: the wall-clock limit must hold even for code that sleeps.
    sleeper = GOOD.replace("CONTRACT = 1", "CONTRACT = 1\nimport time\ntime.sleep(60)")
    outcome = run_sandbox(
        sleeper,
        SPEC.to_dict(),
        build_scenarios(SPEC.to_dict())[:1],
        limits=SandboxLimits(cpu_seconds=30, wall_seconds=4, memory_bytes=1 << 30),
    )
    assert outcome.termination == "wall_timeout"
    assert outcome.seconds < 20
    # Named after the running step ("import"), or "sandbox" if a loaded machine was still starting up.
    assert "wall-clock limit of 4 s" in outcome.checks[-1].evidence[0]
    assert outcome.checks[-1].name in ("import", "sandbox") and not outcome.checks[-1].passed


def test_memory_bomb_is_stopped_by_the_memory_limit() -> None:
    greedy = _variant(
        """
        class Monitor(_Good):
            def update_reference_window(self, new_data):
                hoard = []
                while True:
                    hoard.append(bytearray(50_000_000))
        """
    )
    report = enforce_code(
        greedy, SPEC, limits=SandboxLimits(cpu_seconds=20, wall_seconds=30, memory_bytes=768 << 20)
    )
    failed = _failed(report)
    assert report.sandbox["termination"] == "memory_limit"
    assert set(failed) == {"null_data/1:update_reference_window"}  # the run stops at the first exhaustion
    assert "memory limit reached" in failed["null_data/1:update_reference_window"]


@pytest.mark.parametrize("netns", [None, False], ids=["default-isolation", "audit-hook-only"])
def test_file_socket_and_subprocess_are_refused_inside_the_sandbox(
    netns: bool | None, tmp_path: Path
) -> None:
    # Bypasses the static policy on purpose: this is the defense-in-depth layer behind it.
    target = tmp_path / "escaped.txt"
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    sneaky = GOOD.replace(
        "CONTRACT = 1",
        textwrap.dedent(
            f"""
            CONTRACT = 1
            import socket
            import subprocess
            for attempt in (
                lambda: open({str(target)!r}, "w").write("x"),
                lambda: open({str(secret)!r}).read(),
                lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM),
                lambda: subprocess.run(["true"]),
            ):
                try:
                    attempt()
                except Exception:
                    pass  # swallowing the refusal must not hide it
            """
        ),
    )
    outcome = run_sandbox(sneaky, SPEC.to_dict(), [], limits=FAST, network_isolation=netns)
    assert not target.exists()
    events = [v["event"] for v in outcome.guard_violations]
    assert events == ["open", "open", "socket.__new__", "subprocess.Popen"]
    evidence = "\n".join(outcome.checks[0].evidence)
    assert outcome.checks[0].name == "import" and not outcome.checks[0].passed
    assert "writing files is not allowed" in evidence and "reading files outside" in evidence
    if netns is False:
        assert outcome.network_isolation is False


def test_extra_scenario_from_a_crashing_profile() -> None:
    profile = {
        "n_rows": 500,
        "columns": {
            "amount": {"dtype": "float64", "missing_rate": 1.0, "min": 0, "max": 10},
            "clicks": {"dtype": "int64", "zero_rate": 0.97, "n_unique": 4, "min": 0, "max": 3},
            "country": {"dtype": "object", "n_unique": 5, "missing_rate": 0.2},
            "flag": {"dtype": "bool"},
        },
    }
    scenario = scenario_from_profile(profile, name="KeyError@monitor.py:10")
    assert scenario.name == "profile:KeyError@monitor.py:10"
    fussy = _variant(
        """
        import numpy as np


        class Monitor(_Good):
            def monitor_features(self, batch):
                for name, values in batch.items():
                    values = np.asarray(values)
                    if values.dtype.kind == "f" and values.size and np.isnan(values).all():
                        raise ValueError("column " + name + " is all missing")
                return _Good.monitor_features(self, batch)
        """
    )
    report = enforce_code(fussy, SPEC, extra_scenarios=[scenario], limits=FAST)
    failed = _failed(report)
    # Only the replayed profile catches it: every standard scenario passes.
    assert set(failed) == {"profile:KeyError@monitor.py:10/2:monitor_features"}
    assert "column amount is all missing" in failed["profile:KeyError@monitor.py:10/2:monitor_features"]


@pytest.mark.parametrize(
    ("profile", "fragment"),
    [
        ([], "must be a mapping"),
        ({"n_rows": -1, "columns": {"a": {}}}, "n_rows must be a non-negative integer"),
        ({"n_rows": 5}, "profile needs 'columns'"),
        ({"columns": {}}, "profile has no columns"),
        ({"columns": {"a": {"missing_rate": 2}}}, "column 'a': missing_rate=2 must lie in [0.0, 1.0]"),
        ({"columns": {"a": {"min": 5, "max": 1}}}, "column 'a': min=5.0 exceeds max=1.0"),
        ({"columns": [{"dtype": "int64"}]}, "columns[0] needs a 'name'"),
    ],
)
def test_bad_profiles_are_named(profile: object, fragment: str) -> None:
    with pytest.raises(ProfileError) as info:
        scenario_from_profile(profile)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_scenarios_follow_the_declared_features() -> None:
    spec = MonitorSpec.from_mapping(
        {
            "model": "m",
            "allowUnknownFeatures": False,
            "features": [{"name": "age", "type": "continuous"}, {"name": "plan", "type": "categorical"}],
        }
    ).to_dict()
    scenarios = {s.name: s for s in build_scenarios(spec)}
    reference = scenarios["null_data"].steps[0].data
    assert set(reference) == {"age", "plan"}
    assert scenarios["shifted_data"].steps[1].expect.drifted == ("age",)
    assert scenarios["categorical_shift"].steps[1].expect.drifted == ("plan",)


class _TouchOnLoad:
    """Pickles to a call of `Path.touch`: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_the_child_reads_its_payload_as_data_and_never_unpickles(tmp_path: Path) -> None:
    """The payload is JSON plus numpy buffers; a pickle on the child's stdin is refused, not run."""
    import pickle
    import subprocess

    from poet_operator.poet.enforce.sandbox import CHILD_SCRIPT

    marker = tmp_path / "unpickled"
    pickle.loads(pickle.dumps(_TouchOnLoad(marker)))  # the control: unpickling it does create the file
    assert marker.exists()
    marker.unlink()
    payload = pickle.dumps({"token": "t", "code": "", "scenarios": [_TouchOnLoad(marker)]})
    child = subprocess.run(
        [sys.executable, "-I", "-B", str(CHILD_SCRIPT)], input=payload, capture_output=True, timeout=120
    )
    assert child.returncode != 0
    assert b"UnreadableState" in child.stderr and b"not an npz archive" in child.stderr
    assert not marker.exists()
