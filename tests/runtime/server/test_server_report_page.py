"""The report page renders any report safely, and says in words why each verdict is what it is."""

from __future__ import annotations

import re

import numpy as np
import pytest

from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.history import EvaluationHistory, history_entry
from monitor_runtime.server.prediction_quality import PredictionQuality
from monitor_runtime.server.report_charts import category_chart, numeric_chart
from monitor_runtime.server.report_page import render_report_page, severity_order, waiting_message

from .runtime_server_helpers import engine_report_case


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
    # A result from code that does not say which gate decided is rendered, and says so.
    assert "does not say which gate decided" in html


def test_order_is_drifted_then_weighted_severity_then_closeness_to_threshold() -> None:
    features = {
        "quiet": {"drift_detected": False, "severity": 0.0, "score": 0.01, "threshold": 0.1, "importance": 1},
        "near": {"drift_detected": False, "severity": 0.0, "score": 0.09, "threshold": 0.1, "importance": 1},
        "minor": {"drift_detected": True, "severity": 0.2, "importance": 1},
        "major": {"drift_detected": True, "severity": 0.2, "importance": 3},
    }
    assert severity_order(features) == ["major", "minor", "near", "quiet"]


# ---------------------------------------------------------------- verdicts in words


@pytest.fixture(scope="module")
def engine_page() -> tuple[dict, str]:
    result, reference, current = engine_report_case()
    tracker = DistributionTracker(window_rows=10**9)
    tracker.set_reference(reference)
    tracker.add_current(current, 200_000)
    report = {**result, "status": "ok", "version": {"monitor": "credit-risk", "version": 3}}
    return result, render_report_page(report, tracker.snapshot())


def _card(html: str, name: str) -> str:
    start = html.index(f"id='feature-{name}'")
    return html[start : html.index("</section>", start)]


def test_each_verdict_names_the_gate_that_decided_it(engine_page) -> None:
    result, html = engine_page
    decided = {n: f["decision"]["decided_by"] for n, f in result["features"].items()}
    assert decided == {
        "shifted": "distribution",
        "credit_score": "p_value",
        "big_tiny_shift": "effect_size",
        "annual_income": "missing_values",
        "plan": "distribution",
    }
    shifted = _card(html, "shifted")
    assert "Drift in the distribution" in shifted and "adjusted p &lt; 0.0001, below α = 0.05" in shifted
    assert "Benjamini-Hochberg" in shifted
    # credit_score: over its threshold, but "ok" because 60 rows cannot make it significant; the page says so.
    credit = _card(html, "credit_score")
    assert "No drift, decided by the p-value" in credit and "reaches its threshold 0.025" in credit
    assert "not significant" in credit and "not below α = 0.05" in credit
    assert "Low confidence: only 60 current and 60 reference values" in credit
    tiny = _card(html, "big_tiny_shift")
    assert "No drift, decided by the effect size" in tiny and "is below its threshold 0.025" in tiny
    # annual_income: "drift" with an unremarkable p-value, because its missing share jumped.
    income = _card(html, "annual_income")
    assert "Drift in missing values: missing values went from 0.0% to 20.0% of rows" in income
    assert income.index("Drift in missing values") < income.index("The values present did not drift")
    plan = _card(html, "plan")
    assert "never seen in the reference (e.g. &#x27;enterprise&#x27;)" in plan


def test_a_legend_says_how_the_two_gates_work(engine_page) -> None:
    _, html = engine_page
    legend = re.search(r"<p class='how' id='legend'>(.*?)</p>", html).group(1)
    assert "two gates" in legend and "Benjamini-Hochberg" in legend and "α = 0.05" in legend
    assert "missing values" in legend and "never seen in the reference" in legend
    overview = html[html.index("id='overview'") :]
    assert "p-value (not significant)" in overview and "effect size (too small)" in overview
    assert "missing values" in overview


def test_summary_statistics_compare_reference_and_current(engine_page) -> None:
    _, html = engine_page
    income = _card(html, "annual_income")
    table = income[income.index("<table class='stats'>") :]
    assert re.search(r"<th>missing</th><td class='num'>0.0%</td><td class='num'>20.0%</td>", table)
    for label in ("mean", "std", "min", "5%", "25%", "median", "75%", "95%", "max"):
        assert f"<th>{label}</th>" in table
    assert re.search(r"<th>rows</th><td class='num'>2,000</td><td class='num'>2,000</td>", table)
    plan = _card(html, "plan")
    assert "<th>unseen categories</th>" in plan and "10.0% (enterprise)" in plan


def test_window_statistics_are_exact_for_moments_and_close_for_merged_quantiles() -> None:
    rng = np.random.default_rng(5)
    tracker = DistributionTracker(window_rows=10**9)
    tracker.set_reference({"x": rng.normal(0, 1, 4000)})
    chunks = [rng.normal(3, 2, 1500), rng.normal(5, 1, 2500)]
    for chunk in chunks:
        tracker.add_current({"x": chunk}, len(chunk))
    cur = tracker.snapshot()["x"]["stats"]["current"]
    union = np.concatenate(chunks)
    assert cur["rows"] == 4000 and cur["mean"] == pytest.approx(union.mean(), rel=1e-12)
    assert cur["std"] == pytest.approx(union.std(), rel=1e-9)
    assert cur["min"] == union.min() and cur["max"] == union.max()
    want = np.percentile(union, [5, 25, 50, 75, 95])
    got = [cur["quantiles"][k] for k in ("p5", "p25", "p50", "p75", "p95")]
    # Within about one percentile of the union: a rank error of at most 1% of the rows.
    for w, g, q in zip(want, got, (5, 25, 50, 75, 95), strict=True):
        lo, hi = np.percentile(union, [q - 1, q + 1])
        assert lo <= g <= hi, (q, w, g)


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


# ---------------------------------------------------------------- charts


def test_numeric_chart_labels_its_axes_and_writes_plain_numbers() -> None:
    rng = np.random.default_rng(2)
    tracker = DistributionTracker(window_rows=10**9)
    tracker.set_reference({"income": rng.normal(120_000, 30_000, 3000), "tiny": rng.normal(0, 1e-4, 3000)})
    tracker.add_current(
        {"income": rng.normal(150_000, 30_000, 3000), "tiny": rng.normal(0, 1e-4, 3000)}, 3000
    )
    snap = tracker.snapshot()
    svg = numeric_chart(snap["income"], "income")
    assert "share of rows" in svg and "value (bins: reference quantiles)" in svg
    ticks = re.findall(r"<text [^>]*>([^<]*)</text>", svg)
    assert any(re.fullmatch(r"\d{2,3},\d{3}", t) for t in ticks)  # e.g. 120,345: separators, no exponent
    assert not any("e+" in t or "e-" in t for t in ticks)
    assert not any(
        "e-" in t for t in re.findall(r"<text [^>]*>([^<]*)</text>", numeric_chart(snap["tiny"], "t"))
    )


def test_category_chart_labels_every_bar() -> None:
    labels = ["basic", "plus", "premium", "a-very-long-category-name", "other"]
    dist = {
        "kind": "categorical",
        "labels": labels,
        "reference": [0.4, 0.3, 0.2, 0.1, 0.0],
        "current": [0.3, 0.3, 0.2, 0.1, 0.1],
    }
    svg = category_chart(dist, "plan")
    for label in ("basic", "plus", "premium", "other categories"):
        assert f"<title>{label}</title>" in svg
    assert "a-very-long-cat…" in svg and "<title>a-very-long-category-name</title>" in svg
    assert "40.0% → 30.0%" in svg and "0.0% → 10.0%" in svg


# ---------------------------------------------------------------- prediction quality


def test_classification_quality_compares_periods_with_auc_and_confusion_matrices() -> None:
    rng = np.random.default_rng(8)
    quality = PredictionQuality("classification", None, window_rows=1000)
    actual = rng.integers(0, 2, 1000)
    good_score = np.clip(actual * 0.6 + rng.normal(0.2, 0.2, 1000), 0, 1)
    quality.set_reference((good_score > 0.5).astype(float), actual.astype(float), good_score)
    worse = np.clip(actual * 0.2 + rng.normal(0.4, 0.3, 1000), 0, 1)
    quality.add_current((worse > 0.5).astype(float), actual.astype(float), worse)
    snap = quality.snapshot()
    assert snap["reference"]["auc"] > 0.9 > snap["current"]["auc"]
    html = render_report_page({"status": "ok", "quality": snap}, {})
    section = html[html.index("id='quality'") :]
    for label in ("accuracy", "precision", "recall", "F1", "AUC", "rows scored"):
        assert f"<th>{label}</th>" in section
    assert section.count("<table class='cm'>") == 2 and "actual ↓ predicted →" in section
    assert "reference period" in section and "current window" in section


def test_regression_quality_shows_mae_rmse_mape() -> None:
    quality = PredictionQuality("regression", None, window_rows=100)
    quality.set_reference(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]), None)
    quality.add_current(np.array([2.0, 2.0]), np.array([1.0, 4.0]), None)
    snap = quality.snapshot()
    assert snap["current"]["mae"] == 1.5
    html = render_report_page({"status": "ok", "quality": snap}, {})
    for label in ("MAE", "RMSE", "MAPE"):
        assert f"<th>{label}</th>" in html
    assert "<table class='cm'>" not in html


def test_without_predictions_the_page_says_which_columns_to_send() -> None:
    html = render_report_page({"status": "ok"}, {})
    assert "send the columns _prediction and _actual (and _score" in html


# ---------------------------------------------------------------- history and waiting


def test_history_is_bounded_and_draws_thresholds_and_version_changes() -> None:
    result, _, _ = engine_report_case()
    history = EvaluationHistory(limit=5)
    for i in range(8):
        history.add(history_entry(result, at=1000.0 + i, version=1 if i < 6 else 2, code_sha256="x", rows=10))
    entries = history.as_list()
    assert len(entries) == 5 and [e["version"] for e in entries] == [1, 1, 1, 2, 2]
    assert entries[0]["features"]["credit_score"]["decided_by"] == "p_value"
    assert EvaluationHistory.from_json(history.to_json(), 5).as_list() == entries
    report = {**result, "status": "ok", "version": {"monitor": "m", "version": 2}}
    html = render_report_page(report, {}, history=entries)
    history_part = html[html.index("<h2>History</h2>") :]
    assert "critical 0.25" in history_part and ">v2</text>" in history_part
    assert "1 version change marked" in history_part
    card = _card(html, "credit_score")
    assert "score over the last evaluations" in card and "threshold 0.025" in card and ">v2</text>" in card


@pytest.mark.parametrize(
    ("window", "status", "expected"),
    [
        (
            {"reference_from_first_window": True, "reference_size": 2000, "pending_rows": 500},
            "waiting_for_reference",
            "500 of 2,000 reference rows received",
        ),
        (
            {"reference_from_first_window": False, "pending_rows": 120},
            "waiting_for_reference",
            "send one with POST /v1/reference. 120 rows received",
        ),
        (
            {"reference_rows": 1000, "cadence_rows": 200, "pending_rows": 50},
            "waiting_for_data",
            "Reference in place (1,000 rows). Waiting for the first evaluation: 50 of 200 rows",
        ),
    ],
)
def test_before_the_first_evaluation_the_page_says_what_it_waits_for(window, status, expected) -> None:
    report = {"status": status, "window": window, "version": {"monitor": "m"}}
    assert expected in (waiting_message(report) or "")
    html = render_report_page(report, {})
    assert "id='waiting'" in html and expected in html.replace("&#x27;", "'")
    assert waiting_message({"status": "ok", "window": window}) is None


def test_a_feature_whose_values_all_went_missing_says_so() -> None:
    from monitor_runtime.drift import detect_drift
    from monitor_runtime.server.explain import explain_feature

    result = detect_drift({"x": np.random.default_rng(0).normal(size=500)}, {"x": np.full(300, np.nan)})
    f = result["features"]["x"]
    assert f["drift_detected"] and f["decision"]["decided_by"] == "missing_values"
    sentences = explain_feature(f, result["summary"])
    assert sentences[0].startswith("Drift in missing values: missing values went from 0.0% to 100.0%")
    assert "The values present could not be tested for a shift." in sentences
