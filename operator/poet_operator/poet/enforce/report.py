"""The enforce report: each check with verdict, evidence and timing; JSON for manifests, text for people."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

REPORT_FORMAT = 1


@dataclass(frozen=True)
class Check:
    """One verdict. `phase` is manifest, policy or sandbox; `evidence` says what went wrong."""

    name: str
    phase: str
    passed: bool
    seconds: float = 0.0
    evidence: tuple[str, ...] = ()
    scenario: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "phase": self.phase,
            "passed": self.passed,
            "seconds": round(float(self.seconds), 6),
            "evidence": list(self.evidence),
            "scenario": self.scenario,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Check:
        """Inverse of `to_dict`."""
        return cls(
            name=str(data["name"]),
            phase=str(data.get("phase", "sandbox")),
            passed=bool(data["passed"]),
            seconds=float(data.get("seconds", 0.0)),
            evidence=tuple(str(e) for e in data.get("evidence", ())),
            scenario=data.get("scenario"),
        )


@dataclass(frozen=True)
class EnforceReport:
    """The outcome of enforcing one piece of monitor code."""

    passed: bool
    checks: tuple[Check, ...]
    code_sha256: str
    policy_violations: tuple[dict[str, Any], ...] = ()
    guard_violations: tuple[dict[str, Any], ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    sandbox: Mapping[str, Any] = field(default_factory=dict)
    contract: int = 1

    @property
    def passed_checks(self) -> list[Check]:
        """Checks that passed."""
        return [c for c in self.checks if c.passed]

    @property
    def failed_checks(self) -> list[Check]:
        """Checks that failed, each with its evidence."""
        return [c for c in self.checks if not c.passed]

    def reasons(self) -> list[str]:
        """One line per failure, suitable for a repair prompt or a feedback record."""
        lines = []
        for v in self.policy_violations:
            lines.append(f"line {v.get('line')}: [{v.get('rule')}] {v.get('message')}")
        for check in self.failed_checks:
            if check.phase == "policy":
                continue  # already listed line by line above
            detail = "; ".join(e.splitlines()[0] if e else e for e in check.evidence[:3]) or "failed"
            lines.append(f"{check.name}: {detail}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored in `manifest.json` under `enforce`."""
        return {
            "format": REPORT_FORMAT,
            "passed": self.passed,
            "contract": self.contract,
            "codeSha256": self.code_sha256,
            "summary": {
                "checks": len(self.checks),
                "passed": len(self.passed_checks),
                "failed": len(self.failed_checks),
            },
            "checks": [c.to_dict() for c in self.checks],
            "policyViolations": [dict(v) for v in self.policy_violations],
            "guardViolations": [dict(v) for v in self.guard_violations],
            "timings": {k: round(float(v), 6) for k, v in self.timings.items()},
            "sandbox": dict(self.sandbox),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnforceReport:
        """Inverse of `to_dict` (for reports read back from a manifest)."""
        return cls(
            passed=bool(data["passed"]),
            checks=tuple(Check.from_dict(c) for c in data.get("checks", ())),
            code_sha256=str(data.get("codeSha256", "")),
            policy_violations=tuple(dict(v) for v in data.get("policyViolations", ())),
            guard_violations=tuple(dict(v) for v in data.get("guardViolations", ())),
            timings=dict(data.get("timings", {})),
            sandbox=dict(data.get("sandbox", {})),
            contract=int(data.get("contract", 1)),
        )

    def render_text(self) -> str:
        """A human-readable report: verdict, failures with evidence, then the passed checks."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"enforce {verdict}: {len(self.passed_checks)}/{len(self.checks)} checks passed "
            f"(code sha256 {self.code_sha256[:12]}, contract {self.contract})"
        ]
        if self.sandbox:
            iso = (
                "fresh network namespace" if self.sandbox.get("networkIsolation") else "no network namespace"
            )
            if "pidIsolation" in self.sandbox:
                iso += ", fresh PID namespace" if self.sandbox["pidIsolation"] else ", no PID namespace"
            note = self.sandbox.get("isolationNote")
            isolated = self.sandbox.get("networkIsolation") and self.sandbox.get("pidIsolation", True)
            lines.append(
                f"sandbox: {self.sandbox.get('termination', 'not run')}, {iso}"
                + (f" ({note})" if note and not isolated else "")
            )
        if self.timings:
            lines.append("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items()))
        if self.policy_violations:
            lines.append("policy violations:")
            lines += [
                f"  line {v.get('line')}: [{v.get('rule')}] {v.get('message')}"
                for v in self.policy_violations
            ]
        failed = [c for c in self.failed_checks if c.phase != "policy"]
        if failed:
            lines.append("failed checks:")
            for check in failed:
                lines.append(f"  FAIL {check.name} ({check.seconds:.3f}s)")
                for evidence in check.evidence:
                    for row in evidence.splitlines()[:12]:
                        lines.append(f"       {row}")
        if self.passed_checks:
            lines.append("passed checks:")
            # One line per scenario (or policy/manifest group) keeps the report readable.
            groups: dict[str, list[Check]] = {}
            for check in self.passed_checks:
                key = check.scenario or check.name.split(":")[0].split("/")[0]
                groups.setdefault(key, []).append(check)
            for key, group in groups.items():
                seconds = sum(c.seconds for c in group)
                if len(group) == 1:
                    lines.append(f"  ok   {group[0].name} ({seconds:.3f}s)")
                else:
                    lines.append(f"  ok   {key}: {len(group)} checks ({seconds:.3f}s)")
        return "\n".join(lines)


__all__ = ["REPORT_FORMAT", "Check", "EnforceReport"]
