"""The warm sandbox: runs forked from one long-lived copy of the sandbox script, and the fresh form beside it.

Every other sandbox test runs through the warm form (the default); these show what is particular to it:
the runs really are forked from one zygote, a dead zygote is replaced, a stray process in its PID namespace
is ended once no run is in flight, the zygote ends with the process that started it, and the fresh form
(`POET_SANDBOX=fresh`) still holds the same limits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from poet_operator.poet.enforce.sandbox import (
    SandboxLimits,
    ZygoteError,
    _ForkedChild,
    _shared_zygote,
    _Zygote,
    network_namespace_support,
    pid_namespace_support,
    run_sandbox,
)
from poet_operator.poet.enforce.scenarios import build_scenarios
from poet_operator.spec import MonitorSpec

from tests.poet.test_enforce_escapes import _running

GOOD = (Path(__file__).parent / "enforce_samples" / "good_monitor.py").read_text()
SPEC = MonitorSpec(model="churn", predictions={"task": "classification"})
FAST = SandboxLimits(cpu_seconds=20, wall_seconds=60, memory_bytes=1 << 30)
WARM = "forked from the warm sandbox"
REPO = Path(__file__).resolve().parents[2]


def _run(code: str = GOOD, limits: SandboxLimits = FAST):
    return run_sandbox(code, SPEC.to_dict(), build_scenarios(SPEC.to_dict())[:2], limits=limits)


def _the_zygote():
    return _shared_zygote(network=network_namespace_support()[0], pids=pid_namespace_support()[0])


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _gone_soon(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # polling /proc with a deadline; nothing to wait on
    return False


def test_runs_are_forked_from_one_zygote_and_pass_as_fresh_ones_do() -> None:
    first = _run()
    zygote = _the_zygote()._proc
    second = _run()
    assert WARM in first.isolation_note and WARM in second.isolation_note
    assert _the_zygote()._proc is zygote and zygote.poll() is None  # the same process served both
    for outcome in (first, second):
        assert outcome.termination == "completed" and outcome.returncode == 0
        assert outcome.checks and all(c.passed for c in outcome.checks), outcome.checks
        assert "RLIMIT_NPROC" in outcome.process_limit


def _status_child() -> tuple[_ForkedChild, socket.socket]:
    """A forked child's status socket as the operator holds it, and the zygote's end of it."""
    ours, theirs = socket.socketpair()
    pipes = [open(os.devnull, mode) for mode in ("wb", "rb", "rb")]  # noqa: SIM115 (closed by the child)
    return _ForkedChild(ours, *pipes), theirs


def test_a_pid_that_came_before_the_wait_ends_it_at_once() -> None:
    # Under load the zygote answers before the operator first looks. The wait once took the pid in with a
    # non-blocking read (checking for an exit), then blocked on the socket until its 30 s deadline anyway:
    # a 3 s run took 33 s.
    for already_read in (False, True):
        child, zygote = _status_child()
        with zygote:
            zygote.sendall(b'{"pid": 7}\n')
            if already_read:
                assert not child.exited() and child.pid == 7
            started = time.monotonic()
            assert child.wait_for_pid(30) and child.pid == 7
            assert time.monotonic() - started < 5
        child.close()


def test_the_wait_for_a_pid_ends_with_the_zygote_or_the_deadline() -> None:
    child, zygote = _status_child()
    zygote.sendall(b'{"pi')  # half a line is not a pid
    zygote.close()
    started = time.monotonic()
    assert not child.wait_for_pid(30) and child.exited()
    assert time.monotonic() - started < 5
    child.close()
    child, zygote = _status_child()
    with zygote:
        started = time.monotonic()
        assert not child.wait_for_pid(0.3)
        assert 0.3 <= time.monotonic() - started < 5
    child.close()


def test_a_dead_zygote_is_started_again() -> None:
    _run()
    old = _the_zygote()._proc
    os.killpg(old.pid, signal.SIGKILL)
    old.wait()
    outcome = _run()
    assert WARM in outcome.isolation_note
    assert outcome.termination == "completed" and all(c.passed for c in outcome.checks)
    assert _the_zygote()._proc is not old


def test_the_limits_hold_in_a_forked_run() -> None:
    looping = GOOD.replace("CONTRACT = 1", "CONTRACT = 1\nwhile True:\n    pass", 1)
    outcome = _run(looping, SandboxLimits(cpu_seconds=3, wall_seconds=30, memory_bytes=1 << 30))
    assert WARM in outcome.isolation_note
    assert outcome.termination == "cpu_limit" and outcome.returncode == -signal.SIGXCPU
    sleeper = GOOD.replace("CONTRACT = 1", "CONTRACT = 1\nimport time\ntime.sleep(60)", 1)
    outcome = _run(sleeper, SandboxLimits(cpu_seconds=30, wall_seconds=3, memory_bytes=1 << 30))
    assert outcome.termination == "wall_timeout" and outcome.seconds < 20
    # The zygote killed the run and stays up for the next one.
    assert _run().termination == "completed"


@pytest.mark.skipif(
    not pid_namespace_support()[0] or os.geteuid() != 0 or shutil.which("nsenter") is None,
    reason="needs a PID namespace and root to place a process in it (nsenter)",
)
def test_a_process_left_in_the_zygotes_namespace_is_ended_after_the_next_run() -> None:
    _run()
    unshare = _the_zygote()._proc.pid
    init = _children(unshare)[0]  # the namespace's init shell; the zygote is its child
    marker = f"{300 + secrets.randbelow(10_000) / 1000:.3f}"
    # A process in the namespace outside any run's group, as one that called setsid would be.
    subprocess.run(
        ["nsenter", "--target", str(init), "--pid", "--", "sh", "-c", f"setsid sleep {marker} &"],
        check=True,
        timeout=30,
    )
    assert _gone_soon(lambda: _running(marker), 5)
    assert _run().termination == "completed"
    assert _gone_soon(lambda: not _running(marker)), "a stray process outlived the next run"


def test_the_zygote_ends_with_the_process_that_started_it() -> None:
    script = (
        "import sys\n"
        f"sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'operator')!r}]\n"
        "from tests.poet.test_enforce_warm_sandbox import _run, _the_zygote\n"
        "assert _run().termination == 'completed'\n"
        "print(_the_zygote()._proc.pid)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    unshare = int(done.stdout.split()[-1])
    assert _gone_soon(lambda: not _alive(unshare), 15), "the zygote outlived the process that started it"


def test_the_fresh_form_holds_the_same_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POET_SANDBOX", "fresh")
    outcome = _run()
    assert WARM not in outcome.isolation_note
    assert outcome.termination == "completed" and all(c.passed for c in outcome.checks)
    looping = GOOD.replace("CONTRACT = 1", "CONTRACT = 1\nwhile True:\n    pass", 1)
    outcome = _run(looping, SandboxLimits(cpu_seconds=3, wall_seconds=30, memory_bytes=1 << 30))
    assert outcome.termination == "cpu_limit" and outcome.returncode == -signal.SIGXCPU


def test_a_zygote_that_cannot_start_is_not_tried_again_for_a_while(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("import sys\nsys.exit('cannot start here')\n")
    zygote = _Zygote(network=False, pids=False, script=broken)
    with pytest.raises(ZygoteError, match="did not start: cannot start here"):
        zygote.launch(FAST, str(tmp_path))
    with pytest.raises(ZygoteError, match="cannot start here"):
        zygote.launch(FAST, str(tmp_path))
    assert zygote._proc is None  # not started again: the remembered failure answered
