"""The product on a real cluster, as a user meets it: the chart installed with helm, the operator running as a
pod under its ServiceAccount, ModelMonitors applied with kubectl, runtime pods run by a real kubelet and
killed by the real kernel, and the operator healing them.

Tests in this module share one operator installation and run in file order; each works in its own namespace.
Data reaches the monitors through the API server's service and pod proxies, so the suite needs no route to
cluster addresses and runs the same on the local cluster and on any cluster ``E2E_KUBECONFIG`` names.
"""

from __future__ import annotations

import json
import subprocess
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from poet_operator.rollout.status import MonitorStatus
from pydantic import BaseModel

from tests.e2e.kube import ApiHttp, Kubectl, KubectlError, wait_until
from tests.tools.payments import make_payments_data, stream_batches

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "poet-monitor"
OPERATOR_NS = "poet-system"
RELEASE = "poet"
CRD = "modelmonitors.poet.dev"
SEED = 20261201


# -- the installation ------------------------------------------------------------------------------------


@dataclass
class Operator:
    """The operator installed by the chart: its namespace, release and the ways to look at it."""

    kubectl: Kubectl  # bound to the operator's namespace
    http: ApiHttp

    def pod(self) -> str:
        pods = self.kubectl.get("pods", None)["items"]
        running = [
            p["metadata"]["name"]
            for p in pods
            if p["metadata"]["name"].startswith(f"{RELEASE}-poet-monitor")
            and not p["metadata"].get("deletionTimestamp")
            and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
        ]
        return running[0] if len(running) == 1 else ""

    def wait_ready(self) -> str:
        return wait_until(self.pod, 180, "one Ready operator pod")

    def metric(self, name: str) -> float:
        """One sample of the operator's own Prometheus metrics (0 when absent)."""
        status, body = self.http.request(
            "GET", ApiHttp.pod_proxy(OPERATOR_NS, self.wait_ready(), "/metrics", 9090)
        )
        assert status == 200, body[:300]
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    def logs(self) -> str:
        return self.kubectl.run("logs", f"deployment/{RELEASE}-poet-monitor", "--tail=-1")

    def forget_lessons(self) -> None:
        """Start from an operator that has learned nothing (the lessons live in one ConfigMap)."""
        self.kubectl.run("delete", "configmap", "poet-monitor-lessons", "--ignore-not-found")

    def cluster_role(self) -> dict[str, Any]:
        return self.kubectl.get("clusterrole", f"{RELEASE}-poet-monitor")


def helm(binary: Path, kubeconfig: Path, *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(binary), "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def http(kubeconfig: Path) -> ApiHttp:
    return ApiHttp(kubeconfig)


@pytest.fixture(scope="module")
def operator(
    kubectl: Kubectl, kubeconfig: Path, helm_binary: Path, project_images: dict[str, str], http: ApiHttp
) -> Iterator[Operator]:
    """`helm install` of the chart, the CRD established, the operator pod Ready; uninstalled afterwards."""
    repo_op, tag_op = project_images["operator"].rsplit(":", 1)
    repo_rt, tag_rt = project_images["runtime"].rsplit(":", 1)
    values = [
        f"image.repository={repo_op}",
        f"image.tag={tag_op}",
        f"runtimeImage.repository={repo_rt}",
        f"runtimeImage.tag={tag_rt}",
    ]
    args = ["upgrade", "--install", RELEASE, str(CHART), "--namespace", OPERATOR_NS, "--create-namespace"]
    helm(
        helm_binary,
        kubeconfig,
        *args,
        *(x for v in values for x in ("--set", v)),
        "--wait",
        "--timeout",
        "240s",
    )
    kubectl.run("wait", "--for=condition=Established", f"crd/{CRD}", "--timeout=60s")
    installed = Operator(kubectl.in_namespace(OPERATOR_NS), http)
    installed.wait_ready()
    try:
        yield installed
    finally:
        helm(helm_binary, kubeconfig, "uninstall", RELEASE, "--namespace", OPERATOR_NS, "--wait")
        # The chart keeps the CRD on uninstall (its documented default); the suite cleans it up itself.
        kubectl.run("delete", "crd", CRD, "--ignore-not-found", "--wait=false")


# -- monitors and data -----------------------------------------------------------------------------------


def model_monitor(
    name: str, spec: dict[str, Any], annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "poet.dev/v1alpha1", "kind": "ModelMonitor", "metadata": meta, "spec": spec}


def status(ns: Kubectl, name: str) -> dict[str, Any]:
    return ns.get("modelmonitor", name).get("status") or {}


def wait_status(
    ns: Kubectl, name: str, what: str, check: typing.Callable[[dict[str, Any]], bool], timeout: float = 240
) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        current = status(ns, name)
        return current if check(current) else None

    try:
        return wait_until(ready, timeout, f"{name}: {what}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nevents:\n{event_lines(ns, name)}") from None


def events(ns: Kubectl, name: str) -> list[dict[str, Any]]:
    items = ns.get("events")["items"]
    return [
        e
        for e in items
        if e["involvedObject"].get("name") == name and e["involvedObject"].get("kind") == "ModelMonitor"
    ]


def event_lines(ns: Kubectl, name: str) -> str:
    return "\n".join(f"  {e['type']} {e['reason']}: {e['message']}" for e in events(ns, name))


def version_states(st: dict[str, Any]) -> dict[int, str]:
    return {v["number"]: v["state"] for v in st.get("versions", [])}


def pods_of(ns: Kubectl, name: str, role: str | None = None) -> list[dict[str, Any]]:
    selector = f"poet.dev/monitor={name}" + (f",poet.dev/role={role}" if role else "")
    items = json.loads(ns.run("get", "pods", "-l", selector, "-o", "json"))["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready_pod(ns: Kubectl, name: str, role: str, version: int | None = None) -> str | None:
    for p in pods_of(ns, name, role):
        if version is not None and p["metadata"]["labels"].get("poet.dev/version") != str(version):
            continue
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", [])):
            return str(p["metadata"]["name"])
    return None


def csv_text(columns: dict[str, np.ndarray]) -> str:
    names = list(columns)
    joined = columns[names[0]].astype(str).astype(object)
    for n in names[1:]:
        joined = joined + "," + columns[n].astype(str).astype(object)
    return ",".join(names) + "\n" + "\n".join(joined.tolist()) + "\n"


def post(http: ApiHttp, path: str, body: str) -> tuple[int, dict[str, Any]]:
    code, answer = http.request("POST", path, body, content_type="text/csv", timeout=120)
    try:
        return code, json.loads(answer)
    except ValueError:
        return code, {"raw": answer[:300].decode(errors="replace")}


def runtime_report(http: ApiHttp, namespace: str, pod: str) -> dict[str, Any]:
    code, body = http.request("GET", ApiHttp.pod_proxy(namespace, pod, "/v1/report"))
    return json.loads(body) if code == 200 else {"reference": {}, "http_status": code}


def credit_data(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "income": np.round(rng.normal(50_000 * (1 + shift), 12_000, n), 2),
        "region": rng.choice(
            np.array(["north", "south", "east", "west"]),
            n,
            p=[0.4, 0.3, 0.2, 0.1] if not shift else [0.1, 0.2, 0.3, 0.4],
        ),
    }


CREDIT_SPEC: dict[str, Any] = {
    "model": "credit-risk",
    "window": {"strategy": "fixed", "size": 2000},
    "reference": {"source": "uploaded"},
    "features": [
        {"name": "income", "type": "continuous", "importance": 2.0},
        {"name": "region", "type": "categorical"},
    ],
    "runtime": {
        "resources": {
            "requests": {"cpu": "50m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        }
    },
    "rollout": {
        "canaryAnalysisSeconds": 10,
        "restartTolerance": 1,
        "regenerationBudget": 2,
        "regenerationBackoffSeconds": 1,
    },
}


def running_credit(ns: Kubectl, name: str = "credit", spec: dict[str, Any] | None = None) -> dict[str, Any]:
    ns.apply(model_monitor(name, spec or CREDIT_SPEC))
    return wait_status(
        ns,
        name,
        "phase Running with stable version 1",
        lambda s: s.get("phase") == "Running" and s.get("stableVersion") == 1,
    )


# -- 1. install, apply, run, answer ----------------------------------------------------------------------


def test_helm_install_and_apply_gives_a_running_monitor_that_answers(
    operator: Operator, namespace: Kubectl, http: ApiHttp
) -> None:
    ns = namespace.namespace or ""
    st = running_credit(namespace)
    assert version_states(st) == {1: "stable"}
    # The objects a user sees: the version's ConfigMap, the Deployment, its ReplicaSet, a Ready pod.
    cm = namespace.get("configmap", "credit-v1")
    assert cm.get("immutable") is True and "monitor.py" in cm["data"]
    deployment = namespace.get("deployment", "credit")
    assert deployment["status"].get("readyReplicas") == 1
    owners = {(o["kind"], o["name"]) for o in deployment["metadata"]["ownerReferences"]}
    assert owners == {("ModelMonitor", "credit")}
    replica_sets = json.loads(
        namespace.run("get", "replicasets", "-l", "poet.dev/monitor=credit", "-o", "json")
    )
    assert [r["status"].get("readyReplicas") for r in replica_sets["items"]] == [1]
    pod = ready_pod(namespace, "credit", "stable", 1)
    assert pod, pods_of(namespace, "credit")

    # Data through the monitor's Service: a reference, then a window of drifted traffic.
    rng = np.random.default_rng(SEED)
    code, answer = post(
        http, ApiHttp.service_proxy(ns, "credit", "/v1/reference"), csv_text(credit_data(rng, 3000))
    )
    assert code == 200, answer
    assert answer["reference_rows"] == 3000
    code, answer = post(
        http, ApiHttp.service_proxy(ns, "credit", "/v1/batches"), csv_text(credit_data(rng, 2000, shift=0.3))
    )
    assert code == 202, answer

    def report() -> dict[str, Any] | None:
        code, body = http.request("GET", ApiHttp.service_proxy(ns, "credit", "/v1/report"))
        data = json.loads(body) if code == 200 else {}
        return data if data.get("features") else None

    result = wait_until(report, 60, "a drift report from the runtime")
    assert set(result["drifted_features"]) == {"income", "region"}, result["features"]
    assert result["version"]["version"] == 1 and result["overall_health"] == "critical"
    code, page = http.request("GET", ApiHttp.service_proxy(ns, "credit", "/report"))
    assert code == 200 and b"income" in page
    code, metrics = http.request("GET", ApiHttp.service_proxy(ns, "credit", "/metrics"))
    assert code == 200 and b"poet_monitor" in metrics
    # The operator reads the report into the status; `kubectl get mm` shows it at a glance.
    wait_status(
        namespace,
        "credit",
        "health from the report",
        lambda s: s.get("health", {}).get("driftedCount") == 2,
        timeout=120,
    )
    table = namespace.run("get", "mm", "credit")
    header, row = table.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "STABLE", "CANARY", "PHASE", "HEALTH", "DRIFTED", "AGE"]
    cells = row.split()
    assert cells[:3] == ["credit", "credit-risk", "1"] and cells[3:5] == ["Running", "critical"], row
    assert cells[5] == "2", row


# -- 2 and 3. crashes for real: OOMKilled by the kernel, healed; a canary that dies too, rolled back -------


def payments_spec(window: int, memory: str, *, analysis: int, tolerance: int, budget: int) -> dict[str, Any]:
    """The bundled payments example (examples/payments), under a memory limit its exact window cannot fit."""
    return {
        "model": "payments-fraud",
        "window": {"strategy": "sliding", "size": window, "step": window // 8, "storage": "exact"},
        "reference": {"source": "uploaded"},
        "features": [
            {"name": "amount", "type": "continuous", "importance": 3.0},
            {"name": "merchant_id", "type": "categorical", "importance": 1.0},
            {"name": "country", "type": "categorical", "importance": 2.0},
        ],
        "runtime": {
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "1", "memory": memory},
            }
        },
        "rollout": {
            "canaryAnalysisSeconds": analysis,
            "restartTolerance": tolerance,
            "regenerationBudget": budget,
            "regenerationBackoffSeconds": 1,
        },
    }


@pytest.fixture(scope="module")
def payments(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's own generator: a reference and a stream of mostly distinct merchant ids."""
    return make_payments_data(tmp_path_factory.mktemp("payments"), burst=600_000, trickle=0)


def history_versions(http: ApiHttp, path: str) -> set[int]:
    """The code versions in a runtime's `GET /v1/history` (empty when it does not answer)."""
    code, body = http.request("GET", path)
    return {int(e["version"]) for e in json.loads(body)["evaluations"]} if code == 200 else set()


def feed(http: ApiHttp, path: str, batches: Iterator[str], stop: typing.Callable[[], bool]) -> int:
    """Post batches until ``stop()`` says enough or they run out; the number of batches posted.

    A batch refused because its pod just died (502/503 from the proxy) is not an error here: the kernel
    killing the pod mid-stream is the point.
    """
    sent = 0
    for batch in batches:
        if stop():
            break
        code, answer = post(http, path, batch)
        assert code in (202, 429, 502, 503), (code, answer)
        sent += 1
    return sent


def test_a_monitor_killed_for_memory_is_regenerated_canaried_and_promoted(
    operator: Operator, namespace: Kubectl, http: ApiHttp, payments: Path
) -> None:
    ns = namespace.namespace or ""
    operator.forget_lessons()
    namespace.apply(
        model_monitor("payments", payments_spec(400_000, "256Mi", analysis=20, tolerance=1, budget=2))
    )
    wait_status(namespace, "payments", "Running v1", lambda s: s.get("phase") == "Running")
    code, answer = post(
        http, ApiHttp.service_proxy(ns, "payments", "/v1/reference"), (payments / "reference.csv").read_text()
    )
    assert code == 200, answer

    def oom_killed() -> bool:
        return (status(namespace, "payments").get("lastFailure") or {}).get("reason") == "OOMKilled"

    # Only data and the limit: the stream grows the exact window until the kernel kills the pod.
    feed(
        http,
        ApiHttp.service_proxy(ns, "payments", "/v1/batches"),
        stream_batches(payments / "stream.csv", 20_000),
        oom_killed,
    )
    st = wait_status(
        namespace,
        "payments",
        "lastFailure OOMKilled",
        lambda s: (s.get("lastFailure") or {}).get("reason") == "OOMKilled",
        timeout=120,
    )
    failure = st["lastFailure"]
    assert failure["version"] == 1 and failure["exitCode"] == 137 and failure["signature"] == "OOMKilled"
    st = wait_status(namespace, "payments", "canary version 2", lambda s: s.get("canaryVersion") == 2)
    v2 = st["versions"][-1]
    assert v2["reason"] == "crash-feedback" and v2["feedbackAnswered"] == ["OOMKilled"], v2
    assert v2["remedies"] == ["OOMKilled:bounded_memory"], v2
    code_v2 = namespace.get("configmap", "payments-v2")["data"]["monitor.py"]
    assert "'storage': 'reservoir'" in code_v2 and "'size': 200000" in code_v2
    # Version 2 takes the same stream that killed version 1 (sent to its pod directly) and survives it.
    canary = wait_until(lambda: ready_pod(namespace, "payments", "canary", 2), 120, "a Ready canary pod")
    # The canary judges against the stable pod's reference, handed over as npz and kept for restarts.
    stable_sha = runtime_report(http, ns, ready_pod(namespace, "payments", "stable") or "")["reference"][
        "sha256"
    ]
    wait_until(
        lambda: runtime_report(http, ns, canary)["reference"]["sha256"] == stable_sha,
        60,
        "the canary's reference",
    )
    assert stable_sha, "the stable pod holds no reference"

    def kept() -> str | None:
        names = namespace.run("get", "configmaps", "-o", "name").split()
        if "configmap/payments-reference" not in names:
            return None
        return namespace.get("configmap", "payments-reference")["metadata"]["annotations"].get(
            "poet.dev/reference-sha256"
        )

    assert wait_until(kept, 60, "the reference kept in payments-reference") == stable_sha
    # ... and starts its history with version 1's evaluations, handed over by the operator.
    wait_until(
        lambda: 1 in history_versions(http, ApiHttp.pod_proxy(ns, canary, "/v1/history")),
        60,
        "version 1's evaluations in the canary's history",
    )
    feed(
        http,
        ApiHttp.pod_proxy(ns, canary, "/v1/batches"),
        stream_batches(payments / "stream.csv", 20_000),
        lambda: False,
    )
    survivor = namespace.get("pod", canary)["status"]["containerStatuses"][0]
    assert survivor["restartCount"] == 0 and survivor["ready"], survivor
    st = wait_status(
        namespace,
        "payments",
        "version 2 promoted",
        lambda s: s.get("stableVersion") == 2 and s.get("phase") == "Running",
        timeout=180,
    )
    assert version_states(st) == {1: "superseded", 2: "promoted"}
    wait_until(
        lambda: (
            [p["metadata"]["labels"]["poet.dev/version"] for p in pods_of(namespace, "payments", "stable")]
            == ["2"]
            and ready_pod(namespace, "payments", "stable", 2)
        ),
        120,
        "the stable Deployment running version 2 alone",
    )
    # The history followed the monitor: kept in payments-history at the promotion, and merged at start by
    # version 2's new stable pod, whose report draws where the version changed.
    history = namespace.get("configmap", "payments-history")
    assert history["metadata"]["annotations"]["poet.dev/history-version"] == "2", history["metadata"]
    wait_until(
        lambda: {1, 2} <= history_versions(http, ApiHttp.service_proxy(ns, "payments", "/v1/history")),
        60,
        "evaluations of versions 1 and 2 in GET /v1/history through the Service",
    )
    reasons = [e["reason"] for e in events(namespace, "payments")]
    for reason in ("RuntimeFailed", "Generating", "CanaryStarted", "Promoted"):
        assert reason in reasons, event_lines(namespace, "payments")
    # The lesson is kept for the next monitor, in the operator's namespace.
    lessons = json.loads(operator.kubectl.get("configmap", "poet-monitor-lessons")["data"]["lessons.json"])
    assert ("OOMKilled", "bounded_memory") in {(x["signature"], x["remedy"]) for x in lessons["lessons"]}
    # The operator's own metrics count the heal: one crash answered by a promotion.
    assert operator.metric("poet_operator_crash_to_fix_seconds_count") >= 1
    # ... and the next monitor of the kind starts with the remedy instead of crashing first.
    namespace.apply(
        model_monitor("refunds", payments_spec(400_000, "256Mi", analysis=20, tolerance=1, budget=2))
    )
    st = wait_status(namespace, "refunds", "Running v1", lambda s: s.get("stableVersion") == 1)
    assert st["versions"][0]["lessonsApplied"] == ["OOMKilled:bounded_memory"], st["versions"][0]
    assert "'storage': 'reservoir'" in namespace.get("configmap", "refunds-v1")["data"]["monitor.py"]


def test_a_canary_that_dies_too_is_rolled_back_and_the_stable_version_keeps_serving(
    operator: Operator, namespace: Kubectl, http: ApiHttp, payments: Path
) -> None:
    ns = namespace.namespace or ""
    operator.forget_lessons()  # learned nothing yet: version 1 keeps its window exactly
    # Even half of this window cannot fit: version 2's bounded window still outgrows the limit.
    spec = payments_spec(1_600_000, "160Mi", analysis=600, tolerance=0, budget=1)
    namespace.apply(model_monitor("payments", spec))
    wait_status(namespace, "payments", "Running v1", lambda s: s.get("phase") == "Running")
    code, answer = post(
        http, ApiHttp.service_proxy(ns, "payments", "/v1/reference"), (payments / "reference.csv").read_text()
    )
    assert code == 200, answer

    def canary_started() -> bool:
        return status(namespace, "payments").get("canaryVersion") == 2

    feed(
        http,
        ApiHttp.service_proxy(ns, "payments", "/v1/batches"),
        stream_batches(payments / "stream.csv", 20_000),
        canary_started,
    )
    wait_status(namespace, "payments", "canary version 2", lambda s: s.get("canaryVersion") == 2)
    canary = wait_until(lambda: ready_pod(namespace, "payments", "canary", 2), 120, "a Ready canary pod")

    def rolled_back() -> bool:
        return version_states(status(namespace, "payments")).get(2) == "rolled-back"

    for _ in range(4):  # the stream, again if need be, to the canary alone, until the kernel kills it
        feed(
            http,
            ApiHttp.pod_proxy(ns, canary, "/v1/batches"),
            stream_batches(payments / "stream.csv", 20_000),
            rolled_back,
        )
        if rolled_back():
            break
    st = wait_status(
        namespace,
        "payments",
        "version 2 rolled back",
        lambda s: version_states(s).get(2) == "rolled-back",
        timeout=120,
    )
    assert st["lastFailure"]["version"] == 2 and st["lastFailure"]["reason"] == "OOMKilled", st["lastFailure"]
    assert st["stableVersion"] == 1 and st.get("canaryVersion") is None
    assert st["phase"] == "Degraded"  # the budget of one regeneration is spent: a person must look now
    assert "RolledBack" in [e["reason"] for e in events(namespace, "payments")]
    wait_until(lambda: not pods_of(namespace, "payments", "canary"), 120, "the canary pod gone")
    # The stable version keeps serving through the Service.
    wait_until(lambda: ready_pod(namespace, "payments", "stable", 1), 120, "a Ready stable pod")
    code, answer = post(
        http,
        ApiHttp.service_proxy(ns, "payments", "/v1/batches"),
        next(stream_batches(payments / "stream.csv", 1000)),
    )
    assert code == 202, answer


# -- 4. refusals: by the API server's schema, and by the operator --------------------------------------


def test_the_schema_refuses_a_bad_spec_and_the_operator_explains_one_it_cannot_run(
    operator: Operator, namespace: Kubectl
) -> None:
    bad_window = {
        **CREDIT_SPEC,
        "window": {"strategy": "adaptive", "size": 100, "minSize": 200, "maxSize": 1000},
    }
    with pytest.raises(KubectlError) as refused:
        namespace.apply(model_monitor("credit", bad_window))
    message = str(refused.value)
    assert 'The ModelMonitor "credit" is invalid: spec.window' in message
    assert "size is below minSize; raise size or lower minSize" in message
    with pytest.raises(KubectlError) as refused:
        namespace.apply(model_monitor("credit", {**CREDIT_SPEC, "optimizeFor": "speed"}))
    assert "spec.optimizeFor" in str(refused.value) and "Unsupported value" in str(refused.value)
    assert "credit" not in namespace.run("get", "mm", "-o", "name")

    # A name every schema takes, but a Service cannot carry: a condition and one Event, no crash loop.
    namespace.apply(model_monitor("9lives", CREDIT_SPEC))
    st = wait_status(namespace, "9lives", "phase Failed", lambda s: s.get("phase") == "Failed")
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "metadata.name '9lives' is not a DNS-1035 label" in ready["message"]
    said = wait_until(
        lambda: [e for e in events(namespace, "9lives") if e["reason"] == "InvalidSpec"],
        60,
        "the InvalidSpec Event",
    )
    assert said[0]["type"] == "Warning" and "DNS-1035" in said[0]["message"]
    assert not namespace.run("get", "configmaps,deployments", "-l", "poet.dev/monitor=9lives", "-o", "name")


# -- 5. the status survives the API server: nothing pruned -----------------------------------------------


def _example(annotation: Any, field_name: str) -> Any:
    """A non-default value of a status field's type, so every field is present in the document."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return _example(next(a for a in args if a is not type(None)), field_name)
    if origin is typing.Literal:
        return args[-1]
    if origin is list:
        return [_example(args[0], field_name)]
    if origin is dict:
        return {"stable-pod-1": 2} if args and args[1] is int else {"rows": 512, "source": "uploaded"}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: _example(f.annotation, name) for name, f in annotation.model_fields.items()}
    if annotation is bool:
        return True
    if annotation is int:
        return 3
    if annotation is float:
        return 0.125
    if any(w in field_name for w in ("time", "created", "since", "after", "started", "evaluated")):
        return "2026-12-01T10:20:30Z"
    return f"example {field_name}"


def test_every_status_field_the_operator_writes_survives_the_round_trip(
    operator: Operator, namespace: Kubectl, http: ApiHttp
) -> None:
    full = MonitorStatus.model_validate(_example(MonitorStatus, "status")).to_dict()
    # Every field of the model is set, nested ones included (the example is only as good as that).
    assert set(full) == {f.alias or n for n, f in MonitorStatus.model_fields.items()}
    deployment = f"deployment/{RELEASE}-poet-monitor"
    # The operator would overwrite the status at once: stop it while a status is written by hand.
    operator.kubectl.run("scale", deployment, "--replicas=0")
    try:
        wait_until(lambda: not operator.kubectl.get("pods")["items"], 120, "no operator pod")
        namespace.apply(model_monitor("roundtrip", CREDIT_SPEC))
        ns = namespace.namespace or ""
        path = f"/apis/poet.dev/v1alpha1/namespaces/{ns}/modelmonitors/roundtrip/status"
        http.json("PATCH", path, {"status": full}, content_type="application/merge-patch+json")
        read_back = namespace.get("modelmonitor", "roundtrip")["status"]
        assert read_back == full
        assert MonitorStatus.from_obj(read_back).to_dict() == full
    finally:
        operator.kubectl.run("scale", deployment, "--replicas=1")
        operator.wait_ready()


# -- 6. garbage collection --------------------------------------------------------------------------------


def test_deleting_a_monitor_collects_everything_it_owned(
    operator: Operator, namespace: Kubectl, http: ApiHttp
) -> None:
    ns = namespace.namespace or ""
    running_credit(namespace)
    rng = np.random.default_rng(SEED)
    code, _ = post(
        http, ApiHttp.service_proxy(ns, "credit", "/v1/reference"), csv_text(credit_data(rng, 3000))
    )
    assert code == 200
    # The reference is kept in its own ConfigMap once the operator has read it from the stable pod.
    wait_until(
        lambda: "configmap/credit-reference" in namespace.run("get", "configmaps", "-o", "name"),
        120,
        "the credit-reference ConfigMap",
    )
    kinds = "configmaps,deployments,replicasets,pods,services"
    owned = namespace.run("get", kinds, "-o", "name").split()
    assert {
        "configmap/credit-v1",
        "configmap/credit-reference",
        "deployment.apps/credit",
        "service/credit",
    } <= set(owned), owned
    namespace.run("delete", "mm", "credit", "--wait=true", timeout=120)

    def leftovers() -> list[str]:
        names = namespace.run("get", kinds, "-o", "name").split()
        return [n for n in names if "credit" in n]

    wait_until(lambda: not leftovers() or None, 120, "garbage collection of credit's objects")
    assert leftovers() == []


# -- 7. restarts and conflicting writers ------------------------------------------------------------------


def said(ns: Kubectl, name: str, reason: str) -> int:
    return sum(int(e.get("count") or 1) for e in events(ns, name) if e["reason"] == reason)


def test_an_operator_restarted_mid_rollout_resumes_without_duplicates(
    operator: Operator, namespace: Kubectl
) -> None:
    spec = {**CREDIT_SPEC, "rollout": {**CREDIT_SPEC["rollout"], "canaryAnalysisSeconds": 30}}
    running_credit(namespace, spec=spec)
    namespace.run("annotate", "mm", "credit", "poet.dev/regenerate=true")
    wait_status(namespace, "credit", "canary version 2", lambda s: s.get("canaryVersion") == 2)
    old = operator.wait_ready()
    operator.kubectl.run("delete", "pod", old, "--wait=true", timeout=120)
    new = wait_until(lambda: (p := operator.pod()) != old and p, 180, "a new operator pod")
    assert new != old
    st = wait_status(
        namespace,
        "credit",
        "version 2 promoted",
        lambda s: s.get("stableVersion") == 2 and s.get("phase") == "Running",
        timeout=180,
    )
    assert [v["number"] for v in st["versions"]] == [1, 2]
    assert version_states(st) == {1: "superseded", 2: "promoted"}
    config_maps = namespace.run("get", "configmaps", "-l", "poet.dev/monitor=credit", "-o", "name").split()
    assert sorted(c for c in config_maps if "-v" in c) == ["configmap/credit-v1", "configmap/credit-v2"]
    assert not pods_of(namespace, "credit", "canary") or wait_until(
        lambda: not pods_of(namespace, "credit", "canary"), 120, "the canary pod gone"
    )
    # Said once each, though two operator processes looked at the rollout.
    assert said(namespace, "credit", "CanaryStarted") == 1, event_lines(namespace, "credit")
    assert said(namespace, "credit", "Promoted") == 1, event_lines(namespace, "credit")
    assert said(namespace, "credit", "ManualAction") == 1, event_lines(namespace, "credit")


def test_a_conflicting_writer_makes_the_status_write_retry_not_vanish(
    operator: Operator, namespace: Kubectl, kubeconfig: Path
) -> None:
    """The reconciler's status write carries the resourceVersion it read; a second writer in between gets the
    write refused by the real API server (409), and the next pass writes it on top of the other change."""
    import asyncio

    from poet_operator.k8s.api import KubeApi, load_client
    from poet_operator.k8s.metrics import OperatorMetrics
    from poet_operator.k8s.reconciler import OperatorConfig, Reconciler
    from prometheus_client import CollectorRegistry

    ns = namespace.namespace or ""

    class SecondWriterFirst(KubeApi):
        """The real client; before the first status write, another writer changes the monitor."""

        interfered = False

        async def merge_patch(self, path: str, body: Any) -> Any:
            if path.endswith("/status") and not self.interfered:
                type(self).interfered = True
                namespace.run("label", "mm", "credit", "team=risk")
            return await super().merge_patch(path, body)

    deployment = f"deployment/{RELEASE}-poet-monitor"
    operator.kubectl.run("scale", deployment, "--replicas=0")
    try:
        wait_until(lambda: not operator.kubectl.get("pods")["items"], 120, "no operator pod")
        namespace.apply(model_monitor("credit", CREDIT_SPEC))
        metrics = OperatorMetrics(CollectorRegistry())
        api = SecondWriterFirst(load_client(str(kubeconfig)))
        config = OperatorConfig(runtime_image="unused:0", operator_namespace=OPERATOR_NS)

        async def two_passes() -> tuple[Any, Any]:
            reconciler = Reconciler(api, config, metrics)
            try:
                first = await reconciler.reconcile(ns, "credit")
                between = status(namespace, "credit")
                second = await reconciler.reconcile(ns, "credit")
                return (first, between), second
            finally:
                await reconciler.stop()

        (first, between), second = asyncio.run(two_passes())
        assert first is None and between == {}, "the first write must have been refused"
        assert metrics.reconciles.labels(result="conflict")._value.get() == 1
        assert second is not None and second.status.phase != "Pending"
        monitor = namespace.get("modelmonitor", "credit")
        assert monitor["metadata"]["labels"]["team"] == "risk"  # the other writer's change is kept
        assert monitor["status"]["phase"] == second.status.phase  # and so is the operator's
        api.close()
        namespace.run("delete", "mm", "credit", "--wait=true", timeout=120)
    finally:
        operator.kubectl.run("scale", deployment, "--replicas=1")
        operator.wait_ready()


# -- 8. RBAC: a missing permission is a 403 the user sees -------------------------------------------------


def test_a_verb_missing_from_the_cluster_role_is_a_403_and_restoring_it_heals(
    operator: Operator, namespace: Kubectl
) -> None:
    role = operator.cluster_role()
    original = json.loads(json.dumps(role))
    rules = role["rules"]
    target = next(r for r in rules if r.get("resources") == ["configmaps"] and "create" in r["verbs"])
    target["verbs"] = [v for v in target["verbs"] if v != "create"]
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        role["metadata"].pop(key, None)
    operator.kubectl.run("replace", "-f", "-", input_text=json.dumps(role))
    try:
        namespace.apply(model_monitor("credit", CREDIT_SPEC))
        forbidden = wait_until(
            lambda: [e for e in events(namespace, "credit") if e["reason"] == "Forbidden"],
            120,
            "a Forbidden Event",
        )
        assert forbidden[0]["type"] == "Warning"
        assert "may not POST" in forbidden[0]["message"] and "configmaps" in forbidden[0]["message"]
        assert "403" in operator.logs() or "forbidden" in operator.logs().lower()
        assert "credit-v1" not in namespace.run("get", "configmaps", "-o", "name")
    finally:
        for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            original["metadata"].pop(key, None)
        operator.kubectl.run("replace", "-f", "-", input_text=json.dumps(original))
    # With the verb back, the operator's own retry finishes the job: nothing to re-apply.
    wait_status(
        namespace,
        "credit",
        "Running after the role is restored",
        lambda s: s.get("phase") == "Running" and s.get("stableVersion") == 1,
        timeout=180,
    )
