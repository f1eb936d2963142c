"""Operator-wide defaults fill what a monitor's spec leaves out, and never override what it sets."""

from __future__ import annotations

import pytest
from poet_operator.k8s.defaults import SpecDefaults
from poet_operator.spec import MonitorSpec

ENV = {
    "POET_LLM_BASE_URL": "http://vllm.llm:8000/v1",
    "POET_LLM_MODEL": "qwen2.5-coder-7b-instruct",
    "POET_ROLLOUT_DEFAULTS": '{"canaryAnalysisSeconds": 120, "regenerationBudget": 5}',
}


def test_defaults_fill_what_the_spec_leaves_out() -> None:
    defaults = SpecDefaults.from_env(ENV)
    spec = MonitorSpec.from_mapping(defaults.apply({"model": "m", "generator": {"kind": "llm"}}))
    assert spec.rollout.canary_analysis_seconds == 120 and spec.rollout.regeneration_budget == 5
    assert spec.generator.llm is not None
    assert spec.generator.llm.base_url == "http://vllm.llm:8000/v1"
    assert spec.generator.llm.model == "qwen2.5-coder-7b-instruct"


def test_the_spec_wins_over_the_defaults() -> None:
    defaults = SpecDefaults.from_env(ENV)
    raw = {
        "model": "m",
        "rollout": {"canaryAnalysisSeconds": 30},
        "generator": {"kind": "llm", "llm": {"model": "gpt-4o-mini", "baseUrl": "https://api.openai.com/v1"}},
    }
    spec = MonitorSpec.from_mapping(defaults.apply(raw))
    assert spec.rollout.canary_analysis_seconds == 30 and spec.rollout.regeneration_budget == 5
    assert spec.generator.llm.model == "gpt-4o-mini"
    assert spec.generator.llm.base_url == "https://api.openai.com/v1"


def test_template_monitors_get_no_llm_settings() -> None:
    applied = SpecDefaults.from_env(ENV).apply({"model": "m"})
    assert "generator" not in applied


@pytest.mark.parametrize("text", ["not json", "[1, 2]"])
def test_bad_rollout_defaults_are_refused_with_the_variable_named(text: str) -> None:
    with pytest.raises(ValueError, match="POET_ROLLOUT_DEFAULTS"):
        SpecDefaults.from_env({"POET_ROLLOUT_DEFAULTS": text})
