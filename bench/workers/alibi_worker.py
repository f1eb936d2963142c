"""alibi-detect: TabularDrift (W1, KS + chi-squared), KSDrift (W2, and per window on W3).

Defaults throughout: p_val=0.05 with Bonferroni correction. A feature counts as flagged when its
p-value is below the corrected threshold alibi-detect reports for the batch. Fitting is the
detector's constructor; detection is `predict`. The data is handed over as alibi-detect expects it:
one float matrix, categorical columns as integer codes, NaN left in place.
"""

from __future__ import annotations

import logging

import numpy as np
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

logging.disable(logging.WARNING)


def run_tabular(args) -> dict:
    from alibi_detect.cd import KSDrift, TabularDrift

    d = load_tabular(args.data_dir, args.workload)
    names = d["num_names"] + d["cat_names"]
    n_num = len(d["num_names"])
    x_ref = np.hstack([d["ref_num"], d["ref_cat"].astype(np.float64)])
    x_cur = np.hstack([d["cur_num"], d["cur_cat"].astype(np.float64)])
    if d["cat_names"]:
        cats = {n_num + j: None for j in range(len(d["cat_names"]))}

        def fit():
            return TabularDrift(x_ref, p_val=0.05, categories_per_feature=cats)
    else:
        def fit():
            return KSDrift(x_ref, p_val=0.05)
    rss0 = reset_peak_rss()
    fit_times, detector = time_repeated(fit, args.repeats, args.budget / 4)
    times, pred = time_repeated(lambda: detector.predict(x_cur), args.repeats, args.budget)
    p = np.asarray(pred["data"]["p_val"], dtype=float)
    threshold = float(pred["data"]["threshold"])
    flagged = {n for n, v in zip(names, p, strict=True) if v < threshold}
    save_pvalues(args.out_dir, f"alibi_{args.workload}", names, p)
    return {
        "fit_times": fit_times,
        "fit_s": median(fit_times),
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_features(flagged, d["truth"]),
        "notes": f"{type(detector).__name__}, Bonferroni threshold {threshold:.3g}",
    }


def run_stream(args) -> dict:
    from alibi_detect.cd import KSDrift

    d = load_stream(args.data_dir)
    t = d["truth"]
    stream = d["stream"]
    starts = window_starts(stream.size, t["window"], t["step"])
    rss0 = reset_peak_rss()
    fit_times, detector = time_repeated(lambda: KSDrift(d["reference"][:, None], p_val=0.05), 1, 1.0)

    def once() -> np.ndarray:
        return np.array([float(detector.predict(stream[s : s + t["window"], None])["data"]["p_val"][0])
                         for s in starts])

    times, p = time_repeated(once, args.repeats, args.budget)
    save_pvalues(args.out_dir, "alibi_W3", [str(s) for s in starts], p)
    return {
        "fit_times": fit_times,
        "fit_s": median(fit_times),
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_windows(p < 0.05, t),
        "notes": "KSDrift.predict per window, p < 0.05",
    }


def main() -> None:
    import alibi_detect
    import scipy

    args = parse_args()
    run_workloads(args, run_tabular, run_stream, contender="alibi-detect",
                  versions={"alibi-detect": alibi_detect.__version__, "numpy": np.__version__,
                            "scipy": scipy.__version__})


if __name__ == "__main__":
    main()
