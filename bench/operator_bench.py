"""How the operator scales: many ModelMonitors applied at once, and the time from a crash to a promoted fix.

Runs against a real control plane (kube-apiserver, etcd, controller manager, scheduler): the local e2e
cluster, or any cluster whose kubeconfig is given and where this may create nodes. The real `poetmon
operator` runs as its own process on this machine with that kubeconfig. Two parts:

1. Scale. One real node holds 110 pods, so the monitors' pods go to fake nodes kept by kwok (Kubernetes
   WithOut Kubelet, bench/cluster/build-kwok.sh): every pod the scheduler binds there is made Running and
   Ready at once, so Deployments become available as on a real cluster, with no container behind them.
   The real node is cordoned meanwhile. Reported: wall time until every monitor is Running, generations and
   reconciles per second (the operator's own metrics), the operator's peak RSS (VmHWM).
   The fake pods have link-local addresses, which the API server refuses to proxy, so the operator's report
   reads fail at once (health stays unknown): the scale part measures the rollout, not the runtime.
2. Crash to fix, for real: the fake nodes are cordoned and the real node opened; the bundled payments
   example runs under 256Mi with a 5-second canary analysis; its stream grows the exact window until the
   kernel OOM-kills the pod; version 2 is generated from that crash, enforced, run as a canary and promoted.
   Reported: the operator's crash-to-fix histogram (from the crash it observed to the promotion).

Not a test: numbers depend on the machine and its load, which the output states. Everything it creates is
removed at the end (namespaces, fake nodes, cordons, the kwok process).

    make bench-operator MONITORS=500
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from tests.e2e.kube import ApiHttp, KubectlError  # noqa: E402
from tests.tools.payments import make_payments_data, stream_batches  # noqa: E402

T = TypeVar("T")
NS = "poet-bench"
OPERATOR_NS = "poet-bench-system"
FAKE = "kwok.x-k8s.io/node"
GROUP_PATH = f"/apis/poet.dev/v1alpha1/namespaces/{NS}/modelmonitors"
SCALE_SPEC: dict[str, Any] = {
    "features": [{"name": "income", "type": "continuous"}, {"name": "segment", "type": "categorical"}],
    "window": {"strategy": "sliding", "size": 400},
    "rollout": {"canaryAnalysisSeconds": 5, "restartTolerance": 1, "regenerationBackoffSeconds": 0},
}
CRASH_SPEC: dict[str, Any] = {
    "model": "payments-fraud",
    "window": {"strategy": "sliding", "size": 400_000, "step": 50_000, "storage": "exact"},
    "reference": {"source": "uploaded"},
    "features": [
        {"name": "amount", "type": "continuous", "importance": 3.0},
        {"name": "merchant_id", "type": "categorical", "importance": 1.0},
        {"name": "country", "type": "categorical", "importance": 2.0},
    ],
    "runtime": {
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "256Mi"},
        }
    },
    "rollout": {
        "canaryAnalysisSeconds": 5,
        "restartTolerance": 1,
        "regenerationBudget": 2,
        "regenerationBackoffSeconds": 0,
    },
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


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


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout:.0f} s")
        time.sleep(interval)


class Cluster:
    """The few API calls the benchmark makes, over the kubeconfig's credentials."""

    def __init__(self, kubeconfig: Path) -> None:
        self.http = ApiHttp(kubeconfig)

    def get(self, path: str) -> dict[str, Any] | None:
        code, body = self.http.request("GET", path)
        return json.loads(body) if code == 200 else None

    def create(self, path: str, body: dict[str, Any]) -> None:
        code, answer = self.http.request("POST", path, json.dumps(body))
        if code not in (200, 201, 409):
            raise KubectlError(f"POST {path}: HTTP {code}: {answer[:300]!r}")

    def patch(self, path: str, body: dict[str, Any]) -> None:
        self.http.json("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str) -> None:
        self.http.request("DELETE", path)

    def nodes(self) -> list[dict[str, Any]]:
        return (self.get("/api/v1/nodes") or {}).get("items", [])

    def cordon(self, name: str, unschedulable: bool) -> None:
        self.patch(f"/api/v1/nodes/{name}", {"spec": {"unschedulable": unschedulable or None}})

    def monitors(self) -> list[dict[str, Any]]:
        return (self.get(GROUP_PATH) or {}).get("items", [])

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(f"{GROUP_PATH}/{name}") or {}).get("status") or {}

    def apply_crd(self) -> None:
        crd = yaml.safe_load((ROOT / "crds" / "modelmonitor.yaml").read_text())
        path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        live = self.get(f"{path}/{crd['metadata']['name']}")
        if live is None:
            self.create(path, crd)
        else:
            crd["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"]
            self.http.json("PUT", f"{path}/{crd['metadata']['name']}", crd)

        def established() -> bool:
            live = self.get(f"{path}/{crd['metadata']['name']}") or {}
            conditions = (live.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        wait_for(established, 60, "Established CRD")


def fake_node(name: str, pods: int) -> dict[str, Any]:
    resources = {"cpu": "64", "memory": "512Gi", "pods": str(pods)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {FAKE: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {"allocatable": resources, "capacity": resources},
    }


def monitor(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "poet.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": name},
        "spec": spec,
    }


def phases(items: list[dict[str, Any]]) -> Counter[str]:
    return Counter((m.get("status") or {}).get("phase", "-") for m in items)


def start_kwok(kwok_dir: Path, kubeconfig: Path, logfile: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(kwok_dir / "kwok"),
            "--kubeconfig",
            str(kubeconfig),
            "--config",
            str(kwok_dir / "stages.yaml"),
            f"--manage-nodes-with-annotation-selector={FAKE}=fake",
            # Link-local pod addresses: the API server refuses to proxy to them, so nothing is ever dialled.
            "--cidr",
            "169.254.64.0/18",
            "--node-ip",
            "169.254.64.1",
            "--server-address",
            f"127.0.0.1:{free_port()}",
            "--node-lease-duration-seconds",
            "40",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(logfile, "wb"),
        start_new_session=True,
    )


def start_operator(
    kubeconfig: Path, metrics_port: int, health_port: int, logfile: Path
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'operator'}"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "poet_operator.cli",
            "operator",
            "--kubeconfig",
            str(kubeconfig),
            "--namespace",
            NS,
            "--operator-namespace",
            OPERATOR_NS,
            "--metrics-port",
            str(metrics_port),
            "--health-port",
            str(health_port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(logfile, "wb"),
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def scale(cluster: Cluster, count: int, timeout: float, scrape: Callable[[], str]) -> dict[str, Any]:
    names = [f"m{i:04d}" for i in range(count)]
    start = time.monotonic()
    for name in names:
        cluster.create(GROUP_PATH, monitor(name, {**SCALE_SPEC, "model": f"model-{name}"}))
    applied = time.monotonic() - start
    log(f"{count} monitors applied in {applied:.1f} s")
    last_print = 0.0
    counts: Counter[str] = Counter()
    while time.monotonic() - start < timeout:
        counts = phases(cluster.monitors())
        now = time.monotonic() - start
        if now - last_print >= 10:
            log(f"{now:7.1f} s  {dict(counts)}")
            last_print = now
        if counts.get("Running", 0) >= count:
            break
        time.sleep(2.0)
    elapsed = time.monotonic() - start
    text = scrape()
    return {
        "monitors": count,
        "running": counts.get("Running", 0),
        "seconds": elapsed,
        "applied_seconds": applied,
        "generations": metric(text, "poet_operator_generations_total"),
        "reconciles": metric(text, "poet_operator_reconciles_total"),
    }


def crash_to_fix(cluster: Cluster, data: Path, scrape: Callable[[], str]) -> dict[str, Any]:
    name = "payments"
    cluster.create(GROUP_PATH, monitor(name, CRASH_SPEC))
    wait_for(lambda: cluster.status(name).get("phase") == "Running", 300, "Running payments monitor")
    service = ApiHttp.service_proxy(NS, name, "/v1/reference")
    code, answer = cluster.http.request("POST", service, (data / "reference.csv").read_text(), "text/csv")
    if code != 200:
        raise RuntimeError(f"reference upload: HTTP {code}: {answer[:300]!r}")
    before = scrape()
    count0 = metric(before, "poet_operator_crash_to_fix_seconds_count")
    sum0 = metric(before, "poet_operator_crash_to_fix_seconds_sum")

    def oom_killed() -> bool:
        return (cluster.status(name).get("lastFailure") or {}).get("reason") == "OOMKilled"

    # Only data and the limit: the stream grows the exact window until the kernel kills the pod.
    batches = ApiHttp.service_proxy(NS, name, "/v1/batches")
    for batch in stream_batches(data / "stream.csv", 20_000):
        if oom_killed():
            break
        cluster.http.request("POST", batches, batch, "text/csv")
    wait_for(oom_killed, 120, "OOMKilled payments pod")
    seen = time.monotonic()
    log("payments OOMKilled; waiting for the promoted fix")
    wait_for(lambda: cluster.status(name).get("stableVersion") == 2, 600, "promoted version 2", 0.2)
    observed = time.monotonic() - seen

    def observed_fix() -> str | None:
        text = scrape()
        return text if metric(text, "poet_operator_crash_to_fix_seconds_count") > count0 else None

    after = wait_for(observed_fix, 30, "crash-to-fix observation")
    fixes = metric(after, "poet_operator_crash_to_fix_seconds_count") - count0
    return {
        "seconds": (metric(after, "poet_operator_crash_to_fix_seconds_sum") - sum0) / fixes,
        "observed_seconds": observed,
        "status": cluster.status(name),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, default=Path("/var/lib/poet-e2e/admin.kubeconfig"))
    parser.add_argument("--kwok-dir", type=Path, help="where build-kwok.sh put kwok and its stages")
    parser.add_argument("--monitors", type=int, default=500)
    parser.add_argument("--pods-per-node", type=int, default=110, help="each fake node's pod capacity")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--skip-crash", action="store_true", help="only the scale part")
    args = parser.parse_args()
    kwok_dir = args.kwok_dir or Path(
        subprocess.run(
            ["bash", "-c", f"source {ROOT}/tests/e2e/cluster/common.sh; echo $CACHE_DIR/kwok-v0.8.0"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    if not (kwok_dir / "kwok").exists():
        parser.error(f"no kwok in {kwok_dir}: run bench/cluster/build-kwok.sh first")
    cluster = Cluster(args.kubeconfig)
    real_nodes = [
        n["metadata"]["name"] for n in cluster.nodes() if FAKE not in n["metadata"].get("annotations", {})
    ]
    fake_nodes = [
        f"poet-bench-fake-{i}" for i in range(math.ceil(args.monitors / args.pods_per_node * 1.2) + 1)
    ]
    metrics_port, health_port = free_port(), free_port()
    kwok = operator = None
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="poet-bench-") as tmp:
        work = Path(tmp)
        data_job = (
            None if args.skip_crash else make_payments_data(work / "payments", burst=600_000, trickle=0)
        )

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
                return response.read().decode()

        try:
            cluster.apply_crd()
            for ns in (NS, OPERATOR_NS):
                cluster.create(
                    "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
                )
            kwok = start_kwok(kwok_dir, args.kubeconfig, work / "kwok.log")
            for name in fake_nodes:
                cluster.create("/api/v1/nodes", fake_node(name, args.pods_per_node))
            for name in real_nodes:
                cluster.cordon(name, True)

            def fake_nodes_ready() -> bool:
                ready = 0
                for node in cluster.nodes():
                    if node["metadata"]["name"] in fake_nodes:
                        conditions = (node.get("status") or {}).get("conditions") or []
                        ready += any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)
                return ready == len(fake_nodes)

            wait_for(fake_nodes_ready, 60, f"{len(fake_nodes)} Ready fake nodes")
            log(f"{len(fake_nodes)} fake nodes Ready; real nodes cordoned: {', '.join(real_nodes)}")
            operator = start_operator(args.kubeconfig, metrics_port, health_port, work / "operator.log")

            def operator_up() -> bool:
                if operator is not None and operator.poll() is not None:
                    raise RuntimeError(f"the operator exited with {operator.returncode}")
                try:
                    return bool(scrape())
                except OSError:
                    return False

            wait_for(operator_up, 60, "operator metrics", 0.2)
            results["scale"] = scale(cluster, args.monitors, args.timeout, scrape)
            results["peak_rss_mib"] = peak_rss_mib(operator.pid)
            report(results)
            if data_job is not None:
                for name in fake_nodes:
                    cluster.cordon(name, True)
                for name in real_nodes:
                    cluster.cordon(name, False)
                results["crash"] = crash_to_fix(cluster, data_job, scrape)
                results["peak_rss_mib"] = peak_rss_mib(operator.pid)
        except Exception:
            for name in ("operator.log", "kwok.log"):
                path = work / name
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-30:]
                    log(f"{name} (last lines):\n" + "\n".join(tail))
            raise
        finally:
            stop(operator)
            cluster.delete(f"/api/v1/namespaces/{NS}")
            cluster.delete(f"/api/v1/namespaces/{OPERATOR_NS}")
            try:
                # kwok finalises the fake pods of the deleted namespace; then it and its nodes can go.
                wait_for(
                    lambda: cluster.get(f"/api/v1/namespaces/{NS}") is None, 300, "namespace deletion", 2
                )
            except TimeoutError as exc:
                log(str(exc))
            stop(kwok)
            for name in fake_nodes:
                cluster.delete(f"/api/v1/nodes/{name}")
            for name in real_nodes:
                cluster.cordon(name, False)
            # Whatever was measured is said, also when a later part failed.
            report(results)
    scale_result = results.get("scale", {})
    return 0 if scale_result.get("running") == args.monitors else 1


def report(results: dict[str, Any]) -> None:
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores, load average now {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    if "scale" in results:
        s = results["scale"]
        print(f"monitors applied at once:      {s['monitors']} (all created in {s['applied_seconds']:.1f} s)")
        print(f"all Running after:             {s['seconds']:.1f} s ({s['running']} of {s['monitors']})")
        gen, rec, sec = s["generations"], s["reconciles"], s["seconds"]
        print(f"generations:                   {gen:.0f} ({gen / sec:.2f} per s)")
        print(f"reconciles:                    {rec:.0f} ({rec / sec:.1f} per s)")
    if "peak_rss_mib" in results:
        print(f"operator peak RSS:             {results['peak_rss_mib']:.0f} MiB (goal < 300)")
    if "crash" in results:
        c = results["crash"]
        print(
            f"crash to promoted fix:         {c['seconds']:.1f} s by the operator's histogram, "
            f"{c['observed_seconds']:.1f} s seen from here (5 s analysis; goal: 5 s + under 10 s)"
        )


if __name__ == "__main__":
    sys.exit(main())
