"""The template generator: deterministic, readable, optimizeFor-specific, and correct on every example."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from poet_operator.poet.enforce import SandboxLimits, enforce_code
from poet_operator.poet.enforce.scenarios import build_scenarios
from poet_operator.poet.generators.template import TemplateError, TemplatePlan, decide, preprocess, render
from poet_operator.spec import MonitorSpec, load_document_file

from monitor_runtime import contract, toolkit
from monitor_runtime.drift import detect_drift

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
LIMITS = SandboxLimits(cpu_seconds=20, wall_seconds=60.0, memory_bytes=1 << 30)


def spec_of(data: dict[str, Any]) -> MonitorSpec:
    return MonitorSpec.from_mapping({"model": "credit-risk", **data})


def generate(spec: MonitorSpec, remedies: tuple[tuple[str, str], ...] = ()) -> str:
    code, _ = render(TemplatePlan(spec, spec.spec_hash(), remedies))
    return code


def load(code: str, spec: MonitorSpec) -> Any:
    module = contract.import_code(code, module_name="generated_under_test")
    return contract.monitor_class_of(module)(spec.to_dict(), toolkit)


def test_same_inputs_give_byte_identical_code() -> None:
    spec = spec_of({"features": [{"name": "a", "type": "continuous"}]})
    first = generate(spec, (("OOMKilled", "bounded_memory"),))
    second = generate(
        spec_of({"features": [{"name": "a", "type": "continuous"}]}), (("OOMKilled", "bounded_memory"),)
    )
    assert first.encode() == second.encode()


def test_code_is_readable_python_with_poet_phases_marked() -> None:
    code = generate(spec_of({}))
    ast.parse(code)
    for marker in ("# -- Perceive", "# -- Operate", "CONTRACT = 1", "class Monitor"):
        assert marker in code
    assert "#@" not in code and "${" not in code
    assert max(len(line) for line in code.splitlines()) <= 110
    # The code composes the toolkit; no statistics are re-implemented.
    assert "toolkit.Reference.fit" in code
    assert not re.search(r"\b(ks_2samp|chi2_contingency|scipy)\b", code)


@pytest.mark.parametrize(
    ("goal", "present", "absent"),
    [
        (
            "accuracy",
            ["optimizeFor accuracy", "CORRECTION = 'bh'", "'storage': 'exact'", "'size': 2000"],
            ["MAX_EVAL_ROWS", "FULL_EVALUATION_EVERY"],
        ),
        (
            "real_time",
            ["MAX_EVAL_ROWS = 5000", "LATENCY_BUDGET_SECONDS", "_keep_within_budget", "'size': 500"],
            ["FULL_EVALUATION_EVERY"],
        ),
        (
            "cost",
            ["FULL_EVALUATION_EVERY = 5", "SAMPLE_ROWS = 1000", "'storage': 'sketch'"],
            ["MAX_EVAL_ROWS", "_keep_within_budget"],
        ),
    ],
)
def test_optimize_for_changes_the_code(goal: str, present: list[str], absent: list[str]) -> None:
    code = generate(spec_of({"optimizeFor": goal}))
    for text in present:
        assert text in code, text
    for text in absent:
        assert text not in code, text
    assert f"OPTIMIZE_FOR = {goal!r}" in code


def test_real_time_code_subsamples_large_batches_and_accuracy_does_not() -> None:
    rng = np.random.default_rng(3)
    reference = {f"f{i}": rng.normal(size=20_000) for i in range(4)}
    batch = {f"f{i}": rng.normal(size=50_000) for i in range(4)}
    rows = {}
    for goal in ("accuracy", "real_time"):
        spec = spec_of({"optimizeFor": goal})
        monitor = load(generate(spec), spec)
        monitor.update_reference_window(reference)
        rows[goal] = monitor.detect_drift(batch)["summary"]["rows_evaluated"]
    assert rows == {"accuracy": 50_000, "real_time": 5_000}


def test_cost_code_evaluates_fully_only_every_few_batches() -> None:
    spec = spec_of({"optimizeFor": "cost", "window": {"strategy": "fixed", "size": 2000}})
    monitor = load(generate(spec), spec)
    rng = np.random.default_rng(4)
    monitor.update_reference_window({"x": rng.normal(size=5000)})
    full = [
        monitor.monitor_features({"x": rng.normal(size=1500)})["summary"]["full_evaluation"] for _ in range(6)
    ]
    assert full == [True, False, False, False, False, True]


def test_model_agnostic_template_watches_only_predictions_and_outcomes() -> None:
    spec = spec_of({"template": "model_agnostic_monitor", "predictions": {"task": "regression"}})
    code = generate(spec)
    assert "template model_agnostic_monitor" in code
    monitor = load(code, spec)
    rng = np.random.default_rng(5)
    monitor.update_reference_window({"prediction": rng.normal(size=2000), "age": rng.normal(size=2000)})
    result = monitor.detect_drift({"y_pred": rng.normal(2.0, 1.0, 500), "age": rng.normal(9.0, 1.0, 500)})
    assert set(result["features"]) == {"prediction"}
    assert result["drifted_features"] == ["prediction"]
    assert result["summary"]["ignored_columns"] == ["age"]
    quality = monitor.monitor_predictions(rng.normal(size=100), rng.normal(size=100))
    assert quality["quality"]["task"] == "regression" and "prediction_drift" in quality


def _verdict_pairs(code: str, spec: MonitorSpec) -> list[tuple[str, list[str], list[str]]]:
    """(scenario/call, generated verdict, engine verdict) for every detect_drift step after a reference,
    and for the first monitor_features step (whose window then holds exactly that batch)."""
    thresholds = {k: v for k, v in spec.thresholds.methods.model_dump().items() if v is not None}
    options = {
        "features": spec.feature_map(),
        "optimize_for": spec.optimize_for,
        "correction": spec.thresholds.correction,
        "alpha": spec.thresholds.alpha,
        "thresholds": thresholds,
    }
    pairs = []
    for scenario in build_scenarios(spec.to_dict()):
        monitor = load(code, spec)
        reference = None
        windowed = False
        for step in scenario.steps:
            if step.call == "update_reference_window":
                reference = dict(step.data)
                monitor.update_reference_window(dict(step.data))
                continue
            if reference is None:
                continue
            if step.call == "detect_drift":
                ours = monitor.detect_drift(dict(step.data))["drifted_features"]
            elif step.call == "monitor_features" and not windowed:
                windowed = True
                ours = monitor.monitor_features(dict(step.data))["drifted_features"]
            else:
                continue
            theirs = detect_drift(reference, dict(step.data), **options)["drifted_features"]
            pairs.append((f"{scenario.name}/{step.call}", sorted(ours), sorted(theirs)))
    return pairs


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_passes_enforce_and_matches_the_engine(path: Path) -> None:
    spec = load_document_file(path).spec
    code = generate(spec)
    report = enforce_code(code, spec, limits=LIMITS)
    assert report.passed, report.reasons()
    if spec.template == "feature_drift":
        pairs = _verdict_pairs(code, spec)
        assert pairs, "no scenario compared verdicts"
        assert any(theirs for _, _, theirs in pairs), "no scenario had drift to agree on"
        for name, ours, theirs in pairs:
            assert ours == theirs, f"{path.name} scenario {name}: generated {ours} vs engine {theirs}"


def test_preprocessor_keeps_and_drops_blocks() -> None:
    text = "a\n#@if x\nb\n#@elif y and not z\nc\n#@else\nd\n#@endif\ne\n"
    assert preprocess(text, {"x"}) == "a\nb\ne\n"
    assert preprocess(text, {"y"}) == "a\nc\ne\n"
    assert preprocess(text, {"y", "z"}) == "a\nd\ne\n"
    with pytest.raises(TemplateError, match="not closed"):
        preprocess("#@if x\n", set())
    with pytest.raises(TemplateError, match="line 1: #@endif without #@if"):
        preprocess("#@endif\n", set())


def test_choices_record_what_was_decided() -> None:
    spec = spec_of({"optimizeFor": "real_time"})
    choices = decide(TemplatePlan(spec, spec.spec_hash(), (("ProbeTimeout", "sampled_evaluation"),)))
    assert choices.constants["MAX_EVAL_ROWS"] == 2000
    assert "sampled_evaluation" in choices.flags
    assert choices.to_dict()["notes"] == ["sampled_evaluation: at most 2000 rows per evaluation"]


def test_declared_methods_reach_the_code_and_survive_the_sparse_path_only_when_they_fit_auto() -> None:
    spec = MonitorSpec.from_mapping(
        {
            "model": "m",
            "features": [
                {"name": "a", "type": "continuous", "method": "wasserstein"},
                {"name": "b", "type": "continuous", "method": "psi"},
                {"name": "c", "type": "categorical", "method": "kl"},
            ],
        }
    )
    plain = decide(TemplatePlan(spec, spec.spec_hash()))
    assert {n: f.get("method") for n, f in plain.features.items()} == {
        "a": "wasserstein",
        "b": "psi",
        "c": "kl",
    }
    # sparse_path declares continuous features auto, which may infer categorical: wasserstein cannot follow.
    sparse = decide(TemplatePlan(spec, spec.spec_hash(), (("ValueError@monitor.py:f", "sparse_path"),)))
    assert sparse.features["a"] == {"type": "auto", "importance": 1.0}
    assert sparse.features["b"] == {"type": "auto", "importance": 1.0, "method": "psi"}
    assert sparse.features["c"] == {"type": "categorical", "importance": 1.0, "method": "kl"}
