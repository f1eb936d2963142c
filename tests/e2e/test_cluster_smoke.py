"""The cluster under the e2e suite behaves like a real one: a Ready node that runs pods from the local
base image, kills a pod over its memory limit (OOMKilled, exit 137), reports a crash loop with the
termination message, mounts ConfigMaps, routes Services, and lets pods reach the API server with
their ServiceAccount (RBAC enforced)."""

from __future__ import annotations

import json
from typing import Any

from tests.e2e.kube import Kubectl, wait_until


def pod(
    name: str,
    image: str,
    script: str,
    *,
    restart: str = "Never",
    memory: str = "128Mi",
    labels: dict[str, str] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    mounts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A single-container pod running ``python3 -c script``."""
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "-u", "-c", script],
        "resources": {
            "limits": {"memory": memory, "cpu": "500m"},
            "requests": {"memory": "32Mi", "cpu": "10m"},
        },
    }
    if mounts:
        container["volumeMounts"] = mounts
    spec: dict[str, Any] = {
        "restartPolicy": restart,
        "containers": [container],
        "terminationGracePeriodSeconds": 1,
    }
    if volumes:
        spec["volumes"] = volumes
    metadata = {"name": name, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def container_status(ns: Kubectl, name: str) -> dict[str, Any] | None:
    statuses = ns.get("pod", name).get("status", {}).get("containerStatuses") or []
    return statuses[0] if statuses else None


def phase(ns: Kubectl, name: str) -> str:
    return ns.get("pod", name).get("status", {}).get("phase", "")


def finished(ns: Kubectl, name: str) -> str | None:
    """The pod's phase once it has ended, else None."""
    current = phase(ns, name)
    return current if current in ("Succeeded", "Failed") else None


def test_node_is_ready(kubectl: Kubectl) -> None:
    nodes = kubectl.get("nodes")["items"]
    assert nodes, "the cluster has no node"
    ready = [
        n["metadata"]["name"]
        for n in nodes
        if any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
    ]
    assert ready, f"no Ready node among {[n['metadata']['name'] for n in nodes]}"


def test_pod_from_base_image_runs_with_logs_and_exec(namespace: Kubectl, base_image: str) -> None:
    namespace.apply(
        pod(
            "hello",
            base_image,
            "import sys, time; print('hello from', sys.version.split()[0]); time.sleep(600)",
        )
    )
    wait_until(lambda: phase(namespace, "hello") == "Running", 90, "pod hello Running")
    wait_until(lambda: "hello from 3." in namespace.logs("hello"), 30, "the pod's log line")
    out = namespace.run("exec", "hello", "--", "python3", "-c", "print(6 * 7)")
    assert out.strip() == "42"


def test_pod_over_memory_limit_is_oomkilled(namespace: Kubectl, base_image: str) -> None:
    # Touch 200 MiB of fresh memory under a 64 MiB limit: the kernel kills it, the kubelet reports it.
    hog = "blocks = [b'x' * (1 << 20) for _ in range(200)]; print(len(blocks))"
    namespace.apply(pod("hog", base_image, hog, restart="Always", memory="64Mi"))

    def oom_seen() -> dict[str, Any] | None:
        status = container_status(namespace, "hog") or {}
        terminated = status.get("lastState", {}).get("terminated")
        return terminated if terminated and terminated.get("reason") == "OOMKilled" else None

    terminated = wait_until(oom_seen, 120, "hog's lastState.terminated.reason == OOMKilled")
    assert terminated["exitCode"] == 137


def test_crash_loop_reports_termination_message(namespace: Kubectl, base_image: str) -> None:
    message = "poet-e2e: giving up on purpose"
    script = (
        f"open('/dev/termination-log', 'w').write({message!r}); "
        "import sys; print('crashing', flush=True); sys.exit(1)"
    )
    namespace.apply(pod("crasher", base_image, script, restart="Always"))

    # The waiting reason CrashLoopBackOff lasts only as long as the back-off, which a poll can miss; the
    # kubelet's BackOff Event for the pod stays.
    def backed_off() -> bool:
        items = namespace.get("events")["items"]
        return any(e["reason"] == "BackOff" and e["involvedObject"].get("name") == "crasher" for e in items)

    wait_until(backed_off, 120, "the kubelet's BackOff Event for crasher")
    status = wait_until(
        lambda: (s := container_status(namespace, "crasher")) and s.get("lastState") and s,
        60,
        "crasher's last state",
    )
    terminated = status["lastState"]["terminated"]
    assert terminated["exitCode"] == 1
    assert terminated["message"] == message
    assert status["restartCount"] >= 1


def test_configmap_volume_mounts(namespace: Kubectl, base_image: str) -> None:
    payload = {"window": 512, "features": ["a", "b"]}
    namespace.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"settings.json": json.dumps(payload)},
        },
        pod(
            "reader",
            base_image,
            "print(open('/etc/settings/settings.json').read())",
            volumes=[{"name": "settings", "configMap": {"name": "settings"}}],
            mounts=[{"name": "settings", "mountPath": "/etc/settings", "readOnly": True}],
        ),
    )
    assert wait_until(lambda: finished(namespace, "reader"), 90, "pod reader finished") == "Succeeded"
    assert json.loads(namespace.logs("reader")) == payload


def test_service_routes_to_pod(namespace: Kubectl, base_image: str) -> None:
    server = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        body = b'served by ' + self.path.encode()\n"
        "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers(); self.wfile.write(body)\n"
        "http.server.HTTPServer(('0.0.0.0', 8080), H).serve_forever()\n"
    )
    namespace.apply(
        pod("web", base_image, server, restart="Always", labels={"app": "web"}),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    wait_until(lambda: phase(namespace, "web") == "Running", 90, "pod web Running")
    cluster_ip = namespace.get("service", "web")["spec"]["clusterIP"]
    client = (
        "import time, urllib.request\n"
        "deadline = time.time() + 60\n"
        "while True:\n"
        "    try:\n"
        f"        reply = urllib.request.urlopen('http://{cluster_ip}/probe', timeout=2)\n"
        "        print(reply.read().decode()); break\n"
        "    except OSError:\n"
        "        if time.time() > deadline: raise\n"
        "        time.sleep(0.5)\n"
    )
    namespace.apply(pod("client", base_image, client))
    assert wait_until(lambda: finished(namespace, "client"), 120, "pod client finished") == "Succeeded"
    assert namespace.logs("client").strip() == "served by /probe"


def test_pod_reaches_api_server_with_its_service_account(namespace: Kubectl, base_image: str) -> None:
    # In-cluster config as a client library sees it: the kubernetes Service, the mounted token and CA.
    script = (
        "import json, os, ssl, urllib.error, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "host = os.environ['KUBERNETES_SERVICE_HOST'] + ':' + os.environ['KUBERNETES_SERVICE_PORT']\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "token = open(sa + '/token').read()\n"
        "ns = open(sa + '/namespace').read()\n"
        "def get(path):\n"
        "    auth = {'Authorization': 'Bearer ' + token}\n"
        "    req = urllib.request.Request('https://' + host + path, headers=auth)\n"
        "    try:\n"
        "        with urllib.request.urlopen(req, context=ctx, timeout=10) as r: return r.status\n"
        "    except urllib.error.HTTPError as e: return e.code\n"
        "print(json.dumps({'version': get('/version'), 'pods': get('/api/v1/namespaces/' + ns + '/pods')}))\n"
    )
    namespace.apply(pod("incluster", base_image, script))
    assert wait_until(lambda: finished(namespace, "incluster"), 90, "pod incluster finished") == "Succeeded"
    # The default ServiceAccount may read the version but not list pods: authentication works, RBAC bites.
    assert json.loads(namespace.logs("incluster")) == {"version": 200, "pods": 403}
