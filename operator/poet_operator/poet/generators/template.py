"""The template generator: renders the ml_monitoring domain templates, specialised by spec and remedies.

Rendering is a pure function of (spec, remedies, lessons): the same inputs give byte-identical code. The
templates are Python files with two kinds of markup: `${name}` placeholders (`string.Template`) and
`#@if flag` / `#@else` / `#@endif` lines that keep or drop whole blocks. That small line preprocessor is
hand-written because the standard library has no conditional templating and a general engine (Jinja) is not
a dependency; it has no loops and no expressions beyond `not`, `and`, `or` over flag names.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

from poet_operator.poet.train.remedies import REMEDY_DESCRIPTIONS, Remedy
from poet_operator.spec import MonitorSpec

TEMPLATE_PACKAGE = "poet_operator.poet.generators.templates"

# Operate choices per optimizeFor, visible as constants in the generated code.
REAL_TIME_MAX_EVAL_ROWS = 5_000
SAMPLED_MAX_EVAL_ROWS = 2_000
MIN_EVAL_ROWS = 500
REAL_TIME_LATENCY_BUDGET_SECONDS = 0.05
SAMPLED_LATENCY_BUDGET_SECONDS = 0.1
COST_FULL_EVALUATION_EVERY = 5
COST_SAMPLE_ROWS = 1_000
BOUNDED_MIN_WINDOW = 100
BOUNDED_MIN_REFERENCE_ROWS = 1_000

# The model-agnostic template's columns and the names it accepts for them.
PREDICTION_COLUMNS = ("prediction", "actual")
PREDICTION_ALIASES = {
    "prediction": "prediction",
    "predictions": "prediction",
    "y_pred": "prediction",
    "actual": "actual",
    "actuals": "actual",
    "outcome": "actual",
    "label": "actual",
    "target": "actual",
    "y_true": "actual",
}

_OPTIMIZE_COMMENTS = {
    "accuracy": (
        "optimizeFor accuracy: exact tests on every row of the window, with the false discovery rate\n"
        "# controlled across features (Benjamini-Hochberg unless the spec asks for Bonferroni)."
    ),
    "real_time": (
        "optimizeFor real_time: vectorised tests on a bounded, seeded subsample of each window, and a\n"
        "# latency budget that shrinks the subsample when an evaluation runs over."
    ),
    "cost": (
        "optimizeFor cost: windows kept as sketches, a full evaluation only every few batches and a small\n"
        "# sample in between."
    ),
}


class TemplateError(ValueError):
    """A template that cannot be rendered (unknown flag, unbalanced #@if); a bug in the template."""


# Free text from a spec, feedback or lessons never enters generated code as text: values go in as Python
# literals (repr) and comments or docstrings get this reduced form, which cannot end a comment or a string.
_UNSAFE_TEXT_RE = re.compile(r"[^A-Za-z0-9_@.:<>/+=, -]")
MAX_TEXT_CHARS = 120


def safe_text(text: object, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` reduced to characters that are inert in a comment or docstring, on one line, at most `limit`."""
    reduced = _UNSAFE_TEXT_RE.sub("_", str(text))
    return reduced if len(reduced) <= limit else reduced[: limit - 3] + "..."


@dataclass(frozen=True)
class TemplatePlan:
    """What the template generator needs: the spec and the remedies in effect (signature -> remedy)."""

    spec: MonitorSpec
    spec_hash: str
    remedies: tuple[tuple[str, str], ...] = ()
    lessons: tuple[tuple[str, str], ...] = ()

    @property
    def remedy_kinds(self) -> frozenset[str]:
        return frozenset(r for _, r in self.remedies) | frozenset(r for _, r in self.lessons)


@dataclass
class Choices:
    """Every decision the template made, as constants for the code and a record for the manifest."""

    optimize_for: str
    window: dict[str, Any]
    reference_policy: dict[str, Any]
    features: dict[str, dict[str, Any]]
    flags: set[str] = field(default_factory=set)
    constants: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "optimize_for": self.optimize_for,
            "window": self.window,
            "reference_policy": self.reference_policy,
            "flags": sorted(self.flags),
            "constants": self.constants,
            "notes": self.notes,
        }


def decide(plan: TemplatePlan) -> Choices:
    """Turn the spec and remedies into concrete choices (pure; no I/O)."""
    spec = plan.spec
    remedies = plan.remedy_kinds
    optimize_for = spec.optimize_for
    window = {k: v for k, v in spec.window_config().items() if v is not None}
    if window["strategy"] != "adaptive":
        window.pop("minSize", None)
        window.pop("maxSize", None)
    window.pop("overlap", None)  # make_window derives it from size and step
    if window["strategy"] == "fixed":
        window.pop("step", None)
    notes: list[str] = []
    flags: set[str] = {optimize_for, spec.template}

    reference_size = spec.reference.size or window["size"]
    reference_max_rows: int | None = None
    engine_max_samples: int | None = None
    if Remedy.BOUNDED_MEMORY in remedies:
        flags.add(Remedy.BOUNDED_MEMORY)
        old = window["size"]
        size = max(BOUNDED_MIN_WINDOW, old // 2)
        window["size"] = size
        if "step" in window:
            window["step"] = max(1, min(window["step"], size // 2 or 1))
        if window["strategy"] == "adaptive":
            window["maxSize"] = max(size, min(window.get("maxSize", size), 2 * size))
            window["minSize"] = max(2, min(window.get("minSize", size // 4), size))
        if window.get("storage") != "sketch":
            window["storage"] = "reservoir"
            window["capacity"] = min(size, 1024)
        reference_size = min(reference_size, max(BOUNDED_MIN_REFERENCE_ROWS, size))
        reference_max_rows = max(BOUNDED_MIN_REFERENCE_ROWS, size)
        engine_max_samples = reference_max_rows
        notes.append(f"bounded_memory: window {old} -> {size} rows, {window['storage']} storage")

    reference_policy: dict[str, Any] = {"refresh": spec.reference.refresh}
    if spec.reference.refresh == "accepted_windows":
        reference_policy["size"] = int(reference_size)
        flags.add("refresh")
    if spec.reference.source == "first_window":
        flags.add("first_window")

    features = spec.feature_map()
    agnostic = spec.template == "model_agnostic_monitor"
    if agnostic:
        # The model-agnostic template watches predictions and outcomes only: one column each.
        kind = "categorical" if spec.predictions.task == "classification" else "continuous"
        features = {name: {"type": kind, "importance": 1.0} for name in PREDICTION_COLUMNS}
        for remedy in (Remedy.SPARSE_PATH, Remedy.DYNAMIC_FEATURES):
            if remedy in remedies:
                notes.append(f"{remedy.value}: not applicable, this template ignores feature columns")
    elif Remedy.SPARSE_PATH in remedies:
        flags.add(Remedy.SPARSE_PATH)
        # A method for continuous features only (ks, wasserstein) is dropped with the declared type: auto may
        # infer categorical, which it cannot measure.
        features = {n: _as_auto(c) if c["type"] == "continuous" else c for n, c in features.items()}
        notes.append("sparse_path: continuous features declared auto so the sparse test can apply")

    max_eval_rows: int | None = None
    latency_budget: float | None = None
    if optimize_for == "real_time":
        max_eval_rows, latency_budget = REAL_TIME_MAX_EVAL_ROWS, REAL_TIME_LATENCY_BUDGET_SECONDS
    if Remedy.SAMPLED_EVALUATION in remedies:
        flags.add(Remedy.SAMPLED_EVALUATION)
        max_eval_rows = min(max_eval_rows or SAMPLED_MAX_EVAL_ROWS, SAMPLED_MAX_EVAL_ROWS)
        latency_budget = min(latency_budget or SAMPLED_LATENCY_BUDGET_SECONDS, SAMPLED_LATENCY_BUDGET_SECONDS)
        notes.append(f"sampled_evaluation: at most {max_eval_rows} rows per evaluation")
    if max_eval_rows is not None:
        flags.add("subsample")
    if latency_budget is not None:
        flags.add("latency_budget")
    if Remedy.DTYPE_COERCION in remedies:
        flags.add(Remedy.DTYPE_COERCION)
    if Remedy.DYNAMIC_FEATURES in remedies and not agnostic:
        flags.add(Remedy.DYNAMIC_FEATURES)
    if not spec.allow_unknown_features and Remedy.DYNAMIC_FEATURES not in remedies and not agnostic:
        flags.add("strict_features")
    if spec.predictions.task != "none":
        flags.add("task")

    thresholds = spec.thresholds
    method_thresholds = {k: v for k, v in thresholds.methods.model_dump().items() if v is not None}
    constants: dict[str, Any] = {
        "OPTIMIZE_FOR": optimize_for,
        "FEATURES": features,
        "ALLOW_UNKNOWN_FEATURES": spec.allow_unknown_features,
        "WINDOW": window,
        "REFERENCE_SOURCE": spec.reference.source,
        "REFERENCE_POLICY": reference_policy,
        "ALPHA": thresholds.alpha,
        "CORRECTION": thresholds.correction,
        "METHOD_THRESHOLDS": method_thresholds,
        "CRITICAL_SCORE": thresholds.critical,
        "ENGINE_MAX_SAMPLES": engine_max_samples,
        "SEED": spec.window.seed,
    }
    if reference_max_rows is not None:
        constants["REFERENCE_MAX_ROWS"] = reference_max_rows
    if max_eval_rows is not None:
        constants["MAX_EVAL_ROWS"] = max_eval_rows
        constants["MIN_EVAL_ROWS"] = min(MIN_EVAL_ROWS, max_eval_rows)
    if latency_budget is not None:
        constants["LATENCY_BUDGET_SECONDS"] = latency_budget
    if optimize_for == "cost":
        constants["FULL_EVALUATION_EVERY"] = COST_FULL_EVALUATION_EVERY
        constants["SAMPLE_ROWS"] = COST_SAMPLE_ROWS
    if "task" in flags:
        constants["TASK"] = spec.predictions.task
        constants["POSITIVE_LABEL"] = spec.predictions.positive_label
    if agnostic:
        del constants["ALLOW_UNKNOWN_FEATURES"]
        constants["PREDICTION_COLUMNS"] = list(PREDICTION_COLUMNS)
        constants["ALIASES"] = dict(PREDICTION_ALIASES)
    return Choices(optimize_for, window, reference_policy, features, flags, constants, notes)


_COMMENTS: dict[str, str] = {
    "FEATURES": "Declared features: name -> type and importance; the drift engine picks the test per type.",
    "ALLOW_UNKNOWN_FEATURES": "True: columns outside the spec are monitored too (types inferred).",
    "WINDOW": "The window the runtime evaluates (toolkit.make_window keys).",
    "REFERENCE_SOURCE": "first_window: the first full window becomes the reference; uploaded: wait for one.",
    "REFERENCE_POLICY": "How the reference is refreshed (toolkit.make_reference_policy keys).",
    "ALPHA": "Significance level of each test after the multiple-testing correction.",
    "CORRECTION": "bh controls the false discovery rate across features; bonferroni the family-wise rate.",
    "METHOD_THRESHOLDS": "Effect-size thresholds the spec overrides (the engine's defaults otherwise).",
    "CRITICAL_SCORE": "Overall drift score at which health becomes critical (spec thresholds.critical).",
    "ENGINE_MAX_SAMPLES": "Per-side sample cap inside the engine; None keeps its default for OPTIMIZE_FOR.",
    "SEED": "Seed of every sample drawn here, so results are reproducible and checkpoints resume exactly.",
    "REFERENCE_MAX_ROWS": "Train (bounded_memory): most reference rows kept in memory.",
    "MAX_EVAL_ROWS": "Most rows evaluated per call; larger batches are subsampled (seeded).",
    "MIN_EVAL_ROWS": "The latency budget never shrinks the subsample below this.",
    "LATENCY_BUDGET_SECONDS": "Target time of one evaluation; over it, fewer rows are evaluated next time.",
    "FULL_EVALUATION_EVERY": "Full evaluation every this many batches; a sample of SAMPLE_ROWS in between.",
    "SAMPLE_ROWS": "Rows evaluated between full evaluations.",
    "TASK": "What the model predicts, so prediction quality uses the right metrics.",
    "POSITIVE_LABEL": "Classification: the label counted as positive (None lets the toolkit choose).",
    "PREDICTION_COLUMNS": "Columns that hold predictions or outcomes; every other column is ignored.",
    "ALIASES": "Column names accepted for predictions and outcomes, mapped to their canonical name.",
}


def _as_auto(feature: Mapping[str, Any]) -> dict[str, Any]:
    """A continuous feature declared auto, keeping its method only when it measures either type."""
    out = {**feature, "type": "auto"}
    if out.get("method") in ("ks", "wasserstein"):
        del out["method"]
    return out


def constants_block(plan: TemplatePlan, choices: Choices) -> str:
    """The Perceive and Operate constants of the generated module, each with a comment saying why."""
    spec = plan.spec
    lines = [
        "# -- Perceive: what the spec, the feedback and the lessons asked for " + "-" * 37,
        f"MODEL = {spec.model!r}",
        f"SPEC_HASH = {plan.spec_hash!r}",
    ]
    if plan.remedies:
        lines.append(
            "# Train: remedies for feedback signatures; each is applied where the code says 'Train (...)'."
        )
        for signature, remedy in plan.remedies:
            lines.append(
                f"#   {safe_text(signature)} -> {Remedy(remedy).value}: {REMEDY_DESCRIPTIONS[Remedy(remedy)]}"
            )
    lines.append(f"REMEDIES = {_literal(dict(plan.remedies))}")
    if plan.lessons:
        lines.append("# Train: lessons learned on other monitors whose conditions match this one.")
    lines.append(f"LESSONS = {_literal(dict(plan.lessons))}")
    lines += ["", "# -- Operate: the choices made for this spec " + "-" * 60]
    lines.append("# " + _OPTIMIZE_COMMENTS[choices.optimize_for])
    for name, value in choices.constants.items():
        comment = _COMMENTS.get(name)
        if name == "FEATURES" and Remedy.SPARSE_PATH in choices.flags:
            comment = (
                "Train (sparse_path): continuous features are declared auto so the engine detects\n"
                "# mostly-zero columns and applies its sparse test (zero rate plus the non-zero values)."
            )
        if name == "WINDOW" and Remedy.BOUNDED_MEMORY in choices.flags:
            comment = "Train (bounded_memory): a halved window kept as a fixed-size reservoir or sketch."
        if (
            name == "WINDOW"
            and choices.optimize_for == "accuracy"
            and Remedy.BOUNDED_MEMORY not in choices.flags
        ):
            comment = "The window the runtime evaluates (toolkit.make_window keys); accuracy keeps every row."
        if comment:
            lines.append("# " + comment)
        lines.append(f"{name} = {_literal(value)}")
    return "\n".join(lines) + "\n"


def render(plan: TemplatePlan) -> tuple[str, Choices]:
    """The generated `monitor.py` for a plan, and the choices it encodes."""
    choices = decide(plan)
    name = plan.spec.template
    source = resources.files(f"{TEMPLATE_PACKAGE}.{plan.spec.domain}").joinpath(f"{name}.py.tmpl")
    text = source.read_text(encoding="utf-8")
    kept = preprocess(text, choices.flags)
    texts = {
        "model_label": safe_text(plan.spec.model, 60),
        "optimize_for": safe_text(choices.optimize_for),
        "spec_hash_short": safe_text(plan.spec_hash[:12]),
    }
    skeleton = _tidy(Template(kept).substitute(texts, constants=""))
    code = _tidy(Template(kept).substitute(texts, constants=constants_block(plan, choices)))
    check_structure(code, skeleton, {"MODEL", "SPEC_HASH", "REMEDIES", "LESSONS", *choices.constants})
    return code, choices


def check_structure(code: str, skeleton: str, constants: Iterable[str]) -> None:
    """Refuse rendered code whose top level is not the template's plus one literal assignment per constant.

    Values are written with repr and comments reduced by `safe_text`, so this never fires for a real spec;
    it is the second line of defence that makes any text that escaped its literal a rendering error instead
    of code that runs.
    """
    expected = set(constants)
    try:
        body = ast.parse(code).body
        fixed = [ast.dump(node) for node in ast.parse(skeleton).body]
    except SyntaxError as exc:
        raise TemplateError(f"rendered code does not parse (line {exc.lineno}): {exc.msg}") from None
    rest: list[str] = []
    assigned: list[str] = []
    for node in body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(target, ast.Name) and target.id in expected:
            try:
                ast.literal_eval(node.value)
            except ValueError:
                raise TemplateError(f"constant {target.id} is not a literal") from None
            assigned.append(target.id)
        else:
            rest.append(ast.dump(node))
    if rest != fixed or sorted(assigned) != sorted(expected):
        raise TemplateError(
            "rendered code has top-level statements the template does not: a spec or feedback value "
            "escaped its literal"
        )


class TemplateGenerator:
    """The default generator: no network, deterministic."""

    kind = "template"

    def generate(self, plan: TemplatePlan) -> tuple[str, Choices]:
        return render(plan)


_DIRECTIVE = re.compile(r"^\s*#@(?P<word>if|elif|else|endif)\b\s*(?P<cond>.*)$")


def preprocess(text: str, flags: Iterable[str]) -> str:
    """Keep the lines whose enclosing `#@if` conditions hold for `flags`; drop the directives."""
    active_flags = {str(f) for f in flags}
    out: list[str] = []
    # Each frame: [parent active, a branch already taken, this branch active]
    stack: list[list[bool]] = []
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        match = _DIRECTIVE.match(line)
        if not match:
            if all(frame[2] for frame in stack):
                out.append(line)
            continue
        word, cond = match.group("word"), match.group("cond").strip()
        parent = all(frame[2] for frame in stack)
        if word == "if":
            taken = _holds(cond, active_flags, number)
            stack.append([parent, taken, parent and taken])
        elif not stack:
            raise TemplateError(f"line {number}: #@{word} without #@if")
        elif word == "elif":
            frame = stack[-1]
            holds = not frame[1] and _holds(cond, active_flags, number)
            frame[1] = frame[1] or holds
            frame[2] = frame[0] and holds
        elif word == "else":
            frame = stack[-1]
            frame[2] = frame[0] and not frame[1]
            frame[1] = True
        else:
            stack.pop()
    if stack:
        raise TemplateError(f"{len(stack)} #@if block(s) not closed with #@endif")
    return "".join(out)


def _holds(condition: str, flags: set[str], number: int) -> bool:
    if not condition:
        raise TemplateError(f"line {number}: #@if needs a condition")
    return any(
        all(
            (term[4:].strip() not in flags) if term.startswith("not ") else (term.strip() in flags)
            for term in alternative.split(" and ")
        )
        for alternative in condition.split(" or ")
    )


def _literal(value: Any, indent: int = 0, room: int = 90) -> str:
    """A Python literal of `value`: one line when it fits, else one item per line (insertion order kept)."""
    value = _plain(value)
    flat = repr(value)
    if len(flat) <= room - indent or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        items = [f"{pad}{k!r}: {_literal(v, indent + 4, room)}," for k, v in value.items()]
        return "{\n" + "\n".join(items) + "\n" + " " * indent + "}"
    items = [f"{pad}{_literal(v, indent + 4, room)}," for v in value]
    return "[\n" + "\n".join(items) + "\n" + " " * indent + "]"


def _plain(value: Any) -> Any:
    """`value` as plain literals only: their repr is Python source that evaluates back to them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise TemplateError(f"{value!r} has no Python literal; the spec must give finite numbers")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TemplateError(f"a {type(value).__name__} cannot be written into generated code as a literal")


def _tidy(code: str) -> str:
    """At most two blank lines in a row and exactly one newline at the end."""
    code = re.sub(r"\n{4,}", "\n\n\n", code)
    return code.rstrip("\n") + "\n"
