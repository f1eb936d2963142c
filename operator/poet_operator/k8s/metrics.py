"""The operator's own Prometheus metrics (the runtime pods export theirs)."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PHASES = ("Pending", "Generating", "Deploying", "Running", "Canary", "Degraded", "Failed")


class OperatorMetrics:
    """One registry per operator process, so tests can run several operators side by side."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.reconciles = Counter(
            "poet_operator_reconciles",
            "Reconciliations by result (ok, conflict, error)",
            ["result"],
            registry=r,
        )
        self.generations = Counter(
            "poet_operator_generations",
            "Versions generated, by generator and outcome (written, enforce_failed, escalated, error)",
            ["generator", "outcome"],
            registry=r,
        )
        self.enforce_rejections = Counter(
            "poet_operator_enforce_rejections", "Generated versions refused by Enforce", registry=r
        )
        self.rollouts = Counter(
            "poet_operator_rollouts",
            "Canary rollouts by outcome (promoted, rolled_back, aborted)",
            ["outcome"],
            registry=r,
        )
        self.regenerations = Counter(
            "poet_operator_regenerations", "Versions generated from crash feedback", registry=r
        )
        self.llm_calls = Counter("poet_operator_llm_calls", "Requests made to the LLM", registry=r)
        self.llm_tokens = Counter(
            "poet_operator_llm_tokens", "Tokens spent on the LLM (prompt + completion)", registry=r
        )
        self.crash_to_fix = Histogram(
            "poet_operator_crash_to_fix_seconds",
            "Seconds from the failure a regenerated version answers to its promotion",
            buckets=(5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600),
            registry=r,
        )
        self.monitors = Gauge("poet_operator_monitors", "ModelMonitors by phase", ["phase"], registry=r)
        self.monitor_version = Gauge(
            "poet_operator_monitor_version",
            "The version each monitor runs, by role",
            ["namespace", "monitor", "role"],
            registry=r,
        )
        self._phases: dict[tuple[str, str], str] = {}
        for phase in PHASES:
            self.monitors.labels(phase=phase).set(0)

    def set_phase(self, namespace: str, name: str, phase: str | None) -> None:
        """Count each monitor once, in its current phase (None: it was deleted)."""
        key = (namespace, name)
        if phase is None:
            self._phases.pop(key, None)
        else:
            self._phases[key] = phase
        for known in PHASES:
            self.monitors.labels(phase=known).set(sum(1 for p in self._phases.values() if p == known))

    def set_versions(self, namespace: str, name: str, stable: int | None, canary: int | None) -> None:
        for role, number in (("stable", stable), ("canary", canary)):
            if number is None:
                with contextlib.suppress(KeyError):
                    self.monitor_version.remove(namespace, name, role)
            else:
                self.monitor_version.labels(namespace=namespace, monitor=name, role=role).set(number)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Expose /metrics on a background thread of prometheus-client's own."""
        start_http_server(port, addr=host, registry=self.registry)


__all__ = ["OperatorMetrics"]
