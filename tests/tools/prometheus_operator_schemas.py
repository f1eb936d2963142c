"""Validate ServiceMonitor and PodMonitor objects against the Prometheus Operator's CRD schemas.

The schemas come from PyPI: `cloudcoil-models-prometheus-operator` holds pydantic models generated from the
Prometheus Operator's CRDs (package version 0.80.1.0 = Prometheus Operator v0.80.1). It is installed in a
virtual environment of its own under the tools cache, because it registers a pytest plugin that does not
belong in the project's environment. Field types, enums and patterns are checked by the models; fields the
CRD does not know are found by comparing the object with the model's own dump of it (the models ignore
unknown fields rather than refusing them).
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.tools.kube_tools import cache_dir

PACKAGE = "cloudcoil-models-prometheus-operator"
VERSION = "0.80.1.0"
PROMETHEUS_OPERATOR_VERSION = "v0.80.1"

_CHECKER = r'''
import json, sys
from cloudcoil.models.prometheus_operator import v1

def unknown(given, dumped, path):
    """Paths present in the object but absent from the model's dump of it."""
    out = []
    if isinstance(given, dict):
        for k, v in given.items():
            if not isinstance(dumped, dict) or k not in dumped:
                out.append(f"{path}.{k}")
            else:
                out += unknown(v, dumped[k], f"{path}.{k}")
    elif isinstance(given, list) and isinstance(dumped, list):
        for i, (g, d) in enumerate(zip(given, dumped)):
            out += unknown(g, d, f"{path}[{i}]")
    return out

results = []
for doc in json.load(sys.stdin):
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    model = getattr(v1, doc.get("kind", ""), None)
    if model is None:
        results.append({"object": name, "errors": [f"no schema for kind {doc.get('kind')}"]})
        continue
    try:
        parsed = model.model_validate(doc)
    except Exception as exc:
        results.append({"object": name, "errors": [str(exc)]})
        continue
    dumped = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    extra = unknown(doc, dumped, "")
    results.append({"object": name, "errors": [f"unknown field {p}" for p in extra]})
json.dump(results, sys.stdout)
'''


def _python() -> Path:
    """The isolated environment's interpreter, created on first use (safe across parallel processes)."""
    venv = cache_dir() / f"{PACKAGE}-{VERSION}"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.is_file():
        return python
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock-prometheus-operator", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.is_file():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, timeout=300)
            proc = subprocess.run(
                [str(python), "-m", "pip", "install", "--quiet", f"{PACKAGE}=={VERSION}"],
                capture_output=True,
                text=True,
                timeout=600,
            )
            if proc.returncode != 0:
                raise RuntimeError(f"pip install {PACKAGE}=={VERSION} failed:\n{proc.stderr[-2000:]}")
            marker.write_text(VERSION)
    return python


def validate(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Errors per object (`Kind/name`); an empty list means the object is valid."""
    proc = subprocess.run(
        [str(_python()), "-c", _CHECKER],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"the schema checker failed:\n{proc.stderr[-3000:]}")
    return {r["object"]: r["errors"] for r in json.loads(proc.stdout)}
