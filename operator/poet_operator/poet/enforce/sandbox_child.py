"""The sandbox child: runs generated monitor code against the contract scenarios and reports as JSON lines.

Started by `sandbox.py` as `python -I -B sandbox_child.py` with resource limits already set. It reads one
payload from stdin (code, spec, scenarios as data: `state_codec`'s JSON and numpy buffers, never a pickle;
written by the trusted parent), imports everything it
trusts, installs and activates the guard, and only then runs the generated code. Results go to a private
copy of the original stdout as one JSON object per line, each marked with the run's token from the payload
(held only in the reporter's closure, never in a module global); the generated code's own prints go to
stderr.

This file runs as a script, not as part of `poet_operator`, so the child never imports the operator.

`sandbox_child.py --zygote FD` is the warm form: a long-lived process that imports everything trusted once,
then forks one child per run on request (see `_zygote`). Each forked child sets its own limits, then runs
exactly as the script does; the zygote itself never reads a payload and never runs generated code.
"""

from __future__ import annotations

import json
import os
import resource
import sys


def _apply_limits(limits: dict) -> None:
    """Set the run's rlimits before any generated code runs (as a script: before anything heavy loads)."""
    cpu = int(limits.get("cpu_seconds", 30))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 2))  # SIGXCPU at the soft limit, SIGKILL 2 s later
    memory = int(limits.get("memory_bytes", 2 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # no file may grow, whatever slips past the guard


_ZYGOTE = sys.argv[1:2] == ["--zygote"]
if not _ZYGOTE:
    _apply_limits(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})

# As a script, everything below is imported under the limits. The allow-listed modules are imported
# before the guard is active so they never need an import event.
import collections  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import importlib  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import typing  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import scipy.stats  # noqa: E402

from monitor_runtime import contract, guard  # noqa: E402
from monitor_runtime.server.state_codec import decode_state  # noqa: E402

_PRELOADED = (collections, dataclasses, functools, itertools, math, statistics, typing, scipy.stats)
MAX_EVIDENCE_CHARS = 4000
MAX_STDERR_FORWARD = 64_000


class _BoundedStream(io.TextIOBase):
    """stdout/stderr for generated code: forwards to the real stderr up to a limit, then drops."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._left = MAX_STDERR_FORWARD

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if self._left > 0:
            data = text.encode("utf-8", errors="replace")[: self._left]
            self._left -= len(data)
            os.write(self._fd, data)
        return len(text)


class _Reporter:
    """Writes result lines; the fd and the run's token live in the closure of `send`, not on the object."""

    def __init__(self, fd: int, token: str) -> None:
        write, dumps = os.write, json.dumps

        def send(**record: Any) -> None:
            record["token"] = token
            write(fd, (dumps(record, default=repr, allow_nan=False) + "\n").encode("utf-8"))

        self.send = send


def _limit_processes() -> str:
    """Forbid new processes and threads (RLIMIT_NPROC 0) and say whether the kernel will enforce it."""
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (ValueError, OSError) as exc:
        return f"RLIMIT_NPROC could not be set ({exc})"
    if os.getuid() == 0:
        return "RLIMIT_NPROC=0 set but not enforced for root; the guard and the PID namespace stop processes"
    return "RLIMIT_NPROC=0: no new processes or threads"


def _copy_data(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    return {k: (v.copy() if isinstance(v, np.ndarray) else copy.deepcopy(v)) for k, v in data.items()}


def _tail(text: str) -> str:
    return text if len(text) <= MAX_EVIDENCE_CHARS else "..." + text[-MAX_EVIDENCE_CHARS:]


def _monitor_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of the generated code on; the sandbox's own frames are noise."""
    summary = traceback.TracebackException.from_exception(exc)
    frames = list(summary.stack)
    first = next((i for i, frame in enumerate(frames) if frame.filename == "monitor.py"), 0)
    summary.stack = traceback.StackSummary.from_list(frames[first:])
    return "".join(summary.format())


def _expectation_problems(result: Any, expect: Mapping[str, Any]) -> list[str]:
    if not isinstance(result, Mapping) or not isinstance(result.get("features"), Mapping):
        return []  # schema problems are reported separately
    features = result["features"]
    flagged = {n for n, e in features.items() if isinstance(e, Mapping) and e.get("drift_detected") is True}
    problems = []
    for name in expect.get("present", ()):
        if name not in features:
            problems.append(
                f"feature {name!r} is missing from the result; every monitored column must be reported"
            )
    for name in expect.get("drifted", ()):
        if name in features and name not in flagged:
            entry = features[name]
            problems.append(
                f"feature {name!r} was shifted but not flagged (score={entry.get('score')!r}, "
                f"p_value={entry.get('p_value')!r}, method={entry.get('method')!r})"
            )
    for name in expect.get("not_drifted", ()):
        if name in flagged:
            problems.append(
                f"feature {name!r} was not shifted but was flagged (score={features[name].get('score')!r})"
            )
    if expect.get("no_drift") and flagged:
        problems.append(f"no drift was expected but {sorted(flagged)} were flagged")
    return problems


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float | int) and isinstance(b, float | int) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _roundtrip_problems(first: Any, second: Any) -> list[str]:
    """Compare the verdicts of the original and the restored monitor (not timings or free text)."""
    if not isinstance(first, Mapping) or not isinstance(second, Mapping):
        return ["monitor_features did not return dicts to compare"]
    problems = []
    for key in ("overall_health", "overall_drift_score", "drifted_features"):
        if not _close(first.get(key), second.get(key)):
            problems.append(f"{key} differs after restore: {first.get(key)!r} vs {second.get(key)!r}")
    f1, f2 = first.get("features") or {}, second.get("features") or {}
    if set(f1) != set(f2):
        problems.append(f"features differ after restore: {sorted(f1)} vs {sorted(f2)}")
    for name in sorted(set(f1) & set(f2)):
        for key in ("drift_detected", "score", "p_value"):
            a, b = f1[name].get(key), f2[name].get(key)
            if not _close(a, b):
                problems.append(f"features[{name!r}].{key} differs after restore: {a!r} vs {b!r}")
    return problems


def _run_step(
    monitor: Any, cls: type, spec: dict[str, Any], toolkit: Any, step: Mapping[str, Any]
) -> list[str]:
    call = step["call"]
    data = _copy_data(step.get("data"))
    if call == "update_reference_window":
        monitor.update_reference_window(data)
        return []
    if call == "detect_drift":
        result = monitor.detect_drift(data)
        return contract.drift_result_problems(result) + _expectation_problems(result, step["expect"])
    if call == "monitor_features":
        result = monitor.monitor_features(data)
        return contract.feature_result_problems(result) + _expectation_problems(result, step["expect"])
    if call == "monitor_predictions":
        predictions = step["predictions"].copy() if step.get("predictions") is not None else None
        actuals = step["actuals"].copy() if step.get("actuals") is not None else None
        return contract.json_object_problems(
            monitor.monitor_predictions(predictions, actuals), "monitor_predictions"
        )
    if call == "roundtrip":
        state = monitor.state()
        problems = contract.json_object_problems(state, "state()")
        if problems:
            return problems
        clone = cls(json.loads(json.dumps(spec)), toolkit)
        clone.restore(json.loads(json.dumps(state)))
        first = monitor.monitor_features(_copy_data(data))
        second = clone.monitor_features(_copy_data(data))
        return contract.feature_result_problems(first) + _roundtrip_problems(first, second)
    return [f"unknown scenario call {call!r}"]


def _guarded(reporter: _Reporter, name: str, fn: Any, *, scenario: str | None = None) -> tuple[bool, Any]:
    """Run fn(), report one check; returns (passed, value)."""
    reporter.send(kind="start", name=name)
    before = guard.violation_count()
    started = time.perf_counter()
    value = None
    out_of_memory = False
    evidence: list[str] = []
    try:
        value = fn()
        if isinstance(value, list):  # step functions return their problems
            evidence.extend(value)
    except MemoryError:
        out_of_memory = True
        evidence.append("memory limit reached (MemoryError): the code allocated more than the sandbox allows")
    except guard.GuardViolation:
        pass  # recorded by the guard; reported below with every other refusal
    except contract.ContractError as exc:
        if isinstance(exc.__cause__, MemoryError):
            out_of_memory = True
            evidence.append(
                "memory limit reached (MemoryError): the code allocated more than the sandbox allows"
            )
        evidence.append(str(exc))
    except BaseException as exc:  # generated code may raise anything, including SystemExit
        evidence.append(f"raised {type(exc).__name__}: {exc}")
        evidence.append(_tail(_monitor_traceback(exc)))
    seconds = time.perf_counter() - started
    for violation in guard.violations_since(before):
        evidence.append(
            f"refused action: {violation['reason']} ({violation['event']}: {violation['detail']})"
        )
    passed = not evidence
    reporter.send(
        kind="check",
        name=name,
        scenario=scenario,
        passed=passed,
        seconds=round(seconds, 6),
        evidence=[_tail(e) for e in evidence],
    )
    if out_of_memory:
        # The heap may be fragmented or nearly full; further scenarios would only repeat this failure.
        raise _OutOfMemory(name)
    return passed, value


class _OutOfMemory(Exception):
    """Raised after a check hit the memory limit, to stop the run."""


def main() -> int:
    raw = sys.stdin.buffer.read()
    payload = decode_state(raw)
    del raw  # the token is at its start: from here on it lives only in the reporter's closure
    token = str(payload.pop("token", ""))
    # Keep the result channel private: fd 1 becomes stderr, so prints cannot forge result lines.
    result_fd = os.dup(1)
    os.dup2(2, 1)
    stream = _BoundedStream(2)
    sys.stdout = sys.stderr = stream  # type: ignore[assignment]
    reporter = _Reporter(result_fd, token)
    del token

    toolkit = importlib.import_module(payload.get("toolkit", "monitor_runtime.toolkit"))
    read_roots = list(guard.default_read_roots(payload.get("extra_read_paths", ())))
    read_roots.append(os.path.dirname(os.path.abspath(__file__)))
    process_limit = _limit_processes()
    guard.install(read_roots=read_roots)
    guard.activate()
    reporter.send(kind="ready", guard=True, process_limit=process_limit)

    stopped = None
    try:
        _run_all(reporter, payload, toolkit)
    except _OutOfMemory:
        stopped = "memory_limit"
    reporter.send(kind="done", guard_violations=guard.violations(), stopped=stopped)
    return 0


def _run_all(reporter: _Reporter, payload: dict[str, Any], toolkit: Any) -> None:
    """Import the generated code, then run every scenario against a fresh monitor."""
    spec = payload["spec"]
    loaded: dict[str, Any] = {}

    def load() -> list[str]:
        module = contract.import_code(
            payload["code"], module_name="poet_generated_monitor", filename="monitor.py"
        )
        loaded["cls"] = contract.monitor_class_of(module, filename="monitor.py")
        return []

    ok, _ = _guarded(reporter, "import", load)
    if not ok:
        return
    cls = loaded["cls"]
    for scenario in payload["scenarios"]:
        sname = scenario["name"]
        made: dict[str, Any] = {}

        def construct(cls: type = cls, made: dict[str, Any] = made) -> list[str]:
            made["monitor"] = cls(json.loads(json.dumps(spec)), toolkit)
            return []

        ok, _ = _guarded(reporter, f"{sname}/construct", construct, scenario=sname)
        if not ok:
            continue
        for index, step in enumerate(scenario["steps"], start=1):
            name = f"{sname}/{index}:{step['call']}"
            ok, _ = _guarded(
                reporter,
                name,
                functools.partial(_run_step, made["monitor"], cls, spec, toolkit, step),
                scenario=sname,
            )
            if not ok and step["call"] == "update_reference_window":
                break  # later steps would only repeat the same failure


# ---------------------------------------------------------------- the warm form

_ZYGOTE_MAX_MESSAGE = 65536
_EXIT_FORK_FAILED = 70


def _zygote(control_fd: int, *, own_pid_namespace: bool) -> int:
    """Serve runs on the control socket (SOCK_SEQPACKET) until the operator closes it.

    A request is one message: JSON `{"limits": ..., "cwd": ...}` with four descriptors attached, the run's
    stdin, stdout and stderr pipes and one end of the run's status socket. The zygote forks a child that
    takes the pipes as 0, 1 and 2, starts its own session, sets the limits and runs `main()`. On the status
    socket it writes `{"pid": N}`, then `{"returncode": R}` when the child has ended (Popen's convention,
    -N for a signal); anything read there, or its closing, kills the child's process group. Before a child
    is reaped its group is killed, so nothing it started outlives it; in its own PID namespace, once no run
    is left, the zygote also ends every other process there (ones that left the group with setsid).
    """
    import selectors
    import signal
    import socket

    control = socket.socket(fileno=control_fd)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD writes to the wakeup fd
    runs: dict[int, socket.socket] = {}
    watched: set[socket.socket] = set()
    # Sweeping the namespace with kill(-1) is only safe in a namespace of our own, where we are PID 2.
    own_pid_namespace = own_pid_namespace and os.getpid() == 2
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, "control")
    selector.register(wake_r, selectors.EVENT_READ, "wake")
    control.send(b'{"ready": true}')

    def kill_group(pid: int) -> None:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except (ProcessLookupError, PermissionError):
                continue

    def reap() -> None:
        for pid in list(runs):
            try:
                ended = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                ended = None
            if ended is None:
                continue
            kill_group(pid)  # before reaping: the group's number cannot have been reused yet
            _, status = os.waitpid(pid, 0)
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            status_socket = runs.pop(pid)
            if status_socket in watched:
                watched.discard(status_socket)
                selector.unregister(status_socket)
            with contextlib.suppress(OSError):
                status_socket.sendall(json.dumps({"returncode": code}).encode() + b"\n")
            status_socket.close()
        # A run's processes that left its group (setsid) went to the namespace's init: once no run is in
        # flight, everything in the namespace but init and the zygote is a leftover.
        if own_pid_namespace and not runs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(-1, signal.SIGKILL)  # every process in this namespace but init and us

    def start(message: bytes, fds: list[int]) -> None:
        request = json.loads(message)
        status_socket = socket.socket(fileno=fds[3])
        pid = os.fork()
        if pid == 0:  # the run's child
            code = _EXIT_FORK_FAILED
            try:
                control.detach()
                status_socket.detach()
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setsid()
                for target, fd in enumerate(fds[:3]):
                    os.dup2(fd, target)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                os.chdir(request["cwd"])
                _apply_limits(request["limits"])
                code = main()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        for fd in fds[:3]:
            os.close(fd)
        runs[pid] = status_socket
        watched.add(status_socket)
        selector.register(status_socket, selectors.EVENT_READ, pid)
        with contextlib.suppress(OSError):  # a caller that gave up: its socket's end is read as a kill
            status_socket.sendall(json.dumps({"pid": pid}).encode() + b"\n")

    while True:
        for key, _ in selector.select():
            if key.data == "control":
                message, fds, _, _ = socket.recv_fds(control, _ZYGOTE_MAX_MESSAGE, 4)
                if not message:  # the operator is gone: so are its runs
                    for pid in list(runs):
                        kill_group(pid)
                    return 0
                if len(fds) == 4:
                    start(message, fds)
                else:
                    for fd in fds:
                        os.close(fd)
            elif key.data == "wake":
                os.read(wake_r, 4096)
                reap()
            elif key.data in runs:  # the operator asked for the run to end (or went away)
                if not key.fileobj.recv(64):  # closed: stop watching, or the selector spins until reaped
                    watched.discard(key.fileobj)
                    selector.unregister(key.fileobj)
                kill_group(key.data)


if __name__ == "__main__":
    if _ZYGOTE:
        sys.exit(_zygote(int(sys.argv[2]), own_pid_namespace=sys.argv[3:4] == ["--own-pid-namespace"]))
    sys.exit(main())
