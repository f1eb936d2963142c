"""The scenario driver over the local process backend: the same surface as `world.World`, but pods are real
`poetmon serve` processes and crashes are real process deaths.

- `finish_generations()` waits for the real POET runs (cached per spec and feedback within a test session,
  with the version number stamped into the manifest, since the code does not depend on it);
- `pods_ready()` waits until the processes answer `/readyz`;
- `crash(role, reason="OOMKilled")` lets the kernel's OOM killer end the process: its cgroup's limit is set
  just above what it uses and a large reference is posted to it; any other crash is a SIGKILL. The backend
  finds out how the process ended the way it always does (exit status, termination log, the cgroup's
  `oom_kill` counter);
- `advance(seconds)` moves the backend's clock (the machine's time), not the processes';
- `evaluate(role)` sends the role's process a reference (once) and a window of rows, and waits for the
  evaluation to show in its history.

What the plain-data world fakes and processes cannot do on demand (a crash record from generated code, an
error rate, a Prometheus query result) is left to the plain-data world; see `KIND` checks in the scenarios.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from poet_operator.local.cage import parse_memory
from poet_operator.local.dev_backend import Clock, ProcessBackend, http
from poet_operator.poet.produce import ProducedVersion, produce_version
from poet_operator.rollout.actions import Decision, DeleteVersions, Emit, Generate, RecordLessons
from poet_operator.rollout.machine import Policy, code_spec_hash, decide
from poet_operator.rollout.observations import VersionInfo
from poet_operator.rollout.status import MonitorStatus

READY_TIMEOUT = 120.0
MEMORY_LIMIT = "1G"  # roomy: crashes come from crash(), which tightens it
_PRODUCED: dict[tuple[str, tuple[str, ...]], ProducedVersion] = {}


def cached_produce(
    spec: Any, *, monitor: str, version: int, feedback: Any = (), **kwargs: Any
) -> ProducedVersion:
    """Real POET output, reused for the same spec and feedback signatures with the version stamped in."""
    key = (code_spec_hash(spec), tuple(sorted({f.signature for f in feedback})))
    produced = _PRODUCED.get(key)
    if produced is None:
        produced = produce_version(spec, monitor=monitor, version=version, feedback=feedback, **kwargs)
        if produced.status != "written":
            return produced
        _PRODUCED[key] = produced
    manifest = json.loads(produced.manifest_json)
    manifest["version"] = version
    return ProducedVersion(
        version,
        "written",
        code=produced.code,
        manifest_json=json.dumps(manifest, indent=1, sort_keys=True),
        generator=produced.generator,
        enforce_checks=produced.enforce_checks,
    )


@dataclass
class ProcessWorld:
    """A monitor whose backend is local processes; driven step by step like the plain-data world."""

    spec: dict[str, Any]
    workdir: Path
    generation: int = 1
    status: MonitorStatus = field(default_factory=MonitorStatus)
    policy: Policy = field(default_factory=Policy)
    reject_next: str | None = None
    events: list[Emit] = field(default_factory=list)
    generate_calls: list[Generate] = field(default_factory=list)
    lessons_recorded: list[int] = field(default_factory=list)
    deleted_versions: list[int] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    KIND = "processes"

    def __post_init__(self) -> None:
        self._gate = threading.Event()  # generations finish when finish_generations() says so
        self.clock = Clock(factor=0.0)  # the machine's time moves only when a test says so, as in World
        self.backend = ProcessBackend(
            spec_document=self.spec,
            workdir=self.workdir,
            name="m",
            memory_limit=parse_memory(MEMORY_LIMIT),
            cage_mechanism="cgroup",
            clock=self.clock,
            generate_fn=self._generate,
            restart_backoff=(0.5, 2.0),
            environment={"POET_MAX_EVALUATION_INTERVAL_S": "0.2"},
        )

    # -- the surface the scenarios use ---------------------------------------------------------------------

    @property
    def annotations(self) -> dict[str, str]:
        return self.backend.annotations

    @property
    def deployments(self) -> dict[str, int]:
        return {role: p.version for role, p in self.backend.processes.items()}

    @property
    def configmaps(self) -> dict[int, VersionInfo]:
        return self.backend.stored_versions()

    def step(self) -> Decision:
        self.backend.spec_document = self.spec
        self.backend.generation = self.generation
        observation = self.backend.observe()
        decision = decide(self.status, observation, self.policy)
        self.backend.consume_outcome(observation.outcome)
        self.decisions.append(decision)
        self.status = decision.status
        for action in decision.actions:
            if isinstance(action, Generate):
                self.generate_calls.append(action)
            elif isinstance(action, Emit):
                self.events.append(action)
            elif isinstance(action, RecordLessons):
                self.lessons_recorded.append(action.version)
            elif isinstance(action, DeleteVersions):
                self.deleted_versions.extend(action.versions)
            self.backend.apply(action, observation)
        return decision

    def finish_generations(self) -> None:
        """Generations complete now (until then they wait, as the plain-data world's do)."""
        self._gate.set()
        try:
            self.backend.wait_generations()
        finally:
            self._gate.clear()

    def pods_ready(self, role: str | None = None) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            self.backend.observe()
            waiting = [
                p for r, p in self.backend.processes.items() if (role is None or r == role) and not p.ready
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                logs = {p.name: p.log_path.read_text(errors="replace")[-2000:] for p in waiting}
                raise AssertionError(f"processes not ready in {READY_TIMEOUT} s: {logs}")
            time.sleep(0.2)

    def crash(self, role: str, *, reason: str = "OOMKilled", exit_code: int = 137, message: str = "") -> None:
        """The role's process dies for real; returns once the backend has seen it go."""
        process = self.backend.processes[role]
        if reason == "OOMKilled":
            self.pods_ready(role)  # the kernel can only kill what allocates: it must be serving
        deadline = time.monotonic() + READY_TIMEOUT
        while not process.running():  # backing off before a restart: it dies again once it is back
            assert time.monotonic() < deadline, f"the {role} process did not come back"
            self.backend.observe()
            time.sleep(0.05)
        before = process.restarts
        if reason == "OOMKilled":
            self._oom_kill(role)
        else:
            self.backend.kill(role, signal.SIGKILL)
        while process.restarts == before:
            assert time.monotonic() < deadline, f"the {role} process did not die"
            self.backend.observe()
            time.sleep(0.05)

    def _oom_kill(self, role: str) -> None:
        process = self.backend.processes[role]
        cage = process.cage
        assert cage is not None and cage.path is not None and cage.mechanism == "cgroup-v1", cage
        usage = int((cage.path / "memory.usage_in_bytes").read_text())
        (cage.path / "memory.limit_in_bytes").write_text(str(usage + 8 * 1024**2))
        rng = np.random.default_rng(len(self.events))
        body = "x,y\n" + "\n".join(
            f"{a:.6f},k{b}" for a, b in zip(rng.random(200_000), rng.integers(0, 10**9, 200_000), strict=True)
        )
        deadline = time.monotonic() + READY_TIMEOUT
        while process.popen is not None and process.popen.poll() is None:
            assert time.monotonic() < deadline, "the kernel did not kill the process"
            http("POST", process.url + "/v1/reference", body.encode(), "text/csv", timeout=30.0)
        (cage.path / "memory.limit_in_bytes").write_text(str(cage.limit))  # the next container's limit

    def evaluate(self, role: str) -> None:
        """The role's process evaluates a window of real rows: one more entry in its history."""
        process = self.backend.processes[role]
        before = self._history(role)
        rng = np.random.default_rng(len(before) + 10 * process.version)
        if (self.backend.report(role) or {}).get("reference", {}).get("sha256") is None:
            reference = "x\n" + "\n".join(f"{v:.6f}" for v in rng.normal(0, 1, 500))
            status, body = http("POST", process.url + "/v1/reference", reference.encode(), "text/csv", 30.0)
            assert status == 200, body
        rows = "x\n" + "\n".join(f"{v:.6f}" for v in rng.normal(0.5, 1, 1000))
        status, body = http("POST", process.url + "/v1/batches", rows.encode(), "text/csv", 30.0)
        assert status == 202, body
        deadline = time.monotonic() + READY_TIMEOUT
        while len(self._history(role)) <= len(before):
            assert time.monotonic() < deadline, f"the {role} process did not evaluate"
            time.sleep(0.1)

    def _history(self, role: str) -> list[dict[str, Any]]:
        status, body = http("GET", self.backend.processes[role].url + "/v1/history")
        assert status == 200, body
        return list(json.loads(body)["evaluations"])

    def history_versions(self, role: str) -> list[int]:
        """The versions in the history of the role's process, oldest entry first."""
        return [int(e["version"]) for e in self._history(role)]

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def restart_operator(self) -> None:
        self.backend.forget_generations()

    def settle(self, steps: int = 6) -> Decision:
        decision = self.step()
        for _ in range(steps):
            self.finish_generations()
            self.pods_ready()
            before = self.status.to_dict()
            decision = self.step()
            if self.status.to_dict() == before and not self.backend.observe().generating:
                break
        return decision

    def event_reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def with_spec(self, **changes: Any) -> None:
        self.spec = {**self.spec, **changes}
        self.generation += 1

    def close(self) -> None:
        self._gate.set()  # a generation still waiting may finish; queued ones are cancelled
        self.backend.close()

    # -- generation ------------------------------------------------------------------------------------------

    def _generate(self, spec: Any, **kwargs: Any) -> ProducedVersion:
        assert self._gate.wait(READY_TIMEOUT * 5), "a generation was never let finish"
        if self.reject_next:
            status, self.reject_next = self.reject_next, None
            return ProducedVersion(kwargs["version"], status, message="enforce: 2 checks failed")
        return cached_produce(spec, **kwargs)


__all__ = ["ProcessWorld", "cached_produce"]
