"""The monitor contract: version directories (write, verify, load) and the result schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor_runtime import contract
from monitor_runtime.drift import detect_drift

GOOD_CODE = (Path(__file__).resolve().parents[1] / "poet" / "enforce_samples" / "good_monitor.py").read_text()
SPEC = {
    "model": "m",
    "optimizeFor": "accuracy",
    "features": [],
    "predictions": {"task": "regression"},
}
SPEC_HASH = "a" * 64


def _write(directory: Path, code: str = GOOD_CODE, **overrides: Any) -> contract.VersionManifest:
    fields: dict[str, Any] = {
        "code": code,
        "version": 3,
        "monitor": "churn",
        "model": "m",
        "spec": SPEC,
        "spec_hash": SPEC_HASH,
        "generator": {"kind": "template"},
        "answers_feedback": ["KeyError@monitor.py:42"],
        "lessons_applied": ["sparse-data"],
    }
    fields.update(overrides)
    return contract.write_version_dir(directory, **fields)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    manifest = _write(tmp_path / "v3")
    on_disk = json.loads((tmp_path / "v3" / "manifest.json").read_text())
    assert on_disk["contract"] == contract.CONTRACT == 1
    assert on_disk["codeSha256"] == contract.code_sha256(GOOD_CODE) == manifest.code_sha256
    assert on_disk["specHash"] == SPEC_HASH and on_disk["answersFeedback"] == ["KeyError@monitor.py:42"]
    assert on_disk["createdAt"].endswith("Z")

    loaded = contract.load_version_dir(tmp_path / "v3")
    assert loaded.manifest.version == 3 and loaded.manifest.generator.kind == "template"
    monitor = loaded.create()
    rng = np.random.default_rng(1)
    monitor.update_reference_window({"x": rng.normal(size=500)})
    result = monitor.monitor_features({"x": rng.normal(2.0, 1.0, size=300)})
    assert contract.check_feature_result(result)["drifted_features"] == ["x"]


def test_versions_are_immutable_unless_overwrite(tmp_path: Path) -> None:
    _write(tmp_path)
    with pytest.raises(contract.ContractError, match="already holds a version"):
        _write(tmp_path)
    assert _write(tmp_path, version=4, overwrite=True).version == 4


def test_tampered_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    _write(tmp_path)
    marker = tmp_path / "ran.txt"
    (tmp_path / "monitor.py").write_text(GOOD_CODE + f"\nopen({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(contract.ContractError, match=r"has sha256 .* but the manifest records"):
        contract.load_version_dir(tmp_path)
    assert not marker.exists()


def test_other_contract_versions_are_refused(tmp_path: Path) -> None:
    _write(tmp_path)
    data = json.loads((tmp_path / "manifest.json").read_text())
    data["contract"] = 2
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(contract.ContractError, match=r"contract 2 is not supported .*speaks contract 1"):
        contract.load_version_dir(tmp_path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "manifest.json is missing"),
        ("{not json", "is not valid JSON (line 1"),
        ("[]", "must be a JSON object"),
        (json.dumps({"contract": 1, "version": 0}), "version"),
        (json.dumps({"contract": 1}), "codeSha256"),
    ],
)
def test_broken_manifests_have_clear_errors(tmp_path: Path, content: str | None, fragment: str) -> None:
    (tmp_path / "monitor.py").write_text(GOOD_CODE)
    if content is not None:
        (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(contract.ContractError, match=fragment.replace("(", r"\(")):
        contract.load_version_dir(tmp_path)


def test_missing_code_and_missing_directory(tmp_path: Path) -> None:
    _write(tmp_path)
    (tmp_path / "monitor.py").unlink()
    with pytest.raises(contract.ContractError, match=r"monitor\.py is missing"):
        contract.verify_version_dir(tmp_path)
    with pytest.raises(contract.ContractError, match="is not a directory"):
        contract.verify_version_dir(tmp_path / "nope")


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("class Monitor:\n    pass\n", "declares CONTRACT = None"),
        ("CONTRACT = 1\n", "defines no class Monitor"),
        (
            "CONTRACT = 1\nclass Monitor:\n    def state(self):\n        return {}\n",
            "Monitor lacks detect_drift",
        ),
        ("CONTRACT = 1\nraise RuntimeError('boom')\n", "failed while importing: RuntimeError: boom"),
        ("CONTRACT = 1\ndef f(:\n", "line 2: syntax error"),
    ],
)
def test_code_that_breaks_the_contract_is_refused_on_load(tmp_path: Path, code: str, fragment: str) -> None:
    _write(tmp_path, code=code)
    with pytest.raises(contract.ContractError, match=fragment.replace("(", r"\(")):
        contract.load_version_dir(tmp_path)


def test_record_enforce_report_keeps_code_and_hash(tmp_path: Path) -> None:
    before = _write(tmp_path)
    after = contract.record_enforce_report(tmp_path, {"passed": True, "checks": []})
    assert after.enforce == {"passed": True, "checks": []}
    assert after.code_sha256 == before.code_sha256
    contract.load_version_dir(tmp_path)  # still verifies
    with pytest.raises(ValueError):
        contract.record_enforce_report(tmp_path, {"score": float("nan")})


def test_unknown_manifest_keys_are_kept(tmp_path: Path) -> None:
    _write(tmp_path, extra={"enforceProfiles": [{"n_rows": 3, "columns": {}}]})
    manifest = contract.read_manifest(tmp_path)
    assert manifest.to_dict()["enforceProfiles"] == [{"n_rows": 3, "columns": {}}]


# --- result schema -------------------------------------------------------------------------------------


def _engine_result() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    result = detect_drift(
        {"a": rng.normal(size=800), "b": rng.choice(["x", "y"], size=800)},
        {"a": rng.normal(1.0, 1.0, size=400), "b": rng.choice(["x", "y"], size=400)},
    )
    return {**result, "window_config": {"strategy": "fixed", "size": 400}}


def test_engine_results_satisfy_the_schema() -> None:
    result = _engine_result()
    assert contract.feature_result_problems(result) == []
    assert contract.drift_result_problems(result) == []
    assert contract.check_feature_result(result) == result


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda r: r.pop("window_config"), "lacks key 'window_config'"),
        (lambda r: r.update(overall_health="fine"), "overall_health must be one of good, warning, critical"),
        (
            lambda r: r.update(overall_drift_score=float("nan")),
            "overall_drift_score must be a number in [0, 1]",
        ),
        (lambda r: r.update(overall_drift_score=1.5), "overall_drift_score must be a number in [0, 1]"),
        (lambda r: r.update(drifted_features=[]), "disagrees with the features flagged"),
        (lambda r: r.update(recommendations="check a"), "recommendations must be a list of strings"),
        (
            lambda r: r["features"]["a"].update(drift_detected="yes"),
            "features['a'].drift_detected must be a bool",
        ),
        (
            lambda r: r["features"]["a"].update(score=float("inf")),
            "features['a'].score must be a finite number",
        ),
        (
            lambda r: r["features"]["a"].update(p_value=2.0),
            "features['a'].p_value must be None or a number in [0, 1]",
        ),
        (lambda r: r["features"]["a"].update(status="weird"), "features['a'].status must be one of"),
        (lambda r: r["features"]["a"].pop("severity"), "features['a'].severity is missing"),
        (lambda r: r["features"]["b"].update(n_current=np.int64(3)), "is not strict JSON"),
        (lambda r: r.update(window_config=[1]), "window_config must be a dict"),
        (lambda r: r.update(features=[1]), "features must be a dict"),
    ],
)
def test_schema_violations_are_named(mutate, fragment: str) -> None:
    result = _engine_result()
    mutate(result)
    problems = contract.feature_result_problems(result)
    assert any(fragment in p for p in problems), problems
    with pytest.raises(contract.ContractError, match="monitor_features broke the result schema"):
        contract.check_feature_result(result)


def test_non_dict_results_and_json_objects() -> None:
    assert contract.feature_result_problems([1]) == ["result must be a dict, got list"]
    assert contract.json_object_problems({"a": 1}, "state()") == []
    assert contract.json_object_problems([1], "state()") == ["state() must return a dict, got list"]
    assert "not strict JSON" in contract.json_object_problems({"a": float("nan")}, "state()")[0]
    with pytest.raises(contract.ContractError, match="detect_drift broke the result schema"):
        contract.check_drift_result({})


def test_a_manifest_that_is_not_utf8_is_a_contract_error(tmp_path) -> None:
    import pytest

    from monitor_runtime import contract

    (tmp_path / contract.MANIFEST_FILE).write_bytes(b"\xff\xfe{}")
    with pytest.raises(contract.ContractError, match="not UTF-8"):
        contract.read_manifest(tmp_path)
