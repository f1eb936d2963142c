"""How much faster the code generated for optimizeFor real_time (and cost) answers than accuracy code.

Each generated monitor gets the same reference and then the same large batch; the median wall time of
`detect_drift` and of `monitor_features` is reported with its ratio to the accuracy monitor measured in the
same run. Usage: `python bench/generator_bench.py [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np
from poet_operator.poet.generators.template import TemplatePlan, render
from poet_operator.spec import MonitorSpec

from monitor_runtime import contract, toolkit

GOALS = ("accuracy", "real_time", "cost")


def make_data(rng: np.random.Generator, n: int, n_numeric: int, n_categorical: int, shift: float) -> dict:
    data: dict[str, np.ndarray] = {
        f"num_{i}": rng.normal(shift if i % 5 == 0 else 0.0, 1.0, n) for i in range(n_numeric)
    }
    labels = np.array(["a", "b", "c", "d", "e"], dtype=object)
    for i in range(n_categorical):
        data[f"cat_{i}"] = rng.choice(labels, n)
    return data


def build(goal: str, window_size: int) -> Any:
    spec = MonitorSpec.from_mapping(
        {"model": "bench", "optimizeFor": goal, "window": {"strategy": "fixed", "size": window_size}}
    )
    code, _ = render(TemplatePlan(spec, spec.spec_hash()))
    module = contract.import_code(code, module_name=f"bench_{goal}")
    return contract.monitor_class_of(module)(spec.to_dict(), toolkit)


def median_seconds(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller data, fewer repeats")
    args = parser.parse_args()
    n_ref, n_batch, repeats = (20_000, 50_000, 3) if args.quick else (100_000, 200_000, 5)
    rng = np.random.default_rng(42)
    reference = make_data(rng, n_ref, 40, 10, 0.0)
    batch = make_data(rng, n_batch, 40, 10, 0.2)
    results: dict[str, dict[str, float]] = {}
    for goal in GOALS:
        monitor = build(goal, n_batch)
        monitor.update_reference_window(reference)
        detect = median_seconds(lambda m=monitor: m.detect_drift(batch), repeats)
        features = median_seconds(lambda m=monitor: m.monitor_features(batch), repeats)
        drifted = monitor.detect_drift(batch)["drifted_features"]
        results[goal] = {"detect": detect, "features": features, "drifted": len(drifted)}
    base = results["accuracy"]
    print(f"{n_batch} rows x 50 features against a {n_ref}-row reference (median of {repeats})")
    print(
        f"{'optimizeFor':<12} {'detect_drift':>14} {'speed-up':>9} "
        f"{'monitor_features':>17} {'speed-up':>9} {'drifted':>8}"
    )
    for goal, row in results.items():
        print(
            f"{goal:<12} {row['detect'] * 1000:>11.1f} ms {base['detect'] / row['detect']:>8.1f}x"
            f" {row['features'] * 1000:>14.1f} ms {base['features'] / row['features']:>8.1f}x"
            f" {row['drifted']:>8.0f}"
        )


if __name__ == "__main__":
    main()
