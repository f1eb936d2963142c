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
