"""Helpers for the runtime server tests: hand-written version directories and servers on loopback."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor_runtime.contract import write_version_dir

REPO = Path(__file__).resolve().parents[3]

# A contract-1 monitor composed from the toolkit: a sliding window over a prepared reference.
GOOD_MONITOR = textwrap.dedent(
    '''
    """Fixture monitor: sliding window compared with a prepared reference."""
    import numpy as np

    CONTRACT = 1


    class Monitor:
        def __init__(self, spec, toolkit):
            self.spec = spec
            self.tk = toolkit
            window = spec.get("window") or {}
            self.size = int(window.get("size") or 2000)
            self.features = {
                f["name"]: {"type": f.get("type", "auto"), "importance": f.get("importance", 1.0)}
                for f in spec.get("features") or []
            }
            self.reference_data = None
            self.reference = None
            self.window = {}

        def update_reference_window(self, new_data):
            self.reference_data = {k: np.asarray(v) for k, v in new_data.items()}
            self.reference = self.tk.Reference.fit(self.reference_data, features=self.features or None)

        def _append(self, batch):
            for name, values in batch.items():
                old = self.window.get(name)
                merged = values if old is None else np.concatenate([old, values])
                self.window[name] = merged[-self.size:]

        def detect_drift(self, current):
            return self.reference.detect(current)

        def monitor_features(self, batch):
            self._append(batch)
            result = dict(self.detect_drift(self.window))
            result["window_config"] = {"strategy": "sliding", "size": self.size}
            return result

        def monitor_predictions(self, predictions, actuals):
            p = np.asarray(predictions, dtype=float)
            a = np.asarray(actuals, dtype=float)
            ok = np.isfinite(a)
            acc = float(np.mean(p[ok] == a[ok])) if ok.any() else None
            return {"accuracy": acc, "n": int(ok.sum())}

        def state(self):
            return {"reference": self.reference_data, "window": self.window}

        def restore(self, state):
            self.window = dict(state["window"])
            if state["reference"] is not None:
                self.update_reference_window(state["reference"])
    '''
)

# The same monitor, except that it looks every column up in the reference: a new feature raises KeyError.
CRASHING_MONITOR = GOOD_MONITOR.replace(
    "        self._append(batch)\n",
    "        for name in batch:\n"
    "            self.reference_data[name]  # a column the reference lacks raises KeyError\n"
    "        self._append(batch)\n",
)
assert CRASHING_MONITOR != GOOD_MONITOR

# A monitor that tries to read a file while evaluating: the guard must refuse it on the monitor's thread only.
SNOOPING_MONITOR = GOOD_MONITOR.replace(
    "        self._append(batch)\n", "        open('/etc/hostname').read()\n        self._append(batch)\n"
)
assert SNOOPING_MONITOR != GOOD_MONITOR

# A monitor that never returns from an evaluation once it has a reference.
HANGING_MONITOR = GOOD_MONITOR.replace(
    "        self._append(batch)\n", "        while True:\n            pass\n"
)
assert HANGING_MONITOR != GOOD_MONITOR

SPEC: dict[str, Any] = {
    "model": "credit-model",
    "window": {"strategy": "sliding", "size": 400, "step": 200},
    "reference": {"source": "uploaded"},
    "features": [
        {"name": "age", "type": "continuous", "importance": 2.0},
        {"name": "income", "type": "continuous", "importance": 1.0},
        {"name": "segment", "type": "categorical", "importance": 1.0},
    ],
}


def write_version(
    directory: Path, *, code: str = GOOD_MONITOR, spec: Mapping[str, Any] | None = None, version: int = 1
) -> Path:
    """A version directory written through the contract (manifest with the code's sha256)."""
    spec = dict(spec or SPEC)
    write_version_dir(
        directory,
        code=code,
        version=version,
        monitor="credit-monitor",
        model=str(spec["model"]),
        spec=spec,
        spec_hash=hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest(),
        generator={"kind": "template"},
    )
    return directory


def frame(n: int, seed: int, *, shift: float = 0.0, extra: bool = False) -> dict[str, np.ndarray]:
    """Example columns; `shift` moves `age` by that many standard deviations."""
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {
        "age": rng.normal(40 + 10 * shift, 10, n).round(2),
        "income": rng.lognormal(10, 0.5, n).round(2),
        "segment": rng.choice(np.array(["a", "b", "c"], dtype=object), n, p=[0.5, 0.3, 0.2]),
    }
    if extra:
        cols["brand_new"] = rng.normal(0, 1, n).round(3)
    return cols


def engine_report_case() -> tuple[dict, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A real drift result with one feature for each way a verdict can go."""
    from scipy import stats

    from monitor_runtime.drift import detect_drift

    rng = np.random.default_rng(11)
    grid = stats.norm.ppf((np.arange(60) + 0.5) / 60)  # 60 evenly spread normal values
    income = rng.normal(50_000, 10_000, 2000).round(0)
    income_cur = rng.permutation(income)
    income_cur[:400] = np.nan  # only the missing share moves: 0% -> 20%
    reference = {
        "shifted": rng.normal(0, 1, 3000),
        "credit_score": grid * 50 + 680,
        "big_tiny_shift": rng.normal(0, 1, 200_000),
        "annual_income": income,
        "plan": rng.choice(np.array(["basic", "plus"], dtype=object), 3000),
    }
    plan_cur = rng.choice(np.array(["basic", "plus"], dtype=object), 3000)
    plan_cur[:300] = "enterprise"  # a category the reference never saw
    current = {
        "shifted": rng.normal(1.0, 1, 3000),
        "credit_score": grid * 50 + 692,
        "big_tiny_shift": rng.normal(0.03, 1, 200_000),
        "annual_income": income_cur,
        "plan": plan_cur,
    }
    return detect_drift(reference, current), reference, current


def columns_json(cols: Mapping[str, np.ndarray], **extra: Any) -> bytes:
    """A `{"columns": ...}` JSON body."""
    return json.dumps({"columns": {k: v.tolist() for k, v in cols.items()}, **extra}).encode()


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    return write_version(tmp_path / "v1")


@pytest.fixture
def crashing_version_dir(tmp_path: Path) -> Path:
    return write_version(tmp_path / "v-crash", code=CRASHING_MONITOR)


# ---------------------------------------------------------------- in-process server (real HTTP on loopback)


@contextlib.asynccontextmanager
async def running_monitor(
    code_dir: Path,
    *,
    checkpoint_dir: Path | None = None,
    termination_log: Path | None = None,
    reference_file: Path | None = None,
    history_file: Path | None = None,
    **settings: Any,
) -> AsyncIterator[tuple[Any, str]]:
    """Load a version and serve it on a free loopback port; yields (MonitorProcess, base URL)."""
    from monitor_runtime.server.jsonlog import JsonLogger
    from monitor_runtime.server.runner import MonitorProcess, load_monitor
    from monitor_runtime.server.settings import RuntimeSettings

    log = JsonLogger(stream=io.StringIO())  # tests read it back through `proc.log`
    manifest, spec, host = load_monitor(str(code_dir), log)
    base = RuntimeSettings(max_evaluation_interval_s=0.2, checkpoint_interval_s=3600)
    proc = MonitorProcess(
        manifest,
        spec,
        host,
        settings=RuntimeSettings(**{**base.__dict__, **settings}),
        log=log,
        checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
        termination_log=str(termination_log or code_dir.parent / "termination-log"),
        reference_file=str(reference_file) if reference_file else None,
        history_file=str(history_file) if history_file else None,
    )
    port = await proc.start("127.0.0.1", 0)
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.stop()
        await proc.wait()


# ---------------------------------------------------------------- subprocess server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(
    method: str, url: str, body: bytes | None = None, ctype: str = "application/json"
) -> tuple[int, bytes]:
    """A blocking HTTP call returning (status, body) for any status."""
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ServerProcess:
    """`poetmon serve` in a subprocess on a free loopback port."""

    def __init__(
        self,
        code_dir: Path,
        workdir: Path,
        *,
        checkpoint: bool = True,
        env: Mapping[str, str] | None = None,
        reference_file: Path | None = None,
        history_file: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.termination_log = workdir / "termination-log"
        self.checkpoint_dir = workdir / "checkpoints"
        self.stdout_path = workdir / f"stdout-{self.port}.log"
        cmd = [
            sys.executable,
            "-m",
            "poet_operator.cli",
            "serve",
            "--code-dir",
            str(code_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--termination-log",
            str(self.termination_log),
        ]
        if checkpoint:
            cmd += ["--checkpoint-dir", str(self.checkpoint_dir)]
        if reference_file is not None:
            cmd += ["--reference-file", str(reference_file)]
        if history_file is not None:
            cmd += ["--history-file", str(history_file)]
        full_env = {**os.environ, "POET_MAX_EVALUATION_INTERVAL_S": "0.2", **(env or {})}
        self._out = open(self.stdout_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=full_env, cwd=REPO)

    def wait_ready(self, timeout: float = 20.0) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}: {self.logs()[-3000:]}")
            return http("GET", self.url + "/readyz")[0] == 200

        wait_until(ready, timeout, what="readyz")

    def logs(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log_events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._out.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._out.close()


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[ServerProcess] = []

    def start(code_dir: Path, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(code_dir, tmp_path, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
