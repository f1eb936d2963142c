"""The drift benchmark's harness: seeded workloads, verdict scoring, workers in real subprocesses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "workers"))

import _common  # noqa: E402
import drift_bench  # noqa: E402
import scipy_worker  # noqa: E402
import workloads  # noqa: E402

SMALL = workloads.TabularShape(n_ref=3_000, n_cur=3_000, n_num=50, n_cat=10)


@pytest.fixture(scope="module")
def small_w1(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("w1")
    return path, workloads.make_tabular(path, "W1", SMALL, seed=workloads.SEED + 1)


def test_workloads_are_seeded_and_shift_what_they_say(small_w1: tuple[Path, dict], tmp_path: Path) -> None:
    path, truth = small_w1
    again = workloads.make_tabular(tmp_path, "W1", SMALL, seed=workloads.SEED + 1)
    assert again == truth
    assert (tmp_path / "W1.npz").read_bytes() == (path / "W1.npz").read_bytes()
    assert len(truth["shifted"]) == 14 and len(truth["numeric"]) + len(truth["categorical"]) == 60
    d = _common.load_tabular(path, "W1")
    big = [n for n in truth["shifted"] if truth["describe"][n].endswith("mean +1 sd")]
    assert big, truth["describe"]
    j = d["num_names"].index(big[0])
    ref, cur = d["ref_num"][:, j], d["cur_num"][:, j]
    assert np.nanmean(cur) - np.nanmean(ref) > 0.5 * np.nanstd(ref)
    nan_cols = [n for n in truth["shifted"] if "cur 10%" in truth["describe"][n]]
    for n in nan_cols:
        frac = np.isnan(d["cur_num"][:, d["num_names"].index(n)]).mean()
        assert 0.07 < frac < 0.13, (n, frac)


def test_bh_matches_scipy_false_discovery_control() -> None:
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.random(200), rng.random(20) * 1e-3])
    expected = stats.false_discovery_control(p, method="bh") <= 0.05
    assert np.array_equal(scipy_worker.bh_reject(p, 0.05), expected)
    assert 0 < expected.sum() < p.size


def test_window_scoring_ignores_windows_across_the_change() -> None:
    truth = {"window": 5, "step": 1, "change_point": 10}
    flags = np.zeros(16, dtype=bool)  # starts 0..15, ends 5..20
    flags[2] = True  # ends at 7: a false alarm
    flags[7] = True  # ends at 12, straddles the change: counted nowhere, but it is the first detection
    flags[12:] = True  # starts >= 10: caught
    s = _common.score_windows(flags, truth)
    assert (s["false_alarms"], s["n_unshifted"]) == (1, 6)
    assert (s["caught"], s["n_shifted"]) == (4, 6)
    assert s["detection_delay"] == 2


def test_missing_venv_is_reported_as_skipped(tmp_path: Path) -> None:
    ghost = drift_bench.Contender("ghost", "scipy_worker.py", "no-such-venv")
    outs = drift_bench.run_worker(ghost, ["W1", "W3"], tmp_path, tmp_path, 1, 1.0, 10.0)
    assert [o.workload for o in outs] == ["W1", "W3"]
    assert all(o.result is None and "no venv at bench/.venvs/no-such-venv" in o.skipped for o in outs)


def _run(worker: str, data: Path, out: Path, variant: str = "default") -> dict:
    cmd = [sys.executable, str(BENCH / "workers" / worker), "--data-dir", str(data), "--workload", "W1",
           "--variant", variant, "--repeats", "2", "--budget", "5", "--out-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=str(REPO),
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_common.RESULT_PREFIX)]
    assert proc.returncode == 0 and len(lines) == 1, proc.stderr[-2000:]
    return json.loads(lines[0][len(_common.RESULT_PREFIX):])


def test_scipy_and_engine_workers_agree_in_fresh_processes(small_w1: tuple[Path, dict],
                                                           tmp_path: Path) -> None:
    data, truth = small_w1
    sc = _run("scipy_worker.py", data, tmp_path)
    assert len(sc["detect_times"]) == 2 and sc["detect_s"] > 0
    big = {n for n, what in truth["describe"].items()
           if any(k in what for k in ("+0.5 sd", "+1 sd", "x1.5", "share shift 10 points"))}
    assert big <= set(truth["shifted"]) and len(big) >= 6
    assert not big & set(sc["score"]["missed"]), sc["score"]
    en = _run("engine_worker.py", data, tmp_path, variant="prepared")
    assert en["fit_s"] > 0 and en["detect_s"] > 0 and en["score"]["n_unshifted"] == 46
    with np.load(tmp_path / "scipy_W1.npz") as s, np.load(tmp_path / "engine_prepared_W1.npz") as e:
        assert list(s["names"]) == list(e["names"])
        exact = np.isfinite(e["p"]) & (e["how"] != "asymptotic")
        assert exact.sum() >= 10
        np.testing.assert_allclose(e["p"][exact], s["p"][exact], rtol=0, atol=1e-9)
