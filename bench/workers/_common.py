"""Shared plumbing for the benchmark workers: load a workload, time a callable, report as JSON.

Every worker runs in its own fresh process (possibly in a library's own virtual environment), so this
module uses only the standard library and numpy, both of which exist in every environment.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

RESULT_PREFIX = "RESULT "


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Arguments every worker accepts (the driver passes all of them)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--workload", required=True,
                        help="W1, W2 or W3, or several comma-separated (run one after the other)")
    parser.add_argument("--variant", default="default")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=60.0,
                        help="stop repeating once this many seconds were spent timing (at least one run)")
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where to write per-feature / per-window p-values for cross-checks")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workload.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in ("W1", "W2", "W3")]
    if bad:
        parser.error(f"unknown workload(s) {bad}: choose from W1, W2, W3")
    return args


def run_workloads(args: argparse.Namespace, run_tabular: Callable[[argparse.Namespace], dict],
                  run_stream: Callable[[argparse.Namespace], dict], **fields: Any) -> None:
    """Run each requested workload in turn; emit one RESULT line per workload."""
    for w in args.workloads:
        args.workload = w
        result = run_stream(args) if w == "W3" else run_tabular(args)
        result.update(workload=w, variant=args.variant, **fields)
        emit(result)


def load_tabular(data_dir: Path, workload: str) -> dict[str, Any]:
    """Load W1/W2: numeric and categorical matrices plus feature names and the ground truth."""
    with np.load(data_dir / f"{workload}.npz") as z:
        data = {k: z[k] for k in z.files}
    truth = json.loads((data_dir / f"{workload}.json").read_text())
    data["num_names"] = list(truth["numeric"])
    data["cat_names"] = list(truth["categorical"])
    data["truth"] = truth
    return data


def load_stream(data_dir: Path) -> dict[str, Any]:
    """Load W3: reference sample, stream, window geometry and change point."""
    with np.load(data_dir / "W3.npz") as z:
        data = {k: z[k] for k in z.files}
    truth = json.loads((data_dir / "W3.json").read_text())
    data["truth"] = truth
    return data


def max_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> float:
    """Reset the peak-RSS mark to the current RSS where Linux allows it; return the new baseline in MiB.

    Loading the data leaves a high-water mark that would otherwise hide what the timed code needs;
    writing 5 to /proc/self/clear_refs resets it (and with it ru_maxrss). Elsewhere the baseline is the
    mark as it stands, so the growth reported is a lower bound.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    return max_rss_mib()


def time_repeated(fn: Callable[[], Any], repeats: int, budget: float) -> tuple[list[float], Any]:
    """Run `fn` up to `repeats` times (fewer once `budget` seconds are used); return times and last output."""
    times: list[float] = []
    cpu: list[float] = []
    out: Any = None
    spent = 0.0
    for _ in range(max(1, repeats)):
        # The previous run's output goes first: kept alive, it would sit in every later run's peak memory.
        out = None
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        dt = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        times.append(dt)
        spent += dt
        if spent >= budget:
            break
    _LAST_CPU[:] = cpu
    return times, out


# Process CPU seconds of the last `time_repeated` runs (the detect step: every worker times it last). On a
# machine shared with other jobs, wall time measures the neighbours as much as the code; the fewest CPU
# seconds over the runs measures the work (summed over threads, so it gives the engine no credit for
# using both cores).
_LAST_CPU: list[float] = []


def median(times: list[float]) -> float | None:
    return statistics.median(times) if times else None


def emit(result: dict[str, Any]) -> None:
    """Print the one result line the driver parses."""
    if _LAST_CPU and "detect_cpu_s" not in result:
        result = {**result, "detect_cpu_s": min(_LAST_CPU)}
    sys.stdout.write(RESULT_PREFIX + json.dumps(result, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def score_features(flagged: set[str], truth: dict[str, Any]) -> dict[str, Any]:
    """Caught shifted features and false alarms among the unshifted ones."""
    shifted = set(truth["shifted"])
    all_names = set(truth["numeric"]) | set(truth["categorical"])
    unshifted = all_names - shifted
    missed = sorted(shifted - flagged)
    false_alarms = sorted(flagged & unshifted)
    return {
        "caught": len(shifted & flagged),
        "n_shifted": len(shifted),
        "false_alarms": len(false_alarms),
        "n_unshifted": len(unshifted),
        "false_alarms_categorical": len(set(false_alarms) & set(truth["categorical"])),
        "n_unshifted_categorical": len(unshifted & set(truth["categorical"])),
        "missed": missed,
        "false_alarm_names": false_alarms[:50],
    }


def score_windows(flags: np.ndarray, truth: dict[str, Any]) -> dict[str, Any]:
    """W3: flagged windows before the change (false alarms), after it (caught), and the detection delay.

    Windows straddling the change point are counted in neither group.
    """
    flags = np.asarray(flags, dtype=bool)
    starts = np.arange(flags.size) * truth["step"]
    ends = starts + truth["window"]
    cp = truth["change_point"]
    before = ends <= cp
    after = starts >= cp
    first_after = np.flatnonzero(flags & (ends > cp))
    delay = int(ends[first_after[0]] - cp) if first_after.size else None
    return {
        "caught": int(np.sum(flags & after)),
        "n_shifted": int(np.sum(after)),
        "false_alarms": int(np.sum(flags & before)),
        "n_unshifted": int(np.sum(before)),
        "detection_delay": delay,
        "n_windows": int(flags.size),
    }


def save_pvalues(out_dir: Path | None, name: str, names: list[str], p_values: np.ndarray,
                 how: list[str] | None = None) -> None:
    """Keep p-values (and how each was computed, where known) for the driver's check against scipy."""
    if out_dir is None:
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    how_arr = np.asarray(how if how is not None else [""] * len(names))
    np.savez(out_dir / f"{name}.npz", names=np.asarray(names), p=np.asarray(p_values, dtype=float),
             how=how_arr)


def window_starts(n: int, window: int, step: int) -> np.ndarray:
    """Start index of every full window of `window` values taken every `step` values."""
    return np.arange(0, n - window + 1, step)
