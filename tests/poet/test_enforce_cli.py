"""`poetmon enforce DIR`: prints the report, exit status 0 only when the version passes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from poet_operator.poet.enforce import enforce_version
from poet_operator.spec import MonitorSpec

from monitor_runtime.contract import write_version_dir

GOOD = (Path(__file__).parent / "enforce_samples" / "good_monitor.py").read_text()
SPEC = MonitorSpec(model="churn")


def _version(directory: Path, code: str = GOOD, **extra: Any) -> Path:
    write_version_dir(
        directory,
        code=code,
        version=1,
        monitor="churn",
        model=SPEC.model,
        spec=SPEC.to_dict(),
        spec_hash=SPEC.spec_hash(),
        generator={"kind": "template"},
        extra=extra,
    )
    return directory


def _poetmon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "poet_operator.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_passes_a_good_version(tmp_path: Path) -> None:
    result = _poetmon("enforce", str(_version(tmp_path / "v1")))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("enforce PASSED:")
    assert "ok   manifest: 2 checks" in result.stdout and "ok   null_data: 4 checks" in result.stdout


def test_cli_fails_a_rejected_version_and_prints_json(tmp_path: Path) -> None:
    bad = "import socket\n" + GOOD
    result = _poetmon("enforce", "--json", str(_version(tmp_path / "v1", code=bad)))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert report["policyViolations"][0]["line"] == 1
    assert report["policyViolations"][0]["rule"] == "import-not-allowed"


def test_cli_fails_a_tampered_version_without_running_it(tmp_path: Path) -> None:
    directory = _version(tmp_path / "v1")
    (directory / "monitor.py").write_text(GOOD + "\n# edited by hand\n")
    result = _poetmon("enforce", str(directory))
    assert result.returncode == 1
    assert "FAIL manifest:verify" in result.stdout and "sha256" in result.stdout


def test_cli_reports_a_missing_directory(tmp_path: Path) -> None:
    result = _poetmon("enforce", str(tmp_path / "absent"))
    assert result.returncode == 1
    assert "is not a directory" in result.stdout


def test_manifest_profiles_are_replayed_and_edited_spec_hash_is_caught(tmp_path: Path) -> None:
    fussy = (
        GOOD
        + "\n\n_Good = Monitor\n\n\nclass Monitor(_Good):\n"
        + "    def detect_drift(self, current):\n"
        + "        amount = np.asarray(current.get('amount', [0.0]), dtype=float)\n"
        + "        if not np.isfinite(amount).any():\n"
        + "            raise ValueError('amount is all missing')\n"
        + "        return _Good.detect_drift(self, current)\n"
    )
    profile = {"n_rows": 300, "columns": {"amount": {"dtype": "float64", "missing_rate": 1.0}}}
    report = enforce_version(_version(tmp_path / "v1", code=fussy, enforceProfiles=[profile]))
    failed = {c.name for c in report.failed_checks}
    assert failed == {
        "profile:enforceProfiles[0]/2:monitor_features",
        "profile:enforceProfiles[0]/3:detect_drift",
    }, report.render_text()

    directory = _version(tmp_path / "v2")
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["spec"]["optimizeFor"] = "cost"
    (directory / "manifest.json").write_text(json.dumps(manifest))
    report = enforce_version(directory)
    assert [c.name for c in report.failed_checks] == ["manifest:spec-hash"]
