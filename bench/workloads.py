"""Synthetic workloads W1, W2 and W3 with a known set of shifted features and a known change point.

Every array comes from one seeded generator, so two runs produce byte-identical files. Shifts are given in
units of the base distribution's standard deviation so that "0.1 sd" means the same for every shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SEED = 20_240_611

# Base distributions for numeric columns: name -> (sampler, mean, sd). Poisson gives heavy ties, which
# exact KS must handle; lognormal and t give skew and heavy tails.
_LN_S = 0.5
_BASES: list[tuple[str, float, float]] = [
    ("normal", 0.0, 1.0),
    ("lognormal", float(np.exp(_LN_S**2 / 2)), float(np.sqrt((np.exp(_LN_S**2) - 1) * np.exp(_LN_S**2)))),
    ("uniform", 0.5, float(np.sqrt(1 / 12))),
    ("student_t5", 0.0, float(np.sqrt(5 / 3))),
    ("poisson5", 5.0, float(np.sqrt(5.0))),
    ("exponential", 1.0, 1.0),
]


@dataclass(frozen=True)
class Shift:
    """How the current sample of one column differs from its reference."""

    kind: str  # "mean" | "scale" | "none"
    size: float = 0.0  # sd units for "mean", factor for "scale"
    nan_current: float = 0.0  # fraction of current values replaced by NaN
    nan_reference: float = 0.0

    @property
    def shifted(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        what = {"mean": f"mean {self.size:+g} sd", "scale": f"scale x{self.size:g}",
                "none": "no shift"}[self.kind]
        if self.nan_current or self.nan_reference:
            what += f", NaN ref {self.nan_reference:.0%} / cur {self.nan_current:.0%}"
        return what


def _sample(rng: np.random.Generator, base: str, n: int) -> np.ndarray:
    if base == "normal":
        return rng.standard_normal(n)
    if base == "lognormal":
        return rng.lognormal(0.0, _LN_S, n)
    if base == "uniform":
        return rng.random(n)
    if base == "student_t5":
        return rng.standard_t(5, n)
    if base == "poisson5":
        return rng.poisson(5.0, n).astype(np.float64)
    if base == "exponential":
        return rng.exponential(1.0, n)
    raise ValueError(base)


def _apply(rng: np.random.Generator, x: np.ndarray, shift: Shift, mean: float, sd: float,
           nan_rate: float) -> np.ndarray:
    if shift.kind == "mean":
        x = x + shift.size * sd
    elif shift.kind == "scale":
        x = (x - mean) * shift.size + mean
    if nan_rate:
        x = x.copy()
        x[rng.random(x.size) < nan_rate] = np.nan
    return x


def _numeric_shifts(n_features: int, groups: list[Shift], per_group: int, extra: list[Shift],
                    rng: np.random.Generator) -> list[Shift]:
    """Place `per_group` columns of each shift kind plus `extra` at seeded random positions."""
    shifts = [Shift("none")] * n_features
    planned = [s for s in groups for _ in range(per_group)] + extra
    positions = rng.choice(n_features, size=len(planned), replace=False)
    for pos, s in zip(positions, planned, strict=True):
        shifts[int(pos)] = s
    return shifts


def _categorical(rng: np.random.Generator, n_ref: int, n_cur: int, k: int, share_shift: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Integer-coded categories; `share_shift` moves that much probability mass from category 0 to 1."""
    p = rng.dirichlet(np.full(k, 3.0))
    p = 0.5 * p + 0.5 / k  # keep every category reasonably populated
    q = p.copy()
    move = min(share_shift, q[0] - 0.01)
    q[0] -= move
    q[1] += move
    return rng.choice(k, size=n_ref, p=p), rng.choice(k, size=n_cur, p=q)


@dataclass(frozen=True)
class TabularShape:
    n_ref: int
    n_cur: int
    n_num: int
    n_cat: int


def make_tabular(path: Path, name: str, shape: TabularShape, seed: int) -> dict:
    """Write `<name>.npz` (ref_num, cur_num, ref_cat, cur_cat) and `<name>.json` (names, truth)."""
    rng = np.random.default_rng(seed)
    n_num = shape.n_num
    # Mean shifts down to 0.05 sd (exact tests catch these at large n; effect-size rules may not),
    # scale changes, and shifted columns with 10% NaN on one or both sides.
    groups = [Shift("mean", 0.1), Shift("mean", 0.2), Shift("mean", 0.5), Shift("mean", 1.0),
              Shift("scale", 1.2), Shift("scale", 1.5)]
    extra = [Shift("mean", 0.05), Shift("mean", 0.1, nan_current=0.1),
             Shift("mean", 0.5, nan_current=0.1), Shift("mean", 1.0, nan_current=0.1, nan_reference=0.1),
             Shift("scale", 1.5, nan_current=0.1),
             # unshifted columns that carry NaN on both sides: missing values alone must not alarm
             Shift("none", nan_current=0.1, nan_reference=0.1),
             Shift("none", nan_current=0.05, nan_reference=0.05)]
    per_group = max(1, round(n_num / 1000 * 10)) if n_num >= 500 else 1
    if n_num >= 500:  # W2: also many unshifted NaN columns among a thousand
        extra += [Shift("none", nan_current=0.1, nan_reference=0.1)] * (per_group * 2)
        extra += [Shift("mean", 0.5, nan_current=0.1)] * (per_group - 1)
    shifts = _numeric_shifts(n_num, groups, per_group, extra, rng)
    ref_num = np.empty((shape.n_ref, n_num), dtype=np.float64, order="F")
    cur_num = np.empty((shape.n_cur, n_num), dtype=np.float64, order="F")
    num_names = [f"num_{i:04d}" for i in range(n_num)]
    bases = []
    for j, s in enumerate(shifts):
        base, mean, sd = _BASES[j % len(_BASES)]
        bases.append(base)
        ref_num[:, j] = _apply(rng, _sample(rng, base, shape.n_ref), Shift("none"), mean, sd, s.nan_reference)
        cur_num[:, j] = _apply(rng, _sample(rng, base, shape.n_cur), s, mean, sd, s.nan_current)

    cat_names = [f"cat_{i:02d}" for i in range(shape.n_cat)]
    cat_shift_sizes = [0.10, 0.03, 0.01] + [0.0] * max(0, shape.n_cat - 3)
    cat_shift_sizes = cat_shift_sizes[: shape.n_cat]
    order = rng.permutation(shape.n_cat)
    ref_cat = np.empty((shape.n_ref, shape.n_cat), dtype=np.int64, order="F")
    cur_cat = np.empty((shape.n_cur, shape.n_cat), dtype=np.int64, order="F")
    cat_desc: dict[str, str] = {}
    for slot, j in enumerate(order):
        k = 3 + (j * 7) % 18  # 3..20 categories
        share = cat_shift_sizes[slot]
        ref_cat[:, j], cur_cat[:, j] = _categorical(rng, shape.n_ref, shape.n_cur, k, share)
        cat_desc[cat_names[j]] = f"{k} categories, share shift {share * 100:g} points" if share else \
            f"{k} categories, no shift"

    shifted = [num_names[j] for j, s in enumerate(shifts) if s.shifted]
    shifted += [cat_names[j] for slot, j in enumerate(order) if cat_shift_sizes[slot]]
    truth = {
        "workload": name,
        "n_reference": shape.n_ref,
        "n_current": shape.n_cur,
        "numeric": num_names,
        "categorical": cat_names,
        "shifted": sorted(shifted),
        "describe": {**{n: f"{b}: {s.describe()}" for n, b, s in zip(num_names, bases, shifts, strict=True)},
                     **cat_desc},
        "seed": seed,
    }
    np.savez(path / f"{name}.npz", ref_num=ref_num, cur_num=cur_num, ref_cat=ref_cat, cur_cat=cur_cat)
    (path / f"{name}.json").write_text(json.dumps(truth, indent=1))
    return truth


def make_stream(path: Path, n_stream: int, n_ref: int, window: int, step: int, change_point: int,
                shift_sd: float, seed: int) -> dict:
    """Write `W3.npz` (reference, stream) and `W3.json`: one feature, a mean shift at `change_point`."""
    rng = np.random.default_rng(seed)
    reference = rng.standard_normal(n_ref)
    stream = rng.standard_normal(n_stream)
    stream[change_point:] += shift_sd
    n_windows = (n_stream - window) // step + 1
    truth = {"workload": "W3", "n_reference": n_ref, "n_stream": n_stream, "window": window, "step": step,
             "change_point": change_point, "shift_sd": shift_sd, "n_windows": n_windows, "seed": seed}
    np.savez(path / "W3.npz", reference=reference, stream=stream)
    (path / "W3.json").write_text(json.dumps(truth, indent=1))
    return truth


FULL = {
    "W1": TabularShape(n_ref=100_000, n_cur=100_000, n_num=50, n_cat=10),
    "W2": TabularShape(n_ref=10_000, n_cur=10_000, n_num=1_000, n_cat=0),
    "W3": {"n_stream": 1_000_000, "n_ref": 5_000, "window": 5_000, "step": 1_000, "change_point": 600_000},
}
QUICK = {
    "W1": TabularShape(n_ref=20_000, n_cur=20_000, n_num=50, n_cat=10),
    "W2": TabularShape(n_ref=2_000, n_cur=2_000, n_num=200, n_cat=0),
    "W3": {"n_stream": 100_000, "n_ref": 5_000, "window": 5_000, "step": 1_000, "change_point": 60_000},
}


def generate(path: Path, workloads: list[str], quick: bool) -> dict[str, dict]:
    """Generate the requested workloads into `path`; return their truth records."""
    shapes = QUICK if quick else FULL
    truths: dict[str, dict] = {}
    for w in workloads:
        seed = SEED + int(w[1:])
        if w == "W3":
            truths[w] = make_stream(path, **shapes["W3"], shift_sd=0.3, seed=seed)
        else:
            truths[w] = make_tabular(path, w, shapes[w], seed=seed)
    return truths
