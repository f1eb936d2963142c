"""Code that attacks enforce itself: forged results, a switched-off guard, stray processes, output floods.

Most samples call `run_sandbox` directly, past the static policy (which rejects all of them; the last test
shows it): the sandbox must hold on its own.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from poet_operator.poet.enforce import enforce_code
from poet_operator.poet.enforce.policy import check_code
from poet_operator.poet.enforce.sandbox import (
    INTEGRITY_CHECK,
    SandboxLimits,
    SandboxOutcome,
    _collect,
    _pump,
    expected_checks,
    isolated_command,
    pid_namespace_support,
    run_sandbox,
)
from poet_operator.poet.enforce.scenarios import build_scenarios
from poet_operator.spec import MonitorSpec

SPEC = MonitorSpec(model="churn", predictions={"task": "classification"})
FAST = SandboxLimits(cpu_seconds=20, wall_seconds=60, memory_bytes=1 << 30)

STUB = textwrap.dedent(
    """

    class Monitor:
        def __init__(self, spec, toolkit):
            self.spec = spec

        def detect_drift(self, current):
            return {}

        def monitor_features(self, batch):
            return {}

        def monitor_predictions(self, predictions, actuals):
            return {}

        def update_reference_window(self, new_data):
            pass

        def state(self):
            return {}

        def restore(self, state):
            pass
    """
)

# Writes a plausible "done" record (and, in `forge_all`, a passing check for every expected name) to every
# descriptor that might be the result channel, then leaves without a trace.
FORGE = """
import dataclasses

CONTRACT = 1
_os = dataclasses.sys.modules["os"]
for _fd in range(3, 30):
    try:
        _os.write(_fd, LINES)
    except OSError:
        pass
_os._exit(0)
"""


def _forge_lines(names: list[str]) -> bytes:
    records = [{"kind": "ready", "guard": True}]
    records += [{"kind": "check", "name": n, "passed": True, "seconds": 0.0, "evidence": []} for n in names]
    records.append({"kind": "done", "guard_violations": [], "stopped": None})
    return b"\n" + "".join(json.dumps(r) + "\n" for r in records).encode()


def _sandbox(code: str, scenarios: list | None = None, **kwargs: object) -> SandboxOutcome:
    return run_sandbox(code, SPEC.to_dict(), scenarios or [], limits=kwargs.pop("limits", FAST), **kwargs)


def _integrity(outcome: SandboxOutcome) -> str:
    return "\n".join(e for c in outcome.checks if c.name == INTEGRITY_CHECK for e in c.evidence)


@pytest.mark.parametrize("forge_all", [False, True], ids=["done-only", "every-check"])
def test_forged_results_and_an_early_exit_fail(forge_all: bool) -> None:
    scenarios = build_scenarios(SPEC.to_dict())[:2]
    names = [name for name, _, _ in expected_checks(scenarios)] if forge_all else []
    code = FORGE.replace("LINES", repr(_forge_lines(names))) + STUB
    outcome = _sandbox(code, scenarios)
    assert not all(c.passed for c in outcome.checks)
    assert "without this run's token" in _integrity(outcome)
    assert not any(c.passed for c in outcome.checks if c.name in names)  # no forged verdict is believed


def test_a_complete_looking_run_with_missing_checks_fails() -> None:
    # The parent's bookkeeping on its own: a run that ends cleanly but skipped checks without a failure.
    scenarios = build_scenarios(SPEC.to_dict())[:2]
    expected = expected_checks(scenarios)
    token = secrets.token_hex(8)

    def stream(names: list[str]) -> bytes:
        lines = [{"kind": "check", "name": n, "passed": True, "token": token} for n in names]
        lines.append({"kind": "done", "guard_violations": [], "token": token})
        return "".join(json.dumps(r) + "\n" for r in lines).encode()

    def collect(names: list[str]) -> SandboxOutcome:
        outcome = SandboxOutcome(returncode=0)
        _collect(outcome, stream(names), "", timed_out=False, limits=FAST, token=token, expected=expected)
        return outcome

    everything = [name for name, _, _ in expected]
    assert all(c.passed for c in collect(everything).checks)
    assert not collect([]).checks[-1].passed  # an empty result is a failure, not a pass
    assert "were never reported: import" in _integrity(collect([]))
    skipped = collect(everything[:-1])
    assert f"1 of {len(expected)} expected checks were never reported: {everything[-1]}" in _integrity(
        skipped
    )
    assert "reported more than once" in _integrity(collect([*everything, "import"]))
    assert "never asked for" in _integrity(collect([*everything, "bonus"]))


def test_switching_off_the_guard_fails_and_changes_nothing(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    marker = tmp_path / "escaped.txt"
    stealth = textwrap.dedent(
        f"""
        import dataclasses

        CONTRACT = 1
        _mods = dataclasses.sys.modules
        _guard = _mods["monitor_runtime.guard"]
        try:
            _guard._policy = None  # what used to switch the hook off
        except AttributeError:
            pass
        # Around the read-only module: write the old global names straight into its namespace.
        vars(_guard).update(_policy=None, _process_wide=False, _hook=None, restricted=None)
        _os = _mods["os"]
        for _attempt in (
            lambda: _os.remove({str(victim)!r}),
            lambda: _os.system("touch {marker}"),
            lambda: _mods["builtins"].open({str(marker)!r}, "w"),
        ):
            try:
                _attempt()
            except PermissionError:
                pass
        """
    )
    outcome = _sandbox(stealth + STUB, network_isolation=False)
    assert victim.read_text() == "keep me" and not marker.exists()
    assert [v["event"] for v in outcome.guard_violations] == ["os.remove", "os.system", "open"]
    assert outcome.checks[0].name == "import" and not outcome.checks[0].passed


def test_output_floods_are_cut_off_without_buffering_them() -> None:
    flood = textwrap.dedent(
        """
        import dataclasses

        CONTRACT = 1
        _os = dataclasses.sys.modules["os"]
        _chunk = b"x" * (1 << 20)
        for _i in range(600):
            _os.write(2, _chunk)
        """
    )
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = _sandbox(flood + STUB)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert outcome.termination == "output_limit"
    failed = [c for c in outcome.checks if not c.passed]
    assert "stderr passed 4194304 bytes" in failed[0].evidence[0]
    assert len(outcome.stderr_tail) <= 4000
    assert grown_mib < 64, f"the parent grew by {grown_mib:.0f} MiB reading the flood"


def test_the_result_channel_is_capped_too() -> None:
    good = (Path(__file__).parent / "enforce_samples" / "good_monitor.py").read_text()
    tiny = SandboxLimits(cpu_seconds=20, wall_seconds=60, memory_bytes=1 << 30, result_bytes=64)
    outcome = _sandbox(good, build_scenarios(SPEC.to_dict())[:1], limits=tiny)
    assert outcome.termination == "output_limit"
    assert any("the result channel passed 64 bytes" in e for c in outcome.checks for e in c.evidence)


def _running(marker: str) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    return True
            except OSError:
                continue
    return False


def _gone_soon(marker: str, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(marker):
            return True
        time.sleep(0.05)  # polling /proc with a deadline; nothing to wait on
    return False


def test_the_process_group_is_killed_after_a_normal_exit() -> None:
    marker = f"{300 + secrets.randbelow(10_000) / 1000:.3f}"
    proc = subprocess.Popen(
        ["sh", "-c", f"sleep {marker} >/dev/null 2>&1 </dev/null & exit 0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    streams, timed_out = _pump(proc, b"", FAST)
    assert proc.returncode == 0 and not timed_out and not streams.overflow
    assert _gone_soon(marker), "a background process of the sandbox outlived it"


def test_a_pid_namespace_ends_processes_that_left_the_group() -> None:
    available, note = pid_namespace_support()
    if not available:
        pytest.skip(note)
    marker = f"{300 + secrets.randbelow(10_000) / 1000:.3f}"
    command = isolated_command(
        ["sh", "-c", f"setsid sleep {marker} >/dev/null 2>&1 </dev/null & exit 0"], network=False, pids=True
    )
    subprocess.run(command, check=True, timeout=30, start_new_session=True)
    assert _gone_soon(marker), "a process that called setsid outlived the sandbox"


def test_signals_keep_their_meaning_inside_a_pid_namespace() -> None:
    available, note = pid_namespace_support()
    if not available:
        pytest.skip(note)
    script = "import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1, 3))\nwhile True:\n    pass\n"
    code = isolated_command([sys.executable, "-c", script], network=False, pids=True)
    proc = subprocess.run(code, capture_output=True, timeout=30, check=False)
    assert proc.returncode == 128 + 24  # SIGXCPU through the init shell; run_sandbox maps it to -24


def test_the_process_limit_and_isolation_are_reported() -> None:
    outcome = _sandbox("CONTRACT = 1\n" + STUB)
    summary = outcome.summary()
    assert summary["pidIsolation"] is pid_namespace_support()[0]
    assert "RLIMIT_NPROC" in summary["processLimit"]
    if os.getuid() != 0:
        assert summary["processLimit"] == "RLIMIT_NPROC=0: no new processes or threads"


def test_the_static_policy_rejects_every_sample_here() -> None:
    samples = [FORGE.replace("LINES", "b''") + STUB]
    for code in samples:
        assert {v.rule for v in check_code(code)} >= {"private-attribute"}
    report = enforce_code(samples[0], SPEC, limits=FAST)
    assert not report.passed and report.sandbox["termination"].startswith("not run")
