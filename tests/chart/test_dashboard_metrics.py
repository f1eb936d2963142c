"""Every metric the Grafana dashboard queries is one the runtime or the operator really exports.

Runtime names come from scraping a real `poetmon serve` on loopback after it has evaluated a batch, operator
names from the registry of `poet_operator.k8s.metrics.OperatorMetrics` (what the operator's /metrics serves).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.chart_helpers import CHART
from tests.runtime.server.runtime_server_helpers import (
    SPEC,
    columns_json,
    frame,
    http,
    server_factory,  # noqa: F401 - pytest fixture
    wait_until,
    write_version,
)

DASHBOARD = CHART / "files" / "dashboard.json"

# The operator's families as fixed in the shared contract, with their Prometheus types.
OPERATOR_METRICS = {
    "poet_operator_reconciles": "counter",
    "poet_operator_generations": "counter",
    "poet_operator_enforce_rejections": "counter",
    "poet_operator_rollouts": "counter",
    "poet_operator_regenerations": "counter",
    "poet_operator_llm_calls": "counter",
    "poet_operator_llm_tokens": "counter",
    "poet_operator_crash_to_fix_seconds": "histogram",
    "poet_operator_monitors": "gauge",
    "poet_operator_monitor_version": "gauge",
}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def series_names(families: dict[str, str]) -> set[str]:
    """The sample names a set of families (name -> type) puts on the wire."""
    return {name + suffix for name, kind in families.items() for suffix in SUFFIXES.get(kind, ("",))}


def families_of(exposition: str) -> dict[str, str]:
    """Family name -> type; the text parser's stray `X_created` families of unlabelled metrics are folded
    back into X (its _created series is counted by SUFFIXES)."""
    families = {f.name: f.type for f in text_string_to_metric_families(exposition)}
    return {
        n: t
        for n, t in families.items()
        if not (n.endswith("_created") and n[: -len("_created")] in families)
    }


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    return queries


def metric_names(query: str) -> set[str]:
    """Metric names in a PromQL query (or a Grafana label_values call): label matchers, grouping clauses and
    label_values' label argument are removed first, so label names are not taken for metrics."""
    query = re.sub(r"\{[^}]*\}", "", query)
    query = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", query)
    query = re.sub(r"(label_values\([^,()]*),\s*\w+\)", r"\1)", query)
    return set(re.findall(r"\bpoet_[a-z0-9_]+\b", query))


def dashboard_metric_names() -> set[str]:
    return {m for q in dashboard_queries() for m in metric_names(q)}


def operator_families() -> dict[str, str]:
    """From a fresh registry of the operator's own metrics (what its /metrics serves)."""
    from poet_operator.k8s.metrics import OperatorMetrics

    return families_of(generate_latest(OperatorMetrics().registry).decode())


@pytest.fixture(scope="module")
def runtime_families(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Scrape a real `poetmon serve` once it has evaluated data, so the labelled series exist too."""
    from tests.runtime.server.runtime_server_helpers import ServerProcess

    workdir = tmp_path_factory.mktemp("serve")
    server = ServerProcess(write_version(workdir / "v1"), workdir)
    try:
        server.wait_ready(60)
        assert http("POST", server.url + "/v1/reference", columns_json(frame(600, seed=1)))[0] == 200
        assert http("POST", server.url + "/v1/batches", columns_json(frame(600, seed=2, shift=1.0)))[0] == 202

        def scraped() -> str | None:
            text = http("GET", server.url + "/metrics")[1].decode()
            return text if "poet_monitor_feature_drift_score{" in text else None

        exposition = wait_until(scraped, 60, what="a first evaluation in /metrics")
    finally:
        server.stop()
    return families_of(exposition)


def test_dashboard_has_the_panels_users_need() -> None:
    titles = " | ".join(p["title"].lower() for p in json.loads(DASHBOARD.read_text())["panels"])
    for needed in (
        "drift score per feature",
        "health",
        "versions",
        "rollouts",
        "regenerations",
        "crash-to-fix",
    ):
        assert needed in titles, f"no {needed!r} panel in {titles}"
    assert SPEC["features"]  # the scraped monitor has features, so per-feature series are real


def test_every_dashboard_metric_is_exported(runtime_families: dict[str, str]) -> None:
    assert "poet_monitor_feature_drift_score" in runtime_families
    exported = series_names(runtime_families) | series_names(operator_families())
    used = dashboard_metric_names()
    assert {n for n in used if n.startswith("poet_monitor_")}, "the dashboard shows no runtime metric"
    assert {n for n in used if n.startswith("poet_operator_")}, "the dashboard shows no operator metric"
    missing = used - exported
    assert not missing, f"dashboard queries name metrics nobody exports: {sorted(missing)}"


def test_operator_exports_the_contracted_families() -> None:
    assert operator_families() == OPERATOR_METRICS


def test_the_name_check_catches_a_misspelt_metric(runtime_families: dict[str, str]) -> None:
    exported = series_names(runtime_families)
    assert "poet_monitor_rows_ingested_total" in exported
    assert "poet_monitor_rows_ingested" not in exported  # a counter is only seen with _total
    assert "poet_monitor_health_total" not in exported


def test_metric_names_leave_labels_out() -> None:
    query = 'max by (poet_dev_monitor) (rate(poet_monitor_errors_total{poet_dev_role="canary"}[5m]))'
    assert metric_names(query) == {"poet_monitor_errors_total"}
    assert metric_names("label_values(poet_monitor_info, poet_dev_monitor)") == {"poet_monitor_info"}


def test_dashboard_json_is_valid_for_the_sidecar(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "poet-monitor"
