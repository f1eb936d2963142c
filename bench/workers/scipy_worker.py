"""Per-column scipy baseline: ks_2samp for numeric columns, chi2_contingency for categorical ones.

NaN is dropped per column before testing. The verdict uses Benjamini-Hochberg at 0.05 across all
features of the workload (the engine's default correction); the uncorrected and Bonferroni counts are
reported too. W3 runs ks_2samp on every window (per-window p < 0.05, as alibi-detect's default).
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
    window_starts,
)
from scipy import stats

ALPHA = 0.05


def bh_reject(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg step-up: reject the k smallest p-values where p_(k) <= k * alpha / m."""
    p = np.asarray(p, dtype=float)
    m = p.size
    order = np.argsort(p)
    ok = p[order] <= alpha * np.arange(1, m + 1) / m
    reject = np.zeros(m, dtype=bool)
    if ok.any():
        reject[order[: np.flatnonzero(ok)[-1] + 1]] = True
    return reject


def compare_columns(ref_cols: list[np.ndarray], cur_cols: list[np.ndarray], ref_cats: list[np.ndarray],
                    cur_cats: list[np.ndarray]) -> np.ndarray:
    """One p-value per feature, numeric first then categorical."""
    p = np.empty(len(ref_cols) + len(ref_cats))
    for j, (r, c) in enumerate(zip(ref_cols, cur_cols, strict=True)):
        p[j] = stats.ks_2samp(r[~np.isnan(r)], c[~np.isnan(c)]).pvalue
    off = len(ref_cols)
    for j, (r, c) in enumerate(zip(ref_cats, cur_cats, strict=True)):
        k = int(max(r.max(), c.max())) + 1
        table = np.vstack([np.bincount(r, minlength=k), np.bincount(c, minlength=k)])
        table = table[:, table.sum(axis=0) > 0]
        p[off + j] = stats.chi2_contingency(table).pvalue
    return p


def run_tabular(args) -> dict:
    d = load_tabular(args.data_dir, args.workload)
    names = d["num_names"] + d["cat_names"]
    ref_cols = [np.ascontiguousarray(d["ref_num"][:, j]) for j in range(d["ref_num"].shape[1])]
    cur_cols = [np.ascontiguousarray(d["cur_num"][:, j]) for j in range(d["cur_num"].shape[1])]
    ref_cats = [np.ascontiguousarray(d["ref_cat"][:, j]) for j in range(d["ref_cat"].shape[1])]
    cur_cats = [np.ascontiguousarray(d["cur_cat"][:, j]) for j in range(d["cur_cat"].shape[1])]
    rss0 = reset_peak_rss()

    def once() -> np.ndarray:
        p = compare_columns(ref_cols, cur_cols, ref_cats, cur_cats)
        return bh_reject(p, ALPHA), p

    times, (reject, p) = time_repeated(once, args.repeats, args.budget)
    flagged = {n for n, r in zip(names, reject, strict=True) if r}
    save_pvalues(args.out_dir, f"scipy_{args.workload}", names, p)
    score = score_features(flagged, d["truth"])
    uncorrected = score_features({n for n, v in zip(names, p, strict=True) if v < ALPHA}, d["truth"])
    bonf = score_features({n for n, v in zip(names, p, strict=True) if v < ALPHA / len(p)}, d["truth"])
    return {
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score,
        "notes": (f"BH at 0.05; uncorrected p<0.05 would give {uncorrected['caught']} caught / "
                  f"{uncorrected['false_alarms']} false alarms; Bonferroni {bonf['caught']} / "
                  f"{bonf['false_alarms']}"),
    }


def run_stream(args) -> dict:
    d = load_stream(args.data_dir)
    t = d["truth"]
    reference, stream = d["reference"], d["stream"]
    starts = window_starts(stream.size, t["window"], t["step"])
    rss0 = reset_peak_rss()

    def once() -> np.ndarray:
        return np.array([stats.ks_2samp(reference, stream[s : s + t["window"]]).pvalue for s in starts])

    times, p = time_repeated(once, args.repeats, args.budget)
    save_pvalues(args.out_dir, "scipy_W3", [str(s) for s in starts], p)
    return {
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_windows(p < ALPHA, t),
        "notes": "ks_2samp per window (method auto), p < 0.05 per window",
    }


def main() -> None:
    args = parse_args()
    run_workloads(args, run_tabular, run_stream, contender="scipy",
                  versions={"scipy": scipy.__version__, "numpy": np.__version__})


if __name__ == "__main__":
    main()
