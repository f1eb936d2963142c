"""The `poetmon` entry point: version and the demo (the whole POET loop on a bundled example)."""

import json
import subprocess
import sys

from poet_operator import __version__


def _poetmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_version() -> None:
    out = _poetmon("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"poetmon {__version__}"


def test_demo_generates_enforces_runs_and_reports() -> None:
    out = _poetmon("demo")
    assert out.returncode == 0, out.stderr
    assert "with the template generator; enforce passed" in out.stdout
    assert "health CRITICAL" in out.stdout
    lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert "DRIFT" in lines["income"] and "DRIFT" in lines["country"]
    assert "DRIFT" not in lines["tenure_months"]
    assert "Retraining is warranted" in out.stdout


def test_demo_as_json() -> None:
    out = _poetmon("demo", "--format", "json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert set(report["drifted_features"]) == {"income", "country", "age"}
    assert report["version"]["generator"] == "template"
