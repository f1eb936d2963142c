"""The `poetmon` entry point: version and demo."""

import subprocess
import sys

from poet_operator import __version__


def _poetmon(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_version() -> None:
    out = _poetmon("--version")
    assert out.returncode == 0
    assert out.stdout.strip() == f"poetmon {__version__}"


def test_demo_prints_the_report() -> None:
    out = _poetmon("demo")
    assert out.returncode == 0, out.stderr
    assert "income" in out.stdout and "health: critical" in out.stdout
    assert "Retraining is warranted" in out.stdout
