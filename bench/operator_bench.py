"""How the operator scales: many ModelMonitors applied at once, and the time from a crash to a promoted fix.

The real `poetmon operator` runs as its own process against the Kubernetes API emulator on loopback (kmock),
and this script plays the kubelet (pods become ready as soon as their Deployment exists). It reports:

- wall time until every monitor is Running, and how it splits into generation (POET + Enforce, bounded by the
  operator's generation workers) and the rest;
- reconciles per second and generations per second over that time (from the operator's own metrics);
- the operator process's peak RSS (VmHWM);
- the time from an OOMKilled stable pod to the promoted fix, with a 5-second canary analysis.

Not a test: numbers depend on the machine and its load, which the output states.

    python bench/operator_bench.py --monitors 500
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.k8s.emulator import running_emulator  # noqa: E402
from tests.k8s.operator_harness import NS, Kubelet  # noqa: E402

SPEC = {
    "features": [{"name": "income", "type": "continuous"}, {"name": "segment", "type": "categorical"}],
    "window": {"strategy": "sliding", "size": 400},
    "rollout": {"canaryAnalysisSeconds": 5, "restartTolerance": 1, "regenerationBackoffSeconds": 0},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric(text: str, name: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--monitors", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_emulator(Path(tmp), namespace=NS) as cluster:
        kubelet = Kubelet(cluster)
        metrics_port, health_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poet_operator.cli",
                "operator",
                "--kubeconfig",
                str(cluster.kubeconfig),
                "--namespace",
                NS,
                "--operator-namespace",
                "poet-system",
                "--metrics-port",
                str(metrics_port),
                "--health-port",
                str(health_port),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(Path(tmp) / "operator.log", "w"),  # noqa: SIM115 (closed with the process)
        )

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                return response.read().decode()

        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    scrape()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            names = [f"m{i:04d}" for i in range(args.monitors)]
            start = time.monotonic()
            for name in names:
                kubelet.apply(name, {**SPEC, "model": f"model-{name}"})
            running: set[str] = set()
            synced: set[str] = set()
            while len(running) < len(names) and time.monotonic() - start < args.timeout:
                monitors = {m["metadata"]["name"]: m for m in kubelet.items_of_monitors()}
                deployments = {d["metadata"]["name"] for d in kubelet.items("deployments", apps=True)}
                for name in names:
                    if name not in synced and name in deployments:
                        kubelet.sync(name)
                        synced.add(name)
                    if (monitors.get(name, {}).get("status") or {}).get("phase") == "Running":
                        running.add(name)
                phases: dict[str, int] = {}
                for m in monitors.values():
                    phase = (m.get("status") or {}).get("phase", "-")
                    phases[phase] = phases.get(phase, 0) + 1
                print(f"{time.monotonic() - start:7.1f} s  {phases}", file=sys.stderr, flush=True)
                time.sleep(2.0)
            all_running = time.monotonic() - start
            text = scrape()
            reconciles = metric(text, "poet_operator_reconciles_total")
            generations = metric(text, "poet_operator_generations_total")
            # Crash to promoted fix: OOMKilled on one stable pod, the fix runs as a canary for 5 s.
            target = names[0]
            pod = kubelet.pods(target, "stable")[0]["metadata"]["name"]
            crashed = time.monotonic()
            kubelet.crash(pod, reason="OOMKilled", exit_code=137)
            while kubelet.status(target).get("stableVersion") != 2:
                if kubelet.deployment(f"{target}-canary") and not kubelet.pods(target, "canary"):
                    kubelet.sync(target)
                if time.monotonic() - crashed > 600:
                    break
                time.sleep(0.1)
            fixed = time.monotonic() - crashed
            rss = peak_rss_mib(operator.pid)
        finally:
            operator.send_signal(signal.SIGTERM)
            operator.wait(60)
            kubelet.close()
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"monitors applied at once:      {args.monitors}")
    print(f"all Running after:             {all_running:.1f} s ({len(running)} of {len(names)})")
    print(f"generations:                   {generations:.0f} ({generations / all_running:.2f} per s)")
    print(f"reconciles:                    {reconciles:.0f} ({reconciles / all_running:.1f} per s)")
    print(f"operator peak RSS:             {rss:.0f} MiB (goal < 300)")
    print(f"crash to promoted fix:         {fixed:.1f} s with a 5 s analysis (goal: 5 s + under 10 s)")
    return 0 if len(running) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
