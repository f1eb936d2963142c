"""The crash record within Kubernetes' 4096 bytes, the failure thresholds and the window cadence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from monitor_runtime.server.crash import (
    TERMINATION_LIMIT,
    FailureTracker,
    batch_profile,
    encode_record,
    exception_signature,
    feedback_record,
    termination_log_path,
    write_termination_message,
)
from monitor_runtime.server.evaluator import plan_window


def _record(traceback_text: str, message: str = "boom", columns: int = 3) -> dict:
    profile = batch_profile({f"col_{i}": np.arange(10.0) for i in range(columns)}, 10)
    return feedback_record(
        phase="run",
        signature={"exception": "KeyError", "location": "monitor.py:42 in monitor_features"},
        version=7,
        monitor="m",
        model="x",
        message=message,
        traceback_text=traceback_text,
        profile=profile,
        failures={"consecutive": 3},
    )


def test_a_small_record_is_kept_whole() -> None:
    record = _record("Traceback ...\nKeyError: 'x'")
    assert json.loads(encode_record(record)) == record


def test_the_longest_field_is_truncated_first_and_keeps_its_tail() -> None:
    tb = (
        "Traceback (most recent call last):\n"
        + '  File "monitor.py", line 1, in f\n' * 400
        + "KeyError: 'brand_new'"
    )
    record = _record(tb, message="m" * 300)
    data = encode_record(record)
    assert len(data) <= TERMINATION_LIMIT
    out = json.loads(data)
    assert out["traceback"].startswith("...[truncated]") and out["traceback"].endswith(
        "KeyError: 'brand_new'"
    )
    assert out["message"] == "m" * 300  # shorter fields untouched
    assert out["signature"] == record["signature"] and out["version"] == 7
    assert out["batch_profile"] == record["batch_profile"]


def test_many_long_fields_all_shrink_until_the_record_fits() -> None:
    record = _record("t" * 6000, message="m" * 5000, columns=64)
    data = encode_record(record)
    assert len(data) <= TERMINATION_LIMIT
    out = json.loads(data)
    assert out["kind"] == "poet.feedback/v1" and out["source"] == "crash" and out["version"] == 7
    assert out["signature"]["exception"] == "KeyError"


def test_signature_points_at_the_generated_frame() -> None:
    code = compile("def monitor_features(batch):\n    return batch['missing']\n", "/code/monitor.py", "exec")
    namespace: dict = {}
    exec(code, namespace)
    with pytest.raises(KeyError) as info:
        namespace["monitor_features"]({})
    assert exception_signature(info.value) == {
        "exception": "KeyError",
        "location": "monitor.py:2 in monitor_features",
    }


def test_profile_counts_missing_and_never_holds_values() -> None:
    profile = batch_profile(
        {"x": np.array([1.5, np.nan, np.inf]), "c": np.array(["secret", None, "b"], dtype=object)}
    )
    assert profile == {
        "rows": 3,
        "n_columns": 2,
        "columns": {
            "x": {"dtype": "float64", "kind": "numeric", "missing": 2},
            "c": {"dtype": "object", "kind": "categorical", "missing": 1},
        },
    }
    assert "secret" not in json.dumps(profile)


def test_failure_thresholds_consecutive_and_rate() -> None:
    t = FailureTracker(max_consecutive=3, window=4, max_rate=0.5)
    for ok in (False, False, True):
        t.record(ok)
    assert t.tripped() is None
    t.record(False)  # window now F F T F: rate 0.75 over 4
    assert "failure rate 75%" in (t.tripped() or "")
    t2 = FailureTracker(max_consecutive=2, window=100, max_rate=0.9)
    t2.record(False)
    assert t2.tripped() is None
    t2.record(False)
    assert "2 consecutive" in (t2.tripped() or "")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({}, ("sliding", 2000, 1000)),
        ({"optimizeFor": "real_time"}, ("sliding", 500, 250)),
        ({"window": {"strategy": "fixed", "size": 300}}, ("fixed", 300, 300)),
        ({"window": {"strategy": "sliding", "size": 1000, "overlap": 900}}, ("sliding", 1000, 100)),
        ({"window": {"strategy": "sliding", "size": 1000, "step": 50}}, ("sliding", 1000, 50)),
        ({"window": {"strategy": "adaptive", "size": 1000, "minSize": 200}}, ("adaptive", 1000, 200)),
        ({"window": {"strategy": "adaptive", "size": 1000, "minSize": None}}, ("adaptive", 1000, 250)),
    ],
)
def test_window_cadence_follows_the_spec(spec: dict, expected: tuple) -> None:
    plan = plan_window(spec)
    assert (plan.strategy, plan.size, plan.cadence_rows) == expected


def test_checkpoints_round_trip_and_damage_is_detected(tmp_path) -> None:
    from monitor_runtime.server.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

    assert load_checkpoint(tmp_path) is None
    state = {"window": {"age": np.arange(5.0)}, "n": 3}
    path = save_checkpoint(tmp_path, state)
    loaded = load_checkpoint(tmp_path)
    assert loaded is not None and loaded["n"] == 3
    np.testing.assert_array_equal(loaded["window"]["age"], np.arange(5.0))
    data = path.read_bytes()
    path.write_bytes(data[:-10])  # a torn write
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(tmp_path)
    path.write_bytes(b"something else")
    with pytest.raises(CheckpointError, match="not a poet checkpoint"):
        load_checkpoint(tmp_path)


def test_a_mounted_spec_file_replaces_the_manifest_spec(tmp_path) -> None:
    import io

    import yaml

    from monitor_runtime.server.jsonlog import JsonLogger
    from monitor_runtime.server.runner import LoadFailure, load_monitor

    from .runtime_server_helpers import SPEC, write_version

    code_dir = write_version(tmp_path / "v1")
    mounted = tmp_path / "spec.yaml"
    manifest = {
        "apiVersion": "poet.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": "m"},
        "spec": {**SPEC, "window": {"strategy": "fixed", "size": 50}},
    }
    mounted.write_text(yaml.safe_dump(manifest))
    stream = io.StringIO()
    _, spec, host = load_monitor(str(code_dir), JsonLogger(stream), str(mounted))
    host.close()
    assert plan_window(spec).as_dict() == {"strategy": "fixed", "size": 50, "step": 50, "cadence_rows": 50}
    assert '"same_as_manifest":false' in stream.getvalue()
    mounted.write_text("- just\n- a list\n")
    with pytest.raises(LoadFailure) as info:
        load_monitor(str(code_dir), JsonLogger(io.StringIO()), str(mounted))
    assert "expected a ModelMonitor manifest" in info.value.record["message"]
    assert info.value.record["phase"] == "load"


def test_settings_come_from_the_environment_and_bad_values_are_named() -> None:
    from monitor_runtime.server.settings import RuntimeSettings

    settings = RuntimeSettings.from_env({"POET_MAX_BATCH_ROWS": "50", "POET_MAX_FAILURE_RATE": "0.25"})
    assert settings.max_batch_rows == 50 and settings.max_failure_rate == 0.25
    with pytest.raises(ValueError, match="POET_MAX_BATCH_ROWS='many' is not a valid int"):
        RuntimeSettings.from_env({"POET_MAX_BATCH_ROWS": "many"})
    with pytest.raises(ValueError, match="POET_UNKNOWN_COLUMNS='drop'"):
        RuntimeSettings.from_env({"POET_UNKNOWN_COLUMNS": "drop"})


@pytest.mark.parametrize(
    ("explicit", "environ", "expected"),
    [
        (None, {}, None),  # by hand: no file, the record is only logged
        (None, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "/dev/termination-log"),  # in a pod
        ("/tmp/t-log", {}, "/tmp/t-log"),
        ("/tmp/t-log", {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "/tmp/t-log"),
        (None, {"KUBERNETES_SERVICE_HOST": ""}, None),
    ],
)
def test_termination_log_is_the_pods_unless_asked(explicit, environ, expected) -> None:
    assert termination_log_path(explicit, environ) == expected


def test_no_termination_log_writes_nothing_and_returns_the_record(tmp_path) -> None:
    record = _record("Traceback ...")
    assert json.loads(write_termination_message(None, record))["signature"]["exception"] == "KeyError"
    target = tmp_path / "log"
    write_termination_message(target, record)
    assert json.loads(target.read_bytes())["kind"] == "poet.feedback/v1"
