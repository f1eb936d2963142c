"""Each remedy changes the generated code in its documented way, and the new code passes enforce."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from poet_operator.poet.enforce import SandboxLimits, enforce_code
from poet_operator.poet.generators.template import TemplatePlan, render
from poet_operator.poet.train.feedback import Feedback, FeedbackSource, feedback_from_termination_message
from poet_operator.poet.train.remedies import Remedy, remedy_for
from poet_operator.spec import MonitorSpec

from monitor_runtime import contract, toolkit

LIMITS = SandboxLimits(cpu_seconds=20, wall_seconds=60.0, memory_bytes=1 << 30)
SPEC = MonitorSpec.from_mapping(
    {
        "model": "credit-risk",
        "features": [
            {"name": "income", "type": "continuous", "importance": 2.0},
            {"name": "clicks", "type": "continuous"},
            {"name": "region", "type": "categorical"},
        ],
    }
)
RNG_SEED = 11

# A realistic feedback record for each remedy, as the runtime or Kubernetes reports it.
FEEDBACK: dict[Remedy, Feedback] = {
    Remedy.BOUNDED_MEMORY: feedback_from_termination_message("", reason="OOMKilled", version=1),
    Remedy.SAMPLED_EVALUATION: Feedback(
        FeedbackSource.PROBE_FAILURE, "ProbeTimeout", 1, {"probe": "liveness"}
    ),
    Remedy.DYNAMIC_FEATURES: feedback_from_termination_message(
        json.dumps(
            {
                "source": "crash",
                "signature": {"exception": "KeyError", "location": "monitor.py:77 in _prepare"},
                "message": "'device_id'",
                "version": 1,
            }
        )
    ),
    Remedy.DTYPE_COERCION: feedback_from_termination_message(
        json.dumps(
            {
                "source": "crash",
                "signature": {"exception": "ValueError", "location": "monitor.py:90 in detect_drift"},
                "message": "could not convert string to float: 'n/a'",
                "batch_profile": {"rows": 300, "columns": {"income": {"dtype": "object", "missing": 0}}},
                "version": 1,
            }
        )
    ),
    Remedy.SPARSE_PATH: feedback_from_termination_message(
        json.dumps(
            {
                "source": "crash",
                "signature": {"exception": "FloatingPointError", "location": "monitor.py:95 in _evaluate"},
                "message": "invalid value encountered",
                "batch_profile": {
                    "rows": 500,
                    "columns": {"clicks": {"dtype": "float64", "zero_rate": 0.96}},
                },
                "version": 1,
            }
        )
    ),
}

# What each remedy must visibly change in the code (docs/poet.md, "Remedies").
DOCUMENTED_CHANGES: dict[Remedy, list[str]] = {
    Remedy.BOUNDED_MEMORY: [
        "Train (bounded_memory)",
        "'storage': 'reservoir'",
        "'size': 1000",
        "REFERENCE_MAX_ROWS = 1000",
        "ENGINE_MAX_SAMPLES = 1000",
    ],
    Remedy.SAMPLED_EVALUATION: [
        "MAX_EVAL_ROWS = 2000",
        "LATENCY_BUDGET_SECONDS = 0.1",
        "_keep_within_budget",
    ],
    Remedy.DYNAMIC_FEATURES: [
        "Train (dynamic_features)",
        "def _register",
        '"registered": list(self.registered)',
    ],
    Remedy.DTYPE_COERCION: ["Train (dtype_coercion)", "def _coerce", "def _to_float"],
    Remedy.SPARSE_PATH: ["Train (sparse_path)", "'clicks': {'type': 'auto'"],
}


def generate(remedies: tuple[tuple[str, str], ...] = ()) -> str:
    code, _ = render(TemplatePlan(SPEC, SPEC.spec_hash(), remedies))
    return code


def load(code: str) -> Any:
    module = contract.import_code(code, module_name="remedy_under_test")
    return contract.monitor_class_of(module)(SPEC.to_dict(), toolkit)


def frame(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "income": rng.normal(50.0, 10.0, n),
        "clicks": np.where(rng.random(n) < 0.9, 0.0, rng.exponential(3.0, n)),
        "region": rng.choice(np.array(["north", "south", "east"], dtype=object), n),
    }


@pytest.mark.parametrize("remedy", list(Remedy), ids=[r.value for r in Remedy])
def test_feedback_remedy_changes_the_code_and_passes_enforce(remedy: Remedy) -> None:
    feedback = FEEDBACK[remedy]
    assert remedy_for(feedback) is remedy
    baseline = generate()
    code = generate(((feedback.signature, remedy.value),))
    assert code != baseline
    for text in DOCUMENTED_CHANGES[remedy]:
        assert text in code, f"{remedy.value}: expected {text!r} in the code"
        assert text not in baseline, f"{remedy.value}: {text!r} should only appear after the remedy"
    assert f"{feedback.signature} -> {remedy.value}" in code  # the Perceive block says why
    report = enforce_code(code, SPEC, limits=LIMITS)
    assert report.passed, report.reasons()


def test_bounded_memory_bounds_the_state() -> None:
    sizes = {}
    for remedies in ((), (("OOMKilled", "bounded_memory"),)):
        rng = np.random.default_rng(RNG_SEED)
        monitor = load(generate(remedies))
        monitor.update_reference_window(frame(rng, 40_000))
        for _ in range(8):
            monitor.monitor_features(frame(rng, 2_000))
        sizes[bool(remedies)] = (len(json.dumps(monitor.state())), monitor.policy.n_rows)
    assert sizes[True][1] == 1000 and sizes[False][1] == 40_000
    assert sizes[True][0] * 5 < sizes[False][0]


def test_sampled_evaluation_caps_rows_per_evaluation() -> None:
    rng = np.random.default_rng(RNG_SEED)
    monitor = load(generate((("ProbeTimeout", "sampled_evaluation"),)))
    monitor.update_reference_window(frame(rng, 5_000))
    result = monitor.detect_drift(frame(rng, 30_000))
    assert result["summary"]["rows_evaluated"] == 2000


def test_dynamic_features_registers_new_columns_and_checkpoints_them() -> None:
    events: list[tuple[str, dict]] = []
    toolkit.set_event_sink(lambda kind, details: events.append((kind, details)))
    try:
        rng = np.random.default_rng(RNG_SEED)
        monitor = load(generate((("KeyError@monitor.py:_prepare", "dynamic_features"),)))
        monitor.update_reference_window(frame(rng, 3_000))
        monitor.monitor_features({**frame(rng, 500), "device_id": rng.normal(size=500)})
    finally:
        toolkit.set_event_sink(None)
    state = json.loads(json.dumps(monitor.state()))
    assert state["registered"] == ["device_id"]
    assert state["features"]["device_id"] == {"type": "auto", "importance": 1.0}
    assert ("feature_registered", {"model": "credit-risk", "feature": "device_id", "batch": 1}) in events


def test_dtype_coercion_turns_bad_values_into_missing() -> None:
    rng = np.random.default_rng(RNG_SEED)
    monitor = load(generate((("ValueError@monitor.py:detect_drift", "dtype_coercion"),)))
    monitor.update_reference_window(frame(rng, 3_000))
    batch = frame(rng, 400)
    batch["income"] = np.array([*(str(v) for v in batch["income"][:390]), *(["n/a"] * 10)], dtype=object)
    batch["region"] = np.array([1, 2] * 200, dtype=object)
    prepared = monitor._prepare(batch)
    assert prepared["income"].dtype == np.float64 and int(np.isnan(prepared["income"]).sum()) == 10
    assert set(prepared["region"].tolist()) == {"1", "2"}
    result = monitor.detect_drift(batch)
    assert result["features"]["income"]["missing_rate"] == pytest.approx(10 / 400)


def test_sparse_path_lets_the_engine_apply_its_sparse_test() -> None:
    methods = {}
    for remedies in ((), (("FloatingPointError@monitor.py:_evaluate", "sparse_path"),)):
        rng = np.random.default_rng(RNG_SEED)
        monitor = load(generate(remedies))
        monitor.update_reference_window(frame(rng, 3_000))
        methods[bool(remedies)] = monitor.detect_drift(frame(rng, 800))["features"]["clicks"]["method"]
    assert methods == {False: "ks", True: "sparse"}
