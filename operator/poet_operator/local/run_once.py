"""`poetmon run`: generate (template generator), enforce, and run a monitor once over data files."""

from __future__ import annotations

import math
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from monitor_runtime import contract, json_safe
from monitor_runtime.server.crash import exception_signature
from monitor_runtime.server.distributions import DistributionTracker
from monitor_runtime.server.guarding import guard_factory
from monitor_runtime.server.history import history_entry
from monitor_runtime.server.host import MonitorHost
from monitor_runtime.server.parsing import column_kinds, spec_kinds
from monitor_runtime.server.prediction_quality import SCORE_COLUMN, PredictionQuality, quality_settings
from monitor_runtime.server.report_page import render_report_page, severity_order
from poet_operator.local.files import DataFileError, read_columns
from poet_operator.poet.events import ListSink
from poet_operator.spec import SpecError, load_document_file

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


class RunError(Exception):
    """A step of `poetmon run` failed; the message says which and why."""


def run_command(spec_file: str, reference: str, current: str, output_format: str = "table") -> int:
    """Generate, enforce and run once; print the report to stdout. Exit 0 ok, 1 failed, 2 bad input."""
    try:
        document = load_document_file(spec_file)
        # Checked as `poetmon serve` checks data: the reference against the spec's feature kinds, the
        # current file against the reference's kinds and the spec's (a non-number where a number belongs is
        # refused, naming column, row and value).
        kinds = spec_kinds(document.spec.to_dict())
        ref_cols = read_columns(reference, kinds)
        cur_cols = read_columns(current, {**column_kinds(ref_cols), **kinds})
    except (SpecError, DataFileError) as exc:
        print(f"poetmon run: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        with tempfile.TemporaryDirectory(prefix="poetmon-run-") as tmp:
            version_dir = Path(tmp) / "v1"
            generate_version(document, version_dir)
            report, distributions = run_version(version_dir, ref_cols, cur_cols)
    except RunError as exc:
        print(f"poetmon run: {exc}", file=sys.stderr)
        return EXIT_FAILED
    report["files"] = {"reference": str(reference), "current": str(current)}
    write_report(report, distributions, output_format, sys.stdout)
    return EXIT_OK


def generate_version(document: Any, directory: Path) -> None:
    """Write an enforced version directory with the template generator, or raise RunError."""
    from poet_operator.poet.engine import run_poet

    result = run_poet(document.spec, directory, monitor=document.name, generator="template", sink=ListSink())
    if result.status != "written":
        reasons = "; ".join(result.report.reasons()) if result.report is not None else result.status
        raise RunError(f"no monitor to run: generation ended with {result.status} ({reasons})")


def run_version(
    directory: Path, reference: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run a verified version once under the guard: the reference, then `detect_drift` over the current file.

    `detect_drift` compares the current data as one batch (no windowing), which is what a one-off run over
    a file means; predictions are scored when the files carry `_prediction` and `_actual` columns (and
    `_score`, the positive class's score, for AUC): by the monitor over the current file, and by the report's
    quality tracker over both files, so the report compares the two periods.
    """
    from monitor_runtime import toolkit

    try:
        manifest, code = contract.verify_version_dir(directory)
    except contract.ContractError as exc:
        raise RunError(str(exc)) from None
    host = MonitorHost(None, guard_factory())
    code_file = str(directory / contract.CODE_FILE)
    special = ("_prediction", "_actual", SCORE_COLUMN)
    features = {k: v for k, v in current.items() if k not in special}
    ref_features = {k: v for k, v in reference.items() if k not in special}
    try:
        host.construct(
            lambda: contract.monitor_class_of(
                contract.import_code(code, filename=code_file), filename=code_file
            )(dict(manifest.spec), toolkit)
        )
        host.call_blocking("update_reference_window", ref_features)
        result, seconds = host.call_blocking("detect_drift", features)
        predictions = None
        if "_prediction" in current and "_actual" in current:
            predictions, _ = host.call_blocking(
                "monitor_predictions", current["_prediction"], current["_actual"]
            )
    except Exception as exc:
        sig = exception_signature(exc)
        raise RunError(f"the monitor code failed: {sig['exception']} at {sig['location']}: {exc}") from exc
    finally:
        host.close()
    tracker = DistributionTracker(window_rows=10**12)
    tracker.set_reference(ref_features)
    tracker.add_current(features, _n_rows(features))
    task, positive = quality_settings(manifest.spec)
    quality = PredictionQuality(task, positive, window_rows=max(1, _n_rows(features)))
    for period, columns in (("reference", reference), ("current", current)):
        if "_prediction" in columns and "_actual" in columns:
            add = quality.set_reference if period == "reference" else quality.add_current
            add(columns["_prediction"], columns["_actual"], columns.get(SCORE_COLUMN))
    generator = manifest.generator.kind
    report = {
        **result,
        "status": "ok",
        "version": {
            "monitor": manifest.monitor,
            "model": manifest.model,
            "version": manifest.version,
            "generator": generator,
            "code_sha256": manifest.code_sha256,
        },
        "window": {
            "strategy": "whole file",
            "size": _n_rows(features),
            "reference_rows": _n_rows(ref_features),
        },
        "timing": {"evaluated_at": time.time(), "evaluation_seconds": seconds},
        "ingestion": {"rows": _n_rows(features), "batches": 1},
        "predictions": predictions,
        "quality": quality.snapshot(),
    }
    return report, tracker.snapshot()


def _n_rows(columns: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(columns.values()))) if columns else 0


def write_report(report: Mapping[str, Any], distributions: Mapping[str, Any], fmt: str, out: TextIO) -> None:
    """Print the report as a table, JSON or a self-contained HTML page."""
    if fmt == "json":
        out.write(json_safe.dumps(report, indent=2) + "\n")
    elif fmt == "html":
        # One run is one evaluation: the history holds just it.
        version = report.get("version") or {}
        entry = history_entry(
            report,
            at=float((report.get("timing") or {}).get("evaluated_at") or time.time()),
            version=version.get("version"),
            code_sha256=version.get("code_sha256"),
            rows=int((report.get("ingestion") or {}).get("rows") or 0),
        )
        out.write(render_report_page(report, distributions, history=[entry]))
    else:
        out.write(format_table(report))


def _status_note(feature: Mapping[str, Any]) -> str:
    status = str(feature.get("status") or "ok")
    if status == "missing_feature" and feature.get("drift_detected"):
        return "absent from current data"
    details = feature.get("details") or {}
    only_missing = details.get("missing_drift") and not details.get("distribution_drift")
    if feature.get("drift_detected") and only_missing:
        return "missing values"
    return status


def format_table(report: Mapping[str, Any]) -> str:
    """A plain-text report: headline, features by importance-weighted severity, recommendations."""
    version = report.get("version") or {}
    features: Mapping[str, Mapping[str, Any]] = report.get("features") or {}
    order = severity_order(features)
    lines = [
        f"monitor {version.get('monitor')} (model {version.get('model')}, version {version.get('version')}, "
        f"generator {version.get('generator')})",
        f"health {str(report.get('overall_health', '?')).upper()}   overall drift score "
        f"{_fmt(report.get('overall_drift_score'))}   drifted {len(report.get('drifted_features') or [])} of "
        f"{len(features)} features",
        "",
    ]
    header = (
        "feature",
        "drift",
        "method",
        "score",
        "threshold",
        "p-value",
        "severity",
        "importance",
        "missing",
        "status",
    )
    rows = [header]
    for name in order:
        f = features[name]
        rows.append(
            (
                str(name),
                "DRIFT" if f.get("drift_detected") else "-",
                str(f.get("method") or ""),
                _fmt(f.get("score")),
                _fmt(f.get("threshold")),
                _fmt(f.get("p_value")),
                _fmt(f.get("severity")),
                _fmt(f.get("importance")),
                f"{float(f.get('missing_rate') or 0.0):.1%}",
                _status_note(f),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    recs = report.get("recommendations") or []
    if recs:
        lines += ["", "recommendations:"] + [f"  - {r}" for r in recs]
    preds = report.get("predictions")
    if isinstance(preds, Mapping) and preds:
        shown = {k: v for k, v in preds.items() if isinstance(v, int | float | str)}
        lines += [
            "",
            "predictions: "
            + ", ".join(f"{k}={_fmt(v) if not isinstance(v, str) else v}" for k, v in shown.items()),
        ]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(v):
        return "-"
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e5):
        return f"{v:.2e}"
    return f"{v:.4g}"
