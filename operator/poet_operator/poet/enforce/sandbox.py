"""Run generated code in a separate, limited process: the operator process never imports generated code.

The child (`sandbox_child.py`) runs as `python -I -B` with an empty environment, an empty working directory,
CPU-time, address-space and file-size rlimits, a wall-clock timeout enforced here, the audit-hook guard
active before the generated module is imported, and, where the kernel allows it, a fresh network namespace
(`unshare -n`). Results come back as JSON lines on the child's stdout.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poet_operator.poet.enforce.report import Check
from poet_operator.poet.enforce.scenarios import Scenario

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
MAX_STDERR_TAIL = 4000


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox run (the whole scenario set shares them)."""

    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    memory_bytes: int = 2 << 30

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the child reads from argv)."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "memory_bytes": self.memory_bytes,
        }


@dataclass
class SandboxOutcome:
    """What the child reported, and how it ended."""

    checks: list[Check] = field(default_factory=list)
    guard_violations: list[dict[str, Any]] = field(default_factory=list)
    termination: str = "completed"  # completed | cpu_limit | wall_timeout | memory_limit | killed | crashed
    returncode: int | None = None
    network_isolation: bool = False
    isolation_note: str = ""
    stderr_tail: str = ""
    seconds: float = 0.0
    limits: Mapping[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The `sandbox` section of the enforce report."""
        return {
            "termination": self.termination,
            "returncode": self.returncode,
            "networkIsolation": self.network_isolation,
            "isolationNote": self.isolation_note,
            "limits": dict(self.limits),
            "stderrTail": self.stderr_tail,
        }


@functools.lru_cache(maxsize=1)
def network_namespace_support() -> tuple[bool, str]:
    """Whether `unshare -n` works here (tried once per process) and why not when it does not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return False, "unshare not found; the audit hook still refuses sockets"
    try:
        probe = subprocess.run([unshare, "-n", "--", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"unshare -n failed to start ({exc}); the audit hook still refuses sockets"
    if probe.returncode != 0:
        reason = probe.stderr.decode("utf-8", errors="replace").strip() or f"exit {probe.returncode}"
        return False, f"unshare -n is not permitted here ({reason}); the audit hook still refuses sockets"
    return True, "fresh network namespace (unshare -n)"


def _child_env() -> dict[str, str]:
    # One BLAS thread keeps the address space small and the CPU limit meaningful.
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_sandbox(
    code: str,
    spec: Mapping[str, Any],
    scenarios: Sequence[Scenario],
    *,
    limits: SandboxLimits | None = None,
    toolkit: str = "monitor_runtime.toolkit",
    network_isolation: bool | None = None,
) -> SandboxOutcome:
    """Run `code` against `scenarios` in a limited child process; never raises for anything the code does.

    `network_isolation=None` uses a network namespace when available; False forces it off (tests use this to
    show the audit hook alone refuses sockets).
    """
    limits = limits or SandboxLimits()
    available, note = network_namespace_support()
    use_netns = available if network_isolation is None else (network_isolation and available)
    if network_isolation is False:
        note = "disabled by the caller; the audit hook still refuses sockets"
    payload = pickle.dumps(
        {
            "code": code,
            "spec": json.loads(json.dumps(dict(spec))),
            "scenarios": [s.to_payload() for s in scenarios],
            "toolkit": toolkit,
        },
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    command = [sys.executable, "-I", "-B", str(CHILD_SCRIPT), json.dumps(limits.to_dict())]
    if use_netns:
        command = [shutil.which("unshare") or "unshare", "-n", "--", *command]
    outcome = SandboxOutcome(network_isolation=use_netns, isolation_note=note, limits=limits.to_dict())
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poet-sandbox-") as workdir:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_child_env(),
            start_new_session=True,  # one process group, so a timeout kills everything the child started
        )
        timed_out = False
        try:
            stdout, stderr = proc.communicate(payload, timeout=limits.wall_seconds)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            stdout, stderr = proc.communicate()
        finally:
            if proc.poll() is None:
                _kill_group(proc)
                proc.wait()
    outcome.seconds = time.perf_counter() - started
    outcome.returncode = proc.returncode
    stderr_text = stderr.decode("utf-8", errors="replace")
    outcome.stderr_tail = stderr_text[-MAX_STDERR_TAIL:]
    _collect(outcome, stdout, stderr_text, timed_out=timed_out, limits=limits)
    return outcome


def _collect(
    outcome: SandboxOutcome, stdout: bytes, stderr: str, *, timed_out: bool, limits: SandboxLimits
) -> None:
    """Turn the child's JSON lines and exit status into checks, including one for an unfinished run."""
    running: str | None = None
    done = False
    stopped = None
    for raw in stdout.decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        kind = record.get("kind")
        if kind == "start":
            running = record.get("name")
        elif kind == "check":
            running = None
            outcome.checks.append(
                Check(
                    name=str(record["name"]),
                    phase="sandbox",
                    passed=bool(record["passed"]),
                    seconds=float(record.get("seconds", 0.0)),
                    evidence=tuple(str(e) for e in record.get("evidence", ())),
                    scenario=record.get("scenario"),
                )
            )
        elif kind == "done":
            done = True
            stopped = record.get("stopped")
            outcome.guard_violations = list(record.get("guard_violations", ()))
    code = outcome.returncode
    if done and code == 0:
        # The child stops by itself after a MemoryError; the failing check already carries the evidence.
        outcome.termination = "memory_limit" if stopped == "memory_limit" else "completed"
        return
    if timed_out:
        outcome.termination = "wall_timeout"
        reason = f"stopped after the wall-clock limit of {limits.wall_seconds:g} s"
    elif code == -signal.SIGXCPU:
        outcome.termination = "cpu_limit"
        reason = f"stopped by the CPU-time limit of {limits.cpu_seconds} s (SIGXCPU)"
    elif code == -signal.SIGKILL:
        outcome.termination = "killed"
        reason = "killed (SIGKILL): the CPU-time hard limit or the kernel's out-of-memory killer"
    elif "MemoryError" in stderr:
        outcome.termination = "memory_limit"
        reason = f"ran out of memory under the {limits.memory_bytes >> 20} MiB limit"
    else:
        outcome.termination = "crashed"
        last = stderr.strip().splitlines()[-1:] if stderr.strip() else []
        reason = f"the sandbox process ended with exit status {code}" + (f": {last[0]}" if last else "")
    evidence = [reason]
    tail = stderr.strip()[-1500:]
    if tail:
        evidence.append("stderr tail:\n" + tail)
    outcome.checks.append(
        Check(
            name=running or "sandbox",
            phase="sandbox",
            passed=False,
            seconds=outcome.seconds,
            evidence=tuple(evidence),
        )
    )


__all__ = ["CHILD_SCRIPT", "SandboxLimits", "SandboxOutcome", "network_namespace_support", "run_sandbox"]
