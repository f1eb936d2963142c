"""`poetmon dev` end to end on small data: real `poetmon dev` and `poetmon serve` processes, a real memory
limit, real kills. Nothing here tells a process to crash: version 1 dies because its exact 300,000-row
window of mostly distinct merchant ids does not fit in the limit (killed by the kernel in a cgroup, or
failing on its own under RLIMIT_AS, as an unprivileged user), and the canary of the second test dies
because the test SIGKILLs it, as the kernel or a person might."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from poet_operator.local.cage import make_cage, parse_memory, systemd_scope_parent

from monitor_runtime.server.history import decode_history_file
from tests.tools.payments import make_payments_data

REPO = Path(__file__).resolve().parents[2]
# Measured without a limit: version 1 (its exact 300,000-row window) peaks at 320-354 MB anonymous memory
# and grows its address space by 267-336 MB after loading; version 2 (150,000 rows, reservoir) peaks at
# 239-245 MB and grows by 129-133 MB. The runtime loads with about 92 MB anonymous, so RLIMIT_AS leaves
# about 193 MB of room. At half this scale version 1 peaked within 20 MB of the limit and sometimes fit.
LIMIT = "285M"

SPEC = """\
apiVersion: poet.dev/v1alpha1
kind: ModelMonitor
metadata: {name: small}
spec:
  model: payments-fraud
  window: {strategy: sliding, size: 300000, step: 50000, storage: exact}
  reference: {source: uploaded}
  features:
    - {name: amount, type: continuous, importance: 3.0}
    - {name: merchant_id, type: categorical}
    - {name: country, type: categorical, importance: 2.0}
  rollout:
    canaryAnalysisSeconds: %(analysis)d
    restartTolerance: %(tolerance)d
    regenerationBudget: 1
    regenerationBackoffSeconds: 1
"""


def _cgroup_available() -> bool:
    cage = make_cage(parse_memory("256M"), f"poetmon-test-probe-{os.getpid()}")
    cage.close()
    return cage.mechanism != "rlimit"


needs_cgroup = pytest.mark.skipif(
    not _cgroup_available(), reason="no memory cgroup can be made here (needs root and a memory controller)"
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_payments_data(tmp_path_factory.mktemp("payments"), burst=400_000, trickle=10_000)


@pytest.fixture(scope="module")
def data_with_a_tail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same burst, then a long quiet period: traffic goes on after the promotion, however slowly the
    canary came up (the run stops once the promoted version has evaluated, `--until healed`)."""
    return make_payments_data(tmp_path_factory.mktemp("payments-tail"), burst=400_000, trickle=150_000)


def _dev(
    tmp_path: Path,
    data: Path,
    *,
    analysis: int,
    tolerance: int,
    prefix: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % {"analysis": analysis, "tolerance": tolerance})
    return subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-m",
            "poet_operator.cli",
            "dev",
            "-f",
            str(spec),
            "--data",
            str(data / "stream.csv"),
            "--reference",
            str(data / "reference.csv"),
            "--memory-limit",
            LIMIT,
            "--speed",
            "50",
            "--workdir",
            str(tmp_path / "work"),
            "--max-seconds",
            "400",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )


def _version_states(work: Path) -> dict[int, str]:
    status = json.loads((work / "status.json").read_text())
    return {v["number"]: v["state"] for v in status["versions"]}


@needs_cgroup
def test_oom_killed_version_is_regenerated_with_bounded_memory_and_promoted(
    tmp_path: Path, data: Path
) -> None:
    dev = _dev(tmp_path, data, analysis=3, tolerance=1)
    out, _ = dev.communicate(timeout=480)
    assert dev.returncode == 0, out
    work = tmp_path / "work"
    # The kernel killed version 1 in its cgroup, and that is what the timeline and the status say.
    assert "stable v1 (small-stable-v1-1) out of memory: reason OOMKilled, exit code 137" in out
    status = json.loads((work / "status.json").read_text())
    assert status["lastFailure"]["reason"] == "OOMKilled" and status["lastFailure"]["version"] == 1
    # Version 2 answers it with the documented remedy, was enforced, ran as a canary and was promoted.
    assert _version_states(work) == {1: "superseded", 2: "promoted"}
    v2 = next(v for v in status["versions"] if v["number"] == 2)
    assert v2["reason"] == "crash-feedback" and v2["feedbackAnswered"] == ["OOMKilled"]
    assert v2["remedies"] == ["OOMKilled:bounded_memory"]
    assert "POET wrote version 2 (template): bounded_memory for OOMKilled (window 300000 -> 150000" in out
    assert "reservoir storage); enforce passed" in out
    assert "CanaryStarted: version 2" in out and "Promoted: version 2 promoted to stable" in out
    v1_code = (work / "versions" / "v1" / "monitor.py").read_text()
    v2_code = (work / "versions" / "v2" / "monitor.py").read_text()
    assert "'storage': 'exact'" in v1_code and "'size': 300000" in v1_code
    assert "'storage': 'reservoir'" in v2_code and "'size': 150000" in v2_code
    assert "+    'storage': 'reservoir'," in out  # the diff shown at the end
    lessons = json.loads((work / "lessons.json").read_text())
    assert [(x["signature"], x["remedy"]) for x in lessons["lessons"]] == [("OOMKilled", "bounded_memory")]
    assert (work / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    # The order of the timeline: crash, feedback, generation, canary, promotion.
    order = [
        out.index("reason OOMKilled"),
        out.index("Generating: generating version 2 (crash-feedback), answering OOMKilled"),
        out.index("CanaryStarted"),
        out.index("Promoted"),
        out.index("RESULT  phase Running, stable version 2"),
    ]
    assert order == sorted(order)


@needs_cgroup
def test_the_promoted_version_reports_the_history_of_the_version_before_it(
    tmp_path: Path, data_with_a_tail: Path
) -> None:
    """In a cluster each version is a new pod with its own checkpoint; `poetmon dev` plays it the same way:
    the canary process is handed the stable process's history, and the promoted version's report draws
    version 1's evaluations and its own, with the change marked."""
    dev = _dev(tmp_path, data_with_a_tail, analysis=3, tolerance=1, extra=("--until", "healed"))
    out, _ = dev.communicate(timeout=480)
    assert dev.returncode == 0, out
    work = tmp_path / "work"
    assert _version_states(work) == {1: "superseded", 2: "promoted"}
    report = json.loads((work / "report.json").read_text())
    assert report["version"]["version"] == 2
    versions = report["history"]["versions"]
    assert {"1", "2"} <= set(versions), report["history"]
    # Version 1 evaluated before the kernel killed it; its evaluations outlived the kill and the version.
    assert versions["1"]["newest_at"] < versions["2"]["newest_at"]
    html = (work / "report.html").read_text()
    assert ">v2</text>" in html and "version change marked" in html
    # Kept once at the promotion, for processes started later (a cluster's NAME-history ConfigMap): what the
    # canary held then, version 1's evaluations at least.
    assert (work / "history-version").read_text().strip() == "2"
    kept = decode_history_file((work / "history.json.gz").read_bytes(), max_bytes=1 << 26)
    assert 1 in {e["version"] for e in kept}


@needs_cgroup
def test_a_canary_that_dies_is_rolled_back_and_the_stable_version_keeps_serving(
    tmp_path: Path, data: Path
) -> None:
    dev = _dev(tmp_path, data, analysis=120, tolerance=0)
    work = tmp_path / "work"
    killed: int | None = None
    deadline = time.monotonic() + 400
    try:
        while killed is None and time.monotonic() < deadline and dev.poll() is None:
            for pid_file in (work / "pods").glob("small-canary-v2-*/pid"):
                pid = int(pid_file.read_text())
                time.sleep(1.0)  # let it come up a little; it dies either way
                os.kill(pid, signal.SIGKILL)
                killed = pid
            time.sleep(0.2)
        out, _ = dev.communicate(timeout=400)
    finally:
        if dev.poll() is None:
            dev.kill()
    assert killed is not None, "no canary process appeared"
    assert dev.returncode == 1, out  # not healed: the monitor needs a person now
    assert "canary v2 (small-canary-v2-2) crashed: reason Error, exit code 137" in out
    assert "RolledBack: canary version 2 rolled back" in out
    assert "stable version 1 keeps serving" in out
    assert _version_states(work) == {1: "stable", 2: "rolled-back"}
    status = json.loads((work / "status.json").read_text())
    assert status["stableVersion"] == 1 and status.get("canaryVersion") is None
    assert status["phase"] == "Degraded"
    assert status["conditions"][-1]["reason"] == "RegenerationBudgetSpent"
    # Version 1 still answers: its report is the final one.
    report = json.loads((work / "report.json").read_text())
    assert report["version"]["version"] == 1


NOBODY = 65534


def _runs_as(prefix: tuple[str, ...]) -> bool:
    """True when this interpreter, with this tree, can be run through `prefix`, and can start itself again
    from there (as `poetmon dev` starts its runtimes and sandboxes)."""
    probe = "import subprocess as s, sys; sys.exit(s.call([sys.executable, '-c', 'import poet_operator']))"
    done = subprocess.run([*prefix, sys.executable, "-c", probe], capture_output=True)
    return done.returncode == 0


def _runtime_log_tails(work: Path, chars: int = 4000) -> str:
    """The end of every runtime process's log under `work`, for a failure message."""
    return "".join(
        f"\n--- {log.relative_to(work)} (tail)\n{log.read_text(errors='replace')[-chars:]}"
        for log in sorted(work.rglob("runtime.log"))
    )


@pytest.fixture
def unprivileged_dir(data: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A directory an unprivileged user owns, holding the data, and the prefix that runs a command as that
    user: as root, `nobody` through `setpriv` (so no cgroup can be made); otherwise this user, as is."""
    home = Path(tempfile.mkdtemp(prefix="poetmon-dev-unprivileged-"))
    try:
        for name in ("stream.csv", "reference.csv"):
            shutil.copy(data / name, home / name)
        prefix: tuple[str, ...] = ()
        drop = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--")
        if os.geteuid() == 0 and shutil.which("setpriv") and _runs_as(drop):
            for path in (home, *home.iterdir()):
                os.chown(path, NOBODY, NOBODY)
            prefix = drop
        # Otherwise (root with an interpreter `nobody` cannot run, e.g. under /root) the run stays this
        # user's; `--memory-cage rlimit` still forces the path an unprivileged user gets.
        yield home, prefix
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_without_a_cgroup_version_1_fails_on_its_own_and_the_bounded_memory_version_is_promoted(
    unprivileged_dir: tuple[Path, tuple[str, ...]],
) -> None:
    home, prefix = unprivileged_dir
    dev = _dev(home, home, analysis=3, tolerance=1, prefix=prefix, extra=("--memory-cage", "rlimit"))
    out, _ = dev.communicate(timeout=480)
    assert dev.returncode == 0, out
    work = home / "work"
    if prefix:
        assert (work / "status.json").stat().st_uid == NOBODY  # it really ran as nobody
    assert "memory limit 285M (RLIMIT_AS over the loaded size) per process" in out
    assert "as asked: RLIMIT_AS caps what each process allocates" in out
    # Nothing killed version 1: an allocation failed inside it, and the runtime ended itself as out of
    # memory (exit status 3, its record's reason OOMKilled), which reads exactly as the kernel's kill.
    assert "stable v1 (small-stable-v1-1) out of memory: reason OOMKilled, exit code 3" in out, (
        out + _runtime_log_tails(work)
    )
    status = json.loads((work / "status.json").read_text())
    failure = status["lastFailure"]
    assert failure["reason"] == "OOMKilled" and failure["version"] == 1 and failure["exitCode"] == 3
    assert failure["signature"] == "OOMKilled" and failure["message"].startswith("out of memory: ")
    # The same remedy as for the kernel's kill, enforced, run as a canary and promoted.
    assert _version_states(work) == {1: "superseded", 2: "promoted"}
    v2 = next(v for v in status["versions"] if v["number"] == 2)
    assert v2["feedbackAnswered"] == ["OOMKilled"] and v2["remedies"] == ["OOMKilled:bounded_memory"]
    assert "bounded_memory for OOMKilled (window 300000 -> 150000 rows, reservoir storage)" in out
    v2_code = (work / "versions" / "v2" / "monitor.py").read_text()
    assert "'storage': 'reservoir'" in v2_code and "'size': 150000" in v2_code
    order = [
        out.index("reason OOMKilled, exit code 3"),
        out.index("Generating: generating version 2 (crash-feedback), answering OOMKilled"),
        out.index("CanaryStarted: version 2"),
        out.index("Promoted: version 2 promoted to stable"),
        out.index("RESULT  phase Running, stable version 2"),
    ]
    assert order == sorted(order)


def test_bad_input_is_refused_with_a_message_naming_it(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC % {"analysis": 3, "tolerance": 1})
    stream = tmp_path / "stream.csv"
    stream.write_text("timestamp,amount\n1,2.0\nnot-a-time,3.0\n")
    cases = [
        (["--data", str(tmp_path / "missing.csv")], "missing.csv: cannot read it"),
        (["--data", str(stream)], "stream.csv: row 2: timestamp 'not-a-time'"),
        (["--data", str(stream), "--memory-limit", "lots"], "memory limit 'lots'"),
    ]
    if systemd_scope_parent()[0] is None:  # a cage asked for and not to be had here
        cases.append(
            (
                ["--data", str(stream), "--memory-limit", "300M", "--memory-cage", "systemd"],
                "no systemd user scope with a memory limit here: ",
            )
        )
    for extra, message in cases:
        done = subprocess.run(
            [sys.executable, "-m", "poet_operator.cli", "dev", "-f", str(spec), *extra],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )
        assert done.returncode == 2 and message in done.stderr, (extra, done.stderr)
    assert not (tmp_path / ".poetmon-dev").exists()  # nothing started, nothing written
