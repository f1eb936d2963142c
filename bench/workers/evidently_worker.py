"""evidently: Report([DataDriftPreset()]) with its default per-column tests and thresholds.

Variant "default": evidently picks the test per column (above 1,000 rows: normed Wasserstein for
numeric, Jensen-Shannon for categorical, threshold 0.1). Variant "exact": num_method="ks",
cat_method="chisquare" (evidently's own p-value tests, threshold 0.05, no multiple-testing correction).
A column counts as flagged by evidently's own rule: distance >= threshold, or p-value <= threshold.
evidently has no fit step; the datasets are wrapped (untimed) before the report runs. W3 runs one
report per window.
"""

from __future__ import annotations

import logging
import os
import warnings

os.environ.setdefault("DO_NOT_TRACK", "1")

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


def _preset(variant: str):
    from evidently.presets import DataDriftPreset

    if variant == "exact":
        return DataDriftPreset(num_method="ks", cat_method="chisquare")
    return DataDriftPreset()


def _verdicts(snapshot) -> dict[str, tuple[bool, str]]:
    """Column -> (drifted, method) from the snapshot's ValueDrift metrics."""
    from evidently.legacy.calculations.stattests.registry import _registered_stat_tests

    def display_name(method: str) -> str:
        # an explicitly chosen method is reported by its registry name ("ks"), an auto-chosen one by
        # its display name ("K-S p_value"); p-value tests say "p_value" in their display name
        tests = _registered_stat_tests.get(method)
        return next(iter(tests.values())).display_name if tests else method

    out: dict[str, tuple[bool, str]] = {}
    for m in snapshot.dict()["metrics"]:
        cfg = m.get("config", {})
        if not cfg.get("type", "").endswith("ValueDrift"):
            continue
        method, threshold, value = display_name(cfg["method"]), cfg["threshold"], m["value"]
        drifted = value <= threshold if "p_value" in method else value >= threshold
        out[cfg["column"]] = (bool(drifted), method)
    return out


def run_tabular(args) -> dict:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report

    d = load_tabular(args.data_dir, args.workload)

    def frame(side: str) -> pd.DataFrame:
        df = pd.DataFrame(d[f"{side}_num"], columns=d["num_names"])
        for j, n in enumerate(d["cat_names"]):
            df[n] = d[f"{side}_cat"][:, j]
        return df

    definition = DataDefinition(numerical_columns=d["num_names"], categorical_columns=d["cat_names"])
    ref = Dataset.from_pandas(frame("ref"), data_definition=definition)
    cur = Dataset.from_pandas(frame("cur"), data_definition=definition)
    rss0 = reset_peak_rss()
    times, snapshot = time_repeated(lambda: Report([_preset(args.variant)]).run(cur, ref), args.repeats,
                                    args.budget)
    verdicts = _verdicts(snapshot)
    flagged = {n for n, (drifted, _) in verdicts.items() if drifted}
    methods = sorted({m for _, m in verdicts.values()})
    return {
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_features(flagged, d["truth"]),
        "notes": f"methods: {'; '.join(methods)}",
    }


def run_stream(args) -> dict:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report

    d = load_stream(args.data_dir)
    t = d["truth"]
    stream = d["stream"]
    starts = window_starts(stream.size, t["window"], t["step"])
    definition = DataDefinition(numerical_columns=["x"])
    ref = Dataset.from_pandas(pd.DataFrame({"x": d["reference"]}), data_definition=definition)
    windows = [Dataset.from_pandas(pd.DataFrame({"x": stream[s : s + t["window"]]}),
                                   data_definition=definition) for s in starts]
    rss0 = reset_peak_rss()

    def once() -> np.ndarray:
        return np.array([_verdicts(Report([_preset(args.variant)]).run(w, ref))["x"][0] for w in windows])

    times, flags = time_repeated(once, args.repeats, args.budget)
    return {
        "detect_times": times,
        "detect_s": median(times),
        "peak_rss_delta_mib": max_rss_mib() - rss0,
        "score": score_windows(flags, t),
        "notes": "one Report per window",
    }


def main() -> None:
    import evidently
    import pandas
    import scipy

    args = parse_args()
    run_workloads(args, run_tabular, run_stream, contender="evidently",
                  versions={"evidently": evidently.__version__, "numpy": np.__version__,
                            "scipy": scipy.__version__, "pandas": pandas.__version__})


if __name__ == "__main__":
    main()
