"""nannyml: UnivariateDriftCalculator with its defaults.

Variant "default": nannyml's default methods (Jensen-Shannon for every column) and default thresholds
(reference-chunk mean + 3 standard deviations), default chunking (10 chunks per data set). Variant "ks":
Kolmogorov-Smirnov for continuous and chi-squared for categorical columns, still with default thresholds.
A feature counts as flagged when any analysis chunk raises an alert, which is how nannyml reports drift.
W3: the overlapping windows are laid end to end (untimed) and chunked with chunk_size=window, the only
way to give nannyml sliding windows in one call.
"""

from __future__ import annotations

import logging
import os
import warnings

# nannyml sends usage statistics unless told not to; this machine has no route for them anyway
os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")

import numpy as np
from _common import (
    load_stream,
    load_tabular,
    max_rss_mib,
    median,
    parse_args,
    reset_peak_rss,
    run_workloads,
    score_features,
    score_windows,
    time_repeated,
    window_starts,
)

logging.disable(logging.WARNING)
warnings.filterwarnings("ignore")


def _methods(variant: str) -> dict:
    if variant == "ks":
        return {"continuous_methods": ["kolmogorov_smirnov"], "categorical_methods": ["chi2"]}
    return {}


def _alerts(result, columns: list[str]) -> dict[str, np.ndarray]:
    """Per column, the alert flag of every analysis chunk (any method)."""
    df = result.filter(period="analysis").to_df()
    out: dict[str, np.ndarray] = {}
    for col in columns:
        sub = df[col]
        flags = np.zeros(len(df), dtype=bool)
        for method in sub.columns.get_level_values(0).unique():
            flags |= sub[method]["alert"].fillna(False).to_numpy(dtype=bool)
        out[col] = flags
    return out


def run_tabular(args) -> dict:
    import nannyml as nml
    import pandas as pd

    d = load_tabular(args.data_dir, args.workload)
    names = d["num_names"] + d["cat_names"]

    def frame(side: str) -> pd.DataFrame:
        df = pd.DataFrame(d[f"{side}_num"], columns=d["num_names"])
        for j, n in enumerate(d["cat_names"]):
            df[n] = pd.Categorical(d[f"{side}_cat"][:, j].astype(str))
        return df

    ref_df, cur_df = frame("ref"), frame("cur")
    rss0 = reset_peak_rss()

    def fit():
        calc = nml.UnivariateDriftCalculator(column_names=names, treat_as_categorical=d["cat_names"] or None,
                                             **_methods(args.variant))
        return calc.fit(ref_df)

    fit_times, calc = time_repeated(fit, args.repeats, args.budget / 3)
    times, result = time_repeated(lambda: calc.calculate(cur_df), args.repeats, args.budget)
    alerts = _alerts(result, names)
    flagged = {n for n, a in alerts.items() if a.any()}
    n_chunks = len(next(iter(alerts.values())))
    return {
        "fit_times": fit_times,
        "fit_s": median(fit_times),
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_features(flagged, d["truth"]),
        "notes": (f"methods {'ks/chi2' if args.variant == 'ks' else 'jensen_shannon (default)'}, "
                  f"default thresholds, {n_chunks} analysis chunks, flagged if any chunk alerts"),
    }


def run_stream(args) -> dict:
    import nannyml as nml
    import pandas as pd

    d = load_stream(args.data_dir)
    t = d["truth"]
    stream = d["stream"]
    starts = window_starts(stream.size, t["window"], t["step"])
    laid_out = stream[starts[:, None] + np.arange(t["window"])[None, :]].ravel()
    ref_df = pd.DataFrame({"x": d["reference"]})
    cur_df = pd.DataFrame({"x": laid_out})
    rss0 = reset_peak_rss()

    def fit():
        calc = nml.UnivariateDriftCalculator(column_names=["x"], chunk_size=t["window"],
                                             **_methods(args.variant))
        return calc.fit(ref_df)

    fit_times, calc = time_repeated(fit, 1, 1.0)
    times, result = time_repeated(lambda: calc.calculate(cur_df), args.repeats, args.budget)
    flags = _alerts(result, ["x"])["x"]
    return {
        "fit_times": fit_times,
        "fit_s": median(fit_times),
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_windows(flags[: starts.size], t),
        "notes": ("windows laid end to end, chunk_size=window; one reference chunk, so the default "
                  "std threshold has zero spread"),
    }


def main() -> None:
    import nannyml
    import pandas
    import scipy

    args = parse_args()
    run_workloads(args, run_tabular, run_stream, contender="nannyml",
                  versions={"nannyml": nannyml.__version__, "numpy": np.__version__,
                            "scipy": scipy.__version__, "pandas": pandas.__version__})


if __name__ == "__main__":
    main()
