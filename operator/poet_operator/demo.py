"""`poetmon demo`: the whole POET loop on a bundled, seeded example, ending in a drift report.

It generates a monitor for a credit-scoring model with the template generator, enforces it in the
sandbox, runs the enforced code under the runtime's guard over a reference and a current week, and prints
the report: the same path a version takes before it ships to a pod.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

from monitor_runtime import contract
from poet_operator.local.run_once import RunError, generate_version, run_version, write_report
from poet_operator.spec import MonitorDocument

MANIFEST = {
    "apiVersion": "poet.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": "credit-scoring-demo"},
    "spec": {
        "model": "credit-scoring",
        "optimizeFor": "accuracy",
        "window": {"strategy": "sliding", "size": 2000, "step": 500},
        "features": [
            {"name": "income", "type": "continuous", "importance": 3.0},
            {"name": "age", "type": "continuous", "importance": 1.0},
            {"name": "country", "type": "categorical", "importance": 2.0},
            {"name": "premium_spend", "type": "auto", "importance": 1.0},
            {"name": "has_mortgage", "type": "auto", "importance": 1.0},
            {"name": "tenure_months", "type": "continuous", "importance": 0.5},
        ],
    },
}


def example_batches(seed: int = 42, n_reference: int = 5000, n_current: int = 2000) -> tuple[dict, dict]:
    """The demo's reference and current week: income shifted, a new country, more missing ages."""
    rng = np.random.default_rng(seed)

    def batch(n: int, current: bool) -> dict[str, np.ndarray]:
        income = rng.lognormal(10.6 + (0.15 if current else 0.0), 0.4, n)
        age = rng.normal(41, 12, n).round()
        if current:
            age[rng.random(n) < 0.08] = np.nan
        shares = [0.5, 0.3, 0.2, 0.0] if not current else [0.45, 0.3, 0.17, 0.08]
        return {
            "income": income,
            "age": age,
            "country": rng.choice(np.array(["DE", "FR", "IT", "ES"]), n, p=shares),
            "premium_spend": np.where(rng.random(n) < 0.85, 0.0, rng.gamma(2.0, 60.0, n)).round(2),
            "has_mortgage": (rng.random(n) < 0.35).astype(float),
            "tenure_months": rng.gamma(3.0, 12.0, n).round(),
        }

    return batch(n_reference, False), batch(n_current, True)


def run_demo(output_format: str = "table") -> int:
    """Generate, enforce and run the demo monitor; print what happened and the report."""
    document = MonitorDocument.from_obj(MANIFEST, source="demo")
    reference, current = example_batches()
    with tempfile.TemporaryDirectory(prefix="poetmon-demo-") as tmp:
        version_dir = Path(tmp) / "v1"
        try:
            generate_version(document, version_dir)
            manifest, _ = contract.verify_version_dir(version_dir)
            report, distributions = run_version(version_dir, reference, current)
        except RunError as exc:
            print(f"poetmon demo: {exc}", file=sys.stderr)
            return 1
    if output_format == "table":
        summary = (manifest.enforce or {}).get("summary", {})
        print(
            f"Generated {manifest.monitor} v{manifest.version} with the {manifest.generator.kind} generator; "
            f"enforce passed {summary.get('passed', 0)} of {summary.get('checks', 0)} checks in the sandbox "
            f"(code sha256 {manifest.code_sha256[:12]}).\n"
        )
    write_report(report, distributions, output_format, sys.stdout)
    return 0
