"""`poetmon dev`: the operator's whole self-healing loop on one machine, with processes instead of pods.

The loop is the operator's: observe the world, let `rollout.machine.decide` choose, carry out its actions,
again. Only the backend differs (`dev_backend.ProcessBackend`). The stream is replayed to the stable process
(and the canary while one runs) once the first version is ready; the run ends when the stream is over and
the rollout has settled (nothing generating, no canary, the stable process ready), or at `max_seconds`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from monitor_runtime import contract
from poet_operator.local.cage import MemoryLimitError, make_cage, parse_memory
from poet_operator.local.dev_backend import Clock, ProcessBackend, ReferenceRefused, http
from poet_operator.local.replay import Replay, StreamError, load_batches
from poet_operator.local.run_once import format_table
from poet_operator.local.timeline import Timeline, summary_of
from poet_operator.rollout.actions import Emit
from poet_operator.rollout.machine import Policy, decide
from poet_operator.rollout.render import VersionPayload, render_diff
from poet_operator.rollout.status import MonitorStatus
from poet_operator.spec import SpecError, load_document_file

EXIT_OK = 0
EXIT_NOT_HEALED = 1
EXIT_BAD_INPUT = 2
TICK_SECONDS = 0.25
DRAIN_SECONDS = 60.0  # after the stream and the rollout are done, how long the stable may take to evaluate


@dataclass
class DevConfig:
    """What `poetmon dev` was asked to do."""

    spec_file: str
    data: str
    reference: str | None = None
    memory_limit: str | None = None
    speed: float = 1.0
    workdir: str | None = None
    batch_rows: int = 2000
    max_seconds: float = 900.0
    cage: str = "auto"  # auto | cgroup | systemd | rlimit (cage.make_cage)
    until: str = "end"  # end: replay the whole stream | healed: stop once a promoted version serves
    restart_backoff: tuple[float, float] = (1.0, 10.0)
    environment: dict[str, str] = field(default_factory=dict)


@dataclass
class DevResult:
    """How the run ended (the CLI prints it; tests assert on it)."""

    status: MonitorStatus
    workdir: Path
    events: list[Emit]
    lines: list[str]
    report: dict | None
    exit_code: int


def dev_command(config: DevConfig, out: TextIO | None = None) -> int:
    """Run the loop; exit 0 when it ends with a healthy stable version, 1 when not, 2 for bad input."""
    try:
        return run_dev(config, out).exit_code
    except (SpecError, StreamError, MemoryLimitError, ReferenceRefused, OSError) as exc:
        print(f"poetmon dev: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\npoetmon dev: interrupted; the processes were stopped", file=sys.stderr)
        return 130


def run_dev(config: DevConfig, out: TextIO | None = None) -> DevResult:
    clock = Clock()  # from the start, so the timeline's first stamp includes reading the files
    document = load_document_file(config.spec_file)
    limit = parse_memory(config.memory_limit) if config.memory_limit else None
    # Which cage the processes will get, decided (and a cage that was asked for and cannot be had refused)
    # before anything starts.
    cage = None
    if limit is not None:
        cage = make_cage(limit, f"poetmon-{os.getpid()}-check", prefer=config.cage, after_load=True)
        cage.close()
    batches = load_batches(config.data, config.batch_rows)
    reference = Path(config.reference).read_bytes() if config.reference else None
    workdir = Path(config.workdir or Path(".poetmon-dev") / document.name).resolve()
    if workdir.exists():
        shutil.rmtree(workdir)  # each run starts from nothing, like a freshly applied monitor
    workdir.mkdir(parents=True)
    timeline = Timeline(out, clock=clock)
    backend = ProcessBackend(
        spec_document=document.spec.to_dict(),
        workdir=workdir,
        name=document.name,
        reference_csv=reference,
        memory_limit=limit,
        cage_mechanism=config.cage,
        clock=clock,
        restart_backoff=config.restart_backoff,
        environment=config.environment,
        on_event=timeline.process,
        on_generated=timeline.generated,
    )
    replay = Replay(batches, lambda: _targets(backend), speed=config.speed)
    timeline.line(
        f"poetmon dev {document.name}: {replay.total_rows} rows from {config.data} at speed {config.speed:g}"
        + (f", memory limit {cage.describe()} per process" if cage is not None else "")
        + f"; working directory {workdir}"
    )
    if cage is not None and cage.mechanism == "rlimit":
        why = "as asked" if config.cage == "rlimit" else "no memory cgroup or systemd user scope here"
        timeline.line(
            f"{why}: RLIMIT_AS caps what each process allocates, so a process past it fails on its own "
            "(exit status 3, out of memory) instead of being killed",
            "Warning",
        )
    status = MonitorStatus()
    events: list[Emit] = []
    policy = Policy(poll_seconds=1.0)
    deadline = time.monotonic() + config.max_seconds
    drain_deadline: float | None = None
    promoted = False
    try:
        while True:
            observation = backend.observe()
            decision = decide(status, observation, policy)
            backend.consume_outcome(observation.outcome)
            status = decision.status
            for action in decision.actions:
                if isinstance(action, Emit):
                    events.append(action)
                    timeline.decision(action)
                backend.apply(action, observation)
            stable_report = observation.reports.get("stable")
            if stable_report is not None and stable_report.evaluations:
                timeline.drift(
                    "stable", stable_report.version, stable_report.drifted_features, stable_report.drift_score
                )
            stable = backend.processes.get("stable")
            if not replay.started and stable is not None and stable.ready:
                replay.start()
            if replay.started and not replay.done:
                timeline.progress(replay.progress(), _progress_detail(replay))
            if replay.done and drain_deadline is None:
                drain_deadline = time.monotonic() + DRAIN_SECONDS
            if replay.done and _finished(status, backend, observation.generating, drain_deadline):
                break
            if _never_starts(status, backend, observation.generating):
                timeline.line(f"stopped: phase {status.phase} before any version ran", "Warning")
                break
            promoted = promoted or decision.rollout == "promoted"
            if config.until == "healed" and _healed(status, backend, observation.generating, promoted):
                timeline.line(
                    f"stream stopped at {replay.sent_rows:,} of {replay.total_rows:,} rows: "
                    "the promoted version serves and has evaluated data (--until healed)"
                )
                break
            if time.monotonic() > deadline:
                timeline.line(f"stopped after {config.max_seconds:.0f} s without settling", "Warning")
                break
            time.sleep(TICK_SECONDS)
        if replay.done:
            timeline.progress(replay.progress(), _progress_detail(replay))
        report = _final(backend, status, timeline, workdir)
    finally:
        replay.stop()
        backend.close()
    (workdir / "status.json").write_text(json.dumps(status.to_dict(), indent=1), encoding="utf-8")
    healed = status.phase == "Running"
    return DevResult(status, workdir, events, timeline.lines, report, EXIT_OK if healed else EXIT_NOT_HEALED)


def _targets(backend: ProcessBackend) -> list[tuple[str, str]]:
    return [
        (role, process.url)
        for role, process in list(backend.processes.items())
        if process.ready and process.running()
    ]


def _progress_detail(replay: Replay) -> str:
    sent = ", ".join(f"{role} {rows:,}" for role, rows in sorted(replay.delivered.items()))
    return f"{replay.sent_rows:,}/{replay.total_rows:,} rows" + (f" (accepted: {sent})" if sent else "")


def _settled(status: MonitorStatus, backend: ProcessBackend, generating: frozenset[int]) -> bool:
    stable = backend.processes.get("stable")
    return (
        status.phase == "Running"
        and status.pending is None
        and status.canary_version is None
        and not generating
        and stable is not None
        and stable.ready
        and stable.version == status.stable_version
    )


def _healed(
    status: MonitorStatus, backend: ProcessBackend, generating: frozenset[int], promoted: bool
) -> bool:
    """A version promoted in this run serves as stable, settled, and has evaluated data of its own."""
    if not promoted or not _settled(status, backend, generating):
        return False
    report = backend.report("stable") or {}
    # Its own entries in the evaluation history, the newest of all (the version before it may still have
    # evaluated while this one ran as a canary): the failure tracker's count also counts the call that set
    # the reference, so it can be non-zero before the version has evaluated anything.
    versions = (report.get("history") or {}).get("versions") or {}
    own = versions.get(str(status.stable_version)) or {}
    others = [v.get("newest_at") or 0.0 for k, v in versions.items() if k != str(status.stable_version)]
    newest = float(own.get("newest_at") or 0.0) > max(others, default=0.0)
    return int(own.get("evaluations") or 0) > 0 and newest and bool(report.get("features"))


def _finished(
    status: MonitorStatus, backend: ProcessBackend, generating: frozenset[int], drain_deadline: float | None
) -> bool:
    """After the stream: the rollout settled and the stable process evaluated what it got, or the monitor
    needs a person (Failed, Degraded) and the stable process serves; either way at the drain deadline."""
    late = time.monotonic() > (drain_deadline or 0)
    if _settled(status, backend, generating):
        return late or _drained(backend.report("stable"))
    if status.phase in ("Failed", "Degraded") and not generating:
        stable = backend.processes.get("stable")
        return late or stable is None or stable.ready
    return False


def _never_starts(status: MonitorStatus, backend: ProcessBackend, generating: frozenset[int]) -> bool:
    """The monitor needs a person (a version 1 that could not be generated, say) and nothing runs or is
    being generated: the stream would wait for a process forever."""
    return status.phase in ("Failed", "Degraded") and not generating and not backend.processes


def _drained(report: dict | None) -> bool:
    """True when the process has evaluated (or knowingly dropped) every row it accepted."""
    ingestion = (report or {}).get("ingestion") or {}
    rows = ingestion.get("rows")
    if not isinstance(rows, int):
        return False
    return rows <= int(ingestion.get("rows_evaluated") or 0) + int(ingestion.get("rows_dropped") or 0)


def _final(backend: ProcessBackend, status: MonitorStatus, timeline: Timeline, workdir: Path) -> dict | None:
    report = backend.report("stable")
    table = format_table(report) if report and report.get("features") else None
    html_path: Path | None = None
    stable = backend.processes.get("stable")
    if stable is not None and stable.running():
        code, body = http("GET", stable.url + "/report", timeout=10.0)
        if code == 200:
            html_path = workdir / "report.html"
            html_path.write_bytes(body)
    if report is not None:
        (workdir / "report.json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    versions = {
        int(d.name[1:]): d for d in backend.versions_dir.glob("v*") if d.name[1:].isdigit() and d.is_dir()
    }
    diff_text = None
    first, last = min(versions, default=None), status.stable_version
    if first is not None and last is not None and last != first and last in versions:
        diff_text = render_diff(
            backend.name, _payload(versions[first], first), _payload(versions[last], last)
        )
    timeline.final(table, html_path, versions, diff_text, summary_of(status.to_dict()))
    return report


def _payload(directory: Path, number: int) -> VersionPayload:
    return VersionPayload(
        number=number,
        config_map=f"v{number}",
        code=(directory / contract.CODE_FILE).read_text(encoding="utf-8"),
        manifest=json.loads((directory / contract.MANIFEST_FILE).read_text(encoding="utf-8")),
    )


__all__ = ["DevConfig", "DevResult", "dev_command", "run_dev"]
