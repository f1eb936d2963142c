"""Enforce: nothing unproven ships. A static policy, then contract scenarios in a limited sandbox process.

`enforce_code(code, spec)` checks code before it is written; `enforce_version(directory)` checks a written
version directory (manifest, hash, then the code); `enforce_command` is `poetmon enforce DIR`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monitor_runtime.contract import CONTRACT, ContractError, code_sha256, verify_version_dir
from poet_operator.poet.enforce.policy import RULES, Violation, check_code
from poet_operator.poet.enforce.report import Check, EnforceReport
from poet_operator.poet.enforce.sandbox import SandboxLimits, network_namespace_support, run_sandbox
from poet_operator.poet.enforce.scenarios import (
    ProfileError,
    Scenario,
    build_scenarios,
    scenario_from_profile,
)
from poet_operator.spec import MonitorSpec, SpecError

#: Optional manifest key: data profiles of crashing batches, replayed as extra scenarios on every enforce.
PROFILES_KEY = "enforceProfiles"


def _spec_dict(spec: MonitorSpec | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(spec, MonitorSpec):
        return spec.to_dict()
    return MonitorSpec.from_mapping(spec).to_dict()


def _policy_checks(violations: Sequence[Violation], seconds: float) -> list[Check]:
    by_rule: dict[str, list[Violation]] = {}
    for violation in violations:
        by_rule.setdefault(violation.rule, []).append(violation)
    checks = []
    for rule in RULES:
        found = by_rule.get(rule, [])
        checks.append(
            Check(
                name=f"policy:{rule}",
                phase="policy",
                passed=not found,
                seconds=seconds if rule == "syntax" else 0.0,
                evidence=tuple(str(v) for v in found),
            )
        )
    return checks


def enforce_code(
    code: str,
    spec: MonitorSpec | Mapping[str, Any],
    *,
    extra_scenarios: Sequence[Scenario] = (),
    limits: SandboxLimits | None = None,
    toolkit: str = "monitor_runtime.toolkit",
    network_isolation: bool | None = None,
) -> EnforceReport:
    """Enforce `code` for `spec`: the static policy first; only code that passes it runs in the sandbox."""
    started = time.perf_counter()
    spec_dict = _spec_dict(spec)
    violations = check_code(code)
    policy_seconds = time.perf_counter() - started
    checks = _policy_checks(violations, policy_seconds)
    timings = {"policy": policy_seconds}
    sandbox_summary: dict[str, Any] = {"termination": "not run (rejected by the static policy)"}
    guard_violations: list[dict[str, Any]] = []
    if not violations:
        scenarios = [*build_scenarios(spec_dict), *extra_scenarios]
        outcome = run_sandbox(
            code, spec_dict, scenarios, limits=limits, toolkit=toolkit, network_isolation=network_isolation
        )
        checks.extend(outcome.checks)
        if not any(c.phase == "sandbox" for c in outcome.checks):
            # Passing needs evidence: a run that reported nothing proves nothing.
            checks.append(
                Check(
                    name="sandbox",
                    phase="sandbox",
                    passed=False,
                    evidence=("the sandbox reported no checks at all; nothing was shown to work",),
                )
            )
        timings["sandbox"] = outcome.seconds
        sandbox_summary = outcome.summary()
        guard_violations = outcome.guard_violations
    timings["total"] = time.perf_counter() - started
    return EnforceReport(
        passed=all(c.passed for c in checks),
        checks=tuple(checks),
        code_sha256=code_sha256(code),
        policy_violations=tuple(v.to_dict() for v in violations),
        guard_violations=tuple(guard_violations),
        timings=timings,
        sandbox=sandbox_summary,
        contract=CONTRACT,
    )


def _failed_report(name: str, evidence: str, code_hash: str = "") -> EnforceReport:
    check = Check(name=name, phase="manifest", passed=False, evidence=(evidence,))
    return EnforceReport(passed=False, checks=(check,), code_sha256=code_hash, contract=CONTRACT)


def enforce_version(
    directory: str | Path,
    *,
    extra_scenarios: Sequence[Scenario] = (),
    limits: SandboxLimits | None = None,
    toolkit: str = "monitor_runtime.toolkit",
) -> EnforceReport:
    """Enforce a version directory: manifest and hash first (nothing runs if they fail), then the code.

    Data profiles listed under the manifest's `enforceProfiles` are replayed as extra scenarios.
    """
    started = time.perf_counter()
    try:
        manifest, code_bytes = verify_version_dir(directory)
    except ContractError as exc:
        return _failed_report("manifest:verify", str(exc))
    code_hash = manifest.code_sha256
    try:
        code = code_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _failed_report(
            "manifest:encoding", f"monitor.py is not UTF-8 ({exc}); regenerate it", code_hash
        )
    try:
        spec = MonitorSpec.from_mapping(manifest.spec, path_prefix="manifest.spec")
    except SpecError as exc:
        return _failed_report("manifest:spec", str(exc), code_hash)
    manifest_checks = [Check("manifest:verify", "manifest", True)]
    if spec.spec_hash() != manifest.spec_hash:
        manifest_checks.append(
            Check(
                "manifest:spec-hash",
                "manifest",
                False,
                evidence=(
                    f"specHash {manifest.spec_hash} does not match the spec stored in the manifest "
                    f"({spec.spec_hash()}); the manifest was edited, regenerate the version",
                ),
            )
        )
    else:
        manifest_checks.append(Check("manifest:spec-hash", "manifest", True))
    profile_scenarios = []
    extra = manifest.model_extra or {}
    for index, profile in enumerate(extra.get(PROFILES_KEY) or []):
        try:
            profile_scenarios.append(scenario_from_profile(profile, name=f"{PROFILES_KEY}[{index}]"))
        except ProfileError as exc:
            manifest_checks.append(
                Check(f"manifest:{PROFILES_KEY}[{index}]", "manifest", False, evidence=(str(exc),))
            )
    manifest_checks[0] = Check("manifest:verify", "manifest", True, seconds=time.perf_counter() - started)
    report = enforce_code(
        code, spec, extra_scenarios=[*profile_scenarios, *extra_scenarios], limits=limits, toolkit=toolkit
    )
    checks = (*manifest_checks, *report.checks)
    return EnforceReport(
        passed=report.passed and all(c.passed for c in manifest_checks),
        checks=checks,
        code_sha256=report.code_sha256,
        policy_violations=report.policy_violations,
        guard_violations=report.guard_violations,
        timings={**report.timings, "total": time.perf_counter() - started},
        sandbox=report.sandbox,
        contract=report.contract,
    )


def enforce_command(directory: str, as_json: bool = False) -> int:
    """`poetmon enforce DIR`: print the report (text or JSON); exit status 0 only when it passed."""
    report = enforce_version(directory)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        print(report.render_text())
    return 0 if report.passed else 1


__all__ = [
    "PROFILES_KEY",
    "Check",
    "EnforceReport",
    "SandboxLimits",
    "Scenario",
    "build_scenarios",
    "enforce_code",
    "enforce_command",
    "enforce_version",
    "network_namespace_support",
    "scenario_from_profile",
]
