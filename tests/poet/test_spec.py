"""MonitorSpec: defaults, manifests, hashing, schema and every validation message."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from poet_operator.spec import (
    API_VERSION,
    KIND,
    MonitorDocument,
    MonitorSpec,
    SpecError,
    load_document_file,
    load_spec_file,
    parse_quantity,
)

from monitor_runtime.windows import make_window

MAX_FEATURE_NAMES_BYTES = 64 * 1024  # the documented budget of declared feature names in the code

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def test_spec_with_only_model_gets_every_default() -> None:
    spec = MonitorSpec.from_manifest({"model": "churn"})
    assert spec.model == "churn"
    assert spec.domain == "ml_monitoring"
    assert spec.optimize_for == "accuracy"
    assert spec.template == "feature_drift"
    assert spec.window.strategy == "sliding"
    assert spec.window.size is None and spec.window.seed == 0
    assert spec.reference.source == "first_window" and spec.reference.refresh == "static"
    assert spec.features == () and spec.allow_unknown_features is True
    assert spec.predictions.task == "none"
    assert spec.thresholds.alpha == 0.05 and spec.thresholds.correction == "bh"
    assert spec.thresholds.warning is None and spec.thresholds.critical == 0.25
    assert spec.generator.kind == "template" and spec.generator.llm is None
    assert spec.rollout.canary_analysis_seconds == 300 and spec.rollout.restart_tolerance == 2
    assert spec.rollout.auto_regenerate is True and spec.rollout.regeneration_budget == 3
    assert spec.runtime.replicas == 1
    assert spec.runtime.resources.requests.cpu == "100m" and spec.runtime.resources.limits.memory == "1Gi"
    assert spec.window_config() == {
        "strategy": "sliding",
        "size": 2000,
        "step": 1000,
        "storage": "exact",
        "seed": 0,
    }


@pytest.mark.parametrize(
    ("optimize_for", "size", "storage"),
    [("accuracy", 2000, "exact"), ("real_time", 500, "exact"), ("cost", 1000, "sketch")],
)
def test_window_defaults_follow_optimize_for(optimize_for: str, size: int, storage: str) -> None:
    config = MonitorSpec(model="m", optimize_for=optimize_for).window_config()
    assert config["size"] == size and config["storage"] == storage
    if storage == "sketch":
        assert config["capacity"] == 256


def test_window_config_keeps_only_keys_of_the_strategy() -> None:
    fixed = MonitorSpec(model="m", window={"strategy": "fixed", "size": 100}).window_config()
    assert fixed == {"strategy": "fixed", "size": 100, "storage": "exact", "seed": 0}
    sliding = MonitorSpec(model="m", window={"size": 100, "overlap": 30}).window_config()
    assert sliding["step"] == 70 and "overlap" not in sliding
    adaptive = MonitorSpec(model="m", window={"strategy": "adaptive", "size": 400}).window_config()
    assert adaptive["minSize"] == 100 and adaptive["maxSize"] == 1600 and "overlap" not in adaptive
    reservoir = MonitorSpec(model="m", window={"size": 300, "storage": "reservoir"}).window_config()
    assert reservoir["capacity"] == 300


def test_window_config_is_accepted_by_make_window() -> None:
    for raw in ({}, {"strategy": "fixed"}, {"strategy": "adaptive", "size": 1000}, {"storage": "reservoir"}):
        for optimize_for in ("accuracy", "real_time", "cost"):
            make_window(MonitorSpec(model="m", optimize_for=optimize_for, window=raw).window_config())


def test_full_manifest_and_document_name() -> None:
    doc = MonitorDocument.from_obj(
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": {"model": "f"},
        }
    )
    assert doc.name == "fraud" and doc.metadata.namespace == "ml" and doc.spec.model == "f"
    bare = MonitorDocument.from_obj({"model": "Credit Limit v2"})
    assert bare.name == "credit-limit-v2"


def test_camel_case_and_snake_case_both_accepted() -> None:
    a = MonitorSpec.from_mapping(
        {"model": "m", "optimizeFor": "cost", "window": {"minSize": 10, "strategy": "adaptive"}}
    )
    b = MonitorSpec.from_mapping(
        {"model": "m", "optimize_for": "cost", "window": {"min_size": 10, "strategy": "adaptive"}}
    )
    assert a == b
    assert a.to_dict()["optimizeFor"] == "cost" and a.to_dict()["window"]["minSize"] == 10


def test_spec_hash_is_canonical() -> None:
    bare = MonitorSpec.from_mapping({"model": "m"})
    explicit = MonitorSpec.from_mapping(
        {"model": "m", "optimizeFor": "accuracy", "window": {"strategy": "sliding"}}
    )
    assert bare.spec_hash() == explicit.spec_hash()
    assert len(bare.spec_hash()) == 64
    assert MonitorSpec.from_mapping({"model": "n"}).spec_hash() != bare.spec_hash()
    assert MonitorSpec.from_mapping(bare.to_dict()) == bare  # the manifest copy round-trips


def test_spec_is_frozen() -> None:
    spec = MonitorSpec(model="m")
    with pytest.raises(pydantic.ValidationError):
        spec.model = "other"  # type: ignore[misc]


def test_engine_options_and_feature_map() -> None:
    spec = MonitorSpec.from_mapping(
        {
            "model": "m",
            "features": [{"name": "age", "type": "continuous", "importance": 2}],
            "thresholds": {"alpha": 0.01, "correction": "bonferroni", "methods": {"ks": 0.05}},
        }
    )
    assert spec.feature_map() == {"age": {"type": "continuous", "importance": 2.0}}
    assert spec.thresholds.engine_options() == {
        "correction": "bonferroni",
        "alpha": 0.01,
        "thresholds": {"ks": 0.05},
        "critical_score": 0.25,
    }


def test_json_schema_is_clean_for_a_crd() -> None:
    schema = MonitorSpec.model_json_schema(by_alias=True)
    text = json.dumps(schema)
    assert '"null"' not in text and '"default": null' not in text
    assert schema["required"] == ["model"]
    window = schema["$defs"]["WindowSpec"]
    assert window["additionalProperties"] is False
    assert {"minSize", "maxSize", "step", "overlap"} <= set(window["properties"])
    assert "optimizeFor" in schema["properties"] and "allowUnknownFeatures" in schema["properties"]


def _problems(obj: object) -> list[tuple[str, str]]:
    with pytest.raises(SpecError) as info:
        MonitorSpec.from_manifest(obj)
    return info.value.problems


INVALID = [
    ({}, "spec.model", "is required (name of the model"),
    (
        {"model": "m", "window": {"size": 5003, "step": 2000, "storage": "sketch"}},
        "spec",
        "window.step=2000 and window.size=5003 share only the divisor 1",
    ),
    ({"model": ""}, "spec.model", "at least 1 character"),
    (
        {"model": "m", "optimizeFor": "fast"},
        "spec.optimizeFor",
        "'accuracy', 'real_time' or 'cost' (got 'fast')",
    ),
    ({"model": "m", "domain": "nlp"}, "spec.domain", "'ml_monitoring'"),
    ({"model": "m", "template": "x"}, "spec.template", "'feature_drift' or 'model_agnostic_monitor'"),
    ({"model": "m", "window": {"sise": 3}}, "spec.window", "unknown field 'sise' (did you mean 'size'?)"),
    ({"model": "m", "windw": {}}, "spec", "unknown field 'windw' (did you mean 'window'?)"),
    ({"model": "m", "window": {"size": 1}}, "spec.window.size", "greater than or equal to 2 (got 1)"),
    ({"model": "m", "window": {"size": "abc"}}, "spec.window.size", "valid integer"),
    (
        {"model": "m", "window": {"strategy": "tumbling"}},
        "spec.window.strategy",
        "'fixed', 'sliding' or 'adaptive'",
    ),
    (
        {"model": "m", "window": {"size": 10, "overlap": 10}},
        "spec.window",
        "overlap=10 must be smaller than size=10",
    ),
    ({"model": "m", "window": {"size": 10, "step": 11}}, "spec.window", "step=11 must not exceed size=10"),
    ({"model": "m", "window": {"size": 10, "step": 5, "overlap": 2}}, "spec.window", "give only one of them"),
    (
        {"model": "m", "window": {"size": 100, "overlap": 1.5}},
        "spec.window.overlap",
        "1.5 is neither a row count (a whole number) nor a fraction of the window (0 < overlap < 1)",
    ),
    ({"model": "m", "window": {"overlap": True}}, "spec.window.overlap", "write e.g. 250 or 0.5"),
    ({"model": "m", "window": {"overlap": -0.5}}, "spec.window.overlap", "greater than or equal to 0"),
    (
        {"model": "m", "window": {"size": 10, "step": 4, "overlap": 0.5}},
        "spec.window",
        "step=4 and overlap=0.5 (5 rows) disagree",
    ),
    (
        {"model": "m", "window": {"step": 4, "overlap": 0.5}},
        "spec.window",
        "both given without size",
    ),
    (
        {"model": "m", "window": {"strategy": "fixed", "overlap": 0.5}},
        "spec.window",
        "overlap=0.5 only applies to sliding windows",
    ),
    (
        {"model": "m", "window": {"strategy": "fixed", "overlap": 5}},
        "spec.window",
        "only applies to sliding windows",
    ),
    (
        {"model": "m", "window": {"strategy": "fixed", "size": 10, "step": 5}},
        "spec.window",
        "set strategy: sliding",
    ),
    ({"model": "m", "window": {"minSize": 5}}, "spec.window", "only apply to adaptive windows"),
    (
        {"model": "m", "window": {"strategy": "adaptive", "minSize": 50, "maxSize": 10}},
        "spec.window",
        "minSize=50 must not exceed maxSize=10",
    ),
    (
        {"model": "m", "window": {"strategy": "adaptive", "size": 5, "minSize": 10}},
        "spec.window",
        "below minSize",
    ),
    (
        {"model": "m", "window": {"strategy": "adaptive", "size": 50, "maxSize": 10}},
        "spec.window",
        "above maxSize",
    ),
    (
        {"model": "m", "window": {"capacity": 10}},
        "spec.window",
        "capacity only applies to reservoir or sketch",
    ),
    (
        {"model": "m", "window": {"storage": "disk"}},
        "spec.window.storage",
        "'exact', 'reservoir' or 'sketch'",
    ),
    ({"model": "m", "reference": {"source": "s3"}}, "spec.reference.source", "'first_window' or 'uploaded'"),
    ({"model": "m", "features": [{"name": "a"}, {"name": "a"}]}, "spec.features", "'a' more than once"),
    (
        {"model": "m", "features": [{"type": "continuous"}]},
        "spec.features.0.name",
        "is required (column name",
    ),
    (
        {"model": "m", "features": [{"name": "a", "importance": 0}]},
        "spec.features.0.importance",
        "greater than 0",
    ),
    ({"model": "m", "features": [{"name": "a", "type": "text"}]}, "spec.features.0.type", "'continuous'"),
    ({"model": "m", "features": [{"name": "a", "weight": 2}]}, "spec.features.0", "unknown field 'weight'"),
    (
        {"model": "m", "allowUnknownFeatures": False},
        "spec",
        "list the features or set allowUnknownFeatures: true",
    ),
    ({"model": "m", "template": "model_agnostic_monitor"}, "spec", "set predictions.task to classification"),
    ({"model": "m", "predictions": {"task": "ranking"}}, "spec.predictions.task", "'classification'"),
    (
        {"model": "m", "predictions": {"task": "regression", "positiveLabel": 1}},
        "spec.predictions",
        "task: classification",
    ),
    (
        {"model": "m", "predictions": {"task": "classification", "classes": ["a", "a"]}},
        "spec.predictions",
        "twice",
    ),
    (
        {"model": "m", "predictions": {"task": "classification", "classes": ["a"], "positiveLabel": "b"}},
        "spec.predictions",
        "positiveLabel 'b' is not one of classes",
    ),
    ({"model": "m", "thresholds": {"alpha": 1.5}}, "spec.thresholds.alpha", "less than 1"),
    (
        {"model": "m", "thresholds": {"correction": "holm"}},
        "spec.thresholds.correction",
        "'bh', 'bonferroni' or 'none'",
    ),
    (
        {"model": "m", "thresholds": {"warning": 0.5, "critical": 0.4}},
        "spec.thresholds",
        "warning=0.5 must be below",
    ),
    (
        {"model": "m", "thresholds": {"methods": {"kss": 0.1}}},
        "spec.thresholds.methods",
        "did you mean 'ks'?",
    ),
    (
        {"model": "m", "thresholds": {"methods": {"ks": 2}}},
        "spec.thresholds.methods.ks",
        "less than or equal to 1",
    ),
    ({"model": "m", "generator": {"kind": "llm"}}, "spec.generator", "set generator.llm.model"),
    ({"model": "m", "generator": {"kind": "gpt"}}, "spec.generator.kind", "'template' or 'llm'"),
    (
        {"model": "m", "generator": {"kind": "llm", "llm": {"model": "x", "baseUrl": "localhost:8000"}}},
        "spec.generator.llm",
        "is not an http(s) URL",
    ),
    (
        {"model": "m", "generator": {"kind": "llm", "llm": {"model": "x", "maxTokens": 10}}},
        "spec.generator.llm.maxTokens",
        "greater than or equal to 256",
    ),
    (
        {"model": "m", "generator": {"llm": {"apiKeySecret": {}}}},
        "spec.generator.llm.apiKeySecret.name",
        "is required",
    ),
    (
        {"model": "m", "rollout": {"restartTolerance": -1}},
        "spec.rollout.restartTolerance",
        "greater than or equal to 0",
    ),
    ({"model": "m", "rollout": {"autoRegenerate": "maybe"}}, "spec.rollout.autoRegenerate", "valid boolean"),
    ({"model": "m", "runtime": {"replicas": 0}}, "spec.runtime.replicas", "greater than or equal to 1"),
    (
        {"model": "m", "runtime": {"resources": {"limits": {"memory": "lots"}}}},
        "spec.runtime.resources.limits",
        "memory: 'lots' is not a Kubernetes quantity",
    ),
    (
        {"model": "m", "runtime": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}},
        "spec.runtime.resources",
        "requests.cpu=2 exceeds limits.cpu=500m",
    ),
    # Non-finite numbers have no literal in generated code and no JSON form: refused up front.
    (
        {"model": "m", "features": [{"name": "a", "importance": math.inf}]},
        "spec.features.0.importance",
        "finite number (got inf)",
    ),
    ({"model": "m", "thresholds": {"methods": {"psi": math.inf}}}, "spec.thresholds.methods.psi", "finite"),
    ({"model": "m", "thresholds": {"alpha": math.nan}}, "spec.thresholds.alpha", "finite number"),
    (
        {"model": "m", "generator": {"kind": "template", "llm": {"model": "x", "timeoutSeconds": math.inf}}},
        "spec.generator.llm.timeoutSeconds",
        "finite number",
    ),
    ({"model": "m", "window": {"size": 10**23}}, "spec.window.size", "less than or equal to 10000000"),
    (
        {"model": "m", "window": {"strategy": "adaptive", "size": 100, "maxSize": 10**9}},
        "spec.window.maxSize",
        "less than or equal to 10000000",
    ),
    ({"model": "m", "reference": {"size": 10**12}}, "spec.reference.size", "less than or equal to 10000000"),
    (
        {"model": "m", "features": {"a": "continuous"}},
        "spec.features",
        "not a mapping; write e.g. features: [{name: a, type: continuous}]",
    ),
    (
        {"model": "m", "features": [{"name": f"f{i}"} for i in range(501)]},
        "spec.features",
        "lists 501 features, at most 500 can be declared",
    ),
    ({"model": "m", "features": [{"name": "x" * 129}]}, "spec.features.0.name", "at most 128 characters"),
    ({"model": "m" * 254}, "spec.model", "at most 253 characters"),
    # YAML reads yes/no/on/off as booleans; pydantic would read true as 1.
    ({"model": "m", "thresholds": {"alpha": True}}, "spec.thresholds.alpha", "expected a number, got true"),
    ({"model": "m", "features": [{"name": "a", "importance": True}]}, "spec.features.0.importance", "number"),
    ({"model": "m", "window": {"size": False}}, "spec.window.size", "expected a number, got false"),
    (
        {"model": "m", "features": [{"name": "a", "method": "ks"}]},
        "spec.features.0",
        "method ks measures only continuous features, and this one is auto (inferred at run time); "
        "declare type: continuous, or use psi or js",
    ),
    (
        {"model": "m", "features": [{"name": "a", "type": "categorical", "method": "wasserstein"}]},
        "spec.features.0",
        "use a method for categorical features (chi2, kl, psi, js) or declare type: continuous",
    ),
    (
        {"model": "m", "features": [{"name": "a", "type": "continuous", "method": "kl"}]},
        "spec.features.0",
        "method kl measures only categorical features",
    ),
    ({"model": "m", "features": [{"name": "a", "method": "mmd"}]}, "spec.features.0.method", "'ks'"),
]


@pytest.mark.parametrize(
    ("obj", "path", "fragment"), INVALID, ids=[f"{i}-{p}" for i, (_, p, _) in enumerate(INVALID)]
)
def test_every_validation_error_names_the_field_and_the_fix(obj: dict, path: str, fragment: str) -> None:
    problems = _problems(obj)
    assert any(p == path and fragment in m for p, m in problems), problems


def test_manifest_errors_are_collected_together() -> None:
    problems = _problems(
        {
            "apiVersion": "poet.dev/v1",
            "kind": "Monitor",
            "metadata": {"name": "Bad_Name"},
            "specs": {},
        }
    )
    paths = dict(problems)
    assert "must be 'poet.dev/v1alpha1'" in paths["apiVersion"]
    assert "must be 'ModelMonitor'" in paths["kind"]
    assert "is not a DNS label" in paths["metadata.name"]
    assert "did you mean 'spec'?" in paths["specs"]
    assert "is required" in paths["spec"]


def test_mistakes_at_every_depth_are_reported_together() -> None:
    problems = _problems(
        {
            "model": "m",
            "optimiseFor": "accuracy",
            "typo": 1,
            "window": {"sise": 3, "strategy": "tumbling"},
            "thresholds": {"alpha": True, "methods": {"kss": 0.1}},
            "features": [{"name": "a", "typ": "continuous"}, {"name": "b", "importance": 0}],
        }
    )
    paths = dict(problems)
    assert "unknown field 'optimiseFor' (did you mean 'optimizeFor'?); unknown field 'typo'" in paths["spec"]
    assert "unknown field 'sise' (did you mean 'size'?)" in paths["spec.window"]
    assert "'fixed', 'sliding' or 'adaptive'" in paths["spec.window.strategy"]
    assert "expected a number" in paths["spec.thresholds.alpha"]
    assert "did you mean 'ks'?" in paths["spec.thresholds.methods"]
    assert "did you mean 'type'?" in paths["spec.features.0"]
    assert "greater than 0" in paths["spec.features.1.importance"]
    assert len(problems) == len(paths) == 7


@pytest.mark.parametrize(
    ("feature", "method"),
    [
        ({"type": "continuous", "method": "wasserstein"}, "wasserstein"),
        ({"type": "categorical", "method": "kl"}, "kl"),
        ({"type": "auto", "method": "psi"}, "psi"),
        ({"type": "auto", "method": "js"}, "js"),
        ({"type": "continuous"}, None),
    ],
)
def test_a_feature_may_declare_its_method(feature: dict, method: str | None) -> None:
    spec = MonitorSpec.from_mapping({"model": "m", "features": [{"name": "a", **feature}]})
    assert spec.feature_map()["a"].get("method") == method
    assert ("method" in spec.to_dict()["features"][0]) == (method is not None)


def test_spec_error_message_lists_every_problem() -> None:
    with pytest.raises(SpecError) as info:
        MonitorSpec.from_mapping({"model": "", "optimizeFor": "fast"}, source="m.yaml")
    text = str(info.value)
    assert text.startswith("invalid ModelMonitor spec in m.yaml (2 problems):")
    assert "spec.model:" in text and "spec.optimizeFor:" in text


@pytest.mark.parametrize("bad", [["model", "m"], "model: m", 3])
def test_non_mapping_spec_is_rejected(bad: object) -> None:
    with pytest.raises(SpecError, match="expected a ModelMonitor manifest or a spec mapping"):
        MonitorSpec.from_manifest(bad)


def test_manifest_spec_that_is_not_a_mapping() -> None:
    problems = _problems({"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": "x"}, "spec": "m"})
    assert problems == [("spec", "must be a mapping of spec fields, got str")]


def test_load_spec_file_reads_manifests_and_bare_specs(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"apiVersion: {API_VERSION}\nkind: {KIND}\nmetadata: {{name: a}}\nspec:\n  model: x\n"
    )
    assert load_spec_file(manifest).model == "x"
    bare = tmp_path / "b.yaml"
    bare.write_text("model: y\noptimizeFor: cost\n")
    assert load_spec_file(bare).optimize_for == "cost"
    multi = tmp_path / "multi.yaml"
    multi.write_text(
        f"kind: ConfigMap\n---\napiVersion: {API_VERSION}\nkind: {KIND}\n"
        "metadata: {name: c}\nspec: {model: z}\n"
    )
    assert load_document_file(multi).name == "c"


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the file"):
        load_spec_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line \d+"):
        load_spec_file(broken)
    two = tmp_path / "two.yaml"
    two.write_text(f"kind: {KIND}\nspec: {{model: a}}\n---\nkind: {KIND}\nspec: {{model: b}}\n")
    with pytest.raises(SpecError, match="holds 2 ModelMonitor documents"):
        load_spec_file(two)
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: m\nwindow: {size: 1}\n")
    with pytest.raises(SpecError, match=r"invalid ModelMonitor spec in .*bad.yaml"):
        load_spec_file(bad)


def test_parse_quantity() -> None:
    assert parse_quantity("250m") == pytest.approx(0.25)
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("2") == 2
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("1 GB")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid(path: Path) -> None:
    doc = load_document_file(path)
    assert doc.spec.model
    assert MonitorSpec.from_mapping(doc.spec.to_dict()) == doc.spec


def test_examples_cover_the_documented_cases() -> None:
    specs = {p.name: load_spec_file(p) for p in EXAMPLES}
    assert len(specs) >= 6
    assert any(
        s.to_dict().keys() == MonitorSpec(model=s.model).to_dict().keys() and s == MonitorSpec(model=s.model)
        for s in specs.values()
    )  # a minimal one
    assert any(s.template == "model_agnostic_monitor" for s in specs.values())
    assert {s.optimize_for for s in specs.values()} == {"accuracy", "real_time", "cost"}
    assert any(s.generator.kind == "llm" for s in specs.values())
    assert any(not s.allow_unknown_features for s in specs.values())


def _field_paths(model: type[pydantic.BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        paths.append(path)
        for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
            candidates = (arg, *getattr(arg, "__args__", ()))
            sub = next(
                (c for c in candidates if isinstance(c, type) and issubclass(c, pydantic.BaseModel)), None
            )
            if sub is not None:
                paths += _field_paths(sub, path + ("[]." if path == "features" else "."))
                break
    return paths


def test_docs_list_every_field() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "spec.md").read_text()
    missing = [p for p in _field_paths(MonitorSpec) if f"| `{p}` |" not in doc]
    assert missing == [], f"docs/spec.md lacks {missing}"


@settings(max_examples=60, deadline=None)
@given(
    strategy=st.sampled_from(["fixed", "sliding", "adaptive"]),
    size=st.one_of(st.integers(2, 100_000), st.sampled_from([2, 3, 7919, 5001, 4096, 999_983])),
    storage=st.sampled_from([None, "exact", "reservoir", "sketch"]),
    optimize_for=st.sampled_from(["accuracy", "real_time", "cost"]),
    seed=st.integers(0, 2**31),
)
def test_valid_windows_round_trip_and_resolve(
    strategy: str, size: int, storage: str | None, optimize_for: str, seed: int
) -> None:
    raw = {"strategy": strategy, "size": size, "seed": seed, **({"storage": storage} if storage else {})}
    spec = MonitorSpec.from_mapping({"model": "m", "optimizeFor": optimize_for, "window": raw})
    again = MonitorSpec.from_mapping(json.loads(json.dumps(spec.to_dict())))
    assert again == spec and again.spec_hash() == spec.spec_hash()
    config = spec.window_config()
    assert config["size"] == size and config["seed"] == seed
    make_window(config)  # every valid spec yields a window the runtime accepts
    if strategy == "sliding":
        assert 1 <= config["step"] <= size
    if strategy == "adaptive":
        assert 2 <= config["minSize"] <= size <= config["maxSize"]


def test_metadata_errors_name_the_field_instead_of_raising() -> None:
    problems = _problems(
        {
            "apiVersion": "poet.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {"name": "x", "namespace": 5, "labels": {"app-tier": 1}},
            "spec": {"model": "m"},
        }
    )
    assert ("metadata.namespace", "input should be a valid string (got 5)") in problems
    assert ("metadata.labels.app-tier", "input should be a valid string (got 1)") in problems


def test_spec_files_with_bad_values_give_field_errors(tmp_path: Path) -> None:
    cases = {
        "labels.yaml": (
            "apiVersion: poet.dev/v1alpha1\nkind: ModelMonitor\nmetadata: {name: x, labels: {a: 1}}\n"
            "spec: {model: m}\n",
            "metadata.labels.a: input should be a valid string (got 1)",
        ),
        "inf.yaml": ("model: m\nfeatures: [{name: a, importance: .inf}]\n", "finite number (got inf)"),
        "big.yaml": (
            "model: m\nfeatures:\n" + "".join(f"- name: f{i}\n" for i in range(10_000)),
            "spec.features: lists 10000 features, at most 500",
        ),
    }
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(SpecError) as info:
            load_document_file(tmp_path / name)
        assert expected in str(info.value), name
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00model: m\n")
    with pytest.raises(SpecError, match=r"binary\.yaml.*\n  is not UTF-8 text \(byte 0\)"):
        load_document_file(tmp_path / "binary.yaml")


def test_the_largest_declared_spec_still_renders_within_the_code_size_limit() -> None:
    from poet_operator.poet.enforce.policy import MAX_CODE_BYTES
    from poet_operator.poet.generators.template import TemplatePlan, render

    # The most features, with names as long as the byte budget allows once escaped for the code.
    names = [f"{i:03d}" + "\\" * 60 for i in range(500)]
    assert sum(len(repr(n)) for n in names) < MAX_FEATURE_NAMES_BYTES
    spec = MonitorSpec.from_mapping(
        {
            "model": "m",
            "optimizeFor": "real_time",
            "features": [{"name": n, "type": "categorical", "importance": 0.123456789} for n in names],
        }
    )
    code, _ = render(TemplatePlan(spec, spec.spec_hash(), (("OOMKilled", "bounded_memory"),)))
    assert len(code.encode()) < MAX_CODE_BYTES
    too_long = [{"name": n + "\\" * 5} for n in names]
    with pytest.raises(SpecError, match=r"feature names take \d+ bytes, at most 65536"):
        MonitorSpec.from_mapping({"model": "m", "features": too_long})


def test_feature_names_with_line_breaks_are_refused() -> None:
    for name in ("a\nb", "a\u2028b", "a\x85b", "a\x00"):
        problems = _problems({"model": "m", "features": [{"name": "ok"}, {"name": name}]})
        assert problems[0][0] == "spec.features", problems
        assert "entry 1 has the name" in problems[0][1]
        assert "line break or control character" in problems[0][1]


@pytest.mark.parametrize(
    ("window", "step"),
    [
        ({"size": 500, "overlap": 0.5}, 250),
        ({"size": 5, "overlap": 0.5}, 3),  # 2.5 shared rows round down to 2
        ({"size": 1000, "overlap": 0.25}, 750),
        ({"size": 10, "overlap": 0.999}, 1),  # at most size - 1 rows shared: the window always advances
        ({"size": 3, "overlap": 0.1}, 3),  # 0.3 rows round down to none
        ({"overlap": 0.25}, 1500),  # the default size for accuracy, 2000
        ({"size": 10, "step": 5, "overlap": 0.5}, 5),
        ({"size": 100, "overlap": 30.0}, 70),  # a whole float is a row count
    ],
)
def test_overlap_as_a_fraction_of_the_window(window: dict, step: int) -> None:
    spec = MonitorSpec.from_mapping({"model": "m", "window": window})
    config = spec.window_config()
    assert config["step"] == step
    make_window(config)
    assert MonitorSpec.from_mapping(json.loads(json.dumps(spec.to_dict()))) == spec


def test_overlap_keeps_its_written_form_in_the_manifest() -> None:
    fraction = MonitorSpec.from_mapping({"model": "m", "window": {"size": 10, "overlap": 0.5}})
    rows = MonitorSpec.from_mapping({"model": "m", "window": {"size": 10, "overlap": 5.0}})
    assert fraction.to_dict()["window"]["overlap"] == 0.5
    assert rows.to_dict()["window"]["overlap"] == 5 and isinstance(rows.window.overlap, int)
    assert rows == MonitorSpec.from_mapping({"model": "m", "window": {"size": 10, "overlap": 5}})
    # Both share 5 rows, but the specs differ as written (the fraction follows size when it changes).
    assert fraction.window_config() == rows.window_config() and fraction.spec_hash() != rows.spec_hash()
    assert (
        MonitorSpec.model_json_schema(by_alias=True)["$defs"]["WindowSpec"]["properties"]["overlap"]["type"]
        == "number"
    )


def test_the_runtime_cadence_reads_a_fractional_overlap_as_the_spec_does() -> None:
    from monitor_runtime.server.evaluator import plan_window

    for window in ({"size": 5, "overlap": 0.5}, {"size": 10, "overlap": 0.999}, {"size": 100, "overlap": 30}):
        spec = MonitorSpec.from_mapping({"model": "m", "window": window})
        assert plan_window(spec.to_dict()).step == spec.window_config()["step"], window


@settings(max_examples=100, deadline=None)
@given(size=st.integers(2, 10_000_000), fraction=st.floats(0, 1, exclude_min=True, exclude_max=True))
def test_a_fraction_always_leaves_a_step_of_at_least_one_row(size: int, fraction: float) -> None:
    config = MonitorSpec.from_mapping(
        {"model": "m", "window": {"size": size, "overlap": fraction}}
    ).window_config()
    assert 1 <= config["step"] <= size
    assert config["step"] == max(1, size - math.floor(size * fraction))
