"""The ModelMonitor CustomResourceDefinition and the spec reference page, both generated from the models.

`MonitorSpec` and `MonitorStatus` are the source of truth; their JSON schemas are turned into the structural
schema Kubernetes requires (no `$ref`, `anyOf`, `title` or `null`; every node typed), with CEL rules that
catch cross-field mistakes at `kubectl apply` time. `crds/modelmonitor.yaml` and `docs/spec-reference.md`
are this module's output, regenerated with `make crd` (`poetmon crd -o crds/modelmonitor.yaml` and
`poetmon crd --docs -o docs/spec-reference.md`).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel

from poet_operator.rollout.status import MonitorStatus
from poet_operator.spec import API_VERSION, KIND, MonitorSpec

GROUP, VERSION = API_VERSION.split("/")
PLURAL = "modelmonitors"
SINGULAR = "modelmonitor"
SHORT_NAMES = ["mm"]
# `poet` lists every poet.dev resource (`kubectl get poet`); not `all`, which is meant for workload kinds.
CATEGORIES = ["poet"]

# Kept: what a structural schema may say. Dropped: `title` (noise in `kubectl explain`),
# `additionalProperties: false` (pruning already drops unknown keys, and kubectl's strict field validation
# reports them).
_KEPT = {
    "type",
    "description",
    "default",
    "enum",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "pattern",
    "required",
    "format",
}

# CEL rules: each mirrors a check of the model, so the API server refuses at apply time what the operator
# would refuse later. They run after defaulting, so fields with a schema default are always present; optional
# fields are guarded with has(). Numbers (`type: number`) are doubles in CEL, integers ints: no mixing.
# requests <= limits uses the Kubernetes quantity library (`quantity()`, `isQuantity()`), which API servers
# accept in new CRD rules from Kubernetes 1.29 on; an older server refuses the whole CRD.
# Not expressed, and left to the model (whose messages name the field):
# - a sliding window with bounded storage keeping at most 1000 panes (size / gcd(size, step)): no gcd in CEL.
# - positiveLabel being one of classes, classes listed once, feature name byte budget: these iterate lists
#   whose items are unbounded strings, and the API server's cost estimate would refuse the rule.
# - a feature's method measuring its declared type (FeatureSpec._method_fits_type): a rule on list items.
_OVERLAP_ROWS = (
    "(self.overlap < 1.0 ? (int(double(self.size) * self.overlap) < self.size"
    " ? int(double(self.size) * self.overlap) : self.size - 1) : int(self.overlap))"
)
VALIDATIONS: dict[str, list[dict[str, str]]] = {
    "spec": [
        {
            "rule": "self.allowUnknownFeatures || self.template != 'feature_drift' "
            "|| size(self.features) > 0",
            "message": "allowUnknownFeatures is false but features is empty, so nothing would be monitored; "
            "list the features or set allowUnknownFeatures: true",
        },
        {
            "rule": "self.template != 'model_agnostic_monitor' || self.predictions.task != 'none'",
            "message": "template model_agnostic_monitor watches predictions and outcomes; "
            "set predictions.task to classification or regression",
        },
    ],
    "spec.window": [
        {
            "rule": "self.strategy != 'fixed' || !has(self.overlap) || self.overlap == 0.0",
            "message": "overlap only applies to sliding windows; set strategy: sliding or remove overlap",
        },
        {
            "rule": "self.strategy != 'fixed' || !has(self.step) || !has(self.size) "
            "|| self.step == self.size",
            "message": "a fixed window always advances by its size, so step must equal size; "
            "set strategy: sliding or remove step",
        },
        {
            "rule": "!has(self.step) || !has(self.overlap) || "
            f"(has(self.size) && self.step + {_OVERLAP_ROWS} == self.size)",
            "message": "step and overlap disagree (step + overlap rows must equal size, "
            "and size must be given); "
            "give only one of them",
        },
        {
            "rule": "!has(self.overlap) || !has(self.size) || self.overlap < 1.0 "
            "|| self.overlap < double(self.size)",
            "message": "overlap must be smaller than size; lower overlap or raise size",
        },
        {
            "rule": "!has(self.step) || !has(self.size) || self.step <= self.size",
            "message": "step must not exceed size (rows would be skipped); lower step or raise size",
        },
        {
            "rule": "self.strategy == 'adaptive' || (!has(self.minSize) && !has(self.maxSize))",
            "message": "minSize and maxSize only apply to adaptive windows; "
            "set strategy: adaptive or remove them",
        },
        {
            "rule": "!has(self.minSize) || !has(self.maxSize) || self.minSize <= self.maxSize",
            "message": "minSize must not exceed maxSize; swap or fix them",
        },
        {
            "rule": "!has(self.size) || !has(self.minSize) || self.minSize <= self.size",
            "message": "size is below minSize; raise size or lower minSize",
        },
        {
            "rule": "!has(self.size) || !has(self.maxSize) || self.size <= self.maxSize",
            "message": "size is above maxSize; lower size or raise maxSize",
        },
        {
            "rule": "!has(self.capacity) || (has(self.storage) && self.storage != 'exact')",
            "message": "capacity only applies to reservoir or sketch storage; set storage or remove capacity",
        },
    ],
    "spec.window.overlap": [
        {
            "rule": "self < 1.0 || self == double(int(self))",
            "message": "overlap is a row count (a whole number) or a fraction of the window "
            "(0 < overlap < 1); "
            "write e.g. 250 or 0.5",
        },
    ],
    "spec.predictions": [
        {
            "rule": "self.task == 'classification' || (!has(self.positiveLabel) && !has(self.classes))",
            "message": "positiveLabel and classes only apply to task: classification; "
            "set task: classification or remove them",
        },
    ],
    "spec.thresholds": [
        {
            "rule": "!has(self.warning) || self.warning < self.critical",
            "message": "warning must be below critical; lower warning or raise critical",
        },
    ],
    "spec.generator": [
        {
            "rule": "self.kind != 'llm' || (has(self.llm) && has(self.llm.model))",
            "message": "kind: llm needs llm.model; set generator.llm.model (e.g. gpt-4o-mini) "
            "or use kind: template",
        },
    ],
    "spec.runtime.resources": [
        {
            "rule": f"!has(self.requests.{name}) || !has(self.limits.{name}) "
            f"|| !isQuantity(self.requests.{name}) || !isQuantity(self.limits.{name}) "
            f"|| quantity(self.requests.{name}).compareTo(quantity(self.limits.{name})) <= 0",
            "message": f"requests.{name} exceeds limits.{name}; lower the request or raise the limit",
        }
        for name in ("cpu", "memory")
    ],
    "spec.rollout.analysis": [
        {
            "rule": "!has(self.query) || has(self.maxValue) || has(self.minValue)",
            "message": "query needs maxValue or minValue to say what passes; set one of them",
        },
        {
            "rule": "has(self.query) || (!has(self.maxValue) && !has(self.minValue))",
            "message": "maxValue and minValue apply to a query; set query or remove them",
        },
        {
            "rule": "!has(self.minValue) || !has(self.maxValue) || self.minValue <= self.maxValue",
            "message": "minValue exceeds maxValue; swap or fix them",
        },
    ],
}

# Kubernetes list semantics: features are keyed by name (server-side apply merges them, duplicates are
# refused).
_LIST_TYPES: dict[str, dict[str, Any]] = {
    "spec.features": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    "status.conditions": {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Model", "type": "string", "jsonPath": ".spec.model", "description": "the model watched"},
    {
        "name": "Stable",
        "type": "integer",
        "jsonPath": ".status.stableVersion",
        "description": "stable version",
    },
    {
        "name": "Canary",
        "type": "integer",
        "jsonPath": ".status.canaryVersion",
        "description": "canary version",
    },
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Health",
        "type": "string",
        "jsonPath": ".status.health.overall",
        "description": "drift verdict",
    },
    {
        "name": "Drifted",
        "type": "integer",
        "jsonPath": ".status.health.driftedCount",
        "description": "drifted features",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class SchemaError(ValueError):
    """A model's JSON schema holds something a structural schema cannot say (a new union, say)."""


def _models_by_name(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model reachable from `root`'s fields, by class name (the key pydantic uses in `$defs`)."""
    found: dict[str, type[BaseModel]] = {}
    pending = [root]
    while pending:
        model = pending.pop()
        if found.setdefault(model.__name__, model) is not model:
            raise SchemaError(f"two models are named {model.__name__}; $defs would be ambiguous")
        for field in model.model_fields.values():
            stack = [field.annotation]
            while stack:
                arg = stack.pop()
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    if arg.__name__ not in found:
                        pending.append(arg)
                else:
                    stack.extend(get_args(arg))
    return found


def _factory_defaults(model: type[BaseModel]) -> dict[str, Any]:
    """Defaults of fields built by a factory (sections), as the model dumps them; the JSON schema omits them,
    but `kubectl get -o yaml` and the CEL rules should see the same effective values as the model."""
    defaults = {}
    for name, field in model.model_fields.items():
        if field.default_factory is None:
            continue
        value = field.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
        defaults[field.alias or name] = value
    return defaults


class _Converter:
    """Turns one pydantic JSON schema into a Kubernetes structural schema."""

    def __init__(self, model: type[BaseModel], *, defaults: bool) -> None:
        self.root = model.model_json_schema(by_alias=True)
        self.defs = self.root.get("$defs", {})
        self.models = _models_by_name(model)
        self.defaults = defaults

    def convert(self) -> dict[str, Any]:
        return self._node(self.root, self.root.get("title", ""))

    def _resolve(self, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Inline a `$ref`; sibling keys (description, default) win over the referenced schema's."""
        if "$ref" not in node:
            return node, None
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**self.defs[name], **{k: v for k, v in node.items() if k != "$ref"}}
        return merged, name

    def _node(self, node: dict[str, Any], model_name: str | None = None) -> dict[str, Any]:
        node, ref_name = self._resolve(node)
        model_name = ref_name or model_name
        for key in ("anyOf", "oneOf"):
            if key in node:
                node, model_name = self._union(node, key, model_name)
        out: dict[str, Any] = {k: copy.deepcopy(v) for k, v in node.items() if k in _KEPT}
        if not self.defaults or out.get("default", 0) is None:
            out.pop("default", None)
        if "const" in node:
            out["enum"] = [node["const"]]
        # JSON Schema 2020-12 exclusive bounds are numbers; OpenAPI v3.0 (Kubernetes) uses a flag.
        for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if bound in node:
                out[flag] = node[bound]
                out[bound] = True
        if out.get("type") == "integer":
            _drop_int64_limits(out)
        if node.get("x-kubernetes-int-or-string"):
            out["x-kubernetes-int-or-string"] = True
            out.pop("type", None)
        elif "type" not in out:
            raise SchemaError(f"a schema node has no type: {node}")
        if "properties" in node:
            out["type"] = "object"
            factory = _factory_defaults(self.models[model_name]) if model_name in self.models else {}
            properties = {}
            for key, sub in node["properties"].items():
                converted = self._node(sub)
                if self.defaults and key in factory and "default" not in converted:
                    converted["default"] = factory[key]
                properties[key] = converted
            out["properties"] = properties
        additional = node.get("additionalProperties")
        if "properties" not in node and out.get("type") == "object":
            if additional is True or additional is None:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(additional, dict):
                out["additionalProperties"] = self._node(additional)
        if "items" in node:
            out["items"] = self._node(node["items"])
        return out

    def _union(self, node: dict[str, Any], key: str, model_name: str | None) -> tuple[dict, str | None]:
        # `X | None` becomes X without `nullable`: the API server then drops a null instead of storing it,
        # which is what the models mean (an unset field), and a merge patch's null still deletes the key.
        options = [self._resolve(option) for option in node[key]]
        non_null = [(o, name) for o, name in options if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != key}
        if len(non_null) == 1:
            option, name = non_null[0]
            return {**option, **rest}, name or model_name
        types = {o.get("type") for o, _ in non_null}
        if types == {"integer", "string"} and all(set(o) <= {"type"} for o, _ in non_null):
            return {**rest, "x-kubernetes-int-or-string": True}, model_name
        raise SchemaError(f"cannot express the union {node[key]} in a structural schema")


# Bounds are float64 in the API server's schema, so one that is not a whole float64 (2**63 - 1) is refused
# as a boundary of an integer field. Kubernetes integers are int64, which bounds them there already.
_INT64_MAX = 2**63 - 1


def _drop_int64_limits(node: dict[str, Any]) -> None:
    for key, limit in (("maximum", _INT64_MAX), ("minimum", -_INT64_MAX - 1)):
        value = node.get(key)
        if value is not None and abs(value) > 2**53:
            if value != limit:
                raise SchemaError(
                    f"the bound {key}={value} cannot be stated exactly in a CRD; use the int64 limit"
                )
            del node[key]


_KEY_ORDER = [
    "description",
    "type",
    "x-kubernetes-int-or-string",
    "default",
    "enum",
    "format",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "pattern",
    "minItems",
    "maxItems",
    "required",
    "properties",
    "additionalProperties",
    "items",
]


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    """Keys in a reading order (what it is, then bounds, then children, then Kubernetes extensions)."""
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    out: dict[str, Any] = {}
    for key in sorted(node, key=lambda k: (rank.get(k, len(rank)), k)):
        value = node[key]
        if key == "properties":
            value = {name: _ordered(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            value = _ordered(value)
        out[key] = value
    return out


def _node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        properties = node.get("properties", {})
        if part not in properties:
            raise SchemaError(
                f"{path}: no such field in the schema (a rule or setting names a removed field)"
            )
        node = properties[part]
    return node


def spec_schema() -> dict[str, Any]:
    """The structural schema of `.spec`, with defaults, bounds and descriptions."""
    schema = _Converter(MonitorSpec, defaults=True).convert()
    schema["description"] = (
        "What to monitor and how: the only required field is model. "
        "See docs/spec-reference.md for every field."
    )
    return schema


def status_schema() -> dict[str, Any]:
    """The structural schema of `.status`, declared in full so the API server prunes nothing the operator
    writes. Without defaults: only the operator writes status, and the server should not invent values."""
    schema = _Converter(MonitorStatus, defaults=False).convert()
    schema["description"] = "What the operator knows about the monitor; written only by the operator."
    return schema


def openapi_schema() -> dict[str, Any]:
    """The whole object's openAPIV3Schema, CEL rules and list types included."""
    schema: dict[str, Any] = {
        "type": "object",
        "description": "A ModelMonitor: a drift monitor generated from its spec, run, healed and rolled out "
        "by the poet-monitor operator.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
    }
    for path, extra in _LIST_TYPES.items():
        _node_at(schema, path).update(copy.deepcopy(extra))
    for path, rules in VALIDATIONS.items():
        _node_at(schema, path)["x-kubernetes-validations"] = copy.deepcopy(rules)
    return _ordered(schema)


def modelmonitor_crd() -> dict[str, Any]:
    """The apiextensions.k8s.io/v1 CustomResourceDefinition of ModelMonitor."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "poet-monitor", "app.kubernetes.io/part-of": "poet-monitor"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": openapi_schema()},
                }
            ],
        },
    }


_HEADER = (
    "# Generated from MonitorSpec and MonitorStatus by `make crd` (poetmon crd -o crds/modelmonitor.yaml);\n"
    "# do not edit by hand.\n"
)


def crd_yaml() -> str:
    """The CRD as the YAML committed in crds/modelmonitor.yaml."""
    return _HEADER + yaml.safe_dump(modelmonitor_crd(), sort_keys=False, width=100, allow_unicode=True)


# --- the reference page -----------------------------------------------------------------------------------


def _type_text(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = node.get("type", "")
    if kind == "array":
        item = node.get("items", {})
        inner = "object" if "properties" in item else _type_text(item)
        return f"list of {inner}"
    if kind == "object" and "properties" in node:
        return "section"
    if kind == "object":
        return "map"
    return kind


def _bounds_text(node: dict[str, Any]) -> str:
    parts = []
    if "enum" in node:
        parts.append(" | ".join(f"`{v}`" for v in node["enum"]))
    low, high = node.get("minimum"), node.get("maximum")
    if low is not None:
        parts.append(f"{'>' if node.get('exclusiveMinimum') else '>='} {_number(low)}")
    if high is not None:
        parts.append(f"{'<' if node.get('exclusiveMaximum') else '<='} {_number(high)}")
    if node.get("minLength") == 1:
        parts.append("not empty")
    elif "minLength" in node:
        parts.append(f"at least {node['minLength']} characters")
    if "maxLength" in node:
        parts.append(f"at most {node['maxLength']} characters")
    if "maxItems" in node:
        parts.append(f"at most {node['maxItems']} entries")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    return ", ".join(parts)


def _number(value: Any) -> str:
    return (
        f"{value:,}".replace(",", "\u2009") if isinstance(value, int) and abs(value) >= 10_000 else str(value)
    )


def _default_text(node: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        return "unset"
    value = node["default"]
    if isinstance(value, dict | list):
        text = yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False)
    else:
        text = yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n")
    return f"`{text.strip()}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _reference_rows(node: dict[str, Any], prefix: str, rows: list[str]) -> None:
    required = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        rows.append(
            f"| `{path}` | {_type_text(sub)} | {_cell(_default_text(sub, key in required))} "
            f"| {_cell(_bounds_text(sub))} | {_cell(sub.get('description', ''))} |"
        )
        if "properties" in sub:
            _reference_rows(sub, path + ".", rows)
        elif sub.get("type") == "array" and "properties" in sub.get("items", {}):
            _reference_rows(sub["items"], path + "[].", rows)


def spec_reference_markdown() -> str:
    """docs/spec-reference.md: one row per spec field, from the same schema the API server enforces."""
    schema = openapi_schema()
    spec = schema["properties"]["spec"]
    rows: list[str] = []
    _reference_rows(spec, "", rows)
    rules = []
    for path, items in VALIDATIONS.items():
        field = path.removeprefix("spec").removeprefix(".") or "spec"
        rules += [f"- `{field}`: {item['message']}" for item in items]
    return "\n".join(
        [
            "# ModelMonitor spec reference",
            "",
            "<!-- Generated from MonitorSpec by `make crd` (poetmon crd --docs -o docs/spec-reference.md); "
            "do not edit by hand. -->",
            "",
            "Every field of a ModelMonitor's `spec`, as the CRD (`crds/modelmonitor.yaml`) declares it and",
            "`kubectl explain modelmonitor.spec.FIELD` shows it. *default* is the value the API server",
            "fills in when the field is left out; *unset* fields have no value and the operator derives one",
            "as the description says. A section's default is what its fields' defaults add up to. See",
            "[spec.md](spec.md) for the rules that span fields and for examples.",
            "",
            "| field | type | default | allowed | description |",
            "|-------|------|---------|---------|-------------|",
            *rows,
            "",
            "## Checked at apply time",
            "",
            "Beyond types and bounds, the API server refuses a ModelMonitor that breaks one of these rules",
            "(CEL `x-kubernetes-validations`), with the message shown:",
            "",
            *rules,
            "",
            "The rest (for example `positiveLabel` among `classes`, distinct `classes`, the pane",
            "limit of bounded sliding windows) is checked by the spec model itself, which the operator runs",
            "on every ModelMonitor; its messages name the field (see [spec.md](spec.md#validation)).",
            "",
        ]
    )


def crd_command(*, output: str | None = None, docs: bool = False) -> int:
    """`poetmon crd`: print the CRD YAML (or with `docs` the reference page), or write it to `output`."""
    text = spec_reference_markdown() if docs else crd_yaml()
    if output is None:
        sys.stdout.write(text)
    else:
        Path(output).write_text(text, encoding="utf-8")
    return 0


__all__ = [
    "CATEGORIES",
    "GROUP",
    "PLURAL",
    "PRINTER_COLUMNS",
    "SHORT_NAMES",
    "SINGULAR",
    "VALIDATIONS",
    "VERSION",
    "SchemaError",
    "crd_command",
    "crd_yaml",
    "modelmonitor_crd",
    "openapi_schema",
    "spec_reference_markdown",
    "spec_schema",
    "status_schema",
]
