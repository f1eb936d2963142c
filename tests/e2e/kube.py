"""A thin kubectl driver for the e2e tests: real kubectl against a real cluster, JSON in and out."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries its stderr."""


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to one kubeconfig (and optionally one namespace)."""

    binary: Path
    kubeconfig: Path
    namespace: str | None = None

    def in_namespace(self, namespace: str) -> Kubectl:
        return Kubectl(self.binary, self.kubeconfig, namespace)

    def run(self, *args: str, input_text: str | None = None, timeout: float = 60) -> str:
        """Run kubectl; return stdout, raise ``KubectlError`` with stderr when it fails."""
        cmd = [str(self.binary), "--kubeconfig", str(self.kubeconfig)]
        if self.namespace:
            cmd += ["--namespace", self.namespace]
        done = subprocess.run(
            cmd + list(args), input=input_text, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def get(self, kind: str, name: str | None = None) -> dict[str, Any]:
        args = ["get", kind] + ([name] if name else []) + ["-o", "json"]
        return json.loads(self.run(*args))

    def apply(self, *manifests: dict[str, Any]) -> None:
        """Apply manifests given as dicts (JSON is YAML)."""
        doc = {"apiVersion": "v1", "kind": "List", "items": list(manifests)}
        self.run("apply", "-f", "-", input_text=json.dumps(doc))

    def logs(self, pod: str, container: str | None = None) -> str:
        return self.run("logs", pod, *(["-c", container] if container else []))


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last seen: {last!r})")


class ApiHttp:
    """Raw HTTP to the API server with the kubeconfig's credentials (the ``kubernetes`` client's pool).

    Used to reach a monitor's Service or pod through the API server's proxy, which works on any cluster
    (no route from the test machine to cluster addresses is needed), and for status writes kubectl lacks.
    """

    def __init__(self, kubeconfig: Path) -> None:
        from kubernetes import config

        self.client = config.new_client_from_config(str(kubeconfig))

    def request(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        content_type: str = "application/json",
        timeout: float = 60,
    ) -> tuple[int, bytes]:
        """Send one request; return the status code and the body (no exception for 4xx/5xx)."""
        url = self.client.configuration.host + path
        headers = {"Content-Type": content_type, "Accept": "*/*"}
        data = body.encode() if isinstance(body, str) else body
        # The client's urllib3 pool carries the kubeconfig's TLS settings; the body goes as given.
        response = self.client.rest_client.pool_manager.request(
            method, url, body=data, headers=headers, timeout=timeout, retries=False
        )
        return response.status, response.data

    def json(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        """A JSON request that must succeed; its decoded answer."""
        data = None if body is None else (body if isinstance(body, (bytes, str)) else json.dumps(body))
        status, answer = self.request(method, path, data, content_type)
        if status >= 300:
            raise KubectlError(f"{method} {path}: HTTP {status}: {answer[:500]!r}")
        return json.loads(answer)

    @staticmethod
    def service_proxy(namespace: str, service: str, path: str, port: str = "http") -> str:
        return f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy{path}"

    @staticmethod
    def pod_proxy(namespace: str, pod: str, path: str, port: int = 8080) -> str:
        return f"/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}"
