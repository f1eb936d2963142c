"""This project's drift engine.

Variants: "prepared" times `Reference.fit` and `Reference.detect` separately; "oneshot" times
`detect_drift`. W3 uses `monitor_runtime.toolkit.sliding_ks` with per-window p < 0.05, the same
rule as the windowed scipy baseline. Columns are declared (continuous / categorical) so that type
inference plays no part in the timing.
"""

from __future__ import annotations

import numpy as np
import scipy
from _common import (
    load_stream,
    load_tabular,
    max_rss_mib,
    median,
    parse_args,
    reset_peak_rss,
    run_workloads,
    save_pvalues,
    score_features,
    score_windows,
    time_repeated,
)

ALPHA = 0.05


def _columns(d: dict, side: str) -> dict[str, np.ndarray]:
    cols = {n: np.ascontiguousarray(d[f"{side}_num"][:, j]) for j, n in enumerate(d["num_names"])}
    cols.update({n: np.ascontiguousarray(d[f"{side}_cat"][:, j]) for j, n in enumerate(d["cat_names"])})
    return cols


def _as_a_new_batch(fn):
    """`fn`, run with the p-value caches emptied first. They are keyed by the statistic, which a new batch
    changes: a repeat of the same batch would find its p-values cached and time less than a new one costs."""
    from monitor_runtime.drift import ks

    def run():
        ks._exact_unequal.cache_clear()
        ks._square_near_one.cache_clear()
        return fn()

    return run


def run_tabular(args) -> dict:
    from monitor_runtime.drift import Reference, detect_drift

    d = load_tabular(args.data_dir, args.workload)
    ref, cur = _columns(d, "ref"), _columns(d, "cur")
    features = {n: {"type": "continuous"} for n in d["num_names"]}
    features.update({n: {"type": "categorical"} for n in d["cat_names"]})
    rss0 = reset_peak_rss()
    out: dict = {}
    if args.variant == "prepared":
        fit_times, prepared = time_repeated(lambda: Reference.fit(ref, features=features), args.repeats,
                                            args.budget / 2)
        times, result = time_repeated(_as_a_new_batch(lambda: prepared.detect(cur)), args.repeats,
                                      args.budget / 2)
        out.update(fit_times=fit_times, fit_s=median(fit_times))
    else:
        times, result = time_repeated(_as_a_new_batch(lambda: detect_drift(ref, cur, features=features)),
                                      args.repeats, args.budget)
    feats = result["features"]
    flagged = {n for n, f in feats.items() if f.get("drift_detected")}
    names = d["num_names"] + d["cat_names"]
    p = np.array([np.nan if feats.get(n, {}).get("p_value") is None else feats[n]["p_value"] for n in names])
    how = [str(feats.get(n, {}).get("details", {}).get("p_value_method", "")) for n in names]
    save_pvalues(args.out_dir, f"engine_{args.variant}_{args.workload}", names, p, how)
    methods = sorted({f.get("method", "?") for f in feats.values()})
    summary = result.get("summary", {})
    out.update(
        detect_times=times,
        detect_s=median(times),
        peak_rss_delta_mib=max_rss_mib() - rss0,
        score=score_features(flagged, d["truth"]),
        notes=f"methods {','.join(methods)}; correction {summary.get('correction', '?')}",
    )
    return out


def run_stream(args) -> dict:
    from monitor_runtime.toolkit import sliding_ks

    d = load_stream(args.data_dir)
    t = d["truth"]
    reference, stream = d["reference"], d["stream"]
    rss0 = reset_peak_rss()
    times, (_stat, p) = time_repeated(lambda: sliding_ks(reference, stream, t["window"], t["step"]),
                                     args.repeats, args.budget)
    p = np.asarray(p, dtype=float)
    save_pvalues(args.out_dir, "engine_sliding_W3", [str(i) for i in range(p.size)], p)
    return {
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_windows(p < ALPHA, t),
        "notes": "sliding_ks, p < 0.05 per window",
    }


def main() -> None:
    args = parse_args()
    run_workloads(args, run_tabular, run_stream, contender="engine",
                  versions={"numpy": np.__version__, "scipy": scipy.__version__})


if __name__ == "__main__":
    main()
