"""Drift benchmark: this engine against per-column scipy, alibi-detect, nannyml and evidently.

Workloads (fixed seeds, known shifted features, known change point; see bench/workloads.py):
  W1  100,000 reference + 100,000 current rows x 50 numeric + 10 categorical columns
  W2  10,000 + 10,000 rows x 1,000 numeric columns
  W3  one feature, a 1,000,000-value stream, windows of 5,000 every 1,000 values against a
      5,000-value reference, mean shift of 0.3 sd at value 600,000

The data is generated once into a temporary directory; every contender then runs in its own fresh
process (libraries in their own virtual environments under bench/.venvs, see bench/setup_venvs.sh),
loads the data, and only then starts the clock. Reported: median wall time over the repeats, peak
memory as the growth of the peak RSS during the timed runs (ru_maxrss, its mark reset once the data
is loaded), features caught and false alarms
against the known truth, and each contender's time as a multiple of this engine's.

    python bench/drift_bench.py --quick      # small shapes, under a minute, skips evidently
    python bench/drift_bench.py              # the full run (tens of minutes with every library)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORKERS = BENCH_DIR / "workers"
VENVS = BENCH_DIR / ".venvs"
sys.path.insert(0, str(BENCH_DIR))

import workloads  # noqa: E402

RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class Contender:
    """One row of the table: which worker, in which interpreter, with which variant."""

    label: str
    worker: str
    venv: str | None  # None: the interpreter running this script
    variant: str = "default"
    workloads: tuple[str, ...] = ("W1", "W2", "W3")
    extra: bool = False  # only with --extras (or in the full run)
    slow: bool = False  # skipped by --quick unless --all

    def python(self) -> Path:
        return Path(sys.executable) if self.venv is None else VENVS / self.venv / "bin" / "python"


CONTENDERS = [
    Contender("engine (prepared)", "engine_worker.py", None, "prepared", ("W1", "W2")),
    Contender("engine (one-shot)", "engine_worker.py", None, "oneshot", ("W1", "W2")),
    Contender("engine sliding_ks", "engine_worker.py", None, "sliding", ("W3",)),
    Contender("scipy per-column", "scipy_worker.py", None),
    Contender("alibi-detect", "alibi_worker.py", "alibi"),
    Contender("nannyml", "nannyml_worker.py", "nannyml"),
    Contender("nannyml (ks/chi2)", "nannyml_worker.py", "nannyml", "ks", ("W1", "W2"), extra=True),
    Contender("evidently", "evidently_worker.py", "evidently", slow=True),
    # W1 only: it exists to check evidently's chi-square on categorical columns, and W2 has none
    Contender("evidently (ks/chisquare)", "evidently_worker.py", "evidently", "exact", ("W1",),
              extra=True, slow=True),
]
LIBRARIES = {"alibi-detect", "nannyml", "evidently"}


@dataclass
class Outcome:
    contender: Contender
    workload: str
    result: dict[str, Any] | None = None
    skipped: str | None = None
    error: str | None = None
    wall: float = 0.0
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def fit_s(self) -> float | None:
        return self.result.get("fit_s") if self.result else None

    @property
    def detect_s(self) -> float | None:
        return self.result.get("detect_s") if self.result else None

    @property
    def total_s(self) -> float | None:
        if not self.result:
            return None
        # the engine's prepared row is compared on detect; its total is shown for information
        return (self.fit_s or 0.0) + self.detect_s


def run_worker(c: Contender, batch: list[str], data_dir: Path, out_dir: Path, repeats: int, budget: float,
               timeout: float) -> list[Outcome]:
    """Run one contender on the workloads in `batch`, in one fresh process; parse its RESULT lines."""
    py = c.python()
    if not py.exists():
        why = f"no venv at {py.parent.parent.relative_to(REPO_ROOT)} (run bench/setup_venvs.sh)"
        return [Outcome(c, w, skipped=why) for w in batch]
    env = dict(os.environ)
    if c.venv is None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYTHONWARNINGS", "ignore")
    cmd = [str(py), str(WORKERS / c.worker), "--data-dir", str(data_dir), "--workload", ",".join(batch),
           "--variant", c.variant, "--repeats", str(repeats), "--budget", str(budget),
           "--out-dir", str(out_dir)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(WORKERS))
        stdout, failure = proc.stdout, f"exit {proc.returncode}: " + \
            (proc.stderr.strip().splitlines() or ["(no output)"])[-1][:200]
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        failure = f"timed out after {timeout:.0f} s"
    wall = time.perf_counter() - t0
    found = {}
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            r = json.loads(line[len(RESULT_PREFIX):])
            found[r["workload"]] = r
    return [Outcome(c, w, result=found[w], wall=wall) if w in found else
            Outcome(c, w, error=failure, wall=wall) for w in batch]


def engine_available() -> dict[str, str | None]:
    """Which engine entry points import in this interpreter (None when fine, else the reason)."""
    checks = {"tabular": "from monitor_runtime.drift import Reference, detect_drift",
              "stream": "from monitor_runtime.toolkit import sliding_ks"}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    out: dict[str, str | None] = {}
    for key, stmt in checks.items():
        proc = subprocess.run([sys.executable, "-c", stmt], capture_output=True, text=True, env=env)
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        out[key] = None if proc.returncode == 0 else f"engine not importable: {last[:150]}"
    return out


# ---------------------------------------------------------------------------------------------- output

def _fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def _fmt_ratio(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1f}x" if x < 100 else f"{x:.0f}x"


def _label(o: Outcome) -> str:
    lib = o.contender.label.split(" ")[0]
    v = (o.result or {}).get("versions", {})
    return f"{o.contender.label} {v[lib]}" if lib in v else o.contender.label


def _baselines(outs: list[Outcome]) -> tuple[Outcome | None, Outcome | None]:
    """(engine row compared on detect time, engine row compared on total time) for one workload."""
    by = {o.contender.variant: o for o in outs if o.contender.worker == "engine_worker.py" and o.result}
    if "sliding" in by:
        return by["sliding"], by["sliding"]
    return by.get("prepared"), by.get("oneshot")


def table_rows(outs: list[Outcome]) -> list[list[str]]:
    prepared, oneshot = _baselines(outs)
    rows = []
    for o in outs:
        if o.skipped or o.error:
            rows.append([o.contender.label, "skipped: " + o.skipped if o.skipped else "error: " + o.error])
            continue
        r = o.result
        vs_prepared = o.detect_s / prepared.detect_s if prepared else None
        vs_oneshot = o.total_s / oneshot.total_s if oneshot else None
        s = r["score"]
        rows.append([
            _label(o), _fmt_s(o.fit_s), _fmt_s(o.detect_s), _fmt_s(o.total_s),
            _fmt_ratio(vs_prepared), _fmt_ratio(vs_oneshot),
            f"{r['peak_rss_delta_mib']:.0f}", f"{s['caught']}/{s['n_shifted']}",
            f"{s['false_alarms']}/{s['n_unshifted']}", str(len(r.get("detect_times", []))),
        ])
    return rows


HEADER_TAB = ["contender", "fit s", "detect s", "total s", "x prepared", "x one-shot", "peak MiB",
              "caught", "false alarms", "runs"]
HEADER_STREAM = ["contender", "fit s", "detect s", "total s", "x engine (detect)", "x engine (total)",
                 "peak MiB", "windows caught", "false-alarm windows", "runs"]


def _line(cells: list[str], widths: list[int]) -> str:
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                          strict=True)))


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    full = [r for r in rows if len(r) == len(header)]
    widths = [max(len(h), *(len(r[i]) for r in full)) if full else len(h) for i, h in enumerate(header)]
    print(f"\n{title}")
    print(_line(header, widths))
    for r in rows:
        print(_line(r, widths) if len(r) == len(header) else f"{r[0].ljust(widths[0])}  {r[1]}")


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for r in rows:
        cells = r if len(r) == len(header) else [r[0], r[1]] + [""] * (len(header) - 2)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def pvalue_agreement(out_dir: Path, workload: str) -> str | None:
    """Largest |p_engine - p_scipy| over the features (or windows) both report."""
    scipy_file = out_dir / f"scipy_{workload}.npz"
    if not scipy_file.exists():
        return None
    parts = []
    for name in ("prepared", "oneshot", "sliding"):
        f = out_dir / f"engine_{name}_{workload}.npz"
        if not f.exists():
            continue
        with np.load(f) as e, np.load(scipy_file) as s:
            pe, ps = e["p"], s["p"]
            how = e["how"] if "how" in e.files else np.full(pe.shape, "")
            if pe.shape != ps.shape:
                continue
            both = np.isfinite(pe) & np.isfinite(ps)
            # the engine may compute a sub-threshold feature's p-value asymptotically and says so
            for label, mask in (("", how != "asymptotic"), (" where the engine says asymptotic",
                                                            how == "asymptotic")):
                sel = both & mask
                if sel.any():
                    diff = np.max(np.abs(pe[sel] - ps[sel]))
                    parts.append(f"{name}: max |p_engine - p_scipy| = {diff:.2e} over {int(sel.sum())}"
                                 f"{label}")
    return "; ".join(parts) or None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def _goal(text: str, value: float | None, target: float) -> str:
    if value is None:
        return f"  {text}: not measured"
    verdict = "MET" if value >= target else "MISSED"
    return f"  {text}: {value:.1f}x (goal >= {target:g}x) {verdict}"


def goals(results: dict[str, list[Outcome]]) -> list[str]:
    """The engine's speed goals, each with the measured ratio and whether it is met."""
    lines = []
    for w in ("W1", "W2"):
        outs = results.get(w)
        if not outs:
            continue
        prepared, oneshot = _baselines(outs)
        scipy_o = next((o for o in outs if o.contender.worker == "scipy_worker.py" and o.result), None)
        libs = [o for o in outs if o.result and o.contender.label in LIBRARIES]
        p_s = prepared.detect_s if prepared else None
        lines.append(_goal(f"{w} prepared vs per-column scipy", _ratio(scipy_o and scipy_o.total_s, p_s), 10))
        if libs:
            by_detect = min(libs, key=lambda o: o.detect_s)
            by_total = min(libs, key=lambda o: o.total_s)
            lines.append(_goal(f"{w} prepared vs fastest library's detect step ({by_detect.contender.label})",
                               _ratio(by_detect.detect_s, p_s), 8))
            lines.append(_goal(f"{w} prepared vs fastest library's fit + detect ({by_total.contender.label})",
                               _ratio(by_total.total_s, p_s), 8))
        lines.append(_goal(f"{w} one-shot vs per-column scipy",
                           _ratio(scipy_o and scipy_o.total_s, oneshot.total_s if oneshot else None), 4))
    outs = results.get("W3")
    if outs:
        eng, _ = _baselines(outs)
        scipy_o = next((o for o in outs if o.contender.worker == "scipy_worker.py" and o.result), None)
        lines.append(_goal("W3 sliding_ks vs windowed scipy",
                           _ratio(scipy_o and scipy_o.total_s, eng and eng.total_s), 20))
    return lines


def machine_info() -> dict[str, str]:
    info = {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}
    try:
        import scipy

        info["scipy"] = scipy.__version__
    except ImportError:
        pass
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for ln in lscpu.splitlines():
            if ln.startswith("Model name:"):
                info["cpu"] = ln.split(":", 1)[1].strip()
    except OSError:
        pass
    info["cores"] = str(os.cpu_count())
    # other work on the machine skews wall times; the load average says how quiet it was
    info["load average"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def workload_title(w: str, t: dict[str, Any]) -> str:
    if w == "W3":
        return (f"W3: stream of {t['n_stream']:,} values, window {t['window']:,} every {t['step']:,}, "
                f"reference {t['n_reference']:,}, +{t['shift_sd']:g} sd at {t['change_point']:,} "
                f"({t['n_windows']} windows)")
    return (f"{w}: {t['n_reference']:,} + {t['n_current']:,} rows x {len(t['numeric'])} numeric + "
            f"{len(t['categorical'])} categorical; {len(t['shifted'])} shifted features")


def _kind(description: str) -> str:
    """The shift without the base distribution: 'lognormal: mean +0.1 sd' -> 'mean +0.1 sd'."""
    if "categories" in description:  # '17 categories, share shift 1 points'
        return description.split(", ", 1)[-1]
    return description.split(": ", 1)[-1]


def missed_summary(result: dict[str, Any], truth: dict[str, Any]) -> str | None:
    """Which kinds of shift a contender missed, counted, e.g. 'mean +0.05 sd x1'."""
    missed = result["score"].get("missed") or []
    if not missed:
        return None
    counts: dict[str, int] = {}
    for name in missed:
        kind = _kind(truth["describe"].get(name, name))
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(counts.items()))


def workload_notes(w: str, outs: list[Outcome], out_dir: Path, truth: dict[str, Any]) -> list[str]:
    notes = [f"{o.contender.label}: {o.result['notes']}" for o in outs if o.result and o.result.get("notes")]
    if w != "W3":
        for o in outs:
            summary = missed_summary(o.result, truth) if o.result else None
            if summary:
                notes.append(f"{o.contender.label} missed: {summary}")
        if truth["categorical"]:
            cat = [f"{o.contender.label} {o.result['score']['false_alarms_categorical']}/"
                   f"{o.result['score']['n_unshifted_categorical']}" for o in outs
                   if o.result and "false_alarms_categorical" in o.result["score"]]
            notes.append("false alarms on unshifted categorical columns: " + ", ".join(cat))
    if w == "W3":
        notes += [f"{o.contender.label}: first flagged window ends {o.result['score']['detection_delay']} "
                  "values after the change" for o in outs if o.result]
    agree = pvalue_agreement(out_dir, w)
    if agree:
        notes.append(f"p-values vs scipy: {agree}")
    cpu = [(o.contender.label, o.result["detect_cpu_s"]) for o in outs
           if o.result and o.result.get("detect_cpu_s")]
    if cpu:
        base = next((c for label, c in cpu if label.startswith("engine")), None)
        parts = [f"{label} {c:.3f} s" + (f" ({c / base:.1f}x)" if base else "") for label, c in cpu]
        notes.append("detect step, fewest process CPU seconds over the runs: " + "; ".join(parts))
    return notes


# ------------------------------------------------------------------------------------------------ main

def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small shapes, few repeats, no evidently or extras")
    p.add_argument("--workloads", default="W1,W2,W3", help="comma-separated subset of W1,W2,W3")
    p.add_argument("--only", default=None,
                   help="comma-separated contender labels to run besides the engine, e.g. 'scipy per-column'")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per contender (default 5, quick 3)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds of timing per contender after which repeats stop (default 60, quick 3)")
    p.add_argument("--all", action="store_true", help="with --quick: also run slow libraries and variants")
    p.add_argument("--no-extras", action="store_true", help="skip the extra library variants in a full run")
    p.add_argument("--json", type=Path, default=None, help="write every result to this JSON file")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables as Markdown to this file")
    return p.parse_args()


def plan_runs(contenders: list[Contender], wanted: list[str], per_workload: bool
              ) -> list[tuple[Contender, list[str]]]:
    """Which process runs what: one per contender and workload, or (quick) one per contender."""
    if per_workload:
        return [(c, [w]) for w in wanted for c in contenders if w in c.workloads]
    return [(c, batch) for c in contenders if (batch := [w for w in wanted if w in c.workloads])]


def select_contenders(args: argparse.Namespace) -> list[Contender]:
    only = {s.strip() for s in args.only.split(",")} if args.only else None
    chosen = []
    for c in CONTENDERS:
        if only and c.worker != "engine_worker.py" and c.label not in only:
            continue
        if args.quick and not args.all and (c.slow or c.extra):
            continue
        if not args.quick and c.extra and args.no_extras:
            continue
        chosen.append(c)
    return chosen


def write_json(path: Path, info: dict, quick: bool, results: dict[str, list[Outcome]], goal_lines: list[str]
               ) -> None:
    rows = {w: [{"label": o.contender.label, "variant": o.contender.variant, "result": o.result,
                 "skipped": o.skipped, "error": o.error} for o in outs] for w, outs in results.items()}
    doc = {"machine": info, "quick": quick, "results": rows, "goals": goal_lines}
    path.write_text(json.dumps(doc, indent=1))


def main() -> int:
    args = parse_args()
    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in wanted if w not in ("W1", "W2", "W3")]
    if bad:
        print(f"unknown workload(s) {bad}: choose from W1, W2, W3", file=sys.stderr)
        return 2
    repeats = args.repeats or (3 if args.quick else 5)
    budget = args.budget or (3.0 if args.quick else 60.0)
    timeout = 120.0 if args.quick else 3600.0
    contenders = select_contenders(args)
    engine = engine_available()
    info = machine_info()
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"drift benchmark ({'quick' if args.quick else 'full'} shapes) {stamp}")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    t_start = time.perf_counter()
    done: dict[tuple[str, str], Outcome] = {}
    md: list[str] = []
    with tempfile.TemporaryDirectory(prefix="drift-bench-") as tmp:
        data_dir, out_dir = Path(tmp) / "data", Path(tmp) / "out"
        data_dir.mkdir()
        truths = workloads.generate(data_dir, wanted, quick=args.quick)
        for c, batch in plan_runs(contenders, wanted, per_workload=not args.quick):
            runnable = []
            for w in batch:
                unavailable = engine["stream" if w == "W3" else "tabular"]
                if c.worker == "engine_worker.py" and unavailable:
                    done[c.label, w] = Outcome(c, w, skipped=unavailable)
                else:
                    runnable.append(w)
            if not runnable:
                continue
            for o in run_worker(c, runnable, data_dir, out_dir, repeats, budget, timeout):
                done[c.label, o.workload] = o
                status = o.skipped or o.error or f"{o.total_s:.3f} s"
                print(f"  [{o.workload}] {c.label}: {status} ({o.wall:.1f} s in process)", file=sys.stderr,
                      flush=True)
        results = {w: [done[c.label, w] for c in contenders if (c.label, w) in done] for w in wanted}
        for w, outs in results.items():
            title, header = workload_title(w, truths[w]), HEADER_STREAM if w == "W3" else HEADER_TAB
            rows = table_rows(outs)
            notes = workload_notes(w, outs, out_dir, truths[w])
            print_table(title, header, rows)
            print("\n".join("  " + n for n in notes))
            md += [f"### {title}", "", markdown_table(header, rows), "", *("- " + n for n in notes), ""]
    goal_lines = goals(results)
    info["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print("\nGoals" + (" (quick shapes: indicative only)" if args.quick else "") + ":")
    print("\n".join(goal_lines))
    print("\ntimes: median wall seconds over the runs; peak MiB: growth of the peak RSS (ru_maxrss, reset "
          "through /proc/self/clear_refs once the data was loaded) during the timed runs; whole run "
          f"{time.perf_counter() - t_start:.0f} s; load average at end {info['load average at end']}")
    if args.json:
        write_json(args.json, info, args.quick, results, goal_lines)
    if args.markdown:
        args.markdown.write_text("\n".join([*md, "Goals:", "", *("- " + g.strip() for g in goal_lines), ""]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
