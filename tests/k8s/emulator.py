"""A Kubernetes API emulator on loopback for tests that use the real `kubernetes` client, kopf or kubectl.

`kmock.KubernetesEmulator` (kmock 0.8) keeps objects in memory and serves them over real HTTP: discovery,
list, watch, get, create (POST), merge/JSON patch (PATCH) and delete, with `metav1.Status` error bodies
(404 for unknown objects, 409 for a second create). It runs here on its own event loop in a background
thread, so blocking clients (the `kubernetes` package, kubectl, a subprocess) and an operator on another
loop (`kopf.testing.KopfRunner` or `kopf.operator()` in a thread) can all talk to it.

Usage::

    from tests.k8s.emulator import MODELMONITORS, running_emulator

    with running_emulator(namespace="ml") as cluster:        # or the `emulator` pytest fixture
        cluster.put(MODELMONITORS, {"metadata": {"name": "m1", "namespace": "ml"}, "spec": {...}})
        api = cluster.api_client()                              # kubernetes.client.ApiClient
        ...                                                     # or KUBECONFIG=cluster.kubeconfig
        cluster.get(MODELMONITORS, "ml", "m1")                  # the stored object (a plain dict)
        cluster.requests()                                      # every call: verb, resource, body
        cluster.write_request_log(path)                         # JSON lines of verb and resource

API of `EmulatedCluster` (what `running_emulator()` and the fixture yield):

- `url`, `kubeconfig` (a file with one cluster, a token user and one context `emulator` whose namespace is
  the `namespace` argument), `namespace`, `kmock` (the `KubernetesEmulator` for kmock's own DSL).
- `put(resource, obj)`: store an object as it is (no watch event; for the state before the test acts).
  `metadata.name` is required, `metadata.namespace` places it (None: cluster-scoped).
- `get(resource, namespace, name)`: the object as stored now, or None; `history(...)`: every version.
- `delete(resource, namespace, name)`: remove it (no watch event).
- `fail(verb, resource, status, reason, message)`: from now on answer that verb on that resource with an
  error `Status` (e.g. 403 Forbidden) instead of serving it.
- `requests()`: `ApiCall` records (verb as in RBAC: get, list, watch, create, patch, update, delete;
  group, resource, subresource, namespace, name, content type, JSON body) in arrival order.
- `write_request_log(path)`: one JSON object per call, `{"verb", "group", "resource", "subresource",
  "namespace"}`, to compare with a ClusterRole.
- `api_client()`: a `kubernetes.client.ApiClient` for the kubeconfig (close it, or use it in `with`).

What the emulator does not do, so tests do not rely on it by accident:

- Label and field selectors are ignored: a list returns every object of the resource in the namespace.
  Filter by labels on the client side too (the real API server would have done it already).
- No server-side fields: no uid, resourceVersion, generation, creationTimestamp, managedFields; no
  optimistic concurrency (a stale resourceVersion is not refused); no admission, schema validation,
  defaulting or pruning; no garbage collection of owned objects.
- The status subresource is not separate: a PATCH to `.../NAME/status` merges its whole body into the
  object, and a PATCH to the object may change `.status` too.
- Patches are merged as JSON merge patches (`null` deletes a key, lists are replaced) whatever the
  content type says; a strategic-merge patch of a list therefore replaces the list.
- A request answered by `fail(...)` that would modify an object still modifies the stored object (kmock
  records modifications before it picks the answer); assert on the request log, not on the object.
- `put()` and direct writes through `kmock.objects` produce no watch events: to change an object so
  that a watching operator notices, write it through the API (`api_client()`), as a kubelet would.
"""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest
import yaml

# Resource keys in kmock's notation (group/version/plural; the core group has none).
MODELMONITORS = "poet.dev/v1alpha1/modelmonitors"
CONFIGMAPS = "v1/configmaps"
PODS = "v1/pods"
SERVICES = "v1/services"
EVENTS = "v1/events"
DEPLOYMENTS = "apps/v1/deployments"

_MODELMONITOR_INFO = kmock.ResourceInfo(
    namespaced=True,
    kind="ModelMonitor",
    singular="modelmonitor",
    verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
    shortnames={"mm"},
    categories={"all"},
    subresources={"status"},
)
# RBAC verb of a kmock action (a GET of a collection is a list, of one object a get).
_VERBS = {
    "LIST": "list",
    "WATCH": "watch",
    "FETCH": "get",
    "CREATE": "create",
    "UPDATE": "patch",
    "DELETE": "delete",
}
_METHOD_VERBS = {
    "PUT": "update",
    "DELETE": "deletecollection",
    "POST": "create",
    "GET": "get",
    "PATCH": "patch",
}
_START_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class ApiCall:
    """One request the emulator received, as an RBAC rule would see it (plus what was sent)."""

    verb: str
    group: str
    resource: str
    subresource: str | None
    namespace: str | None
    name: str | None
    content_type: str | None
    body: Any
    user_agent: str = ""

    def to_log(self) -> dict[str, Any]:
        return {
            "verb": self.verb,
            "group": self.group,
            "resource": self.resource,
            "subresource": self.subresource,
            "namespace": self.namespace,
        }


class EmulatedCluster:
    """A running emulator, its address and kubeconfig, and helpers to arrange and inspect its state."""

    def __init__(
        self,
        emulator: kmock.KubernetesEmulator,
        loop: asyncio.AbstractEventLoop,
        url: str,
        kubeconfig: Path,
        namespace: str,
    ) -> None:
        self.kmock = emulator
        self.loop = loop
        self.url = url
        self.kubeconfig = kubeconfig
        self.namespace = namespace

    def put(self, resource: str, obj: Mapping[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            raise ValueError("put(): metadata.name is required to address the object")
        self.kmock.objects[resource, meta.get("namespace"), meta["name"]] = json.loads(json.dumps(obj))

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:  # `in` would not parse the resource string (kmock 0.8); indexing does
            stored = self.kmock.objects[resource, namespace, name]
        except KeyError:
            return None
        return None if stored.deleted else json.loads(json.dumps(stored.raw, default=_unwrap))

    def history(self, resource: str, namespace: str | None, name: str) -> list[dict[str, Any] | None]:
        versions = self.kmock.objects[resource, namespace, name].history
        return [None if v is None else json.loads(json.dumps(v.raw, default=_unwrap)) for v in versions]

    def delete(self, resource: str, namespace: str | None, name: str) -> None:
        del self.kmock.objects[resource, namespace, name]

    def fail(self, verb: str, resource: str, status: int, reason: str, message: str) -> None:
        """Answer `verb` (get, list, watch, create, patch, delete) on `resource` with an error Status."""
        actions = {v: k for k, v in _VERBS.items()}
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": reason,
            "message": message,
            "code": status,
        }
        self.kmock[kmock.action(actions[verb]), kmock.resource(resource)] << status << body

    def requests(self) -> list[ApiCall]:
        calls = []
        for request in list(self.kmock):
            if request.resource is None:  # discovery and other non-resource paths
                continue
            action = request.action.value if request.action is not None else None
            calls.append(
                ApiCall(
                    verb=_VERBS[action]
                    if action
                    else _METHOD_VERBS.get(request.method.value, request.method.value),
                    group=request.resource.group or "",
                    resource=request.resource.plural or "",
                    subresource=request.subresource,
                    namespace=request.namespace,
                    name=request.name,
                    content_type=request.headers.get("Content-Type"),
                    body=request.data,
                    user_agent=request.headers.get("User-Agent", ""),
                )
            )
        return calls

    def write_request_log(self, path: str | Path) -> Path:
        path = Path(path)
        lines = [json.dumps(call.to_log(), sort_keys=True) for call in self.requests()]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return path

    def api_client(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))


def _unwrap(value: Any) -> Any:
    # kmock wraps nested dicts in its own mapping views; JSON sees them as plain dicts.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def write_kubeconfig(path: Path, url: str, namespace: str, context: str = "emulator") -> Path:
    """A kubeconfig with one cluster at `url`, a token user and one context (the current one)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": "tester", "user": {"token": "emulator-token"}}],
        "contexts": [
            {"name": context, "context": {"cluster": context, "user": "tester", "namespace": namespace}}
        ],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@contextmanager
def running_emulator(directory: Path, namespace: str = "default") -> Iterator[EmulatedCluster]:
    """Start the emulator on 127.0.0.1 (a free port) in a background thread; stop it on exit.

    Built-in resources (a k3s discovery snapshot bundled with kmock) and ModelMonitor are registered, so
    discovery, kubectl and kopf find them and lists of an empty resource answer `[]`, not 404.
    The kubeconfig is written to `directory/kubeconfig`.
    """
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        try:
            emulator = kmock.KubernetesEmulator()
            with warnings.catch_warnings():  # kmock 0.8 reads its bundled file with a deprecated helper
                warnings.simplefilter("ignore", DeprecationWarning)
                emulator.resources.load_bundled()
            emulator.resources[MODELMONITORS] = _MODELMONITOR_INFO
            async with emulator, kmock.Server(emulator) as server:
                box.update(
                    emulator=emulator, server=server, loop=asyncio.get_running_loop(), stop=asyncio.Event()
                )
                started.set()
                await box["stop"].wait()
        except BaseException as exc:  # surfaced in the test's thread below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), name="k8s-emulator", daemon=True)
    thread.start()
    if not started.wait(_START_TIMEOUT_SECONDS) or "error" in box:
        raise RuntimeError(f"the Kubernetes emulator did not start: {box.get('error')!r}")
    url = str(box["server"].url).rstrip("/")
    kubeconfig = write_kubeconfig(Path(directory) / "kubeconfig", url, namespace)
    try:
        yield EmulatedCluster(box["emulator"], box["loop"], url, kubeconfig, namespace)
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(_START_TIMEOUT_SECONDS)


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatedCluster]:
    """A fresh emulator per test; the kubeconfig's namespace is `default`."""
    with running_emulator(tmp_path) as cluster:
        yield cluster


__all__ = [
    "CONFIGMAPS",
    "DEPLOYMENTS",
    "EVENTS",
    "MODELMONITORS",
    "PODS",
    "SERVICES",
    "ApiCall",
    "EmulatedCluster",
    "emulator",
    "running_emulator",
    "write_kubeconfig",
]
