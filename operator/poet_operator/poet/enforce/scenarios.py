"""Contract-test scenarios as data: batches plus the calls to make and what each call must show.

A scenario is a list of steps (`update_reference_window`, `monitor_features`, `detect_drift`,
`monitor_predictions`, `roundtrip`) with seeded numpy data shaped after the spec (its declared features, its
window size). The sandbox child interprets steps generically, so scenarios built elsewhere (for example from
the data profile of a batch that crashed a runtime, `scenario_from_profile`) run exactly like the built-ins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CALLS = ("update_reference_window", "monitor_features", "detect_drift", "monitor_predictions", "roundtrip")
MAX_PROFILE_ROWS = 20_000
DEFAULT_CONTINUOUS = ("num_a", "num_b", "num_c")
DEFAULT_CATEGORICAL = "segment"


class ProfileError(ValueError):
    """A data profile that cannot be turned into a scenario; the message names the column and field."""


@dataclass(frozen=True)
class Expect:
    """What a drift result must show: features flagged, features not flagged, features present."""

    drifted: tuple[str, ...] = ()
    not_drifted: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    no_drift: bool = False  # nothing at all may be flagged

    def to_dict(self) -> dict[str, Any]:
        """Plain form sent to the sandbox child."""
        return {
            "drifted": list(self.drifted),
            "not_drifted": list(self.not_drifted),
            "present": list(self.present),
            "no_drift": self.no_drift,
        }


@dataclass(frozen=True)
class Step:
    """One call into the monitor. `roundtrip` checkpoints state, restores a fresh monitor and compares."""

    call: str
    data: Mapping[str, np.ndarray] | None = None
    predictions: np.ndarray | None = None
    actuals: np.ndarray | None = None
    expect: Expect = field(default_factory=Expect)

    def to_payload(self) -> dict[str, Any]:
        """Plain form sent to the sandbox child (numpy arrays stay arrays)."""
        return {
            "call": self.call,
            "data": dict(self.data) if self.data is not None else None,
            "predictions": self.predictions,
            "actuals": self.actuals,
            "expect": self.expect.to_dict(),
        }


@dataclass(frozen=True)
class Scenario:
    """A named sequence of steps against one fresh `Monitor`."""

    name: str
    description: str
    steps: tuple[Step, ...]

    def __post_init__(self) -> None:
        for step in self.steps:
            if step.call not in CALLS:
                raise ValueError(f"scenario {self.name!r}: unknown call {step.call!r}; use one of {CALLS}")

    def to_payload(self) -> dict[str, Any]:
        """Plain form sent to the sandbox child."""
        return {
            "name": self.name,
            "description": self.description,
            "steps": [s.to_payload() for s in self.steps],
        }


@dataclass(frozen=True)
class _Layout:
    """Which columns the scenarios use, derived from the spec so declared features are exercised."""

    continuous: tuple[str, ...]
    categorical: tuple[str, ...]
    n_reference: int
    n_current: int
    check_verdicts: bool
    task: str


def _layout(spec: Mapping[str, Any]) -> _Layout:
    features = list(spec.get("features") or [])
    allow_unknown = bool(spec.get("allowUnknownFeatures", True))
    continuous = [f["name"] for f in features if f.get("type", "auto") in ("continuous", "auto")]
    categorical = [f["name"] for f in features if f.get("type") == "categorical"]
    if allow_unknown:
        for name in DEFAULT_CONTINUOUS:
            if len(continuous) >= 3:
                break
            if name not in continuous and name not in categorical:
                continuous.append(name)
        if not categorical:
            categorical.append(DEFAULT_CATEGORICAL)
    window = spec.get("window") or {}
    optimize_for = spec.get("optimizeFor", "accuracy")
    size = window.get("size") or {"accuracy": 2000, "real_time": 500, "cost": 1000}.get(optimize_for, 1000)
    n_current = int(min(max(size, 300), 4000))
    reference_size = (spec.get("reference") or {}).get("size") or size
    n_reference = int(min(max(reference_size, 1000), 5000))
    return _Layout(
        continuous=tuple(continuous),
        categorical=tuple(categorical),
        n_reference=n_reference,
        n_current=n_current,
        check_verdicts=spec.get("template", "feature_drift") == "feature_drift",
        task=(spec.get("predictions") or {}).get("task", "none"),
    )


_CATEGORIES = np.array(["alpha", "beta", "gamma", "delta"], dtype=object)
_BASE_P = np.array([0.4, 0.3, 0.2, 0.1])
_SHIFTED_P = np.array([0.1, 0.2, 0.3, 0.4])


def _frame(
    layout: _Layout,
    n: int,
    rng: np.random.Generator,
    *,
    shift: Sequence[str] = (),
    cat_shift: Sequence[str] = (),
    base: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    if base is not None:
        # Current rows are resampled from the reference, so a column that is not shifted on purpose
        # never alarms by chance (an independent draw would, in about alpha of seeds).
        n_base = len(next(iter(base.values())))
        rows = rng.choice(n_base, size=n, replace=n > n_base)
        data = {name: np.asarray(values)[rows] for name, values in base.items()}
        for name in layout.continuous:
            if name in shift:
                values = data[name]
                data[name] = values + 1.0 * float(np.std(values) or 1.0) + 0.5
        for name in layout.categorical:
            if name in cat_shift:
                data[name] = rng.choice(_CATEGORIES, size=n, p=_SHIFTED_P)
        return data
    data = {}
    for i, name in enumerate(layout.continuous):
        # Different shapes per column so type inference and tests see realistic, non-identical features.
        if i % 3 == 1:
            values = rng.lognormal(0.0, 0.5, n)
        elif i % 3 == 2:
            values = rng.normal(5.0, 2.0, n)
        else:
            values = rng.normal(0.0, 1.0, n)
        if name in shift:
            values = values + 1.0 * float(np.std(values) or 1.0) + 0.5
        data[name] = values
    for name in layout.categorical:
        p = _SHIFTED_P if name in cat_shift else _BASE_P
        data[name] = rng.choice(_CATEGORIES, size=n, p=p)
    return data


def _empty_like(data: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[:0].copy() for k, v in data.items()}


def build_scenarios(spec: Mapping[str, Any], *, seed: int = 20240607) -> list[Scenario]:
    """The standard contract scenarios for a spec (camelCase dict, as stored in the manifest)."""
    layout = _layout(spec)
    rng = np.random.default_rng(seed)
    n_ref, n_cur = layout.n_reference, layout.n_current
    reference = _frame(layout, n_ref, rng)
    features = (*layout.continuous, *layout.categorical)
    verdicts = layout.check_verdicts
    scenarios: list[Scenario] = []

    def drift_steps(current: Mapping[str, np.ndarray], expect: Expect) -> tuple[Step, ...]:
        shown = expect if verdicts else Expect()
        return (
            Step("update_reference_window", reference),
            Step("detect_drift", current, expect=shown),
            Step("monitor_features", current, expect=shown),
        )

    null = _frame(layout, n_cur, rng, base=reference)
    scenarios.append(
        Scenario(
            "null_data",
            "current rows resampled from the reference: no alarm",
            drift_steps(null, Expect(no_drift=True, present=features)),
        )
    )

    shifted_names = layout.continuous[:2]
    if shifted_names:
        shifted = _frame(layout, n_cur, rng, base=reference, shift=shifted_names)
        others = tuple(f for f in features if f not in shifted_names)
        scenarios.append(
            Scenario(
                "shifted_data",
                f"{', '.join(shifted_names)} shifted by about one standard deviation",
                drift_steps(shifted, Expect(drifted=shifted_names, not_drifted=others, present=features)),
            )
        )

    if layout.categorical:
        target = layout.categorical[:1]
        cat_shift = _frame(layout, n_cur, rng, base=reference, cat_shift=target)
        others = tuple(f for f in features if f not in target)
        scenarios.append(
            Scenario(
                "categorical_shift",
                f"category frequencies of {target[0]} reversed",
                drift_steps(cat_shift, Expect(drifted=target, not_drifted=others, present=features)),
            )
        )

    dirty = _frame(layout, n_cur, rng, base=reference)
    for i, name in enumerate(layout.continuous):
        values = dirty[name].copy()
        mask = rng.random(n_cur) < 0.15
        values[mask] = np.nan
        if i % 2 == 0:
            values[rng.random(n_cur) < 0.02] = np.inf
            values[rng.random(n_cur) < 0.02] = -np.inf
        dirty[name] = values
    for name in layout.categorical:
        values = dirty[name].copy()
        values[rng.random(n_cur) < 0.1] = None
        dirty[name] = values
    scenarios.append(
        Scenario(
            "nan_and_inf",
            "15% NaN, some +/-inf and missing categories: no crash",
            drift_steps(dirty, Expect()),
        )
    )

    empty = _empty_like(reference)
    scenarios.append(
        Scenario(
            "empty_batch",
            "a batch with the known columns and zero rows: no crash, no alarm",
            drift_steps(empty, Expect(no_drift=True)),
        )
    )

    first = _frame(layout, n_cur, rng, base=reference)
    with_new = {**_frame(layout, n_cur, rng, base=reference), "late_feature": rng.normal(0.0, 1.0, n_cur)}
    dropped = dict(_frame(layout, n_cur, rng, base=reference))
    if layout.continuous:
        dropped.pop(layout.continuous[-1])
    scenarios.append(
        Scenario(
            "new_feature_midstream",
            "a column appears after the reference was set, then a known column disappears: no crash",
            (
                Step("update_reference_window", reference),
                Step("monitor_features", first),
                Step("monitor_features", with_new),
                Step("monitor_features", dropped),
                Step("detect_drift", with_new),
            ),
        )
    )

    def sparse(data: Mapping[str, np.ndarray], local: np.random.Generator) -> dict[str, np.ndarray]:
        out = dict(data)
        for name in layout.continuous:
            values = np.abs(out[name]).astype(np.float64)
            values[local.random(values.shape[0]) < 0.95] = 0.0
            out[name] = values
        return out

    sparse_ref = sparse(reference, np.random.default_rng(seed + 1))
    sparse_cur = sparse(_frame(layout, n_cur, rng, base=reference), np.random.default_rng(seed + 2))
    scenarios.append(
        Scenario(
            "sparse_data",
            "continuous columns 95% zeros in reference and current: no crash, no alarm",
            (
                Step("update_reference_window", sparse_ref),
                Step("detect_drift", sparse_cur, expect=Expect(no_drift=True) if verdicts else Expect()),
                Step("monitor_features", sparse_cur, expect=Expect(no_drift=True) if verdicts else Expect()),
            ),
        )
    )

    if layout.continuous:
        const_name = layout.continuous[0]
        const_ref = {**reference, const_name: np.full(n_ref, 3.0)}
        const_cur = {**_frame(layout, n_cur, rng, base=reference), const_name: np.full(n_cur, 3.0)}
        expect = Expect(not_drifted=(const_name,)) if verdicts else Expect()
        scenarios.append(
            Scenario(
                "constant_column",
                f"{const_name} is constant in reference and current: no alarm on it, no NaN in the result",
                (
                    Step("update_reference_window", const_ref),
                    Step("detect_drift", const_cur, expect=expect),
                    Step("monitor_features", const_cur, expect=expect),
                ),
            )
        )

    scenarios.append(
        Scenario(
            "mixed_dtypes",
            "integer, float32 and boolean columns and integer-coded categories: no crash",
            (
                Step("update_reference_window", _retyped(reference, layout)),
                Step("monitor_features", _retyped(_frame(layout, n_cur, rng, base=reference), layout)),
            ),
        )
    )

    scenarios.append(
        Scenario(
            "state_roundtrip",
            "state() is JSON, and a fresh monitor restored from it answers exactly like the original",
            (
                Step("update_reference_window", reference),
                Step("monitor_features", _frame(layout, n_cur, rng, base=reference)),
                Step("roundtrip", _frame(layout, n_cur, rng, base=reference, shift=shifted_names)),
            ),
        )
    )

    predictions, actuals = _predictions(layout.task, n_cur, rng)
    scenarios.append(
        Scenario(
            "predictions",
            "predictions with and without outcomes, and an empty batch: no crash, a JSON dict back",
            (
                Step("update_reference_window", reference),
                Step("monitor_predictions", predictions=predictions, actuals=actuals),
                Step("monitor_predictions", predictions=predictions, actuals=None),
                Step("monitor_predictions", predictions=predictions[:0], actuals=actuals[:0]),
            ),
        )
    )
    return scenarios


def _retyped(data: Mapping[str, np.ndarray], layout: _Layout) -> dict[str, np.ndarray]:
    out = dict(data)
    for i, name in enumerate(layout.continuous):
        values = np.nan_to_num(np.asarray(out[name], dtype=np.float64))
        out[name] = np.round(values * 10).astype(np.int64) if i % 2 == 0 else values.astype(np.float32)
    for name in layout.categorical:
        codes = {c: k for k, c in enumerate(_CATEGORIES)}
        out[name] = np.array([codes.get(v, -1) for v in out[name].tolist()], dtype=np.int64)
    out["flag"] = np.arange(len(next(iter(out.values()), []))) % 3 == 0
    return out


def _predictions(task: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if task == "classification":
        scores = rng.random(n)
        predictions = (scores > 0.5).astype(np.int64)
        flip = rng.random(n) < 0.15
        actuals = np.where(flip, 1 - predictions, predictions)
        return predictions, actuals
    predictions = rng.normal(10.0, 2.0, n)
    return predictions, predictions + rng.normal(0.0, 1.0, n)


# --- scenarios from a data profile ----------------------------------------------------------------------


def _number(
    column: str, key: str, value: Any, *, low: float | None = None, high: float | None = None
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileError(f"profile column {column!r}: {key} must be a finite number, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ProfileError(f"profile column {column!r}: {key}={value} must lie in [{low}, {high}]")
    return float(value)


def _profile_columns(profile: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    columns = profile.get("columns")
    if isinstance(columns, Mapping):
        items = [(str(name), info) for name, info in columns.items()]
    elif isinstance(columns, Sequence) and not isinstance(columns, str):
        items = []
        for i, info in enumerate(columns):
            if not isinstance(info, Mapping) or not isinstance(info.get("name"), str):
                raise ProfileError(
                    f"profile columns[{i}] needs a 'name'; give each column as a mapping with a name"
                )
            items.append((info["name"], info))
    else:
        raise ProfileError("profile needs 'columns': a mapping of column name -> {dtype, missing_rate, ...}")
    for name, info in items:
        if not isinstance(info, Mapping):
            raise ProfileError(
                f"profile column {name!r} must be a mapping of dtype, missing_rate, zero_rate, ..."
            )
    return items


def _column_from_profile(name: str, info: Mapping[str, Any], n: int, rng: np.random.Generator) -> np.ndarray:
    dtype = str(info.get("dtype", "float64")).lower()
    missing = _number(name, "missing_rate", info.get("missing_rate", 0.0), low=0.0, high=1.0)
    zeros = _number(name, "zero_rate", info.get("zero_rate", 0.0), low=0.0, high=1.0)
    n_unique = int(_number(name, "n_unique", info.get("n_unique", 10), low=0.0))
    missing_mask = rng.random(n) < missing
    if dtype.startswith(("object", "str", "string", "category", "<u", "unicode")):
        levels = np.array([f"{name}_{k}" for k in range(max(1, n_unique))], dtype=object)
        values = rng.choice(levels, size=n).astype(object)
        values[missing_mask] = None
        return values
    if dtype.startswith("bool"):
        values = rng.random(n) < 0.5
        return values if not missing_mask.any() else np.where(missing_mask, None, values).astype(object)
    low = _number(name, "min", info.get("min", 0.0)) if info.get("min") is not None else 0.0
    high = _number(name, "max", info.get("max", 1.0)) if info.get("max") is not None else low + 1.0
    if high < low:
        raise ProfileError(f"profile column {name!r}: min={low} exceeds max={high}")
    if dtype.startswith(("int", "uint")) and n_unique and n_unique <= 50:
        start = math.floor(low)
        values = rng.integers(start, start + max(1, n_unique), n).astype(np.float64)
    else:
        values = rng.uniform(low, high, n) if high > low else np.full(n, low)
    values[rng.random(n) < zeros] = 0.0
    if dtype.startswith(("int", "uint")) and not missing_mask.any():
        return np.round(values).astype(np.int64)
    values = values.astype(np.float32 if dtype.startswith("float32") else np.float64)
    values[missing_mask] = np.nan
    return values


def scenario_from_profile(profile: Mapping[str, Any], *, name: str | None = None, seed: int = 7) -> Scenario:
    """A scenario that replays data shaped like a batch that crashed a runtime (`DataProfile` dict).

    The profile gives `n_rows` and `columns` (a mapping, or a list of mappings with `name`), each with
    `dtype`, `missing_rate`, `zero_rate`, `n_unique`, `min`, `max`. Rows are capped at MAX_PROFILE_ROWS.
    The monitor must take a reference and then the profiled batch without raising and with valid results.
    """
    if not isinstance(profile, Mapping):
        raise ProfileError(f"a data profile must be a mapping, got {type(profile).__name__}")
    n_rows = profile.get("n_rows", 1000)
    if isinstance(n_rows, bool) or not isinstance(n_rows, int) or n_rows < 0:
        raise ProfileError(f"profile n_rows must be a non-negative integer, got {n_rows!r}")
    n = min(n_rows, MAX_PROFILE_ROWS)
    columns = _profile_columns(profile)
    if not columns:
        raise ProfileError("profile has no columns; a crashing batch has at least one column")
    rng = np.random.default_rng(seed)
    reference = {col: _column_from_profile(col, info, max(n, 200), rng) for col, info in columns}
    current = {col: _column_from_profile(col, info, n, rng) for col, info in columns}
    label = name or str(profile.get("signature") or profile.get("name") or "profile")
    return Scenario(
        name=f"profile:{label}",
        description=f"replays the shape of a crashing batch ({n_rows} rows, {len(columns)} columns)",
        steps=(
            Step("update_reference_window", reference),
            Step("monitor_features", current),
            Step("detect_drift", current),
        ),
    )


__all__ = [
    "CALLS",
    "Expect",
    "ProfileError",
    "Scenario",
    "Step",
    "build_scenarios",
    "scenario_from_profile",
]
