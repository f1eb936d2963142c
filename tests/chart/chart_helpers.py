"""Rendering and linting the chart with the real helm binary."""

from __future__ import annotations

import copy
import functools
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.tools.kube_tools import kube_tools

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "poet-monitor"
# The documented variants (docs/install.md): each one is linted, rendered and validated.
VARIANTS = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE_NAMESPACE = "poet-system"


def helm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run helm; returns the completed process whatever its exit status."""
    helm_bin, _ = kube_tools()
    return subprocess.run([str(helm_bin), *map(str, args)], capture_output=True, text=True, timeout=120)


def values_args(values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[str]:
    args: list[str] = []
    for f in values_files:
        args += ["-f", str(f)]
    for s in sets:
        args += ["--set", s]
    return args


def render(values_files: Sequence[Path] = (), sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """`helm template` of the chart as a list of objects (a fresh copy each call); fails on a helm error."""
    return copy.deepcopy(_render(tuple(values_files), tuple(sets)))


@functools.cache
def _render(values_files: tuple[Path, ...], sets: tuple[str, ...]) -> list[dict[str, Any]]:
    # One helm run per distinct set of values in a test process: the chart does not change during a run.
    proc = helm("template", "poet", CHART, "--namespace", RELEASE_NAMESPACE, *values_args(values_files, sets))
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def find(
    docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None
) -> list:
    """Objects of `kind` (and `name`, `namespace` when given)."""
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
