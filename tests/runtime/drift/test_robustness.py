"""Inputs that once gave wrong verdicts or unclear errors."""

import json
import os
import selectors
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy import stats

from monitor_runtime.drift import Reference, detect_drift
from monitor_runtime.drift.ks import ks_pvalues
from monitor_runtime.windows import FixedWindow


def test_booleans_are_one_category_however_they_arrive() -> None:
    rng = np.random.default_rng(0)
    prepared = Reference.fit({"flag": rng.random(2000) < 0.3})
    (window,) = FixedWindow(1000).add({"flag": rng.random(1000) < 0.3})
    for current in (
        window,
        {"flag": np.array([True, False, None, True] * 100, dtype=object)},
        {"flag": ["true", "false"] * 50},
    ):
        got = prepared.detect(current)["features"]["flag"]
        assert got["details"]["unseen_count"] == 0


def test_text_in_a_numeric_feature_counts_as_missing() -> None:
    rng = np.random.default_rng(1)
    result = detect_drift({"x": rng.normal(size=1000)}, {"x": ["unknown"] * 1000})
    got = result["features"]["x"]
    assert got["missing_rate"] == 1.0 and got["drift_detected"]
    assert result["overall_health"] != "good"


def test_unequal_sizes_stay_fast_and_say_which_distribution_they_used() -> None:
    rng = np.random.default_rng(2)
    ref = {f"f{i}": rng.normal(size=10_000) for i in range(60)}
    cur = {f"f{i}": rng.normal(size=10_000) for i in range(60)}
    for values in cur.values():
        values[:100] = np.nan
    cur["f0"] = rng.normal(0.06, size=9_900)  # past its threshold, p-value near 1e-4
    cur["f2"] = rng.normal(0.5, size=9_900)  # far past it, p-value near 1e-160
    prepared = Reference.fit(ref)
    started = time.process_time()
    got = prepared.detect(cur)["features"]
    assert time.process_time() - started < 2.0  # the exact unequal-n series alone costs ~5 s here
    assert got["f1"]["details"]["p_value_method"] == "asymptotic"
    assert got["f0"]["details"]["p_value_method"] == "exact"  # the verdict can depend on it
    # Negligible either way (below 1e-12): the exact series would cost 0.1-0.3 s for nothing.
    assert got["f2"]["details"]["p_value_method"] == "asymptotic"
    for name in ("f0", "f2"):
        assert got[name]["drift_detected"]
        expected = stats.ks_2samp(ref[name], cur[name]).pvalue
        assert got[name]["p_value"] == pytest.approx(expected, abs=1e-9)
    assert 1e-12 < got["f0"]["p_value"] < 0.01 and got["f2"]["p_value"] < 1e-12


@pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful:RuntimeWarning")
def test_pvalue_where_scipys_exact_series_rounds_above_one() -> None:
    expected = stats.ks_2samp(np.arange(7.0), np.arange(7.0) + 0.5).pvalue
    assert float(ks_pvalues(1 / 7, 7, 7)) == pytest.approx(expected, abs=1e-12)


def test_huge_magnitudes_keep_effects_and_json_finite() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.normal(size=1000) * 1e200, rng.normal(3, size=1000) * 1e200
    got = detect_drift({"x": ref}, {"x": cur}, features={"x": {"method": "wasserstein"}})
    assert got["features"]["x"]["drift_detected"] and got["features"]["x"]["score"] > 2
    json.dumps(detect_drift({"x": ref * 1e107}, {"x": cur * 1e107}), allow_nan=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": {"x": {"importance": float("inf")}}}, "importance"),
        ({"thresholds": {"ks": float("inf")}}, "thresholds"),
        ({"alpha": "0.05"}, "alpha"),
        ({"features": {"x": {"improtance": 2}}}, "did you mean 'importance'"),
        ({"features": {"x": {"type": "categorical", "method": "ks"}}}, "feature 'x'"),
    ],
)
def test_bad_options_are_value_errors_naming_the_field(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Reference.fit({"x": [1.0, 2.0, 3.0]}, **kwargs)


def test_numpy_numbers_are_valid_importances() -> None:
    got = Reference.fit({"x": [1.0, 2.0]}, features={"x": {"importance": np.float32(2)}})
    assert got.detect({"x": [1.0]})["features"]["x"]["importance"] == 2.0


def test_column_problems_name_the_column() -> None:
    with pytest.raises(ValueError, match="column 'r'"):
        detect_drift({"r": [[1, 2], [3]]}, {"r": [1]})
    with pytest.raises(ValueError, match="'1'"):
        detect_drift({1: [1.0], "1": [2.0]}, {"1": [1.0]})


def test_non_utf8_bytes_are_labels_not_a_crash() -> None:
    got = detect_drift({"b": np.array([b"\xff", b"b"] * 50)}, {"b": np.array([b"\xff", b"c"] * 50)})
    assert got["features"]["b"]["drift_detected"]


def test_numbers_written_as_text_are_numbers() -> None:
    rng = np.random.default_rng(4)
    values = rng.normal(size=2000).round(3)
    assert Reference.fit({"x": values.astype(str)}).features == {"x": "continuous"}
    got = detect_drift({"x": values[:1000].astype(str)}, {"x": values[1000:].astype(str)})["features"]["x"]
    assert not got["drift_detected"] and got["method"] == "ks"


def test_a_handful_of_rows_cannot_make_health_critical() -> None:
    rng = np.random.default_rng(5)
    result = detect_drift({"x": rng.normal(size=500)}, {"x": [40.0]})
    got = result["features"]["x"]
    assert "low-confidence" in got["reason"]
    assert result["overall_health"] == "warning"


def test_na_is_a_country_not_a_missing_value() -> None:
    got = detect_drift({"c": ["NA", "DE"] * 50}, {"c": ["NA", "DE"] * 50})["features"]["c"]
    assert got["missing_rate"] == 0.0 and got["details"]["n_categories_reference"] == 2


_NO_ROOM_FOR_THREADS = """
import json, resource, sys, threading
import numpy as np
from monitor_runtime.drift import Reference

def vm_size():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

rng = np.random.default_rng(11)
ref = {f"f{i}": rng.normal(size=60_000) for i in range(4)}
cur = {f"f{i}": rng.normal(0.02 * i, size=60_000) for i in range(4)}
# Room for the arrays, none for a thread's stack: as a runtime near its RLIMIT_AS is.
soft, hard = resource.getrlimit(resource.RLIMIT_AS)
threading.stack_size(512 << 20)
resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (256 << 20), hard))
try:
    threading.Thread(target=print).start()
except RuntimeError as exc:
    print("no thread:", exc, file=sys.stderr)
else:
    sys.exit("a thread started under the limit; the test would show nothing")
limited = Reference.fit(ref).detect(cur)
threads_limited = threading.active_count()
resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
threading.stack_size(0)
free = Reference.fit(ref).detect(cur)
print(json.dumps({"limited": limited, "free": free, "threads": [threads_limited, threading.active_count()]}))
"""


def test_a_process_with_no_room_for_a_thread_detects_on_its_own_thread() -> None:
    # A runtime near its RLIMIT_AS once failed every large evaluation with "can't start new thread" when
    # the engine's threads were first needed, instead of running on one thread until memory truly ran out.
    done = subprocess.run(
        [sys.executable, "-c", _NO_ROOM_FOR_THREADS], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "no thread: can't start new thread" in done.stderr
    got = json.loads(done.stdout)
    rng = np.random.default_rng(11)
    ref = {f"f{i}": rng.normal(size=60_000) for i in range(4)}
    cur = {f"f{i}": rng.normal(0.02 * i, size=60_000) for i in range(4)}
    expected = json.loads(json.dumps(Reference.fit(ref).detect(cur)))
    assert got["limited"] == expected and got["free"] == expected
    # One thread while none could start; the drift threads once the room is back.
    assert got["threads"][0] == 1 and got["threads"][1] > 1


def test_a_forked_child_detects_with_threads_of_its_own() -> None:
    # A pool inherited through fork has no threads in the child: work queued on it would never run.
    rng = np.random.default_rng(12)
    ref = {f"f{i}": rng.normal(size=60_000) for i in range(4)}
    cur = {f"f{i}": rng.normal(0.02 * i, size=60_000) for i in range(4)}
    prepared = Reference.fit(ref)
    expected = prepared.detect(cur)  # the parent's pool is running now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            os.write(write, json.dumps(prepared.detect(cur)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        with selectors.DefaultSelector() as selector:
            selector.register(pipe, selectors.EVENT_READ)
            ready = selector.select(timeout=60)
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        assert ready, "the forked child's detect never finished"
        got = json.loads(pipe.read())
    assert got == json.loads(json.dumps(expected))
