"""The unpacked helm and kubectl run and are the pinned versions."""

from __future__ import annotations

import subprocess

from tests.tools.kube_tools import kube_tools


def test_helm_and_kubectl_run() -> None:
    helm, kubectl = kube_tools()
    helm_version = subprocess.run([helm, "version", "--short"], capture_output=True, text=True, check=True)
    assert helm_version.stdout.startswith("v4."), helm_version.stdout
    kubectl_version = subprocess.run(
        [kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, check=True
    )
    assert '"gitVersion": "v1.33.' in kubectl_version.stdout, kubectl_version.stdout
