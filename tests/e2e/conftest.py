"""Fixtures for the end-to-end suite on a real cluster.

The suite runs only when asked (``make e2e`` sets ``POET_E2E=1``; ``E2E_KUBECONFIG`` also enables it),
so the default ``pytest`` run over ``tests/`` never starts a cluster. With ``E2E_KUBECONFIG`` it uses that
cluster (kind or any other, with the project's images loaded there); otherwise it brings the local
single-node cluster up for the session and down at the end, pass or fail.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kube import Kubectl, wait_until
from tests.tools.kube_tools import kube_tools

CLUSTER_DIR = Path(__file__).parent / "cluster"
REPO = Path(__file__).resolve().parents[2]

if not (os.environ.get("POET_E2E") or os.environ.get("E2E_KUBECONFIG")):
    collect_ignore_glob = ["test_*.py"]

# The image test pods start from; on the local cluster it is built by build-base-images.sh.
BASE_IMAGE = os.environ.get("E2E_BASE_IMAGE", "python:3.11-slim-bookworm")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    """A kubeconfig for a running cluster: ``E2E_KUBECONFIG``, or the local cluster started here."""
    given = os.environ.get("E2E_KUBECONFIG")
    if given:
        path = Path(given)
        if not path.is_file():
            raise FileNotFoundError(f"E2E_KUBECONFIG={given}: no such file")
        yield path
        return
    # A terminated run still takes the cluster down: SIGTERM unwinds like Ctrl-C through the finalizer.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    up = subprocess.run(
        ["bash", str(CLUSTER_DIR / "cluster-up.sh")], stdout=subprocess.PIPE, text=True, check=False
    )
    try:
        if up.returncode != 0:
            raise RuntimeError(f"cluster-up.sh failed ({up.returncode}); its log is above")
        yield Path(up.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["bash", str(CLUSTER_DIR / "cluster-down.sh")], check=False)
        signal.signal(signal.SIGTERM, previous)
        left = subprocess.run(["bash", str(CLUSTER_DIR / "leftovers.sh")], capture_output=True, text=True)
        if left.returncode != 0:
            raise AssertionError(f"cluster-down.sh left things behind:\n{left.stdout}")


@pytest.fixture(scope="session")
def kubectl(kubeconfig: Path) -> Kubectl:
    """kubectl (unpacked from PyPI into the cache) bound to the session's cluster."""
    _, binary = kube_tools()
    return Kubectl(binary, kubeconfig)


@pytest.fixture(scope="session")
def helm_binary() -> Path:
    helm, _ = kube_tools()
    return helm


@pytest.fixture(scope="session")
def base_image() -> str:
    return BASE_IMAGE


@pytest.fixture()
def namespace(kubectl: Kubectl) -> Iterator[Kubectl]:
    """A fresh namespace for one test, deleted afterwards (without waiting for it to go)."""
    name = f"e2e-{secrets.token_hex(4)}"
    kubectl.run("create", "namespace", name)
    ns = kubectl.in_namespace(name)
    # Pods need the namespace's default ServiceAccount, which a controller creates shortly after.
    wait_until(
        lambda: "default" in ns.run("get", "serviceaccounts", "-o", "name"),
        60,
        f"the default ServiceAccount in {name}",
    )
    try:
        yield ns
    finally:
        kubectl.run("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="session")
def project_images(kubeconfig: Path) -> dict[str, str]:
    """The operator and runtime image references, present in the cluster.

    Built from the project's Dockerfile and imported into the local cluster; on a cluster given by
    ``E2E_KUBECONFIG`` they must already be loaded there (for kind: ``kind load docker-image``).
    """
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    images = {name: f"poet-monitor/{name}:{version}" for name in ("operator", "runtime")}
    if not os.environ.get("E2E_KUBECONFIG"):
        subprocess.run(["bash", str(CLUSTER_DIR / "build-images.sh")], check=True)
    return images
