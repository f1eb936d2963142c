"""The audit-hook guard: refused while restricted, untouched outside, recorded even when swallowed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from monitor_runtime import guard


@pytest.fixture(autouse=True)
def _installed() -> None:
    # The hook stays registered for the rest of this worker process but only acts inside `restricted()`.
    guard.install()


def _refused(fn) -> guard.GuardViolation:
    before = guard.violation_count()
    with guard.restricted(), pytest.raises(guard.GuardViolation) as info:
        fn()
    assert guard.violation_count() == before + 1
    assert guard.violations_since(before) == [
        {"event": info.value.event, "detail": info.value.detail, "reason": info.value.reason}
    ]
    return info.value


def test_writing_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    exc = _refused(lambda: open(target, "w"))  # noqa: SIM115
    assert exc.event == "open" and "writing files" in exc.reason
    assert not target.exists()
    _refused(lambda: os.open(target, os.O_WRONLY | os.O_CREAT))


def test_reading_outside_the_allowed_roots_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    exc = _refused(lambda: secret.read_text())
    assert "reading files outside" in exc.reason and str(secret) in exc.detail


def test_reading_installed_packages_is_allowed() -> None:
    with guard.restricted():
        source = Path(np.__file__).read_text()
    assert "numpy" in source


def test_socket_subprocess_system_and_ctypes_are_refused() -> None:
    assert _refused(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM)).event.startswith("socket.")
    assert _refused(lambda: subprocess.run(["true"], check=False)).event == "subprocess.Popen"
    assert _refused(lambda: os.system("true")).event == "os.system"
    assert _refused(lambda: ctypes.CDLL(None)).event.startswith("ctypes.")


def test_imports_outside_the_allow_list_are_refused() -> None:
    module = "wave"
    if module in sys.modules:
        pytest.skip(f"{module} already imported in this process; no import event would fire")
    exc = _refused(lambda: __import__(module))
    assert exc.event == "import" and "'wave'" in exc.reason


def test_swallowed_refusals_are_still_recorded(tmp_path: Path) -> None:
    before = guard.violation_count()
    with guard.restricted(), contextlib.suppress(Exception):
        open(tmp_path / "x", "w")  # noqa: SIM115
    recorded = guard.violations_since(before)
    assert len(recorded) == 1 and recorded[0]["event"] == "open"


def test_statistics_work_under_the_guard() -> None:
    rng = np.random.default_rng(0)
    with guard.restricted():
        p = stats.ks_2samp(rng.normal(size=500), rng.normal(1.0, 1.0, size=500)).pvalue
    assert p < 1e-6


def test_outside_restriction_nothing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "free.txt").write_text("ok")
    assert (tmp_path / "free.txt").read_text() == "ok"
    assert not guard.is_restricted()


def test_restriction_is_per_thread() -> None:
    entered, release = threading.Event(), threading.Event()

    def restricted_worker() -> None:
        with guard.restricted():
            entered.set()
            release.wait(10)

    worker = threading.Thread(target=restricted_worker)
    worker.start()
    try:
        assert entered.wait(10)
        assert not guard.is_restricted()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # this thread keeps its network
        sock.close()
    finally:
        release.set()
        worker.join(10)


def test_restricted_code_cannot_loosen_the_policy() -> None:
    exc = _refused(lambda: guard.install(read_roots=["/"]))
    assert "may not change the guard policy" in exc.reason


def test_activate_restricts_the_whole_process(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import socket
        from monitor_runtime import guard
        guard.activate()
        results = []
        for attempt in (lambda: open({str(tmp_path / "w.txt")!r}, "w"), lambda: socket.socket()):
            try:
                attempt()
                results.append("allowed")
            except guard.GuardViolation as exc:
                results.append(exc.event)
        print(",".join(results))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "open,socket.__new__"
    assert not (tmp_path / "w.txt").exists()


def test_policy_paths_and_modules() -> None:
    policy = guard.GuardPolicy(read_roots=("/opt/lib",), import_allow=("numpy",))
    assert policy.may_read("/opt/lib/x.py") and policy.may_read("/opt/lib")
    assert not policy.may_read("/opt/library/x.py")
    assert policy.may_import("numpy.linalg") and not policy.may_import("numpyx")


def test_restricted_code_cannot_switch_off_the_guard(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    legacy = ("_policy", "_process_wide", "_hook")
    try:
        with guard.restricted():
            module = sys.modules["monitor_runtime.guard"]
            with pytest.raises(AttributeError, match="read-only"):
                module._policy = None  # what used to make the hook return early
            with pytest.raises(AttributeError, match="read-only"):
                del module.restricted
            # Around the read-only module: its namespace holds nothing the hook reads.
            vars(module).update(dict.fromkeys(legacy))
            with pytest.raises(guard.GuardViolation):
                open(target, "w")  # noqa: SIM115
    finally:
        for name in legacy:
            vars(guard).pop(name, None)
    assert not target.exists()


def test_a_fresh_context_or_a_rebound_policy_method_is_still_restricted(tmp_path: Path) -> None:
    import contextvars

    secret = tmp_path / "secret.txt"
    secret.write_text("token")
    original = guard.GuardPolicy.may_read
    try:
        with guard.restricted():
            # An empty context used to reset the restriction, which lived in a context variable.
            with pytest.raises(guard.GuardViolation):
                contextvars.Context().run(secret.read_text)
            guard.GuardPolicy.may_read = lambda self, path: True  # type: ignore[method-assign]
            with pytest.raises(guard.GuardViolation):
                secret.read_text()
    finally:
        guard.GuardPolicy.may_read = original  # type: ignore[method-assign]


def test_the_runtime_host_keeps_the_guard_on_against_monitor_code(tmp_path: Path) -> None:
    from monitor_runtime.server.guarding import guard_factory
    from monitor_runtime.server.host import MonitorHost

    target = tmp_path / "escaped.txt"

    class Hostile:
        def detect_drift(self) -> str:
            module = sys.modules["monitor_runtime.guard"]
            with contextlib.suppress(AttributeError):
                module._policy = None
            with open(target, "w") as handle:
                handle.write("escaped")
            return "wrote"

    host = MonitorHost(Hostile(), guard=guard_factory())
    try:
        with pytest.raises(guard.GuardViolation, match="writing files is not allowed"):
            host.call_blocking("detect_drift")
    finally:
        host.close()
    assert not target.exists()
    assert not guard.is_restricted()  # the worker thread's restriction did not leak to this one
