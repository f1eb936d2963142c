"""`poetmon demo`: drift detection on a bundled, seeded example, printed as a report."""

from __future__ import annotations

import json

import numpy as np

from monitor_runtime.drift import detect_drift
from poet_operator.report_text import format_table

#: A credit-scoring model's inputs; the current week has a shifted income, a new country and more
#: missing ages. Seeded so every run prints the same report.
FEATURES = [
    {"name": "income", "type": "continuous", "importance": 3.0},
    {"name": "age", "type": "continuous", "importance": 1.0},
    {"name": "country", "type": "categorical", "importance": 2.0},
    {"name": "premium_spend", "type": "auto", "importance": 1.0},
    {"name": "has_mortgage", "type": "auto", "importance": 1.0},
    {"name": "tenure_months", "type": "continuous", "importance": 0.5},
]


def example_batches(seed: int = 42, n_reference: int = 5000, n_current: int = 2000) -> tuple[dict, dict]:
    """The demo's reference and current batches as column mappings."""
    rng = np.random.default_rng(seed)

    def batch(n: int, current: bool) -> dict[str, np.ndarray]:
        income = rng.lognormal(10.6 + (0.15 if current else 0.0), 0.4, n)
        age = rng.normal(41, 12, n).round()
        if current:
            age[rng.random(n) < 0.08] = np.nan
        shares = [0.5, 0.3, 0.2, 0.0] if not current else [0.45, 0.3, 0.17, 0.08]
        country = rng.choice(np.array(["DE", "FR", "IT", "ES"]), n, p=shares)
        spend = np.where(rng.random(n) < 0.85, 0.0, rng.gamma(2.0, 60.0, n)).round(2)
        mortgage = (rng.random(n) < 0.35).astype(int)
        tenure = rng.gamma(3.0, 12.0, n).round()
        return {
            "income": income,
            "age": age,
            "country": country,
            "premium_spend": spend,
            "has_mortgage": mortgage,
            "tenure_months": tenure,
        }

    return batch(n_reference, False), batch(n_current, True)


def run_demo(output_format: str = "table") -> int:
    """Print the demo's drift report."""
    reference, current = example_batches()
    result = detect_drift(reference, current, features=FEATURES)
    if output_format == "json":
        print(json.dumps(result, indent=2))
    else:
        print(format_table(result, title="poet-monitor demo: credit-scoring model, this week vs reference"))
    return 0
