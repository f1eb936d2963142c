"""Run generated code in a separate, limited process: the operator process never imports generated code.

The child (`sandbox_child.py`) runs as `python -I -B` with an empty environment, an empty working directory,
CPU-time, address-space, file-size and process-count rlimits, a wall-clock timeout enforced here, the
audit-hook guard active before the generated module is imported, and, where the kernel allows it, fresh
network and PID namespaces (`unshare -n -p -f`): every process the code might start dies with the sandbox.
The child's whole process group is killed when it ends, whatever the outcome.

Starting that interpreter and importing numpy and scipy is most of a run (about 2 s of 2.3 on an idle
core). So by default runs are forked from a warm copy of the same script (`sandbox_child.py --zygote`, one
per operator process, started on first use under the same isolation): each forked child starts its own
session, sets the same limits and installs the guard before it reads its payload, exactly as a fresh child
does. What differs: the runs share one network and one PID namespace (the zygote's) instead of one each;
the zygote kills each run's process group before reaping it, and, in its own PID namespace, ends every
other process there whenever no run is in flight. `POET_SANDBOX=fresh` starts a new interpreter per run.

Results come back as JSON lines on a private copy of the child's stdout, each carrying a random token of this
run that the child keeps away from the generated code. The parent knows which checks it asked for (the
import, then every scenario's construction and steps) and fails any that is missing, duplicated, unknown or
not marked with the token: code that forges results or ends the process early cannot pass. stdout and stderr
are read as streams into bounded buffers; a child that writes past the byte caps is killed and fails.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor_runtime.server.state_codec import encode_state
from poet_operator.poet.enforce.report import Check
from poet_operator.poet.enforce.scenarios import Scenario

CHILD_SCRIPT = Path(__file__).with_name("sandbox_child.py")
MAX_STDERR_TAIL = 4000
#: The child's result channel: a few KiB per check is plenty; past this the child is killed.
MAX_RESULT_BYTES = 16 << 20
#: The child's stderr (the code's prints are already cut at 64 KiB by the child; raw writes are not).
MAX_STDERR_BYTES = 4 << 20
_READ_CHUNK = 65536
_DRAIN_SECONDS = 5.0  # after the child ends, how long its pipes may stay open before we stop reading
INTEGRITY_CHECK = "sandbox:integrity"


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one sandbox run (the whole scenario set shares them)."""

    cpu_seconds: int = 60
    wall_seconds: float = 120.0
    memory_bytes: int = 2 << 30
    result_bytes: int = MAX_RESULT_BYTES
    stderr_bytes: int = MAX_STDERR_BYTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (also what the child reads from argv)."""
        return {
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "memory_bytes": self.memory_bytes,
            "result_bytes": self.result_bytes,
            "stderr_bytes": self.stderr_bytes,
        }


@dataclass
class SandboxOutcome:
    """What the child reported, and how it ended."""

    checks: list[Check] = field(default_factory=list)
    guard_violations: list[dict[str, Any]] = field(default_factory=list)
    # completed | cpu_limit | wall_timeout | memory_limit | output_limit | killed | crashed
    termination: str = "completed"
    returncode: int | None = None
    network_isolation: bool = False
    pid_isolation: bool = False
    process_limit: str = ""
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
            "pidIsolation": self.pid_isolation,
            "processLimit": self.process_limit,
            "isolationNote": self.isolation_note,
            "limits": dict(self.limits),
            "stderrTail": self.stderr_tail,
        }


def _probe_unshare(flags: Sequence[str], what: str, fallback: str) -> tuple[bool, str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False, f"unshare not found; {fallback}"
    try:
        probe = subprocess.run([unshare, *flags, "--", "true"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"unshare {' '.join(flags)} failed to start ({exc}); {fallback}"
    if probe.returncode != 0:
        reason = probe.stderr.decode("utf-8", errors="replace").strip() or f"exit {probe.returncode}"
        return False, f"unshare {' '.join(flags)} is not permitted here ({reason}); {fallback}"
    return True, f"fresh {what} namespace (unshare {' '.join(flags)})"


@functools.lru_cache(maxsize=1)
def network_namespace_support() -> tuple[bool, str]:
    """Whether `unshare -n` works here (tried once per process) and why not when it does not."""
    return _probe_unshare(["-n"], "network", "the audit hook still refuses sockets")


@functools.lru_cache(maxsize=1)
def pid_namespace_support() -> tuple[bool, str]:
    """Whether `unshare -p -f` works here (tried once per process) and why not when it does not."""
    return _probe_unshare(
        ["-p", "-f"], "PID", "the audit hook refuses new processes and the process group is killed"
    )


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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def isolated_command(command: Sequence[str], *, network: bool, pids: bool) -> list[str]:
    """`command` wrapped in `unshare` for fresh network and/or PID namespaces (unchanged when neither).

    In a PID namespace a shell is the namespace's init: the kernel does not deliver default-action signals
    (SIGXCPU, the CPU limit's SIGKILL) to PID 1 from inside, so the child must not be PID 1. The shell
    reports a signal death as 128+N, which `_returncode` maps back. When the init shell exits, the kernel
    kills every process left in the namespace, including ones that left the process group (`setsid`).
    """
    wrapped = list(command)
    if pids:
        wrapped = ["/bin/sh", "-c", '"$@"; exit $?', "sh", *wrapped]
    flags = (["-n"] if network else []) + (["-p", "-f"] if pids else [])
    if flags:
        wrapped = [shutil.which("unshare") or "unshare", *flags, "--", *wrapped]
    return wrapped


def expected_checks(scenarios: Sequence[Scenario]) -> list[tuple[str, str | None, str]]:
    """Every check a complete run reports, in order: (name, scenario, call); call is import or construct."""
    expected: list[tuple[str, str | None, str]] = [("import", None, "import")]
    for scenario in scenarios:
        expected.append((f"{scenario.name}/construct", scenario.name, "construct"))
        for index, step in enumerate(scenario.steps, start=1):
            expected.append((f"{scenario.name}/{index}:{step.call}", scenario.name, step.call))
    return expected


@dataclass
class _Streams:
    """What was read from the child: the result channel (bounded) and the tail of stderr."""

    stdout: bytearray = field(default_factory=bytearray)
    stderr_tail: bytearray = field(default_factory=bytearray)
    stderr_total: int = 0
    overflow: str = ""  # which stream passed its cap, with the count


class _FreshChild:
    """A sandbox child started as its own interpreter (Popen), as `_pump` sees it."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.stdin, self.stdout, self.stderr = proc.stdin, proc.stdout, proc.stderr

    def exited(self) -> bool:
        return _exited(self.proc)

    def kill_group(self) -> None:
        _kill_group(self.proc)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def close(self) -> None:
        """Kill what is left of the run and close its pipes."""
        if self.proc.poll() is None:
            _kill_group(self.proc)
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]

    def finish(self) -> int | None:
        """Wait for the child once its group was killed; returns its status."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        if self.proc.poll() is None:  # the group kill reaches it unless it left the group; kill it directly
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


class _ForkedChild:
    """A sandbox child forked by the zygote: its pipes, and its status socket (pid, then return code)."""

    def __init__(self, status: socket.socket, stdin: Any, stdout: Any, stderr: Any) -> None:
        self._status = status
        self._buffer = b""
        self._zygote_gone = False
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr
        self.pid: int | None = None
        self.returncode: int | None = None

    def read_status(self, timeout: float) -> None:
        """Read what the zygote said within `timeout` seconds (0: only what is there)."""
        self._status.settimeout(timeout)
        try:
            data = self._status.recv(4096)
        except (TimeoutError, BlockingIOError):
            return
        except OSError:
            data = b""
        if not data:
            self._zygote_gone = True
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            message = json.loads(line)
            self.pid = message.get("pid", self.pid)
            if "returncode" in message:
                self.returncode = int(message["returncode"])

    def wait_for_pid(self, seconds: float) -> bool:
        """Wait up to `seconds` for the zygote to name the forked child; False when it did not.

        Each wait checks first: a pid that is already in (read by an earlier call) must not send the next
        read into a block that only the deadline ends."""
        deadline = time.monotonic() + seconds
        while self.pid is None and self.returncode is None and not self._zygote_gone:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.read_status(left)
        return self.pid is not None

    def exited(self) -> bool:
        if self.returncode is None and not self._zygote_gone:
            self.read_status(0)
        return self.returncode is not None or self._zygote_gone

    def kill_group(self) -> None:
        if self.returncode is None and not self._zygote_gone:
            with contextlib.suppress(OSError):
                self._status.send(b"k")

    def finish(self) -> int | None:
        deadline = time.monotonic() + 10
        while self.returncode is None and not self._zygote_gone and time.monotonic() < deadline:
            self.read_status(max(0.01, deadline - time.monotonic()))
        self._status.close()  # the zygote kills the group of a run whose socket closes
        if self.returncode is None:  # the zygote died or hung: the run is taken as killed
            self.returncode = -signal.SIGKILL
        return self.returncode

    def close(self) -> None:
        """Close the status socket (which ends the run if it still runs) and the pipes."""
        self._status.close()
        for pipe in (self.stdin, self.stdout, self.stderr):
            with contextlib.suppress(OSError):
                pipe.close()


#: After the warm sandbox failed to start, runs use fresh interpreters this long before it is tried again.
ZYGOTE_RETRY_SECONDS = 300.0


class ZygoteError(RuntimeError):
    """The warm sandbox could not be started or stopped answering."""


class _Zygote:
    """The warm sandbox: `sandbox_child.py --zygote` under the chosen isolation, forking one child per run.

    One per operator process and isolation; started on first use and again if it died. Requests go over a
    SOCK_SEQPACKET socket (one message per run, so concurrent generation workers never interleave); each
    run gets its own pipes and status socket, passed as descriptors.
    """

    def __init__(self, *, network: bool, pids: bool, script: Path = CHILD_SCRIPT) -> None:
        self.network = network
        self.pids = pids
        self.script = script
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._failed: tuple[float, str] | None = None  # when and why it last failed to start

    def _start(self) -> socket.socket:
        # A zygote that cannot start here costs each run its start-up wait; runs go fresh for a while.
        if self._failed is not None and time.monotonic() - self._failed[0] < ZYGOTE_RETRY_SECONDS:
            raise ZygoteError(self._failed[1])
        self._stop()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except (OSError, AttributeError) as exc:  # platforms without SOCK_SEQPACKET for local sockets
            self._failed = (time.monotonic(), f"the warm sandbox cannot run here ({exc})")
            raise ZygoteError(self._failed[1]) from None
        self._workdir = tempfile.TemporaryDirectory(prefix="poet-sandbox-zygote-")
        command = [sys.executable, "-I", "-B", str(self.script), "--zygote", str(theirs.fileno())]
        if self.pids:
            command.append("--own-pid-namespace")
        errors = Path(self._workdir.name) / "stderr"
        try:
            with errors.open("wb") as stderr:
                self._proc = subprocess.Popen(
                    isolated_command(command, network=self.network, pids=self.pids),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    cwd=self._workdir.name,
                    env=_child_env(),
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except OSError as exc:
            ours.close()
            self._stop()
            self._failed = (time.monotonic(), f"the warm sandbox did not start: {exc}")
            raise ZygoteError(self._failed[1]) from None
        finally:
            theirs.close()
        ours.settimeout(120)  # it imports numpy and scipy first; slow under load
        try:
            ready = ours.recv(64)
        except OSError:
            ready = b""
        if not ready:
            tail = errors.read_bytes()[-500:].decode("utf-8", errors="replace").strip()
            self._stop()
            ours.close()
            self._failed = (time.monotonic(), f"the warm sandbox did not start: {tail or 'no output'}")
            raise ZygoteError(self._failed[1])
        ours.settimeout(None)
        self._control = ours
        return ours

    def _stop(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote kills its runs and exits when this closes
            self._control = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
            self._proc = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def launch(self, limits: SandboxLimits, workdir: str) -> _ForkedChild:
        """Fork a child for one run, in `workdir`, under `limits`; raises ZygoteError when it cannot.

        A zygote that died since the last run is started again, once: a send to it can still succeed (the
        request is then dropped), so its death shows as a status socket closed without a pid."""
        for _ in range(2):
            child = self._try_launch(limits, workdir)
            if child is not None:
                return child
        raise ZygoteError("the warm sandbox stopped taking runs")

    def _try_launch(self, limits: SandboxLimits, workdir: str) -> _ForkedChild | None:
        """The forked child; None when the zygote turned out dead (the next try starts a new one)."""
        stdin_r, stdin_w = os.pipe()
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        status, theirs = socket.socketpair()
        request = json.dumps({"limits": limits.to_dict(), "cwd": workdir}).encode()
        child = _ForkedChild(
            status, os.fdopen(stdin_w, "wb"), os.fdopen(stdout_r, "rb"), os.fdopen(stderr_r, "rb")
        )
        try:
            with self._lock:
                if self._control is None or self._proc is None or self._proc.poll() is not None:
                    self._start()
                assert self._control is not None and self._proc is not None
                proc = self._proc
                try:
                    socket.send_fds(self._control, [request], [stdin_r, stdout_w, stderr_w, theirs.fileno()])
                except OSError:
                    self._stop()
                    child.close()
                    return None
        except BaseException:
            child.close()
            raise
        finally:
            for fd in (stdin_r, stdout_w, stderr_w):
                os.close(fd)
            theirs.close()
        if child.wait_for_pid(30):
            return child
        child.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # a dead zygote's namespace takes a moment to wind down
        if proc.poll() is None:
            raise ZygoteError("the warm sandbox did not fork the run")
        return None


_ZYGOTES: dict[tuple[bool, bool], _Zygote] = {}
_ZYGOTES_LOCK = threading.Lock()


def _shared_zygote(*, network: bool, pids: bool) -> _Zygote:
    """The warm sandbox of this process for that isolation (one each, made on first use)."""
    with _ZYGOTES_LOCK:
        if (network, pids) not in _ZYGOTES:
            _ZYGOTES[network, pids] = _Zygote(network=network, pids=pids)
        return _ZYGOTES[network, pids]


def warm_sandbox_enabled() -> bool:
    """Runs fork from the warm sandbox unless `POET_SANDBOX=fresh` asks for a new interpreter each."""
    return os.environ.get("POET_SANDBOX", "warm").strip().lower() != "fresh"


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child has ended, without reaping it: its pid stays reserved, so the group kill that
    follows cannot reach a process that reused the number."""
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _feed_stdin(child: _FreshChild | _ForkedChild, payload: bytes) -> None:
    assert child.stdin is not None
    with contextlib.suppress(OSError):  # a child that dies before reading its payload closes the pipe
        child.stdin.write(payload)
    with contextlib.suppress(OSError):
        child.stdin.close()


def _pump(
    child: subprocess.Popen[bytes] | _FreshChild | _ForkedChild, payload: bytes, limits: SandboxLimits
) -> tuple[_Streams, bool]:
    """Feed the payload and read both pipes until they close, the wall clock runs out or a cap is passed.

    Hand-written because `communicate()` buffers everything the child writes; here stdout is capped, only a
    tail of stderr is kept, and the child is killed the moment either passes its cap. Returns the streams and
    whether the wall-clock limit stopped the child.
    """
    if isinstance(child, subprocess.Popen):
        child = _FreshChild(child)
    proc = child
    assert proc.stdout is not None and proc.stderr is not None
    streams = _Streams()
    writer = threading.Thread(target=_feed_stdin, args=(proc, payload), daemon=True)
    writer.start()
    deadline = time.monotonic() + limits.wall_seconds
    drain_deadline: float | None = None
    timed_out = False
    keep = MAX_STDERR_TAIL * 4
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, "stdout")
        selector.register(proc.stderr, selectors.EVENT_READ, "stderr")
        while selector.get_map():
            now = time.monotonic()
            if drain_deadline is None and proc.exited():
                # The child is gone: anything it left behind dies now, and its pipes get a short grace.
                proc.kill_group()
                drain_deadline = now + _DRAIN_SECONDS
            limit = deadline if drain_deadline is None else min(deadline, drain_deadline)
            if now >= limit:
                timed_out = drain_deadline is None
                break
            # Short waits so a child that exits while a grandchild holds the pipes is noticed promptly.
            for key, _ in selector.select(min(limit - now, 0.25)):
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.data == "stdout":
                    streams.stdout += chunk
                    if len(streams.stdout) > limits.result_bytes:
                        streams.overflow = f"the result channel passed {limits.result_bytes} bytes"
                else:
                    streams.stderr_total += len(chunk)
                    streams.stderr_tail += chunk
                    del streams.stderr_tail[:-keep]
                    if streams.stderr_total > limits.stderr_bytes:
                        streams.overflow = f"stderr passed {limits.stderr_bytes} bytes"
            if streams.overflow:
                break
    proc.kill_group()
    proc.finish()
    writer.join(timeout=5)
    return streams, timed_out


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
    show the audit hook alone refuses sockets). A PID namespace is used whenever available.
    """
    limits = limits or SandboxLimits()
    available, note = network_namespace_support()
    use_netns = available if network_isolation is None else (network_isolation and available)
    if network_isolation is False:
        note = "network namespace disabled by the caller; the audit hook still refuses sockets"
    use_pidns, pid_note = pid_namespace_support()
    token = secrets.token_hex(16)
    # Data, not a pickle (`state_codec`: JSON plus numpy buffers). The child reads it whole and drops the
    # bytes before any generated code runs; the token then lives only in its reporter's closure.
    payload = encode_state(
        {
            "token": token,
            "code": code,
            "spec": json.loads(json.dumps(dict(spec))),
            "scenarios": [s.to_payload() for s in scenarios],
            "toolkit": toolkit,
        }
    )
    command = [sys.executable, "-I", "-B", str(CHILD_SCRIPT), json.dumps(limits.to_dict())]
    command = isolated_command(command, network=use_netns, pids=use_pidns)
    outcome = SandboxOutcome(
        network_isolation=use_netns,
        pid_isolation=use_pidns,
        isolation_note=f"{note}; {pid_note}",
        limits=limits.to_dict(),
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="poet-sandbox-") as workdir:
        child: _FreshChild | _ForkedChild | None = None
        # The caller's own choice of network isolation is served fresh: the zygote's is fixed at its start.
        if network_isolation is None and warm_sandbox_enabled():
            try:
                child = _shared_zygote(network=use_netns, pids=use_pidns).launch(limits, workdir)
                outcome.isolation_note += "; forked from the warm sandbox (its namespaces are shared by runs)"
            except ZygoteError as exc:
                outcome.isolation_note += f"; {exc}: a new interpreter for this run"
        if child is None:
            child = _FreshChild(
                subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    cwd=workdir,
                    env=_child_env(),
                    start_new_session=True,  # one process group, killed as a whole when the run ends
                )
            )
        try:
            streams, timed_out = _pump(child, payload, limits)
        finally:
            child.close()
    outcome.seconds = time.perf_counter() - started
    outcome.returncode = _returncode(child.returncode, via_shell=isinstance(child, _FreshChild) and use_pidns)
    stderr_text = bytes(streams.stderr_tail).decode("utf-8", errors="replace")
    outcome.stderr_tail = stderr_text[-MAX_STDERR_TAIL:]
    _collect(
        outcome,
        bytes(streams.stdout),
        stderr_text,
        timed_out=timed_out,
        overflow=streams.overflow,
        limits=limits,
        token=token,
        expected=expected_checks(scenarios),
    )
    return outcome


def _returncode(code: int | None, *, via_shell: bool) -> int | None:
    """The child's status as Popen reports it (-N for a signal), undoing the init shell's 128+N."""
    if via_shell and code is not None and 128 < code < 128 + signal.NSIG:
        return -(code - 128)
    return code


@dataclass
class _Parsed:
    checks: list[Check] = field(default_factory=list)
    running: str | None = None
    done: bool = False
    stopped: str | None = None
    process_limit: str = ""
    problems: list[str] = field(default_factory=list)


def _parse_results(stdout: bytes, token: str, *, cut_short: bool) -> tuple[_Parsed, list[dict[str, Any]]]:
    """Read the result lines; anything without this run's token, after `done`, or malformed is a problem."""
    parsed = _Parsed()
    guard_violations: list[dict[str, Any]] = []
    lines = stdout.split(b"\n")
    for number, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = number == len(lines) - 1  # no newline after it: written last, maybe cut by a kill
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if not (last and cut_short):
                parsed.problems.append(
                    f"the result channel carried a line that is not a result: {raw[:120]!r}"
                )
            continue
        if not isinstance(record, dict) or record.get("token") != token:
            parsed.problems.append(
                f"a result line without this run's token (not written by the sandbox): {raw[:160]!r}"
            )
            continue
        if parsed.done:
            parsed.problems.append(f"a result line after the final record: {raw[:160]!r}")
            continue
        kind = record.get("kind")
        if kind == "ready":
            parsed.process_limit = str(record.get("process_limit", ""))
        elif kind == "start":
            parsed.running = str(record.get("name"))
        elif kind == "check":
            parsed.running = None
            parsed.checks.append(
                Check(
                    name=str(record["name"]),
                    phase="sandbox",
                    passed=record.get("passed") is True,
                    seconds=float(record.get("seconds", 0.0)),
                    evidence=tuple(str(e) for e in record.get("evidence", ())),
                    scenario=record.get("scenario"),
                )
            )
        elif kind == "done":
            parsed.done = True
            parsed.stopped = record.get("stopped")
            guard_violations = list(record.get("guard_violations", ()))
    return parsed, guard_violations


def _coverage_problems(
    checks: Sequence[Check], expected: Sequence[tuple[str, str | None, str]], *, stopped_early: bool
) -> list[str]:
    """Checks that are duplicated, unknown, or missing without an earlier failure that explains it.

    A check may be missing only because the run stopped at a failure: the import failed (nothing else
    runs), a scenario's construction failed (its steps do not run), an `update_reference_window` step
    failed (the rest of its scenario does not run), or the run was stopped at a failing check.
    """
    problems: list[str] = []
    known = {name for name, _, _ in expected}
    seen: dict[str, Check] = {}
    for check in checks:
        if check.name in seen:
            problems.append(f"check {check.name!r} was reported more than once")
        elif check.name not in known:
            problems.append(f"check {check.name!r} was reported but never asked for")
        seen.setdefault(check.name, check)
    if stopped_early:
        return problems
    missing: list[str] = []
    skip_scenario: str | None = None
    for name, scenario, call in expected:
        if scenario is not None and scenario == skip_scenario:
            continue
        check = seen.get(name)
        if check is None:
            missing.append(name)
            continue
        if not check.passed:
            if call == "import":
                break
            if call in ("construct", "update_reference_window"):
                skip_scenario = scenario
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        problems.append(
            f"{len(missing)} of {len(expected)} expected checks were never reported: {shown}; "
            "the code ended the run early or interfered with the result channel"
        )
    return problems


def _collect(
    outcome: SandboxOutcome,
    stdout: bytes,
    stderr: str,
    *,
    timed_out: bool,
    limits: SandboxLimits,
    token: str,
    expected: Sequence[tuple[str, str | None, str]],
    overflow: str = "",
) -> None:
    """Turn the child's result lines and exit status into checks; any gap or forgery is a failed check."""
    code = outcome.returncode
    cut_short = bool(timed_out or overflow or code != 0)
    parsed, outcome.guard_violations = _parse_results(stdout, token, cut_short=cut_short)
    outcome.checks.extend(parsed.checks)
    outcome.process_limit = parsed.process_limit
    clean_end = parsed.done and code == 0 and not overflow and not timed_out
    if clean_end:
        # The child stops by itself after a MemoryError; the failing check already carries the evidence.
        outcome.termination = "memory_limit" if parsed.stopped == "memory_limit" else "completed"
    else:
        outcome.checks.append(
            _termination_check(outcome, stderr, timed_out, overflow, limits, parsed.running)
        )
    # A run that did not end cleanly already failed with the reason; checks it never reached are explained.
    explained = not clean_end or (parsed.stopped is not None and any(not c.passed for c in parsed.checks))
    problems = parsed.problems + _coverage_problems(parsed.checks, expected, stopped_early=explained)
    if problems:
        outcome.checks.append(
            Check(name=INTEGRITY_CHECK, phase="sandbox", passed=False, evidence=tuple(problems[:20]))
        )


def _termination_check(
    outcome: SandboxOutcome,
    stderr: str,
    timed_out: bool,
    overflow: str,
    limits: SandboxLimits,
    running: str | None,
) -> Check:
    """The failed check for a run that did not end cleanly, named after the step that was running."""
    code = outcome.returncode
    if overflow:
        outcome.termination = "output_limit"
        reason = f"killed because {overflow}; monitor code must not flood its output"
    elif timed_out:
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
        reason = f"the sandbox process ended with exit status {code}" + (f": {last[0][:300]}" if last else "")
    evidence = [reason]
    tail = stderr.strip()[-1500:]
    if tail:
        evidence.append("stderr tail:\n" + tail)
    return Check(
        name=running or "sandbox",
        phase="sandbox",
        passed=False,
        seconds=outcome.seconds,
        evidence=tuple(evidence),
    )


__all__ = [
    "CHILD_SCRIPT",
    "INTEGRITY_CHECK",
    "SandboxLimits",
    "SandboxOutcome",
    "ZygoteError",
    "expected_checks",
    "isolated_command",
    "network_namespace_support",
    "pid_namespace_support",
    "run_sandbox",
    "warm_sandbox_enabled",
]
