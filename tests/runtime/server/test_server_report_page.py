"""The report page renders any report safely: odd names, missing numbers, no evaluation yet."""

from __future__ import annotations

import numpy as np

from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.report_page import render_report_page, severity_order


def test_names_are_escaped_and_missing_numbers_render_as_dashes() -> None:
    evil = "<script>alert(1)</script>"
    report = {
        "features": {
            evil: {"drift_detected": True, "score": None, "p_value": float("nan"), "severity": 0.5},
            "plain": {"drift_detected": False, "score": 0.1, "severity": 0.0, "threshold": 0.2},
        },
        "overall_health": "critical",
        "recommendations": [f"look at {evil}"],
        "version": {"monitor": evil},
    }
    html = render_report_page(report, {})
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "no reference bins" in html and "–" in html


def test_an_empty_report_says_what_it_waits_for() -> None:
    html = render_report_page({"status": "waiting_for_reference", "version": {"monitor": "m"}}, {})
    assert "waiting for reference" in html and "<table>" in html


def test_order_is_drifted_then_weighted_severity_then_closeness_to_threshold() -> None:
    features = {
        "quiet": {"drift_detected": False, "severity": 0.0, "score": 0.01, "threshold": 0.1, "importance": 1},
        "near": {"drift_detected": False, "severity": 0.0, "score": 0.09, "threshold": 0.1, "importance": 1},
        "minor": {"drift_detected": True, "severity": 0.2, "importance": 1},
        "major": {"drift_detected": True, "severity": 0.2, "importance": 3},
    }
    assert severity_order(features) == ["major", "minor", "near", "quiet"]


def test_distribution_bins_follow_reference_quantiles_and_forget_old_chunks() -> None:
    rng = np.random.default_rng(3)
    tracker = DistributionTracker(window_rows=1000)
    tracker.set_reference(
        {"x": rng.normal(0, 1, 5000), "c": rng.choice(np.array(["a", "b"], dtype=object), 5000)}
    )
    tracker.add_current({"x": rng.normal(5, 1, 1000), "c": np.array(["a"] * 1000, dtype=object)}, 1000)
    tracker.add_current({"x": rng.normal(0, 1, 1000), "c": np.array(["zz"] * 1000, dtype=object)}, 1000)
    snap = tracker.snapshot()
    assert len(tracker.chunks) == 1  # the window holds 1,000 rows: the older chunk was forgotten
    np.testing.assert_allclose(snap["x"]["reference"], 0.05, atol=0.01)  # 20 quantile bins
    assert snap["c"]["labels"][-1] == "other" and snap["c"]["current"][-1] == 1.0  # unseen category
