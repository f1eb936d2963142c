"""The ModelMonitor CRD: committed files up to date, a structural schema, examples accepted, mistakes refused.

The schema is checked the way the API server would use it: defaults applied (structural defaulting), unknown
fields refused (kubectl's strict field validation), OpenAPI bounds checked with a JSON-schema validator, and
every CEL rule evaluated with Google's CEL runtime (cel-expr-python), numbers typed as Kubernetes types them
(`number` is a double, `integer` an int).
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cel_expr_python import cel
from hypothesis import given, settings
from hypothesis import strategies as st
from poet_operator.k8s.crd import (
    PRINTER_COLUMNS,
    VALIDATIONS,
    crd_yaml,
    modelmonitor_crd,
    openapi_schema,
    spec_reference_markdown,
)
from poet_operator.rollout.status import (
    CanaryProgress,
    Condition,
    Failure,
    FeedbackRecord,
    Health,
    ManualAction,
    MonitorStatus,
    PendingGeneration,
    Regenerations,
    VersionEntry,
)
from poet_operator.spec import MonitorSpec, SpecError, parse_quantity

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "modelmonitor.yaml"
REFERENCE_FILE = ROOT / "docs" / "spec-reference.md"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
SCHEMA = openapi_schema()
SPEC = SCHEMA["properties"]["spec"]
STATUS = SCHEMA["properties"]["status"]

# What a structural schema node may hold (apiextensions.k8s.io/v1); `$ref`, `anyOf` and friends, `title`,
# `nullable` and `additionalProperties` beside `properties` are what a pydantic schema would add.
ALLOWED_KEYS = {
    "type",
    "description",
    "default",
    "enum",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
}


def _walk(node: dict[str, Any], path: str = ""):
    yield path, node
    for key, sub in node.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}" if path else key)
    if "items" in node:
        yield from _walk(node["items"], path + "[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], path + "{}")


# --- the API server's steps, as tests can run them ------------------------------------------------------


def _json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """The structural schema as draft-4 JSON Schema, refusing unknown fields like strict field validation."""
    out = {k: v for k, v in node.items() if not k.startswith("x-kubernetes") and k != "default"}
    if node.get("x-kubernetes-int-or-string"):
        out["type"] = ["integer", "string"]
    if "properties" in node:
        out["properties"] = {k: _json_schema(v) for k, v in node["properties"].items()}
        out["additionalProperties"] = False
    if "items" in node:
        out["items"] = _json_schema(node["items"])
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = _json_schema(node["additionalProperties"])
    return out


VALIDATOR = jsonschema.Draft4Validator(_json_schema(SCHEMA))


def _defaulted(value: Any, node: dict[str, Any]) -> Any:
    """Structural defaulting: a missing field with a default gets it, then defaulting goes on inside."""
    value = copy.deepcopy(value)
    if isinstance(value, dict) and "properties" in node:
        for key, sub in node["properties"].items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _defaulted(value[key], sub)
    elif isinstance(value, list) and "items" in node:
        value = [_defaulted(item, node["items"]) for item in value]
    return value


def _pruned(value: Any, node: dict[str, Any]) -> Any:
    """Pruning: fields the schema does not declare are dropped (unless it preserves unknown fields)."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict) and "properties" in node:
        return {k: _pruned(v, node["properties"][k]) for k, v in value.items() if k in node["properties"]}
    if isinstance(value, dict) and isinstance(node.get("additionalProperties"), dict):
        return {k: _pruned(v, node["additionalProperties"]) for k, v in value.items()}
    if isinstance(value, list) and "items" in node:
        return [_pruned(item, node["items"]) for item in value]
    return value


def _cel_value(value: Any, node: dict[str, Any]) -> Any:
    """A value as CEL sees it under this schema: `number` fields are doubles even when written as 250."""
    if node.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict) and "properties" in node:
        return {k: _cel_value(v, node["properties"].get(k, {})) for k, v in value.items()}
    if isinstance(value, list) and "items" in node:
        return [_cel_value(item, node["items"]) for item in value]
    return value


def _is_quantity(text: str) -> bool:
    try:
        parse_quantity(text)
    except ValueError:
        return False
    return True


# Kubernetes' quantity library, stood in for by the model's own parser (a quantity is a double here): the
# rules' logic is what is tested, not the library.
_QUANTITY_FUNCTIONS = [
    cel.FunctionDecl(
        "quantity",
        [cel.Overload("quantity_string", cel.Type.DOUBLE, [cel.Type.STRING], impl=parse_quantity)],
    ),
    cel.FunctionDecl(
        "isQuantity",
        [cel.Overload("is_quantity_string", cel.Type.BOOL, [cel.Type.STRING], impl=_is_quantity)],
    ),
    cel.FunctionDecl(
        "compareTo",
        [
            cel.Overload(
                "quantity_compare_to",
                cel.Type.INT,
                [cel.Type.DOUBLE, cel.Type.DOUBLE],
                is_member=True,
                impl=lambda a, b: (a > b) - (a < b),
            )
        ],
    ),
]
ENV = cel.NewEnv(variables={"self": cel.Type.DYN}, functions=_QUANTITY_FUNCTIONS)
_COMPILED: dict[str, Any] = {}


def _rule_passes(rule: str, value: Any) -> bool:
    expression = _COMPILED.setdefault(rule, ENV.compile(rule))
    result = expression.eval(data={"self": value})
    if result.type() == cel.Type.ERROR:
        raise AssertionError(f"rule {rule!r} failed to evaluate on {value!r}: {result.value()}")
    return result.value() is True


def _cel_errors(value: Any, node: dict[str, Any], path: str = "") -> list[tuple[str, str]]:
    """(path, message) of every CEL rule that fails, as the API server would list them."""
    errors = []
    for rule in node.get("x-kubernetes-validations", []):
        if not _rule_passes(rule["rule"], _cel_value(value, node)):
            errors.append((path, rule["message"]))
    if isinstance(value, dict):
        for key, sub in node.get("properties", {}).items():
            if key in value:
                errors += _cel_errors(value[key], sub, f"{path}.{key}" if path else key)
    if isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            errors += _cel_errors(item, node["items"], f"{path}[{index}]")
    return errors


def _admit(obj: dict[str, Any]) -> list[str]:
    """What the API server would say to creating `obj`: schema errors, then CEL messages; [] when admitted."""
    defaulted = _defaulted(obj, SCHEMA)
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(defaulted)
    ]
    if problems:
        return problems
    return [f"{path}: {message}" for path, message in _cel_errors(defaulted, SCHEMA)]


def _manifest(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "poet.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": "m"},
        "spec": spec,
    }


# --- the committed files --------------------------------------------------------------------------------


def test_committed_crd_matches_the_model() -> None:
    assert CRD_FILE.read_text(encoding="utf-8") == crd_yaml(), (
        "crds/modelmonitor.yaml is stale: regenerate it with `make crd` "
        "(or `poetmon crd -o crds/modelmonitor.yaml`) and commit it"
    )


def test_committed_spec_reference_matches_the_model() -> None:
    assert REFERENCE_FILE.read_text(encoding="utf-8") == spec_reference_markdown(), (
        "docs/spec-reference.md is stale: regenerate it with `make crd` "
        "(or `poetmon crd --docs -o docs/spec-reference.md`) and commit it"
    )


def test_poetmon_crd_prints_and_writes_the_crd(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator")])}
    printed = subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", "crd"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert printed.stdout == crd_yaml()
    target = tmp_path / "docs.md"
    subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", "crd", "--docs", "-o", str(target)], env=env, check=True
    )
    assert target.read_text(encoding="utf-8") == spec_reference_markdown()


def test_reference_page_lists_every_spec_field_and_is_linked() -> None:
    page = spec_reference_markdown()
    for path, _node in _walk(SPEC):
        if path and not path.endswith("[]"):
            assert f"| `{path}` |" in page, path
    assert "| `window.overlap` | number | unset | >= 0, <= 10\u2009000\u2009000 |" in page
    assert "| `features[].importance` | number | `1.0` | > 0 |" in page
    assert "(spec-reference.md)" in (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")


# --- the CRD's shape ------------------------------------------------------------------------------------


def test_crd_names_and_version() -> None:
    crd = modelmonitor_crd()
    assert (
        crd["apiVersion"] == "apiextensions.k8s.io/v1" and crd["metadata"]["name"] == "modelmonitors.poet.dev"
    )
    spec = crd["spec"]
    assert spec["group"] == "poet.dev" and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "ModelMonitor",
        "listKind": "ModelMonitorList",
        "plural": "modelmonitors",
        "singular": "modelmonitor",
        "shortNames": ["mm"],
        "categories": ["poet"],
    }
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Model",
        "Stable",
        "Canary",
        "Phase",
        "Health",
        "Drifted",
        "Age",
    ]


def test_printer_columns_point_at_declared_fields_of_the_right_type() -> None:
    kinds = {"string": "string", "integer": "integer", "date": "string"}
    for column in PRINTER_COLUMNS:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            continue
        node = SCHEMA
        for part in column["jsonPath"].strip(".").split("."):
            node = node["properties"][part]
        assert node["type"] == kinds[column["type"]], column


def test_schema_is_structural() -> None:
    for path, node in _walk(SCHEMA):
        assert set(node) <= ALLOWED_KEYS, f"{path}: {set(node) - ALLOWED_KEYS}"
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path
            assert set(node.get("required", [])) <= set(node["properties"]), path
        if node.get("type") == "array":
            assert "items" in node, path
        if node.get("type") == "object" and "properties" not in node and path != "metadata":
            assert node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node, path
        for flag in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(flag, True) is True, f"{path}: {flag} must be a flag in OpenAPI v3.0"
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), path
    # Free-form data is preserved only where the model holds free-form data.
    preserved = [p for p, n in _walk(SCHEMA) if n.get("x-kubernetes-preserve-unknown-fields")]
    assert preserved == ["status.feedback[].evidence"]


def test_schema_keeps_descriptions_defaults_and_bounds() -> None:
    window = SPEC["properties"]["window"]
    assert window["description"].startswith("How rows are grouped")
    assert window["default"] == {"strategy": "sliding", "seed": 0}
    assert window["properties"]["strategy"]["enum"] == ["fixed", "sliding", "adaptive"]
    assert window["properties"]["overlap"]["type"] == "number"
    assert window["properties"]["size"] == {
        "description": window["properties"]["size"]["description"],
        "type": "integer",
        "minimum": 2,
        "maximum": 10_000_000,
    }
    alpha = SPEC["properties"]["thresholds"]["properties"]["alpha"]
    assert alpha["minimum"] == 0 and alpha["exclusiveMinimum"] is True and alpha["exclusiveMaximum"] is True
    label = SPEC["properties"]["predictions"]["properties"]["positiveLabel"]
    assert label.get("x-kubernetes-int-or-string") is True
    # 2**63 - 1 is no float64: the API server refuses it as an integer bound; int64 already bounds the seed.
    assert "maximum" not in window["properties"]["seed"] and window["properties"]["seed"]["minimum"] == 0
    for path, node in _walk(SCHEMA):
        for key in ("minimum", "maximum"):
            if key in node and node["type"] == "integer":
                assert float(node[key]) == node[key], path
    requests = SPEC["properties"]["runtime"]["properties"]["resources"]["properties"]["requests"]
    assert requests["default"] == {"cpu": "100m", "memory": "256Mi"}
    assert SPEC["required"] == ["model"]
    assert SPEC["properties"]["features"]["maxItems"] == 500


def test_every_default_validates_against_its_node() -> None:
    found = 0
    for path, node in _walk(SCHEMA):
        if "default" in node:
            found += 1
            default = _defaulted(node["default"], node)
            errors = list(jsonschema.Draft4Validator(_json_schema(node)).iter_errors(default))
            assert errors == [], f"{path}: {[e.message for e in errors]}"
            assert _cel_errors(default, node) == [], path
            # A default spells out only what the model would fill in itself.
            assert _pruned(default, node) == default, path
    assert found > 40
    # The spec the API server stores for `{model: m}` is the one the model reads, defaults and all.
    stored = _defaulted({"model": "m"}, SPEC)
    assert stored == MonitorSpec(model="m").to_dict()


def test_status_schema_declares_everything_the_operator_writes() -> None:
    status = MonitorStatus(
        phase="Canary",
        observed_generation=3,
        stable_version=1,
        canary_version=2,
        versions=[
            VersionEntry(
                number=1,
                config_map="m-v1",
                reason="initial",
                state="stable",
                created="2026-01-01T00:00:00Z",
                generator="llm",
                spec_hash="a" * 64,
                code_sha256="b" * 64,
                feedback_answered=["OOMKilled"],
                lessons_applied=["OOMKilled:bounded_memory"],
                remedies=["OOMKilled:bounded_memory"],
                message="promoted",
            )
        ],
        last_failure=Failure(
            reason="OOMKilled",
            exit_code=137,
            signature="OOMKilled",
            message="killed",
            pod="m-abc",
            version=1,
            role="stable",
            time="2026-01-01T00:00:00Z",
        ),
        health=Health(
            overall="warning",
            drift_score=0.2,
            drifted_features=["age"],
            drifted_count=1,
            last_evaluated="2026-01-01T00:00:00Z",
        ),
        regenerations=Regenerations(used=1, budget=3),
        conditions=[
            Condition(
                type="Ready",
                status="True",
                reason="Running",
                message="ok",
                last_transition_time="2026-01-01T00:00:00Z",
                observed_generation=3,
            )
        ],
        pending=PendingGeneration(
            version=3,
            reason="crash-feedback",
            spec_hash="c" * 64,
            previous=2,
            feedback=["OOMKilled"],
            started="2026-01-01T00:00:00Z",
        ),
        canary=CanaryProgress(
            version=2, started="2026-01-01T00:00:00Z", ready_since="2026-01-01T00:00:05Z", restarts=1
        ),
        feedback=[
            FeedbackRecord(
                source="pod",
                signature="OOMKilled",
                version=1,
                evidence={"exitCode": 137, "nested": {"rows": [1, 2]}, "note": None},
                time="2026-01-01T00:00:00Z",
            )
        ],
        restarts_seen={"m-abc": 2},
        next_regeneration_after="2026-01-01T00:01:00Z",
        healing_since="2026-01-01T00:00:00Z",
        last_manual_action=ManualAction(
            annotation="poet.dev/promote", value="true", outcome="promoted", time="t"
        ),
        message="canary analysis running",
        paused=True,
        hold="aborted by poet.dev/abort",
    ).to_dict()
    # Every model field is set, so a field missing from the schema would show up as pruned.
    unset = [
        f"{model.__name__}.{name}"
        for model, obj in [(MonitorStatus, status)]
        for name, field in model.model_fields.items()
        if (field.alias or name) not in obj
    ]
    assert unset == []
    assert _pruned(status, STATUS) == status
    obj = {**_manifest({"model": "m"}), "status": status}
    assert _admit(obj) == []
    assert MonitorStatus.from_obj(_pruned(status, STATUS)).to_dict() == status


def test_rules_name_only_declared_fields_and_compile() -> None:
    for path, rules in VALIDATIONS.items():
        node = SCHEMA
        for part in path.split("."):
            node = node["properties"][part]
        for rule in rules:
            ENV.compile(rule["rule"])
            assert rule["message"] and len(rule["message"]) < 200
            for first, second in re.findall(r"self\.(\w+)(?:\.(\w+))?", rule["rule"]):
                assert first in node.get("properties", {}), f"{path}: {rule['rule']} names {first}"
                if second:
                    assert second in node["properties"][first].get("properties", {}), rule["rule"]


# --- admission ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_admitted(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
    for document in documents:
        obj = document if document.get("kind") == "ModelMonitor" else _manifest(document)
        assert _admit(obj) == []
        # What the API server stores reads back as the same spec.
        stored = _defaulted(obj, SCHEMA)["spec"]
        assert MonitorSpec.from_mapping(stored) == MonitorSpec.from_mapping(obj["spec"])


# (spec, fragment of the API server's answer). Every one is a mistake the model refuses too.
REFUSED = [
    ({}, "'model' is a required property"),
    ({"model": "m", "windw": {}}, "Additional properties are not allowed ('windw' was unexpected)"),
    ({"model": "m", "window": {"size": 1}}, "1 is less than the minimum of 2"),
    ({"model": "m", "window": {"strategy": "tumbling"}}, "'tumbling' is not one of"),
    ({"model": "m", "window": {"overlap": 1.5}}, "overlap is a row count (a whole number) or a fraction"),
    ({"model": "m", "window": {"overlap": -0.5}}, "less than the minimum of 0"),
    ({"model": "m", "window": {"strategy": "fixed", "overlap": 0.5}}, "overlap only applies to sliding"),
    ({"model": "m", "window": {"strategy": "fixed", "size": 10, "step": 5}}, "step must equal size"),
    ({"model": "m", "window": {"size": 10, "step": 5, "overlap": 2}}, "step and overlap disagree"),
    ({"model": "m", "window": {"size": 10, "step": 4, "overlap": 0.5}}, "step and overlap disagree"),
    ({"model": "m", "window": {"step": 5, "overlap": 0.5}}, "step and overlap disagree"),
    ({"model": "m", "window": {"size": 10, "overlap": 10}}, "overlap must be smaller than size"),
    ({"model": "m", "window": {"size": 10, "step": 11}}, "step must not exceed size"),
    ({"model": "m", "window": {"minSize": 5}}, "minSize and maxSize only apply to adaptive windows"),
    (
        {"model": "m", "window": {"strategy": "adaptive", "minSize": 50, "maxSize": 10}},
        "minSize must not exceed maxSize",
    ),
    ({"model": "m", "window": {"strategy": "adaptive", "size": 5, "minSize": 10}}, "size is below minSize"),
    ({"model": "m", "window": {"strategy": "adaptive", "size": 50, "maxSize": 10}}, "size is above maxSize"),
    ({"model": "m", "window": {"capacity": 10}}, "capacity only applies to reservoir or sketch"),
    ({"model": "m", "allowUnknownFeatures": False}, "list the features or set allowUnknownFeatures: true"),
    ({"model": "m", "template": "model_agnostic_monitor"}, "set predictions.task to classification"),
    ({"model": "m", "predictions": {"task": "regression", "classes": ["a"]}}, "only apply to task: class"),
    ({"model": "m", "thresholds": {"warning": 0.5, "critical": 0.4}}, "warning must be below critical"),
    ({"model": "m", "thresholds": {"alpha": 1}}, "greater than or equal to the maximum of 1"),
    ({"model": "m", "generator": {"kind": "llm"}}, "kind: llm needs llm.model"),
    ({"model": "m", "generator": {"kind": "llm", "llm": {"baseUrl": "x"}}}, "does not match"),
    ({"model": "m", "rollout": {"analysis": {"query": "up"}}}, "query needs maxValue or minValue"),
    ({"model": "m", "rollout": {"analysis": {"maxValue": 1}}}, "maxValue and minValue apply to a query"),
    (
        {"model": "m", "rollout": {"analysis": {"query": "up", "minValue": 2, "maxValue": 1}}},
        "minValue exceeds maxValue",
    ),
    ({"model": "m", "runtime": {"replicas": 2}}, "2 is greater than the maximum of 1"),
    ({"model": "m", "runtime": {"resources": {"limits": {"memory": "lots"}}}}, "does not match"),
    (
        {"model": "m", "runtime": {"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}}},
        "requests.cpu exceeds limits.cpu",
    ),
    ({"model": "m", "runtime": {"resources": {"requests": {"memory": "2Gi"}}}}, "requests.memory exceeds"),
    ({"model": "m", "features": [{"name": "a", "importance": 0}]}, "less than or equal to the minimum of 0"),
    ({"model": "m", "features": [{"name": f"f{i}"} for i in range(501)]}, "is too long"),
]


@pytest.mark.parametrize(("spec", "fragment"), REFUSED, ids=[f"{i}" for i in range(len(REFUSED))])
def test_obvious_mistakes_are_refused_with_a_clear_message(spec: dict[str, Any], fragment: str) -> None:
    problems = _admit(_manifest(spec))
    assert any(fragment in p for p in problems), problems
    with pytest.raises(SpecError):
        MonitorSpec.from_mapping(spec)


def test_each_rule_is_exercised_by_a_refused_spec() -> None:
    messages = [rule["message"] for rules in VALIDATIONS.values() for rule in rules]
    answers = [p for spec, _ in REFUSED for p in _admit(_manifest(spec))]
    assert [m for m in messages if not any(m in a for a in answers)] == []


def test_rules_accept_what_they_are_about_when_it_is_right() -> None:
    for spec in (
        {"model": "m", "window": {"size": 10, "step": 5, "overlap": 0.5}},
        {"model": "m", "window": {"size": 5, "step": 3, "overlap": 0.5}},  # 2 rows shared, rounded down
        {"model": "m", "window": {"size": 10, "step": 1, "overlap": 0.99}},  # at most size - 1 rows
        {"model": "m", "window": {"size": 10, "step": 7, "overlap": 3}},
        {"model": "m", "window": {"strategy": "fixed", "overlap": 0}},
        {"model": "m", "window": {"strategy": "adaptive", "size": 10, "minSize": 10, "maxSize": 10}},
        {"model": "m", "window": {"storage": "reservoir", "capacity": 10}},
        {"model": "m", "allowUnknownFeatures": False, "features": [{"name": "a"}]},
        {
            "model": "m",
            "allowUnknownFeatures": False,
            "template": "model_agnostic_monitor",
            "predictions": {"task": "regression"},
        },
        {"model": "m", "predictions": {"task": "classification", "classes": [0, 1], "positiveLabel": 1}},
        {"model": "m", "generator": {"kind": "llm", "llm": {"model": "x"}}},
        {"model": "m", "generator": {"kind": "template", "llm": {"baseUrl": "http://127.0.0.1:8000/v1"}}},
        {"model": "m", "rollout": {"analysis": {"query": "up", "minValue": 1, "maxValue": 1}}},
        {"model": "m", "runtime": {"resources": {"requests": {"cpu": "0.5", "memory": "0.5Gi"}}}},
    ):
        assert _admit(_manifest(spec)) == [], spec
        MonitorSpec.from_mapping(spec)


_overlaps = st.one_of(st.integers(0, 60), st.sampled_from([0.5, 0.25, 0.1, 0.999, 0.333, 1.5, 2.0, 0.0]))


@settings(max_examples=150, deadline=None)
@given(
    strategy=st.sampled_from([None, "fixed", "sliding", "adaptive"]),
    size=st.one_of(st.none(), st.integers(2, 60)),
    step=st.one_of(st.none(), st.integers(1, 60)),
    overlap=st.one_of(st.none(), _overlaps),
    min_size=st.one_of(st.none(), st.integers(2, 60)),
    max_size=st.one_of(st.none(), st.integers(2, 60)),
    storage=st.sampled_from([None, "exact"]),
    capacity=st.one_of(st.none(), st.integers(1, 5)),
)
def test_window_rules_agree_with_the_model(
    strategy: str | None,
    size: int | None,
    step: int | None,
    overlap: float | None,
    min_size: int | None,
    max_size: int | None,
    storage: str | None,
    capacity: int | None,
) -> None:
    raw = {
        "strategy": strategy,
        "size": size,
        "step": step,
        "overlap": overlap,
        "minSize": min_size,
        "maxSize": max_size,
        "storage": storage,
        "capacity": capacity,
    }
    window = {k: v for k, v in raw.items() if v is not None}
    try:
        MonitorSpec.from_mapping({"model": "m", "window": window})
        model_ok = True
    except SpecError:
        model_ok = False
    # Exact storage: the one window check CEL cannot express (bounded panes) never applies.
    assert (_admit(_manifest({"model": "m", "window": window})) == []) == model_ok, window
