"""Runtime benchmark: `poetmon serve` over loopback with concurrent clients (a script, not a test).

Reports, for 50 numeric + 10 categorical features:
- sustained rows/s and client-side p50/p99 batch latency at batch sizes 100, 1,000 and 10,000, per wire
  format (JSON columns, CSV, Arrow IPC), with the server pinned to one core;
- resident memory of the server after 100k ... 1M rows through a sliding window of 10,000 (flat is good);
- the cost of the guard around generated code, and of the worker-process alternative, per call.

    python bench/runtime_bench.py            # full run (about two minutes)
    python bench/runtime_bench.py --quick    # shorter runs, same table
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import multiprocessing
import os
import pickle
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "operator"))
sys.path.insert(0, str(REPO))

N_NUMERIC, N_CATEGORICAL = 50, 10
WINDOW = 10_000
SPEC: dict[str, Any] = {
    "model": "bench-model",
    "optimizeFor": "real_time",
    "window": {"strategy": "sliding", "size": WINDOW, "step": WINDOW // 2},
    "reference": {"source": "uploaded"},
}


# ---------------------------------------------------------------- data and bodies


def make_columns(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    cols: dict[str, np.ndarray] = {
        f"num_{i:02d}": rng.normal(i, 1 + i % 5, n).round(3) for i in range(N_NUMERIC)
    }
    cats = np.array(["alpha", "beta", "gamma", "delta", "epsilon"], dtype=object)
    for i in range(N_CATEGORICAL):
        cols[f"cat_{i:02d}"] = rng.choice(cats, n)
    return cols


def body_json(cols: dict[str, np.ndarray]) -> bytes:
    return json.dumps({"columns": {k: v.tolist() for k, v in cols.items()}}).encode()


def body_ndjson(cols: dict[str, np.ndarray]) -> bytes:
    names = list(cols)
    lists = [cols[k].tolist() for k in names]
    rows = (json.dumps(dict(zip(names, row, strict=True))) for row in zip(*lists, strict=True))
    return "\n".join(rows).encode()


def body_json_rows(cols: dict[str, np.ndarray]) -> bytes:
    names = list(cols)
    lists = [cols[k].tolist() for k in names]
    rows = [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]
    return json.dumps({"rows": rows}).encode()


def body_csv(cols: dict[str, np.ndarray]) -> bytes:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    sink = io.BytesIO()
    pacsv.write_csv(pa.table({k: list(v) if v.dtype == object else v for k, v in cols.items()}), sink)
    return sink.getvalue()


def body_arrow(cols: dict[str, np.ndarray]) -> bytes:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    table = pa.table({k: list(v) if v.dtype == object else v for k, v in cols.items()})
    sink = io.BytesIO()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


FORMATS = {
    "json": ("application/json", body_json),
    "ndjson": ("application/x-ndjson", body_ndjson),
    "json-rows": ("application/json", body_json_rows),
    "csv": ("text/csv", body_csv),
    "arrow": ("application/vnd.apache.arrow.stream", body_arrow),
}


# ---------------------------------------------------------------- the version under test


def write_version(directory: Path) -> str:
    """The template generator's enforced version for SPEC (the code every pod would run)."""
    from poet_operator.poet.engine import run_poet
    from poet_operator.poet.events import ListSink
    from poet_operator.spec import MonitorSpec

    result = run_poet(
        MonitorSpec.from_mapping(SPEC), directory, monitor="bench", generator="template", sink=ListSink()
    )
    if result.status != "written":
        raise SystemExit(f"could not generate the benchmark monitor: {result.status}")
    return "template generator, optimizeFor real_time"


def _load() -> str:
    """The 1-minute load average: with a shared machine, every number needs it beside it."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, code_dir: Path, *, core: int | None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "PYTHONPATH": f"{REPO}:{REPO / 'operator'}",
            "POET_MAX_BATCH_ROWS": "200000",
            "POET_CHECKPOINT_INTERVAL_S": "3600",
        }
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
            os.devnull,
        ]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        preexec = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=preexec
        )

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                async with session.get(self.url + "/readyz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


# ---------------------------------------------------------------- load generation


async def drive(
    url: str,
    bodies: list[bytes],
    ctype: str,
    rows: int,
    seconds: float,
    clients: int,
    session: aiohttp.ClientSession,
) -> dict[str, float]:
    """`clients` concurrent loops posting pre-encoded bodies for `seconds`; rows/s and latency percentiles."""
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            async with session.post(
                url, data=bodies[i % len(bodies)], headers={"Content-Type": ctype}
            ) as resp:
                await resp.read()
                if resp.status != 202:
                    errors += 1
            latencies.append(time.perf_counter() - started)
            i += clients

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - began
    lat = sorted(latencies)
    return {
        "rows_per_s": len(lat) * rows / elapsed,
        "p50_ms": 1000 * lat[len(lat) // 2],
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "batches": len(lat),
        "errors": errors,
    }


BATCHES = (100, 1_000, 10_000)


async def _matrix(server: Server, session: aiohttp.ClientSession, seconds: float, label: str) -> list[dict]:
    rows_out = []
    for batch in BATCHES:
        for fmt, (ctype, encode) in FORMATS.items():
            bodies = [encode(make_columns(batch, 100 + s)) for s in range(4)]
            clients = 8 if batch <= 1_000 else 4
            cpu_before = server.cpu_seconds()
            res = await drive(server.url + "/v1/batches", bodies, ctype, batch, seconds, clients, session)
            cpu = server.cpu_seconds() - cpu_before
            # Rows per CPU-second of the server: what one core sustains, whatever the neighbours' load.
            res["rows_per_cpu_s"] = res["batches"] * batch / cpu if cpu > 0 else float("nan")
            rows_out.append({"phase": label, "batch": batch, "format": fmt, **res})
            print(
                f"  batch {batch:>6} {fmt:<5} {res['rows_per_s']:>10,.0f} rows/s wall"
                f" {res['rows_per_cpu_s']:>10,.0f} rows/server-CPU-s"
                f"  p50 {res['p50_ms']:7.2f} ms  p99 {res['p99_ms']:7.2f} ms"
                f"  ({res['batches']} batches, {res['errors']} errors)",
                flush=True,
            )
    return rows_out


async def throughput(code_dir: Path, quick: bool, ingestion_only: bool = False) -> list[dict[str, Any]]:
    """Ingestion alone (no reference yet, so nothing evaluates), then with evaluation running alongside."""
    seconds = 2.0 if quick else 5.0
    server = Server(code_dir, core=0 if hasattr(os, "sched_setaffinity") else None)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:
            await server.wait_ready(session)
            print(f"ingestion alone (load average {_load()}):")
            rows_out = await _matrix(server, session, seconds, "ingestion")
            if ingestion_only:
                return rows_out
            ref = body_arrow(make_columns(20_000, 1))
            async with session.post(
                server.url + "/v1/reference", data=ref, headers={"Content-Type": FORMATS["arrow"][0]}
            ) as resp:
                assert resp.status == 200, await resp.text()
            print(
                "ingestion while the window is evaluated (evaluation capped at half of the core;"
                f" load average {_load()}):"
            )
            rows_out += await _matrix(server, session, seconds, "with evaluation")
            async with session.get(server.url + "/v1/report") as resp:
                report = await resp.json()
            async with session.get(server.url + "/metrics") as resp:
                text = await resp.text()
            evaluations = next(
                float(line.split()[-1])
                for line in text.splitlines()
                if line.startswith('poet_monitor_evaluations_total{outcome="ok"}')
            )
            print(
                f"  {evaluations:.0f} evaluations of the {WINDOW:,}-row window meanwhile, the last took "
                f"{report['timing']['evaluation_seconds']:.3f} s; rows that slid out of the window before an "
                f"evaluation saw them: {report['ingestion']['rows_dropped']:,}"
            )
    finally:
        server.stop()
    return rows_out


async def memory(code_dir: Path, quick: bool) -> list[tuple[int, float]]:
    server = Server(code_dir, core=None)
    points: list[tuple[int, float]] = []
    try:
        async with aiohttp.ClientSession() as session:
            await server.wait_ready(session)
            ctype = FORMATS["arrow"][0]
            async with session.post(
                server.url + "/v1/reference",
                data=body_arrow(make_columns(20_000, 1)),
                headers={"Content-Type": ctype},
            ) as resp:
                assert resp.status == 200
            bodies = [body_arrow(make_columns(10_000, 200 + s)) for s in range(8)]
            total = 0
            checkpoints = {100_000, 250_000, 500_000, 750_000, 1_000_000}
            while total < 1_000_000:
                async with session.post(
                    server.url + "/v1/batches",
                    data=bodies[(total // 10_000) % 8],
                    headers={"Content-Type": ctype},
                ) as resp:
                    assert resp.status == 202
                total += 10_000
                if total in checkpoints:
                    points.append((total, server.rss_mb()))
                    print(f"  after {total:>9,} rows: RSS {points[-1][1]:7.1f} MB", flush=True)
    finally:
        server.stop()
    return points


# ---------------------------------------------------------------- parse cost alone, in this process


def parse_split(rows: list[dict[str, Any]], seconds: float) -> None:
    """Mean CPU per `parse_body` call on the benchmark's bodies against the server's CPU per batch.

    Mean, not best, CPU time: it meets the same cache and memory pressure as the server does on a busy
    machine. Pinned to the server's core (after the server is gone) so the two see the same core.
    """
    from monitor_runtime.server.parsing import NUMERIC, Schema, parse_body
    from monitor_runtime.server.prediction_quality import SCORE_COLUMN

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    # The schema the server parses with (no spec features here; the runtime always names the score column).
    schema = Schema(kinds={SCORE_COLUMN: NUMERIC}, max_rows=200_000)
    for row in rows:
        if row["phase"] != "ingestion":
            continue
        batch, fmt = row["batch"], row["format"]
        ctype, encode = FORMATS[fmt]
        bodies = [encode(make_columns(batch, 100 + s)) for s in range(4)]
        parse_body(bodies[0], ctype, schema)  # warm: imports, learned CSV header
        n, cpu0, wall0 = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - wall0 < seconds:
            parse_body(bodies[n % len(bodies)], ctype, schema)
            n += 1
        parse_ms = 1e3 * (time.process_time() - cpu0) / n
        server_ms = 1e3 * batch / row["rows_per_cpu_s"]
        alone = 1e3 * batch / parse_ms
        print(
            f"  batch {batch:>6} {fmt:<6} server {server_ms:7.2f} ms/batch = parse {parse_ms:7.2f} ms"
            f" + rest {server_ms - parse_ms:6.2f} ms  (parse alone {alone:>9,.0f} rows/CPU-s)",
            flush=True,
        )


# ---------------------------------------------------------------- guard cost: in-process vs worker process


def _echo_worker(conn: Any) -> None:
    while True:
        msg = conn.recv()
        if msg is None:
            return
        conn.send({"overall_drift_score": 0.0, "n": len(msg)})


def guard_cost(code_dir: Path, quick: bool) -> dict[str, float]:
    from monitor_runtime import contract, guard, toolkit

    loaded = contract.load_version_dir(code_dir)
    monitor = loaded.create(toolkit)
    monitor.update_reference_window(make_columns(WINDOW, 1))
    batch = make_columns(1_000, 2)
    for _ in range(WINDOW // 1_000 + 2):  # fill the window first, so every timed call does the same work
        monitor.monitor_features(batch)
    reps = 30 if quick else 100

    def timed(fn: Any) -> float:
        samples = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    def guarded() -> None:
        with guard.restricted():
            monitor.monitor_features(batch)

    def scope() -> None:
        with guard.restricted():
            pass

    guard.install()
    # Alternate the two so load from elsewhere on the machine hits both alike.
    plain_samples, guarded_samples = [], []
    for _ in range(reps):
        t = time.perf_counter()
        monitor.monitor_features(batch)
        plain_samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        guarded()
        guarded_samples.append(time.perf_counter() - t)
    plain, with_guard = statistics.median(plain_samples), statistics.median(guarded_samples)
    scope_only = timed(scope)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=_echo_worker, args=(child,), daemon=True)
    proc.start()

    def round_trip() -> None:
        parent.send(batch)
        parent.recv()

    ipc = timed(round_trip)
    parent.send(None)
    proc.join(5)
    payload_kb = len(pickle.dumps(batch)) / 1024
    return {
        "plain_ms": plain * 1e3,
        "guarded_ms": with_guard * 1e3,
        "scope_us": scope_only * 1e6,
        "worker_round_trip_ms": ipc * 1e3,
        "payload_kb": payload_kb,
    }


def main() -> int:
    global BATCHES, FORMATS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batches", default="100,1000,10000", help="batch sizes, comma-separated")
    parser.add_argument(
        "--formats", default="json,ndjson,csv,arrow", help=f"comma-separated, of {', '.join(FORMATS)}"
    )
    parser.add_argument(
        "--ingestion-only", action="store_true", help="only the ingestion-alone throughput table"
    )
    args = parser.parse_args()
    BATCHES = tuple(int(b) for b in args.batches.split(","))
    FORMATS = {f: FORMATS[f] for f in args.formats.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        code_dir = Path(tmp) / "v1"
        origin = write_version(code_dir)
        print(
            f"monitor code: {origin}; {N_NUMERIC} numeric + {N_CATEGORICAL} categorical features; "
            f"sliding window {WINDOW:,}; {os.cpu_count()} cores; server pinned to core 0"
        )
        print("\nthroughput (server on one core, clients on the other):")
        rows = asyncio.run(throughput(code_dir, args.quick, args.ingestion_only))
        print("\nwhere the server's CPU per batch went (ingestion alone): parsing, measured in this process")
        print("on core 0 with the same bodies and parser, and the rest (HTTP, queueing, metrics):")
        parse_split(rows, 2.0 if args.quick else 5.0)
        print(f"  (load average {_load()} at the end)")
        if args.ingestion_only:
            return 0
        print("\nresident memory, 1,000,000 rows through a sliding window of 10,000:")
        points = asyncio.run(memory(code_dir, args.quick))
        if len(points) >= 2:
            growth = points[-1][1] - points[1][1]
            print(f"  growth from 250k to 1M rows: {growth:+.1f} MB")
        print("\ncost of running generated code under the guard (one monitor_features call, 1,000 rows):")
        g = guard_cost(code_dir, args.quick)
        print(f"  in process, outside the scope: {g['plain_ms']:8.3f} ms")
        print(
            f"  in process, guard scoped:     {g['guarded_ms']:8.3f} ms"
            f"  (entering the scope: {g['scope_us']:.1f} us)"
        )
        print(
            f"  worker process, IPC only:     {g['worker_round_trip_ms']:8.3f} ms  per batch of "
            f"{g['payload_kb']:.0f} KB, before any work"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
