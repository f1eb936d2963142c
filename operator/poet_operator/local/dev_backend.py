"""The rollout machine's second backend: local `poetmon serve` processes instead of Deployments and pods.

What Kubernetes does for the operator, this module does on one machine, and nothing more:

- a version is a directory `versions/v<N>/` (monitor.py + manifest.json), written once, like a ConfigMap;
- a Deployment of a role is one runtime process started as `poetmon serve` on a free loopback port, with its
  own termination-log file, checkpoint directory and memory cage (see `cage.py`); a process that exits is
  restarted with a growing back-off, like a container with `restartPolicy: Always`, and keeps its pod name;
- how a process ended becomes `lastState.terminated` the way the kubelet reports it: the exit code (128 +
  signal for a signal), the termination log's content as the message, and the reason `OOMKilled` when the
  cage says memory ended it: the cgroup's `oom_kill` counter grew while the process died of SIGKILL, or the
  runtime exited with its out-of-memory status 3 (an allocation failed inside the process, as under
  RLIMIT_AS, instead of the kernel killing it; its record's reason is `OOMKilled`). Otherwise `Error` (or
  `Completed` for exit 0);
- readiness is `GET /readyz` (and the reference posted); the report is `GET /v1/report`.
  cage says memory ended it: the cgroup's `oom_kill` counter grew while the process died of SIGKILL, or,
  under RLIMIT_AS, the crash record names `MemoryError` (the allocation failed inside the process instead of
  the kernel killing it). Otherwise `Error` (or `Completed` for exit 0);
- readiness is `GET /readyz` (and the reference posted); the report is `GET /v1/report`;
- the reference and the evaluation history kept for new processes are files in the working directory
  (`reference.npz`, `history.json.gz` with `history-version` saying which promotion it was kept for), passed
  to every process started later (`--reference-file`, `--history-file`), as pods mount their ConfigMaps.

Every decision stays in `rollout.machine`; this module only observes and carries out.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor_runtime import contract
from monitor_runtime.server.crash import EXIT_OUT_OF_MEMORY
from monitor_runtime.server.history import EvaluationHistory, encode_history_file, parse_history
from poet_operator.k8s.builders import HISTORY_GZIP_MAX  # as large as a cluster keeps it
from poet_operator.k8s.observe import LABEL_VERSION, runtime_report, version_info
from poet_operator.local.cage import Cage, make_cage
from poet_operator.poet.engine import confirm_healthy_version
from poet_operator.poet.produce import (
    ProducedVersion,
    lessons_from_json,
    lessons_to_json,
    previous_from_files,
    produce_version,
)
from poet_operator.poet.train.feedback import Feedback
from poet_operator.rollout.actions import (
    Action,
    ClearAnnotation,
    DeleteVersions,
    Emit,
    EnsureDeployment,
    EnsureService,
    Generate,
    HandOffHistory,
    HandOffReference,
    RecordLessons,
    RemoveDeployment,
    StoreHistory,
)
from poet_operator.rollout.observations import (
    DeploymentObservation,
    GenerationOutcome,
    Observation,
    PodObservation,
    Role,
    RuntimeReport,
    Terminated,
    VersionInfo,
)
from poet_operator.spec import MonitorSpec, SpecError

HTTP_TIMEOUT = 2.0
REFERENCE_CONTENT_TYPE = "application/vnd.poet.reference+npz"
STOP_GRACE_SECONDS = 15.0
LOG_TAIL_BYTES = 4000
GenerateFn = Callable[..., ProducedVersion]


class Clock:
    """The backend's time: wall time scaled by `factor` (a fast clock for tests), plus manual advances."""

    def __init__(self, factor: float = 1.0) -> None:
        self.factor = factor
        self.start = datetime.now(UTC)
        self._t0 = time.monotonic()
        self._offset = 0.0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.factor + self._offset)

    def advance(self, seconds: float) -> None:
        self._offset += seconds

    def elapsed(self) -> float:
        return (self.now() - self.start).total_seconds()


def http(method: str, url: str, body: bytes | None = None, ctype: str = "", timeout: float = HTTP_TIMEOUT):
    """(status, body bytes) of one request; (0, b"") when nothing answered."""
    request = urllib.request.Request(url, data=body, method=method)
    if ctype:
        request.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, TimeoutError):
        return 0, b""


@dataclass
class ProcessEvent:
    """Something a process did that the timeline shows (the machine hears of it through observations)."""

    kind: str  # started | ready | exited | promoted
    pod: str
    role: str
    version: int
    detail: str = ""
    terminated: Terminated | None = None


@dataclass
class RuntimeProcess:
    """One "pod": a runtime process for a role and version, restarted in place when it exits."""

    name: str
    role: Role
    version: int
    code_dir: Path
    home: Path
    cage: Cage | None
    port: int = 0
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    ready: bool = False
    reference_sent: bool = False
    last_terminated: Terminated | None = None
    restart_at: float | None = None  # monotonic time of the next start while backing off
    started_at: float = 0.0
    oom_before: int = 0
    log_file: Any = None
    log_offset: int = 0
    caged: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def termination_log(self) -> Path:
        return self.home / "termination-log"

    @property
    def log_path(self) -> Path:
        return self.home / "runtime.log"

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None


@dataclass
class ProcessBackend:
    """The world of one monitor on this machine, observed as pods and changed by the machine's actions."""

    spec_document: dict[str, Any]  # the ModelMonitor manifest (or bare spec) as loaded
    workdir: Path
    name: str = "monitor"
    reference_csv: bytes | None = None
    memory_limit: int | None = None
    cage_mechanism: str = "auto"
    clock: Clock = field(default_factory=Clock)
    generate_fn: GenerateFn = produce_version
    restart_backoff: tuple[float, float] = (1.0, 10.0)  # first and longest wait before a restart
    environment: dict[str, str] = field(default_factory=dict)
    on_event: Callable[[ProcessEvent], None] = lambda event: None
    on_generated: Callable[[ProducedVersion], None] = lambda produced: None
    processes: dict[str, RuntimeProcess] = field(default_factory=dict)  # by role
    annotations: dict[str, str] = field(default_factory=dict)
    generation: int = 1
    _executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "poet-gen"))
    _futures: dict[int, Future[GenerationOutcome]] = field(default_factory=dict)
    _outcome: GenerationOutcome | None = None
    _pod_counter: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reference_sha: str | None = None
    _epoch: int = 0

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "pods").mkdir(exist_ok=True)

    # -- paths -----------------------------------------------------------------------------------------------

    @property
    def versions_dir(self) -> Path:
        return self.workdir / "versions"

    def version_dir(self, number: int) -> Path:
        return self.versions_dir / f"v{number}"

    @property
    def lessons_file(self) -> Path:
        return self.workdir / "lessons.json"

    # -- observation -----------------------------------------------------------------------------------------

    def spec(self) -> tuple[MonitorSpec | None, tuple[tuple[str, str], ...]]:
        body = self.spec_document.get("spec", self.spec_document)
        try:
            return MonitorSpec.from_mapping(body or {}, path_prefix="spec"), ()
        except SpecError as exc:
            return None, tuple(exc.problems)

    def stored_versions(self) -> dict[int, VersionInfo]:
        found: dict[int, VersionInfo] = {}
        for directory in sorted(self.versions_dir.glob("v*")):
            manifest = directory / contract.MANIFEST_FILE
            number = directory.name[1:]
            if not number.isdigit() or not manifest.is_file():
                continue
            info = version_info(
                {
                    "metadata": {"name": str(directory), "labels": {LABEL_VERSION: number}},
                    "data": {"manifest.json": manifest.read_text(encoding="utf-8")},
                }
            )
            if info is not None:
                found[info.number] = info
        return found

    def observe(self) -> Observation:
        """The world now, as the machine sees it; also restarts processes whose back-off is over."""
        spec, problems = self.spec()
        for process in list(self.processes.values()):
            self._check(process)
        pods = tuple(self._pod(p) for p in self.processes.values())
        deployments = {
            role: DeploymentObservation(
                role=role,  # type: ignore[arg-type]
                version=p.version,
                replicas=1,
                ready_replicas=1 if p.ready else 0,
                updated_replicas=1,
            )
            for role, p in self.processes.items()
        }
        reports: dict[str, RuntimeReport] = {}
        for role, process in self.processes.items():
            if process.ready:
                report = self.report(role)
                if report is not None:
                    reports[role] = runtime_report(report, role)  # type: ignore[arg-type]
        with self._lock:
            outcome = self._outcome
            generating = frozenset(n for n, f in self._futures.items() if not f.done())
        return Observation(
            now=self.clock.now(),
            generation=self.generation,
            spec=spec,
            spec_problems=problems,
            annotations=dict(self.annotations),
            versions=self.stored_versions(),
            generating=generating,
            outcome=outcome,
            stable=deployments.get("stable"),
            canary=deployments.get("canary"),
            pods=pods,
            reports=reports,
            reference_stored_sha256=self._reference_sha,
            history_stored_version=self.history_stored_version(),
        )

    def consume_outcome(self, outcome: GenerationOutcome | None) -> None:
        """The machine has recorded this outcome in the status: it must not be delivered again."""
        with self._lock:
            if outcome is not None and self._outcome is outcome:
                self._outcome = None

    def _pod(self, process: RuntimeProcess) -> PodObservation:
        waiting = "CrashLoopBackOff" if process.restart_at is not None else ""
        tail = ""
        term = process.last_terminated
        if term is not None and not term.message:
            tail = _tail(process.log_path)
        return PodObservation(
            name=process.name,
            role=process.role,
            version=process.version,
            ready=process.ready,
            restart_count=process.restarts,
            phase="Running" if process.running() else "Pending",
            last_terminated=term,
            waiting_reason=waiting,
            log_tail=tail,
        )

    def report(self, role: str) -> dict[str, Any] | None:
        process = self.processes.get(role)
        if process is None or not process.running():
            return None
        status, body = http("GET", process.url + "/v1/report")
        if status != 200:
            return None
        try:
            value = json.loads(body)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    # -- processes -------------------------------------------------------------------------------------------

    def _check(self, process: RuntimeProcess) -> None:
        """Exit, restart and readiness of one process (what the kubelet does for a container)."""
        if process.popen is not None and process.popen.poll() is not None:
            self._exited(process)
        if process.restart_at is not None and time.monotonic() >= process.restart_at:
            process.restart_at = None
            self._start(process)
        if process.running() and not process.port:
            process.port = _bound_port(process.log_path, process.log_offset)
        if process.running() and process.port and not process.ready:
            status, _ = http("GET", process.url + "/readyz", timeout=1.0)
            if status == 200 and process.cage is not None and not process.caged:
                process.cage.limit_running(process.popen.pid)  # type: ignore[union-attr]
                process.caged = True  # RLIMIT_AS over the loaded size; a cgroup holds from exec on
            if status == 200 and self._send_reference(process):
                process.ready = True
                detail = f"port {process.port}"
                self.on_event(ProcessEvent("ready", process.name, process.role, process.version, detail))
        elif process.running() and process.ready:
            status, _ = http("GET", process.url + "/readyz", timeout=1.0)
            if status == 503:  # said so; a slow answer under load is not taken as unready
                process.ready = False

    def _send_reference(self, process: RuntimeProcess) -> bool:
        """A process that did not load the stored reference at start gets `--reference` (the CSV file)."""
        if self.reference_csv is None or process.reference_sent:
            return True
        status, body = http(
            "POST", process.url + "/v1/reference", self.reference_csv, "text/csv", timeout=30.0
        )
        if status == 200:
            process.reference_sent = True
            return True
        if status not in (0, 503):
            raise ReferenceRefused(f"the runtime refused the reference ({status}): {body[:500]!r}")
        return False

    def _exited(self, process: RuntimeProcess) -> None:
        assert process.popen is not None
        code = process.popen.returncode
        if process.log_file is not None:
            process.log_file.close()
            process.log_file = None
        process.popen = None
        process.ready = False
        process.caged = False
        process.reference_sent = False
        message = ""
        with contextlib.suppress(OSError):
            message = process.termination_log.read_text(encoding="utf-8", errors="replace")
        exit_code = 128 - code if code < 0 else code
        reason = "Completed" if code == 0 else "Error"
        if (
            code == -signal.SIGKILL
            and process.cage is not None
            and process.cage.oom_kills() > process.oom_before
        ):
            reason = "OOMKilled"  # the kernel's OOM killer in the process's memory cgroup
        elif code == EXIT_OUT_OF_MEMORY:
            # The runtime ran out of memory without a kill (an allocation failed, as under RLIMIT_AS) and
            # ended itself with its out-of-memory record: the same failure, reported the same way.
            reason = "OOMKilled"
        elif (
            code != 0
            and process.cage is not None
            and process.cage.mechanism == "rlimit"
            and not message.strip()
            and _allocation_failed(_tail(process.log_path))
        ):
            # RLIMIT_AS: an allocation in C or C++ code failed and the library ended the process before
            # Python could raise (glibc: "cannot allocate memory for thread-local data", exit 127; Arrow:
            # "Out of memory", abort). Under a cgroup the kernel would have killed it for the same memory.
            reason = "OOMKilled"
        finished = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        process.last_terminated = Terminated(exit_code, reason, message.strip(), finished)
        process.restarts += 1
        low, high = self.restart_backoff
        process.restart_at = time.monotonic() + min(high, low * 2 ** (process.restarts - 1))
        self.on_event(
            ProcessEvent(
                "exited", process.name, process.role, process.version, reason, process.last_terminated
            )
        )

    def _start(self, process: RuntimeProcess) -> None:
        process.home.mkdir(parents=True, exist_ok=True)
        (process.home / "checkpoints").mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            process.termination_log.unlink()  # a new container starts with an empty termination log
        process.port = 0  # the runtime binds a free port itself and logs it (no race with other programs)
        command = [
            sys.executable,
            "-m",
            "poet_operator.cli",
            "serve",
            "--code-dir",
            str(process.code_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(process.port),
            "--checkpoint-dir",
            str(process.home / "checkpoints"),
            "--termination-log",
            str(process.termination_log),
        ]
        if self.reference_file.exists():
            command += ["--reference-file", str(self.reference_file)]
            process.reference_sent = True  # loaded at start, as a pod mounts the reference ConfigMap
        # Always passed, as the optional ConfigMap is always mounted: absent until the first promotion.
        command += ["--history-file", str(self.history_file)]
        if process.cage is not None:
            command = process.cage.launcher_args() + command
            process.oom_before = process.cage.oom_kills()
        env = {**os.environ, **self.environment}
        process.log_file = process.log_path.open("ab")
        process.log_offset = process.log_file.tell()
        process.popen = subprocess.Popen(
            command, stdout=process.log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        process.started_at = time.monotonic()
        (process.home / "pid").write_text(f"{process.popen.pid}\n")  # what a container id is to a pod
        detail = f"pid {process.popen.pid}"
        if process.cage is not None:
            detail += f", memory limit {process.cage.describe()}"
        self.on_event(ProcessEvent("started", process.name, process.role, process.version, detail))

    def _stop(self, process: RuntimeProcess) -> None:
        popen = process.popen
        if popen is not None and popen.poll() is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
        if process.log_file is not None:
            process.log_file.close()
            process.log_file = None
        process.popen = None
        process.ready = False
        if process.cage is not None:
            process.cage.close()

    def ensure(self, role: Role, version: int) -> None:
        current = self.processes.get(role)
        if current is not None and current.version == version:
            return
        if current is not None:
            self._stop(current)
        canary = self.processes.get("canary")
        if role == "stable" and canary is not None and canary.version == version:
            # A promotion: the canary process, already serving this version with the data it has seen,
            # becomes the stable one (a cluster would roll the stable Deployment to new pods instead; the
            # machine removes the canary Deployment in the same step, which then finds nothing to remove).
            del self.processes["canary"]
            canary.role = "stable"
            self.processes["stable"] = canary
            self.on_event(ProcessEvent("promoted", canary.name, "stable", version))
            return
        self._pod_counter += 1
        name = f"{self.name}-{role}-v{version}-{self._pod_counter}"
        cage = None
        if self.memory_limit is not None:
            # Unique per backend: two runs on one machine must never share (or remove) a cgroup.
            unique = f"poetmon-{os.getpid()}-{id(self):x}-{name}"
            cage = make_cage(
                self.memory_limit,
                unique,
                prefer=self.cage_mechanism,
                after_load=True,
            )
        process = RuntimeProcess(
            name=name,
            role=role,
            version=version,
            code_dir=self.version_dir(version),
            home=self.workdir / "pods" / name,
            cage=cage,
        )
        self.processes[role] = process
        self._start(process)

    def remove(self, role: str) -> None:
        process = self.processes.pop(role, None)
        if process is not None:
            self._stop(process)

    def kill(self, role: str, sig: int = signal.SIGKILL) -> int:
        """Send a signal to a role's process (what the kernel or a person may do); returns its pid."""
        process = self.processes[role]
        pid = process.pid()
        if pid is None:
            raise RuntimeError(f"the {role} process is not running")
        process.popen.send_signal(sig)  # type: ignore[union-attr]
        return pid

    def close(self) -> None:
        for role in list(self.processes):
            self.remove(role)
        for future in self._futures.values():
            future.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- actions ---------------------------------------------------------------------------------------------

    def apply(self, action: Action, observation: Observation) -> None:
        if isinstance(action, Generate):
            self._generate(action, observation.spec)
        elif isinstance(action, EnsureDeployment):
            self.ensure(action.role, action.version)
        elif isinstance(action, RemoveDeployment):
            self.remove(action.role)
        elif isinstance(action, DeleteVersions):
            for number in action.versions:
                shutil.rmtree(self.version_dir(number), ignore_errors=True)
        elif isinstance(action, RecordLessons):
            self._record_lessons(action.version)
        elif isinstance(action, HandOffReference):
            self._hand_off_reference(action.to_role)
        elif isinstance(action, HandOffHistory):
            self._hand_off_history(action.to_role)
        elif isinstance(action, StoreHistory):
            self._store_history(action.version)
        elif isinstance(action, ClearAnnotation):
            self.annotations.pop(action.key, None)
        elif isinstance(action, EnsureService | Emit):
            pass  # the replay reaches every process directly; events go to the timeline

    def _hand_off_reference(self, to_role: str | None) -> None:
        """As the operator does between pods: the stable process's reference (`GET /v1/reference`, npz) is
        stored as `reference.npz`, which later processes load at start (`--reference-file`), and is posted to
        the canary when it holds another one."""
        stable = self.processes.get("stable")
        if stable is None or not stable.ready:
            return
        status, body, sha = _get_reference(stable.url)
        if status != 200:
            return
        staging = self.reference_file.with_suffix(".tmp")
        staging.write_bytes(body)
        staging.replace(self.reference_file)
        self._reference_sha = sha or None
        target = self.processes.get(to_role) if to_role else None
        if target is not None and target.ready:
            http("POST", target.url + "/v1/reference", body, REFERENCE_CONTENT_TYPE, timeout=30.0)

    @property
    def reference_file(self) -> Path:
        return self.workdir / "reference.npz"

    # -- the evaluation history ------------------------------------------------------------------------------

    @property
    def history_file(self) -> Path:
        return self.workdir / "history.json.gz"

    @property
    def history_version_file(self) -> Path:
        return self.workdir / "history-version"

    def history_stored_version(self) -> int | None:
        """The promotion the kept history was stored for (what a cluster reads from its annotation)."""
        try:
            return int(self.history_version_file.read_text(encoding="utf-8").strip())
        except (OSError, ValueError):
            return None

    def _history_of(self, role: str) -> tuple[int, list[dict[str, Any]]] | None:
        """(limit, entries) of a ready process's `GET /v1/history`; None when it does not answer."""
        process = self.processes.get(role)
        if process is None or not process.ready:
            return None
        status, body = http("GET", process.url + "/v1/history", timeout=30.0)
        if status != 200:
            return None
        try:
            data = json.loads(body)
            return int(data.get("limit") or 0), parse_history(data)
        except ValueError:
            return None

    def _hand_off_history(self, to_role: str) -> None:
        """As the operator does between pods: the stable process's history merged into `to_role`'s."""
        stable, target = self.processes.get("stable"), self.processes.get(to_role)
        if stable is None or target is None or not stable.ready or not target.ready:
            return
        status, body = http("GET", stable.url + "/v1/history", timeout=30.0)
        if status == 200:
            http("POST", target.url + "/v1/history", body, "application/json", timeout=30.0)

    def _store_history(self, version: int) -> None:
        """The promoted canary's history (merged with the stable process's) kept for processes started
        later, then marked as stored for `version`: written whole, the mark last."""
        canary = self.processes.get("canary")
        source = self._history_of("canary") if canary is not None and canary.version == version else None
        if source is None:
            return
        limit, entries = source
        merged = EvaluationHistory(max(1, limit), entries)
        stable = self._history_of("stable")
        if stable is not None:
            merged.merge(stable[1])
        data, _ = encode_history_file(merged.as_list(), limit=merged.limit, max_bytes=HISTORY_GZIP_MAX)
        staging = self.history_file.with_suffix(".tmp")
        staging.write_bytes(data)
        staging.replace(self.history_file)
        self.history_version_file.write_text(f"{version}\n", encoding="utf-8")

    def _generate(self, action: Generate, spec: MonitorSpec | None) -> None:
        with self._lock:
            future = self._futures.get(action.version)
            if spec is None or (future is not None and not future.done()):
                return
            epoch = self._epoch
            self._futures[action.version] = self._executor.submit(self._run_generation, spec, action, epoch)

    def _run_generation(self, spec: MonitorSpec, action: Generate, epoch: int) -> GenerationOutcome:
        outcome = self._produce_and_store(spec, action)
        with self._lock:
            if epoch == self._epoch:  # not from before forget_generations()
                self._outcome = outcome
        return outcome

    def forget_generations(self) -> None:
        """Lose what a restarted operator loses: running generations and an outcome not yet recorded.
        (A generation already running still finishes and writes its directory, as a ConfigMap would be.)"""
        with self._lock:
            self._epoch += 1
            self._futures.clear()
            self._outcome = None

    def _produce_and_store(self, spec: MonitorSpec, action: Generate) -> GenerationOutcome:
        target = self.version_dir(action.version)
        existing = self.stored_versions().get(action.version)
        if existing is not None:
            return GenerationOutcome(action.version, "written", action.spec_hash, info=existing)
        previous = None
        if action.previous is not None:
            before = self.version_dir(action.previous)
            if (before / contract.CODE_FILE).is_file():
                previous = previous_from_files(
                    (before / contract.CODE_FILE).read_text(encoding="utf-8"),
                    (before / contract.MANIFEST_FILE).read_text(encoding="utf-8"),
                )
        lessons = lessons_from_json(
            self.lessons_file.read_text(encoding="utf-8") if self.lessons_file.exists() else None
        )
        feedback = [Feedback.from_dict(f.to_dict()) for f in action.feedback]
        try:
            produced = self.generate_fn(
                spec,
                monitor=self.name,
                version=action.version,
                feedback=feedback,
                previous=previous,
                lessons=lessons,
            )
        except Exception as exc:  # a bug in generation must reach the status, not kill the loop
            produced = ProducedVersion(action.version, "error", message=f"{type(exc).__name__}: {exc}")
        self.on_generated(produced)
        if produced.status != "written":
            return GenerationOutcome(action.version, produced.status, action.spec_hash, produced.message)  # type: ignore[arg-type]
        staging = target.with_name(target.name + ".tmp")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        (staging / contract.CODE_FILE).write_text(produced.code, encoding="utf-8")
        (staging / contract.MANIFEST_FILE).write_text(produced.manifest_json, encoding="utf-8")
        staging.rename(target)  # written once, whole, like an immutable ConfigMap
        info = self.stored_versions().get(action.version)
        return GenerationOutcome(action.version, "written", action.spec_hash, info=info)

    def _record_lessons(self, version: int) -> None:
        manifest_file = self.version_dir(version) / contract.MANIFEST_FILE
        if not manifest_file.exists():
            return
        store = lessons_from_json(
            self.lessons_file.read_text(encoding="utf-8") if self.lessons_file.exists() else None
        )
        confirm_healthy_version(
            json.loads(manifest_file.read_text(encoding="utf-8")),
            store,
            evidence={"monitor": self.name, "observed": "the version passed its canary analysis locally"},
        )
        self.lessons_file.write_text(lessons_to_json(store), encoding="utf-8")

    def wait_generations(self, timeout: float = 300.0) -> None:
        """Block until running generations are done and their outcomes delivered."""
        deadline = time.monotonic() + timeout
        with self._lock:
            futures = list(self._futures.values())
        for future in futures:
            future.result(timeout=max(0.1, deadline - time.monotonic()))


class ReferenceRefused(RuntimeError):
    """The runtime answered the reference upload with a client error: the reference file is unusable."""


# What C and C++ libraries print when an allocation fails and they end the process themselves.
_ALLOCATION_FAILED = re.compile(
    r"cannot allocate memory|out of memory|std::bad_alloc|memory allocation of \d+ bytes failed",
    re.IGNORECASE,
)


def _allocation_failed(log_tail: str) -> bool:
    """True when the last lines a process wrote outside its JSON log say an allocation failed."""
    plain = [line for line in log_tail.splitlines() if line.strip() and not line.lstrip().startswith("{")]
    return any(_ALLOCATION_FAILED.search(line) for line in plain[-5:])


def _get_reference(url: str) -> tuple[int, bytes, str]:
    """(status, npz bytes, sha256) of a runtime's `GET /v1/reference`."""
    request = urllib.request.Request(url + "/v1/reference", headers={"Accept": REFERENCE_CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=30.0) as response:
            return response.status, response.read(), response.headers.get("X-Poet-Reference-Sha256", "")
    except urllib.error.HTTPError as exc:
        return exc.code, b"", ""
    except (OSError, TimeoutError):
        return 0, b"", ""


def _bound_port(log: Path, offset: int) -> int:
    """The port from this start's `runtime.started` log line (0 while it has not been written)."""
    try:
        with log.open("rb") as handle:
            handle.seek(offset)
            for line in handle:
                if b'"runtime.started"' in line:
                    with contextlib.suppress(ValueError):
                        return int(json.loads(line).get("port") or 0)
    except OSError:
        pass
    return 0


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


__all__ = ["Clock", "ProcessBackend", "ProcessEvent", "ReferenceRefused", "RuntimeProcess", "http"]
