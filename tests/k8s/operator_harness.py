"""The real operator against the emulator, and the test acting as kubelet and Deployment controller.

`OperatorProcess` runs the real kopf operator (`build_operator(...).run`) with the real `kubernetes` client
on its own event loop in a thread, as `poetmon operator` would, so it can be stopped and started again in
the middle of a rollout. `Kubelet` does what the cluster would do for the operator's Deployments: it
creates their pods, reports them ready, and reports crashes the way a kubelet does (restart count,
`lastState.terminated` with reason and termination message, `waiting.reason: CrashLoopBackOff`). It also
answers the runtime's HTTP API through the API server's pod proxy, as a real runtime pod would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kmock
from kmock import KubernetesNotFoundError
from poet_operator.k8s.api import ApiError, KubeApi, apps_path, core_path, load_client, monitor_path
from poet_operator.k8s.main import build_operator
from poet_operator.k8s.reconciler import OperatorConfig
from poet_operator.rollout.machine import Policy

from monitor_runtime.server.history import EvaluationHistory, decode_history_file, parse_history
from tests.k8s.emulator import EmulatedCluster

NS = "ml"
OPERATOR_NS = "poet-system"
RUNTIME_IMAGE = "poet-monitor/runtime:test"
TEST_AGENT = "poet-monitor-tests"  # the test's own calls (as kubelet and user) are not the operator's


def eventually(
    predicate: Callable[[], Any], *, timeout: float = 120.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (KeyError, ApiError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}: last {last!r}")


class OperatorProcess:
    """The operator on its own loop and thread; `stop()` is a graceful shutdown (SIGTERM's path)."""

    def __init__(self, cluster: EmulatedCluster, *, policy: Policy | None = None) -> None:
        # Short polls and resyncs keep the tests quick; the rules are the production ones.
        config = OperatorConfig(
            runtime_image=RUNTIME_IMAGE,
            operator_namespace=OPERATOR_NS,
            policy=policy or Policy(poll_seconds=0.5, resync_seconds=1.0),
        )
        self.operator = build_operator(config, kubeconfig=str(cluster.kubeconfig))
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="operator", daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready = asyncio.Event()
            watcher = asyncio.create_task(self._signal_ready(ready))
            try:
                await self.operator.run(namespaces=[NS], stop_flag=self._stop, ready_flag=ready)
            finally:
                watcher.cancel()

        try:
            asyncio.run(run())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _signal_ready(self, ready: asyncio.Event) -> None:
        await ready.wait()
        self._ready.set()

    def start(self) -> OperatorProcess:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the operator did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the operator did not stop within 30 s"

    @property
    def metrics_text(self) -> str:
        from prometheus_client import generate_latest

        return generate_latest(self.operator.metrics.registry).decode()


class Kubelet:
    """Plays the cluster for one namespace: Deployment controller, kubelet and the runtime pods' HTTP API."""

    def __init__(self, cluster: EmulatedCluster) -> None:
        self.cluster = cluster
        self.api = KubeApi(load_client(str(cluster.kubeconfig)), workers=2, user_agent=TEST_AGENT)
        self.counter = 0
        self.reports: dict[str, dict[str, Any]] = {}  # pod name -> extra report fields
        self.references: dict[str, bytes] = {}  # pod name -> reference npz it holds
        self.posted_references: list[tuple[str, bytes]] = []
        self.logs: dict[str, str] = {}  # pod name -> what `kubectl logs --previous` prints
        # pod name -> its evaluation history (GET /v1/history's entries); a new pod starts with the mounted
        # NAME-history ConfigMap's, as `poetmon serve --history-file` merges it
        self.histories: dict[str, list[dict[str, Any]]] = {}
        self._install_pod_api()

    def close(self) -> None:
        self.api.close()

    # -- objects ---------------------------------------------------------------------------------------------

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return self.api.request("GET", path)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    def monitor(self, name: str) -> dict[str, Any]:
        obj = self.get(monitor_path(NS, name))
        assert obj is not None, f"ModelMonitor {name} is gone"
        return obj

    def status(self, name: str) -> dict[str, Any]:
        return self.monitor(name).get("status") or {}

    def apply(self, name: str, spec: dict[str, Any], *, generation: int = 1, uid: str | None = None) -> None:
        body = {
            "apiVersion": "poet.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {
                "name": name,
                "namespace": NS,
                "uid": uid or f"uid-{name}",
                "generation": generation,
            },
            "spec": spec,
        }
        self.api.request("POST", monitor_path(NS), body=body)

    def items_of_monitors(self) -> list[dict[str, Any]]:
        return list((self.api.request("GET", monitor_path(NS)) or {}).get("items") or [])

    def patch_monitor(self, name: str, body: dict[str, Any]) -> None:
        self.api.request(
            "PATCH", monitor_path(NS, name), body=body, content_type="application/merge-patch+json"
        )

    def items(self, plural: str, *, apps: bool = False) -> list[dict[str, Any]]:
        path = apps_path(NS, plural) if apps else core_path(NS, plural)
        return list((self.api.request("GET", path) or {}).get("items") or [])

    def configmaps(self, monitor: str) -> dict[str, dict[str, Any]]:
        return {
            c["metadata"]["name"]: c
            for c in self.items("configmaps")
            if (c["metadata"].get("labels") or {}).get("poet.dev/monitor") == monitor
        }

    def deployment(self, name: str) -> dict[str, Any] | None:
        return self.get(apps_path(NS, "deployments", name))

    def events(self, monitor: str) -> list[dict[str, Any]]:
        return [e for e in self.items("events") if e["involvedObject"]["name"] == monitor]

    def event_reasons(self, monitor: str) -> list[str]:
        return [e["reason"] for e in self.events(monitor)]

    def pods(self, monitor: str, role: str | None = None) -> list[dict[str, Any]]:
        return [
            p
            for p in self.items("pods")
            if p["metadata"]["labels"].get("poet.dev/monitor") == monitor
            and (role is None or p["metadata"]["labels"].get("poet.dev/role") == role)
        ]

    # -- the Deployment controller and the kubelet -----------------------------------------------------------

    def sync(self, monitor: str, *, ready: bool = True) -> None:
        """One pod per Deployment of the monitor, at its template's version; older pods go."""
        deployments = [
            d
            for d in self.items("deployments", apps=True)
            if d["metadata"]["labels"].get("poet.dev/monitor") == monitor
        ]
        wanted = {}
        for dep in deployments:
            labels = dep["spec"]["template"]["metadata"]["labels"]
            wanted[dep["metadata"]["name"]] = labels
        for pod in self.pods(monitor):
            owner = pod["metadata"]["annotations"]["test/deployment"]
            labels = wanted.get(owner)
            if labels is None or labels.get("poet.dev/version") != pod["metadata"]["labels"].get(
                "poet.dev/version"
            ):
                self.api.request("DELETE", core_path(NS, "pods", pod["metadata"]["name"]))
        have = {p["metadata"]["annotations"]["test/deployment"] for p in self.pods(monitor)}
        for dep_name, labels in wanted.items():
            if dep_name not in have:
                self.counter += 1
                name = f"{dep_name}-v{labels['poet.dev/version']}-{self.counter}"
                pod = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": NS,
                        "labels": dict(labels),
                        "annotations": {"test/deployment": dep_name},
                    },
                    "spec": {"containers": [{"name": "runtime", "image": RUNTIME_IMAGE}]},
                    "status": pod_status(ready=ready),
                }
                self.histories[name] = self._mounted_history(monitor, dep_name)
                self.api.request("POST", core_path(NS, "pods"), body=pod)
        self.update_deployment_status(monitor)

    def _mounted_history(self, monitor: str, deployment: str) -> list[dict[str, Any]]:
        """What a new pod's runtime merges at start: the history ConfigMap its Deployment mounts, if any."""
        dep = self.deployment(deployment) or {}
        volumes = ((dep.get("spec") or {}).get("template") or {}).get("spec", {}).get("volumes") or []
        names = {(v.get("configMap") or {}).get("name") for v in volumes}
        if f"{monitor}-history" not in names:
            return []
        cm = self.get(core_path(NS, "configmaps", f"{monitor}-history"))
        if cm is None:
            return []  # optional: absent before the first promotion
        data = base64.b64decode(cm["binaryData"]["history.json.gz"])
        return decode_history_file(data, max_bytes=64 * 1024 * 1024)

    def update_deployment_status(self, monitor: str) -> None:
        pods = self.pods(monitor)
        for dep in self.items("deployments", apps=True):
            if dep["metadata"]["labels"].get("poet.dev/monitor") != monitor:
                continue
            mine = [
                p for p in pods if p["metadata"]["annotations"]["test/deployment"] == dep["metadata"]["name"]
            ]
            ready = sum(1 for p in mine if p["status"]["containerStatuses"][0]["ready"])
            status = {"replicas": len(mine), "readyReplicas": ready, "updatedReplicas": len(mine)}
            if dep.get("status") != status:
                self.api.request(
                    "PATCH",
                    apps_path(NS, "deployments", dep["metadata"]["name"]) + "/status",
                    body={"status": status},
                    content_type="application/merge-patch+json",
                )

    def set_ready(self, pod_name: str, ready: bool = True) -> None:
        self.api.request(
            "PATCH",
            core_path(NS, "pods", pod_name) + "/status",
            body={"status": pod_status(ready=ready)},
            content_type="application/merge-patch+json",
        )

    def crash(self, pod_name: str, *, reason: str, exit_code: int, message: str = "", times: int = 1) -> None:
        """What a kubelet reports after the container died `times` more times."""
        pod = self.get(core_path(NS, "pods", pod_name))
        assert pod is not None
        restarts = pod["status"]["containerStatuses"][0].get("restartCount", 0) + times
        terminated = {"exitCode": exit_code, "reason": reason, "finishedAt": "2026-12-01T12:00:00Z"}
        if message:
            terminated["message"] = message
        status = pod_status(ready=False)
        status["containerStatuses"][0].update(
            restartCount=restarts,
            lastState={"terminated": terminated},
            state={
                "waiting": {"reason": "CrashLoopBackOff", "message": "back-off restarting failed container"}
            },
        )
        self.api.request(
            "PATCH",
            core_path(NS, "pods", pod_name) + "/status",
            body={"status": status},
            content_type="application/merge-patch+json",
        )

    # -- the runtime's API through the pod proxy -------------------------------------------------------------

    def _install_pod_api(self) -> None:
        emulator = self.cluster.kmock
        base = rf"/api/v1/namespaces/{NS}/pods/(?P<pod>[^/:]+):8080/proxy/v1"
        emulator["get", re.compile(base + "/report")] << self._report
        emulator["get", re.compile(base + "/reference")] << self._get_reference
        emulator["post", re.compile(base + "/reference")] << self._post_reference
        emulator["get", re.compile(base + "/history")] << self._get_history
        emulator["post", re.compile(base + "/history")] << self._post_history
        emulator["get", re.compile(rf"/api/v1/namespaces/{NS}/pods/[^/:]+/log")] << self._log

    def _pod_of(self, request: Any) -> dict[str, Any] | None:
        match = re.search(r"/pods/([^/:]+):8080/", str(request.url.path))
        name = match.group(1) if match else ""
        return self.cluster.get("v1/pods", NS, name)

    def _log(self, request: Any) -> Any:
        match = re.search(r"/pods/([^/:]+)/log", str(request.url.path))
        text = self.logs.get(match.group(1) if match else "", "")
        return kmock.Response(status=200, headers={"Content-Type": "text/plain"}, payload=text.encode())

    def _report(self, request: Any) -> Any:
        pod = self._pod_of(request)
        if pod is None:
            raise KubernetesNotFoundError()
        name = pod["metadata"]["name"]
        labels = pod["metadata"]["labels"]
        reference = self.references.get(name)
        report = {
            "status": "ok",
            "version": {"monitor": labels["poet.dev/monitor"], "version": int(labels["poet.dev/version"])},
            "overall_health": "warning",
            "overall_drift_score": 0.12,
            "drifted_features": ["income"],
            "timing": {"evaluated_at": 1796126400.0},
            "failures": {"evaluations": 4, "window_rate": 0.0},
            "reference": {
                "rows": 100 if reference else None,
                "sha256": _sha(reference) if reference else None,
            },
            "history": EvaluationHistory(100, self.histories.get(name, [])).summary(),
        }
        report.update(self.reports.get(name, {}))
        return report

    def _get_reference(self, request: Any) -> Any:
        pod = self._pod_of(request)
        data = self.references.get(pod["metadata"]["name"]) if pod else None
        if data is None:
            raise KubernetesNotFoundError()
        # What a runtime pod answers: the npz body and its fingerprint in a header.
        return kmock.Response(
            status=200,
            headers={
                "Content-Type": "application/vnd.poet.reference+npz",
                "X-Poet-Reference-Sha256": _sha(data),
            },
            payload=data,
        )

    def _post_reference(self, request: Any) -> Any:
        pod = self._pod_of(request)
        if pod is None:
            raise KubernetesNotFoundError()
        self.references[pod["metadata"]["name"]] = bytes(request.body)
        self.posted_references.append((pod["metadata"]["name"], bytes(request.body)))
        return {"reference_rows": 100}


    def _get_history(self, request: Any) -> Any:
        pod = self._pod_of(request)
        if pod is None:
            raise KubernetesNotFoundError()
        return EvaluationHistory(100, self.histories.get(pod["metadata"]["name"], [])).to_json()

    def _post_history(self, request: Any) -> Any:
        """The runtime's merge (one entry per time and code), over the JSON body the operator sent."""
        pod = self._pod_of(request)
        if pod is None:
            raise KubernetesNotFoundError()
        name = pod["metadata"]["name"]
        held = EvaluationHistory(100, self.histories.get(name, []))
        received = parse_history(request.data)
        held.merge(received)
        self.histories[name] = held.as_list()
        return {"received": len(received), "evaluations": len(self.histories[name])}


def _sha(data: bytes) -> str:
    """The fingerprint a runtime reports for the reference it holds: of the content, not of the bytes."""
    from monitor_runtime.reference_npz import archive_fingerprint

    return archive_fingerprint(data)


def pod_status(*, ready: bool) -> dict[str, Any]:
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {
                "name": "runtime",
                "ready": ready,
                "restartCount": 0,
                "image": RUNTIME_IMAGE,
                "state": {"running": {"startedAt": "2026-12-01T12:00:00Z"}},
            }
        ],
    }


def write_calls(cluster: EmulatedCluster, path: Path) -> None:
    calls = sorted({json.dumps(c.to_log(), sort_keys=True) for c in cluster.requests()})
    path.write_text("\n".join(calls) + "\n")


__all__ = ["NS", "OPERATOR_NS", "Kubelet", "OperatorProcess", "eventually"]
