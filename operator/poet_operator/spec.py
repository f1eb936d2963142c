"""MonitorSpec: the single source of truth for a monitor (CRD schema, docs and generators all read it).

A spec is written as Kubernetes YAML (camelCase keys). Every model here is frozen, rejects unknown keys
with a suggestion of the closest valid one, and reports cross-field mistakes with the field path and the fix.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema, WithJsonSchema

from monitor_runtime.limits import MAX_PANES_PER_WINDOW

API_VERSION = "poet.dev/v1alpha1"
KIND = "ModelMonitor"

OptimizeFor = Literal["accuracy", "real_time", "cost"]
WindowStrategy = Literal["fixed", "sliding", "adaptive"]
WindowStorage = Literal["exact", "reservoir", "sketch"]
FeatureType = Literal["continuous", "categorical", "auto"]
DriftMethod = Literal["ks", "wasserstein", "psi", "js", "chi2", "kl"]
# The feature types each method can measure (the drift engine's CONTINUOUS_METHODS and CATEGORICAL_METHODS).
# A method for one type only needs that type declared: `auto` might infer the other one at run time.
METHOD_TYPES: dict[str, tuple[str, ...]] = {
    "ks": ("continuous",),
    "wasserstein": ("continuous",),
    "chi2": ("categorical",),
    "kl": ("categorical",),
    "psi": ("continuous", "categorical", "auto"),
    "js": ("continuous", "categorical", "auto"),
}

# Window sizes chosen when the spec leaves `window.size` unset: accuracy wants more rows per test,
# real_time wants small windows that answer fast, cost sits in between and keeps a sketch instead of rows.
DEFAULT_WINDOW_SIZE: dict[str, int] = {"accuracy": 2000, "real_time": 500, "cost": 1000}
DEFAULT_STORAGE: dict[str, str] = {"accuracy": "exact", "real_time": "exact", "cost": "sketch"}
DEFAULT_SKETCH_CAPACITY = 256

# Upper bounds that keep a spec within what one runtime pod and the generated code can hold. Window rows are
# kept in memory (or summarised); ten million rows is far beyond any window a drift test needs.
MAX_WINDOW_ROWS = 10_000_000
MAX_SEED = 2**63 - 1
# Declared features become a table of constants in the generated code, which Enforce caps in size; columns
# beyond these limits are still monitored, with inferred types, when allowUnknownFeatures is true.
MAX_FEATURES = 500
MAX_FEATURE_NAME_CHARS = 128
MAX_FEATURE_NAMES_BYTES = 64 * 1024
MAX_MODEL_NAME_CHARS = 253


class SpecError(ValueError):
    """An invalid spec: `problems` holds one `(field path, message)` pair per mistake."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f" in {source}" if source else ""
        lines = [
            f"invalid ModelMonitor spec{where} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
        ]
        lines += [f"  {path}: {message}" if path else f"  {message}" for path, message in problems]
        super().__init__("\n".join(lines))


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    # A Kubernetes structural schema rejects `default: null`; an unset optional field simply has no default.
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]


class _SpecModel(BaseModel):
    """Base of every spec model: frozen, camelCase aliases, unknown keys rejected (see `_problems`)."""

    model_config = ConfigDict(
        json_schema_extra=_drop_null_defaults,
        frozen=True,
        populate_by_name=True,
        # pydantic reports each unknown key among all other errors; `_problems` adds the suggestion. (A
        # validator raising on unknown keys would stop the model's validation at the first typo.)
        extra="forbid",
        alias_generator=to_camel,
        use_enum_values=True,
        # inf and NaN are never meaningful here and would not survive into generated code or JSON.
        allow_inf_nan=False,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 for a number, and YAML reads yes, no, on and off as booleans:
        # `alpha: yes` would otherwise be refused for its range, `importance: yes` taken as 1.
        if isinstance(value, bool) and info.field_name and _expects_number(cls, info.field_name):
            raise ValueError(
                f"expected a number, got {str(value).lower()} (YAML reads yes, no, on, off, true and false "
                "as booleans); write a number"
            )
        return value


def _expects_number(model: type[BaseModel], field_name: str) -> bool:
    """True when the field takes a number and neither a boolean nor text."""
    field = model.model_fields.get(field_name)
    if field is None:
        return False
    kinds = set(_leaf_types(field.annotation))
    return bool(kinds & {int, float}) and not kinds & {bool, str}


def _leaf_types(annotation: Any) -> list[Any]:
    """The plain types inside an annotation (through unions and Annotated)."""
    args = getattr(annotation, "__args__", None)
    if args is None or isinstance(annotation, type):
        return [annotation]
    out: list[Any] = []
    for arg in args:
        out.extend(_leaf_types(arg))
    return out


class WindowSpec(_SpecModel):
    """How rows are grouped into the windows that are compared with the reference."""

    strategy: WindowStrategy = Field("sliding", description="fixed (tumbling), sliding or adaptive")
    size: Annotated[int, Field(ge=2, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None,
        description="rows per window; default depends on optimizeFor (accuracy 2000, real_time 500, "
        "cost 1000); for adaptive windows the starting size",
    )
    step: Annotated[int, Field(ge=1, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None,
        description="rows between evaluations of a sliding window (default size/2); give step or overlap",
    )
    # Rows (int) or a fraction (float): one JSON number in the schema (a CRD cannot say "int or float").
    overlap: (
        Annotated[
            int | float,
            Field(ge=0, le=MAX_WINDOW_ROWS),
            WithJsonSchema({"type": "number", "minimum": 0, "maximum": MAX_WINDOW_ROWS}),
        ]
        | SkipJsonSchema[None]
    ) = Field(
        None,
        description="what consecutive sliding windows share: a row count (a whole number, size - step) or a "
        "fraction of the window (0 < overlap < 1, rounded down to whole rows); give step or overlap",
    )
    min_size: Annotated[int, Field(ge=2, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None, description="adaptive windows: smallest size (default size/4)"
    )
    max_size: Annotated[int, Field(ge=2, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None, description="adaptive windows: largest size (default 4*size, at most 10000000)"
    )
    storage: WindowStorage | SkipJsonSchema[None] = Field(
        None,
        description="exact (keep rows), reservoir (uniform sample) or sketch (bounded summary); "
        "default exact, sketch for optimizeFor cost",
    )
    capacity: Annotated[int, Field(ge=1, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None, description="reservoir: rows kept (default size); sketch: bins per feature (default 256)"
    )
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed for sampling, so runs are reproducible")

    @field_validator("overlap", mode="before")
    @classmethod
    def _overlap_is_a_number(cls, value: Any) -> Any:
        # `overlap: true` would otherwise pass as 1 row.
        if isinstance(value, bool):
            raise ValueError(
                f"must be a row count or a fraction of the window, got {value!r}; write e.g. 250 or 0.5"
            )
        return value

    @field_validator("overlap", mode="after")
    @classmethod
    def _overlap_rows_or_fraction(cls, value: int | float | None) -> int | float | None:
        # A whole number is a row count (kept as int: the manifest reads `overlap: 250`); below 1 a fraction.
        if value is None or 0 < value < 1:
            return value
        if value != int(value):
            raise ValueError(
                f"{value} is neither a row count (a whole number) nor a fraction of the window "
                "(0 < overlap < 1); write e.g. 250 or 0.5"
            )
        return int(value)

    def overlap_rows(self, size: int) -> int | None:
        """`overlap` in rows for a window of `size` rows: a fraction is rounded down, and at most size - 1
        rows are shared so that the window always advances (step >= 1)."""
        if self.overlap is None:
            return None
        if isinstance(self.overlap, float):
            return min(size - 1, math.floor(size * self.overlap))
        return int(self.overlap)

    @model_validator(mode="after")
    def _check_consistency(self) -> WindowSpec:
        size = self.size
        overlap_rows = self.overlap_rows(size) if size is not None else None
        if self.strategy == "fixed":
            if self.overlap:
                raise ValueError(
                    f"overlap={self.overlap} only applies to sliding windows; "
                    "set strategy: sliding or remove overlap"
                )
            if self.step is not None and size is not None and self.step != size:
                raise ValueError(
                    f"step={self.step} differs from size={size}, "
                    "but a fixed window always advances by its size; "
                    "set strategy: sliding or remove step"
                )
        if self.step is not None and self.overlap is not None:
            if size is None:
                raise ValueError(
                    f"step={self.step} and overlap={self.overlap} are both given without size, so they "
                    "cannot be checked against each other; give only one of them (or size too)"
                )
            if overlap_rows is not None and self.step + overlap_rows != size:
                rows = f" ({overlap_rows} rows)" if isinstance(self.overlap, float) else ""
                raise ValueError(
                    f"step={self.step} and overlap={self.overlap}{rows} disagree "
                    f"(step + overlap must equal size={size}); "
                    "give only one of them"
                )
        if size is not None:
            if isinstance(self.overlap, int) and self.overlap >= size:
                raise ValueError(
                    f"overlap={self.overlap} must be smaller than size={size}; lower overlap or raise size"
                )
            if self.step is not None and self.step > size:
                raise ValueError(
                    f"step={self.step} must not exceed size={size} (rows would be skipped); "
                    "lower step or raise size"
                )
        if self.strategy != "adaptive" and (self.min_size is not None or self.max_size is not None):
            raise ValueError(
                "minSize and maxSize only apply to adaptive windows; set strategy: adaptive or remove them"
            )
        if self.min_size is not None and self.max_size is not None and self.min_size > self.max_size:
            raise ValueError(
                f"minSize={self.min_size} must not exceed maxSize={self.max_size}; swap or fix them"
            )
        if size is not None and self.min_size is not None and size < self.min_size:
            raise ValueError(f"size={size} is below minSize={self.min_size}; raise size or lower minSize")
        if size is not None and self.max_size is not None and size > self.max_size:
            raise ValueError(f"size={size} is above maxSize={self.max_size}; lower size or raise maxSize")
        if self.capacity is not None and (self.storage or "exact") == "exact":
            raise ValueError(
                "capacity only applies to reservoir or sketch storage; set storage or remove capacity"
            )
        return self

    def resolved(self, optimize_for: str = "accuracy") -> dict[str, Any]:
        """The concrete config for `monitor_runtime.windows.make_window`: defaults filled in, and only the
        keys that apply to the strategy (a fixed window has no step, an adaptive one no overlap)."""
        size = self.size or DEFAULT_WINDOW_SIZE[optimize_for]
        storage = self.storage or DEFAULT_STORAGE[optimize_for]
        config: dict[str, Any] = {"strategy": self.strategy, "size": size}
        if self.strategy == "sliding":
            if self.step is not None:
                config["step"] = self.step
            elif self.overlap is not None:
                config["step"] = size - (self.overlap_rows(size) or 0)
            else:
                config["step"] = _default_step(size, bounded=storage != "exact")
        elif self.strategy == "adaptive":
            config["minSize"] = self.min_size or max(2, size // 4)
            config["maxSize"] = self.max_size or min(4 * size, MAX_WINDOW_ROWS)
            if self.step is not None:
                config["step"] = self.step
        config["storage"] = storage
        capacity = self.capacity
        if capacity is None and storage == "reservoir":
            capacity = size
        elif capacity is None and storage == "sketch":
            capacity = DEFAULT_SKETCH_CAPACITY
        if capacity is not None:
            config["capacity"] = capacity
        config["seed"] = self.seed
        return config


def _default_step(size: int, *, bounded: bool) -> int:
    """Half a window, or for bounded storage the largest divisor of `size` up to half of it that keeps the
    number of panes (size / gcd(size, step)) within what the window storage accepts."""
    half = max(1, size // 2)
    if not bounded or size % half == 0:
        return half
    for panes in range(3, MAX_PANES_PER_WINDOW + 1):
        if size % panes == 0:
            return size // panes
    return size  # a prime size: evaluate once per full window


class ReferenceSpec(_SpecModel):
    """Where the reference window comes from and when it is refreshed."""

    source: Literal["first_window", "uploaded"] = Field(
        "first_window", description="first_window (the first full window becomes the reference) or uploaded"
    )
    refresh: Literal["static", "accepted_windows"] = Field(
        "static",
        description="static (never changes) or accepted_windows (windows without drift are folded in)",
    )
    size: Annotated[int, Field(ge=2, le=MAX_WINDOW_ROWS)] | SkipJsonSchema[None] = Field(
        None, description="rows kept as reference (default: window size)"
    )


class FeatureSpec(_SpecModel):
    """A declared feature; undeclared ones are still monitored when allowUnknownFeatures is true."""

    name: str = Field(
        ...,
        min_length=1,
        max_length=MAX_FEATURE_NAME_CHARS,
        description="column name as it appears in the batches",
    )
    type: FeatureType = Field("auto", description="continuous, categorical or auto (inferred from the data)")
    importance: float = Field(1.0, gt=0, description="weight in the overall drift score (> 0)")
    method: DriftMethod | SkipJsonSchema[None] = Field(
        None,
        description="effect size compared with its threshold: ks or wasserstein (continuous), chi2 or kl "
        "(categorical), psi or js (either); default ks for continuous, chi2 for categorical",
    )

    @model_validator(mode="after")
    def _method_fits_type(self) -> FeatureSpec:
        kinds = METHOD_TYPES.get(self.method or "", ("continuous", "categorical", "auto"))
        if self.type not in kinds:
            kind = kinds[0]
            if self.type == "auto":
                fix = f"declare type: {kind}, or use psi or js (they measure either type)"
            else:
                fitting = ", ".join(m for m, k in METHOD_TYPES.items() if self.type in k)
                fix = f"use a method for {self.type} features ({fitting}) or declare type: {kind}"
            raise ValueError(
                f"method {self.method} measures only {kind} features, and this one is {self.type}"
                f"{' (inferred at run time)' if self.type == 'auto' else ''}; {fix}"
            )
        return self


class PredictionSpec(_SpecModel):
    """What the model predicts, so prediction and outcome monitoring use the right metrics."""

    task: Literal["classification", "regression", "none"] = Field(
        "none", description="classification, regression, or none (no prediction monitoring)"
    )
    positive_label: str | int | SkipJsonSchema[None] = Field(
        None, description="classification: the label counted as positive for precision/recall"
    )
    classes: tuple[str | int, ...] | SkipJsonSchema[None] = Field(
        None, description="classification: the expected label set (others are reported as unseen)"
    )

    @model_validator(mode="after")
    def _check_task(self) -> PredictionSpec:
        if self.task != "classification" and (self.positive_label is not None or self.classes is not None):
            raise ValueError(
                f"positiveLabel and classes only apply to task: classification (task is {self.task}); "
                "set task: classification or remove them"
            )
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            raise ValueError("classes lists a label twice; list each label once")
        if (
            self.classes is not None
            and self.positive_label is not None
            and self.positive_label not in self.classes
        ):
            raise ValueError(
                f"positiveLabel {self.positive_label!r} is not one of classes; add it to classes"
            )
        return self


class MethodThresholds(_SpecModel):
    """Optional effect-size thresholds per statistical method (the drift engine's defaults otherwise)."""

    ks: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(None, description="KS statistic D")
    wasserstein: Annotated[float, Field(gt=0)] | SkipJsonSchema[None] = Field(
        None, description="normalised Wasserstein distance"
    )
    psi: Annotated[float, Field(gt=0)] | SkipJsonSchema[None] = Field(
        None, description="population stability index"
    )
    js: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(
        None, description="Jensen-Shannon distance"
    )
    chi2: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(
        None, description="Cramér's V of the chi-square test"
    )
    kl: Annotated[float, Field(gt=0)] | SkipJsonSchema[None] = Field(
        None, description="Kullback-Leibler divergence"
    )
    sparse: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(
        None, description="sparse features: max(zero-rate change, KS of the non-zero values)"
    )
    hybrid: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(
        None, description="mixed features: max of the parts"
    )


class ThresholdSpec(_SpecModel):
    """When a shift counts as drift and when the overall health changes."""

    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of each test after correction")
    correction: Literal["bh", "bonferroni", "none"] = Field(
        "bh",
        description="correction across features: bh (false discovery rate), bonferroni or none",
    )
    warning: Annotated[float, Field(gt=0, le=1)] | SkipJsonSchema[None] = Field(
        None,
        description="overall drift score at which health becomes warning (default: any drifted feature)",
    )
    critical: float = Field(
        0.25, gt=0, le=1, description="overall drift score at which health becomes critical"
    )
    methods: MethodThresholds = Field(
        default_factory=MethodThresholds, description="per-method effect thresholds"
    )

    @model_validator(mode="after")
    def _check_order(self) -> ThresholdSpec:
        if self.warning is not None and self.warning >= self.critical:
            raise ValueError(
                f"warning={self.warning} must be below critical={self.critical}; "
                "lower warning or raise critical"
            )
        return self

    def engine_options(self) -> dict[str, Any]:
        """Keyword arguments for `Reference.fit` (correction, alpha, thresholds, critical_score)."""
        methods = {k: v for k, v in self.methods.model_dump().items() if v is not None}
        return {
            "correction": self.correction,
            "alpha": self.alpha,
            "thresholds": methods,
            "critical_score": self.critical,
        }


class SecretKeyRef(_SpecModel):
    """A key in a Kubernetes Secret in the monitor's namespace."""

    name: str = Field(..., min_length=1, description="Secret name")
    key: str = Field("api-key", min_length=1, description="key inside the Secret")


# Checked by the model and, through the schema's `pattern`, by the API server at apply time.
_HTTP_URL = re.compile(r"^https?://[^\s/]+")


class LLMSettings(_SpecModel):
    """An OpenAI-compatible endpoint and the budget the generator may spend on it."""

    model: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="model name, e.g. gpt-4o-mini"
    )
    base_url: str = Field(
        "https://api.openai.com/v1",
        description="OpenAI-compatible API base URL",
        json_schema_extra={"pattern": _HTTP_URL.pattern},
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", min_length=1, description="environment variable holding the key"
    )
    api_key_secret: SecretKeyRef | SkipJsonSchema[None] = Field(
        None, description="Kubernetes Secret holding the key (read by the operator)"
    )
    api_key_file: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="path of a file holding the key (a mounted Secret)"
    )
    timeout_seconds: float = Field(60.0, gt=0, le=3600, description="timeout of one request")
    max_tokens: int = Field(4096, ge=256, description="completion token limit of one request")
    temperature: float = Field(0.0, ge=0, le=2, description="sampling temperature")
    max_repair_rounds: int = Field(
        2, ge=0, description="times a rejected answer is sent back with the reasons"
    )
    token_budget: int = Field(200_000, ge=1, description="total tokens this monitor may spend")
    call_budget: int = Field(20, ge=1, description="total requests this monitor may make")

    @model_validator(mode="after")
    def _check_url(self) -> LLMSettings:
        if not _HTTP_URL.match(self.base_url):
            raise ValueError(
                f"baseUrl {self.base_url!r} is not an http(s) URL; use e.g. https://api.openai.com/v1"
            )
        return self


class GeneratorSpec(_SpecModel):
    """Which generator writes the monitor code."""

    kind: Literal["template", "llm"] = Field("template", description="template (offline, default) or llm")
    llm: LLMSettings | SkipJsonSchema[None] = Field(None, description="LLM settings, required for kind: llm")

    @model_validator(mode="after")
    def _check_llm(self) -> GeneratorSpec:
        if self.kind == "llm" and (self.llm is None or not self.llm.model):
            raise ValueError(
                "kind: llm needs llm.model; set generator.llm.model (e.g. gpt-4o-mini) or use kind: template"
            )
        return self


class CanaryAnalysisSpec(_SpecModel):
    """A Prometheus query the canary must pass (used only when the operator has a Prometheus address)."""

    query: Annotated[str, Field(min_length=1, max_length=4096)] | SkipJsonSchema[None] = Field(
        None,
        description="PromQL returning one number; {{name}}, {{namespace}}, {{version}} and {{role}} are "
        "replaced by the monitor's name and namespace and the canary's version and role",
    )
    max_value: float | SkipJsonSchema[None] = Field(
        None, description="the query's result must not exceed this"
    )
    min_value: float | SkipJsonSchema[None] = Field(None, description="the query's result must reach this")

    @model_validator(mode="after")
    def _check_bounds(self) -> CanaryAnalysisSpec:
        if self.query is not None and self.max_value is None and self.min_value is None:
            raise ValueError("query needs maxValue or minValue to say what passes; set one of them")
        if self.query is None and (self.max_value is not None or self.min_value is not None):
            raise ValueError("maxValue and minValue apply to a query; set query or remove them")
        if self.max_value is not None and self.min_value is not None and self.min_value > self.max_value:
            raise ValueError(f"minValue={self.min_value} exceeds maxValue={self.max_value}; swap or fix them")
        return self


class RolloutSpec(_SpecModel):
    """How a new version is rolled out and when the operator regenerates it."""

    canary_analysis_seconds: int = Field(
        300, ge=0, description="time a new version runs as canary before promotion"
    )
    restart_tolerance: int = Field(2, ge=0, description="restarts tolerated during canary before rollback")
    auto_regenerate: bool = Field(True, description="generate a new version from feedback after a failure")
    regeneration_budget: int = Field(
        3, ge=0, le=100, description="regenerations allowed before escalating to a human"
    )
    progress_deadline_seconds: int = Field(
        600,
        ge=30,
        le=86_400,
        description="time a new version's pods may take to become ready before it is rolled back",
    )
    regeneration_backoff_seconds: int = Field(
        30,
        ge=0,
        le=86_400,
        description="wait before the first regeneration after a failure; doubles with each regeneration",
    )
    analysis: CanaryAnalysisSpec = Field(
        default_factory=lambda: CanaryAnalysisSpec(),
        description="an extra success condition the canary must meet, evaluated on Prometheus",
    )


_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_QUANTITY_FACTOR = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


def parse_quantity(value: str) -> float:
    """A Kubernetes resource quantity ("250m", "1Gi", "2") as a number; ValueError when malformed."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"{value!r} is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi)")
    return float(match.group(1)) * _QUANTITY_FACTOR[match.group(2)]


class ResourceAmounts(_SpecModel):
    """CPU and memory amounts as Kubernetes quantities."""

    cpu: str | SkipJsonSchema[None] = Field(
        None, description="e.g. 250m or 1", json_schema_extra={"pattern": _QUANTITY.pattern}
    )
    memory: str | SkipJsonSchema[None] = Field(
        None, description="e.g. 256Mi or 1Gi", json_schema_extra={"pattern": _QUANTITY.pattern}
    )

    @model_validator(mode="after")
    def _check_quantities(self) -> ResourceAmounts:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if value is not None:
                try:
                    parse_quantity(value)
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        return self


class ResourceSpec(_SpecModel):
    """Requests and limits of each runtime pod."""

    requests: ResourceAmounts = Field(default_factory=lambda: ResourceAmounts(cpu="100m", memory="256Mi"))
    limits: ResourceAmounts = Field(default_factory=lambda: ResourceAmounts(cpu="1", memory="1Gi"))

    @model_validator(mode="after")
    def _check_requests_within_limits(self) -> ResourceSpec:
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            if request is not None and limit is not None and parse_quantity(request) > parse_quantity(limit):
                raise ValueError(
                    f"requests.{name}={request} exceeds limits.{name}={limit}; "
                    "lower the request or raise the limit"
                )
        return self


class RuntimeSpec(_SpecModel):
    """The pods that run the monitor."""

    replicas: int = Field(
        1,
        ge=1,
        le=1,
        description="runtime pods; only 1 is supported: each replica would see a share of the stream and "
        "judge drift on a different window",
    )

    @field_validator("replicas", mode="before")
    @classmethod
    def _one_replica(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            raise ValueError(
                f"is {value}, but only 1 runtime replica is supported: each replica would receive a share of "
                "the batches and judge drift on a different window, so their verdicts would disagree; "
                "set replicas: 1 (one pod evaluates about 200,000 rows a second)"
            )
        return value

    resources: ResourceSpec = Field(default_factory=ResourceSpec)
    image: Annotated[str, Field(min_length=1)] | SkipJsonSchema[None] = Field(
        None, description="runtime image (operator default)"
    )


class MonitorSpec(_SpecModel):
    """The spec of a ModelMonitor. Only `model` is required."""

    model: str = Field(
        ...,
        min_length=1,
        max_length=MAX_MODEL_NAME_CHARS,
        description="name of the model this monitor watches",
    )
    domain: Literal["ml_monitoring"] = Field(
        "ml_monitoring", description="problem domain of the generated code"
    )
    optimize_for: OptimizeFor = Field(
        "accuracy", description="accuracy (exact tests, FDR), real_time (fast, sampled) or cost (sketches)"
    )
    template: Literal["feature_drift", "model_agnostic_monitor"] = Field(
        "feature_drift",
        description="feature_drift, or model_agnostic_monitor (watches only predictions and outcomes)",
    )
    window: WindowSpec = Field(default_factory=WindowSpec)
    reference: ReferenceSpec = Field(default_factory=ReferenceSpec)
    features: tuple[FeatureSpec, ...] = Field(
        (), description="declared features (optional)", json_schema_extra={"maxItems": MAX_FEATURES}
    )
    allow_unknown_features: bool = Field(True, description="also monitor columns not listed in features")
    predictions: PredictionSpec = Field(default_factory=PredictionSpec)
    thresholds: ThresholdSpec = Field(default_factory=ThresholdSpec)
    generator: GeneratorSpec = Field(default_factory=GeneratorSpec)
    rollout: RolloutSpec = Field(default_factory=RolloutSpec)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec)

    @model_validator(mode="after")
    def _check_bounded_window(self) -> MonitorSpec:
        config = self.window.resolved(self.optimize_for)
        if config["strategy"] == "sliding" and config["storage"] != "exact":
            size, step = config["size"], config["step"]
            divisor = math.gcd(size, step)
            panes = size // divisor
            if panes > MAX_PANES_PER_WINDOW:
                raise ValueError(
                    f"window.step={step} and window.size={size} share only the divisor {divisor}, "
                    f"so {config['storage']} storage would keep {panes} summaries per window "
                    f"(at most {MAX_PANES_PER_WINDOW}); choose a step that divides size"
                )
        return self

    @field_validator("features", mode="before")
    @classmethod
    def _features_as_list(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            # `features: {age: continuous}` is a common first attempt; show the list form it means.
            example = next(iter(value.items()), ("age", "continuous"))
            raise ValueError(
                "must be a list of feature entries, not a mapping; write e.g. "
                f"features: [{{name: {example[0]}, type: {example[1]}}}]"
            )
        return value

    @field_validator("features", mode="after")
    @classmethod
    def _check_feature_list(cls, features: tuple[FeatureSpec, ...]) -> tuple[FeatureSpec, ...]:
        if len(features) > MAX_FEATURES:
            raise ValueError(
                f"lists {len(features)} features, at most {MAX_FEATURES} can be declared; declare the "
                "important ones and keep allowUnknownFeatures: true so the rest are monitored too"
            )
        names = [feature.name for feature in features]
        for index, name in enumerate(names):
            if not name.isprintable():
                raise ValueError(
                    f"entry {index} has the name {name!r} with a line break or control character; "
                    "give the column name as it appears in the batches"
                )
        # Counted as the names are written in the generated code (quotes and backslashes escaped).
        name_bytes = sum(len(repr(name).encode("utf-8")) for name in names)
        if name_bytes > MAX_FEATURE_NAMES_BYTES:
            raise ValueError(
                f"feature names take {name_bytes} bytes, at most {MAX_FEATURE_NAMES_BYTES}; declare fewer "
                "features and keep allowUnknownFeatures: true for the rest"
            )
        seen: set[str] = set()
        duplicates = sorted({name for name in names if name in seen or seen.add(name)})
        if duplicates:
            raise ValueError(f"lists {', '.join(map(repr, duplicates))} more than once; keep one entry each")
        return features

    @model_validator(mode="after")
    def _check_features(self) -> MonitorSpec:
        if not self.allow_unknown_features and not self.features and self.template == "feature_drift":
            raise ValueError(
                "allowUnknownFeatures is false but features is empty, so nothing would be monitored; "
                "list the features or set allowUnknownFeatures: true"
            )
        if self.template == "model_agnostic_monitor" and self.predictions.task == "none":
            raise ValueError(
                "template model_agnostic_monitor watches predictions and outcomes; "
                "set predictions.task to classification or regression"
            )
        return self

    # --- construction -------------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Any, *, source: str | None = None, path_prefix: str = "spec") -> MonitorSpec:
        """Validate a bare spec mapping; raises SpecError naming each bad field."""
        if not isinstance(data, Mapping):
            raise SpecError(
                [(path_prefix, f"must be a mapping of spec fields, got {type(data).__name__}")], source=source
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise SpecError(_problems(exc, path_prefix), source=source) from None

    @classmethod
    def from_manifest(cls, obj: Any, *, source: str | None = None) -> MonitorSpec:
        """A spec from a full `ModelMonitor` manifest or from a bare spec mapping."""
        return MonitorDocument.from_obj(obj, source=source).spec

    # --- views --------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict with camelCase keys and every default filled in."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def spec_hash(self) -> str:
        """sha256 of the canonical JSON of the full spec (defaults included, so equal specs hash equal)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def window_config(self) -> dict[str, Any]:
        """The concrete window config for `make_window`, defaults resolved for `optimizeFor`."""
        return self.window.resolved(self.optimize_for)

    def feature_map(self) -> dict[str, dict[str, Any]]:
        """Declared features as the drift engine's `features`: {name: {type, importance, method?}}."""
        return {
            f.name: {"type": f.type, "importance": f.importance, **({"method": f.method} if f.method else {})}
            for f in self.features
        }


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata the monitor uses; other keys are kept but ignored."""

    model_config = ConfigDict(frozen=True, extra="allow")

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class MonitorDocument(BaseModel):
    """A ModelMonitor as applied with kubectl: apiVersion, kind, metadata and spec."""

    model_config = ConfigDict(frozen=True)

    api_version: str = API_VERSION
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: MonitorSpec

    @property
    def name(self) -> str:
        """metadata.name, or a DNS-safe name derived from the model for bare specs."""
        if self.metadata.name:
            return self.metadata.name
        slug = re.sub(r"[^a-z0-9-]+", "-", self.spec.model.lower()).strip("-")
        return (slug or "monitor")[:63].strip("-") or "monitor"

    @classmethod
    def from_obj(cls, obj: Any, *, source: str | None = None) -> MonitorDocument:
        """Accept a full ModelMonitor manifest or a bare spec mapping."""
        if not isinstance(obj, Mapping):
            raise SpecError(
                [("", f"expected a ModelMonitor manifest or a spec mapping, got {type(obj).__name__}")],
                source=source,
            )
        if not ({"apiVersion", "kind", "spec", "metadata"} & set(obj)):
            return cls(spec=MonitorSpec.from_mapping(obj, source=source, path_prefix="spec"))
        problems: list[tuple[str, str]] = []
        unknown = sorted(set(obj) - {"apiVersion", "kind", "metadata", "spec", "status"})
        for key in unknown:
            close = difflib.get_close_matches(str(key), ["apiVersion", "kind", "metadata", "spec"], n=1)
            problems.append(
                (
                    str(key),
                    "unknown top-level field "
                    + (f"(did you mean {close[0]!r}?)" if close else "(remove it)"),
                )
            )
        if obj.get("apiVersion") != API_VERSION:
            problems.append(("apiVersion", f"must be {API_VERSION!r}, got {obj.get('apiVersion')!r}"))
        if obj.get("kind") != KIND:
            problems.append(("kind", f"must be {KIND!r}, got {obj.get('kind')!r}"))
        metadata = obj.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            problems.append(("metadata", "must be a mapping with at least a name"))
            metadata = {}
        name = metadata.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 63 or not _NAME_RE.match(name)):
            problems.append(
                (
                    "metadata.name",
                    f"{name!r} is not a DNS label (lowercase letters, digits and '-', at most 63 characters)",
                )
            )
        if "spec" not in obj:
            problems.append(("spec", "is required; it needs at least `model`"))
        spec = None
        try:
            if "spec" in obj:
                spec = MonitorSpec.from_mapping(obj["spec"], source=source, path_prefix="spec")
        except SpecError as exc:
            problems.extend(exc.problems)
        meta = None
        try:
            meta = ObjectMeta.model_validate(dict(metadata))
        except ValidationError as exc:
            named = {path for path, _ in problems}
            for error in exc.errors(include_url=False):
                # Label and annotation keys may look like union tags, so the location is used unfiltered.
                path = ".".join(["metadata", *map(str, error["loc"])])
                if path not in named:
                    named.add(path)
                    message = f"{error['msg'][:1].lower()}{error['msg'][1:]} (got {error.get('input')!r})"
                    problems.append((path, message))
        if problems or spec is None or meta is None:
            raise SpecError(problems, source=source)
        return cls(api_version=API_VERSION, kind=KIND, metadata=meta, spec=spec)


_UNION_TAGS = {"int", "str", "float", "bool", "none"}


def _is_union_tag(part: Any) -> bool:
    """pydantic adds the union member's name to an error's location; field aliases never look like that."""
    if isinstance(part, int):
        return False
    text = str(part)
    return text in _UNION_TAGS or text[:1].isupper() or "[" in text or "-" in text


def _model_at(loc: list[Any]) -> type[BaseModel] | None:
    """The spec model that validates the mapping at `loc` (aliases and list indices), if any."""
    model: Any = MonitorSpec
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        fields = {(f.alias or n): f for n, f in model.model_fields.items()}
        field = fields.get(str(part)) or model.model_fields.get(str(part))
        if field is None:
            return None
        leaves = _leaf_types(field.annotation)
        model = next((a for a in leaves if isinstance(a, type) and issubclass(a, BaseModel)), None)
    return model


def _field_description(loc: list[Any]) -> str | None:
    """The description of the field at `loc` (aliases and list indices), for "is required" hints."""
    if not loc:
        return None
    parent = _model_at(loc[:-1])
    if parent is None:
        return None
    fields = {(f.alias or n): f for n, f in parent.model_fields.items()}
    field = fields.get(str(loc[-1]))
    return field.description if field is not None else None


def _unknown_keys_message(loc: list[Any], keys: list[str]) -> str:
    """`unknown field 'sise' (did you mean 'size'?); valid fields here: ...` for the mapping at `loc`."""
    model = _model_at(loc)
    known: dict[str, str] = {}
    if model is not None:
        for name, field in model.model_fields.items():
            alias = field.alias or name
            known[alias] = alias
            known[name] = alias
    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hint = f"did you mean {known[close[0]]!r}?" if close else "remove it"
        parts.append(f"unknown field {key!r} ({hint})")
    valid = f"; valid fields here: {', '.join(sorted(set(known.values())))}" if known else ""
    return "; ".join(parts) + valid


def _problems(exc: ValidationError, prefix: str) -> list[tuple[str, str]]:
    """pydantic errors as (camelCase field path, actionable message) pairs, one per field.

    pydantic collects every error of the whole document; unknown keys are gathered per mapping into one
    message with suggestions, so a typo in one section never hides the mistakes in another.
    """
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    errors = exc.errors(include_url=False)
    # A value failing an optional field also fails its `None` branch; that second error says nothing useful.
    errors = [e for e in errors if e["type"] != "none_required"] or errors

    def path_of(loc: list[Any]) -> str:
        return ".".join([prefix, *map(str, loc)]) if prefix else ".".join(map(str, loc))

    unknown: dict[str, tuple[list[Any], list[str]]] = {}
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = [part for part in error["loc"] if not _is_union_tag(part)]
            parent = loc[:-1]
            unknown.setdefault(path_of(parent), (parent, []))[1].append(str(loc[-1]))
    for error in errors:
        loc = [part for part in error["loc"] if not _is_union_tag(part)]
        if error["type"] == "extra_forbidden":
            path = path_of(loc[:-1])
            if path in unknown:
                parent, keys = unknown.pop(path)
                problems.append((path, _unknown_keys_message(parent, keys)))
                seen.add(path)
            continue
        path = path_of(loc)
        message = error["msg"]
        if message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        if error["type"] == "missing":
            description = _field_description(loc)
            message = f"is required ({description})" if description else "is required"
        elif error["type"] not in {"value_error", "assertion_error"}:
            message = f"{message[:1].lower()}{message[1:]} (got {error.get('input')!r})"
        if path in seen:
            continue
        seen.add(path)
        problems.append((path, message))
    return problems


def load_document_file(path: str | Path) -> MonitorDocument:
    """Read a YAML file holding one ModelMonitor manifest (or a bare spec)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([("", f"cannot read the file: {exc.strerror or exc}")], source=source) from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            [("", f"is not UTF-8 text (byte {exc.start}); save the YAML as UTF-8")], source=source
        ) from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SpecError(
            [("", f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}")], source=source
        ) from None
    monitors = [doc for doc in documents if isinstance(doc, Mapping) and doc.get("kind") == KIND]
    if len(monitors) > 1:
        raise SpecError(
            [("", f"holds {len(monitors)} ModelMonitor documents; keep one per file")], source=source
        )
    if monitors:
        return MonitorDocument.from_obj(monitors[0], source=source)
    if len(documents) != 1:
        raise SpecError(
            [
                (
                    "",
                    "expected one ModelMonitor manifest or one spec mapping"
                    f", found {len(documents)} documents",
                )
            ],
            source=source,
        )
    return MonitorDocument.from_obj(documents[0], source=source)


def load_spec_file(path: str | Path) -> MonitorSpec:
    """The MonitorSpec of a YAML file (full ModelMonitor manifest or bare spec)."""
    return load_document_file(path).spec


__all__ = [
    "API_VERSION",
    "KIND",
    "CanaryAnalysisSpec",
    "FeatureSpec",
    "GeneratorSpec",
    "LLMSettings",
    "MethodThresholds",
    "MonitorDocument",
    "MonitorSpec",
    "PredictionSpec",
    "ReferenceSpec",
    "ResourceSpec",
    "RolloutSpec",
    "RuntimeSpec",
    "SecretKeyRef",
    "SpecError",
    "ThresholdSpec",
    "WindowSpec",
    "load_document_file",
    "load_spec_file",
    "parse_quantity",
]
