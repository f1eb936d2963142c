"""ModelMonitor objects as the API server returns them, for rendering and command tests (plain dicts)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

NOW = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


def mid_canary(name: str = "fraud", namespace: str = "ml") -> dict[str, Any]:
    """v1 superseded, v2 stable and crashing (OOMKilled), v3 canary answering it, 90 s into its analysis."""
    return copy.deepcopy(
        {
            "apiVersion": "poet.dev/v1alpha1",
            "kind": "ModelMonitor",
            "metadata": {"name": name, "namespace": namespace, "generation": 2, "annotations": {}},
            "spec": {
                "model": "fraud-model",
                "rollout": {"canaryAnalysisSeconds": 300, "restartTolerance": 2, "regenerationBudget": 3},
            },
            "status": {
                "phase": "Canary",
                "observedGeneration": 2,
                "stableVersion": 2,
                "canaryVersion": 3,
                "message": "canary v3 answers OOMKilled; analysing for 300s",
                "versions": [
                    {
                        "number": 1,
                        "configMap": f"{name}-v1",
                        "reason": "initial",
                        "state": "superseded",
                        "created": "2026-11-30T12:00:00Z",
                        "generator": "template",
                        "codeSha256": "a" * 64,
                    },
                    {
                        "number": 2,
                        "configMap": f"{name}-v2",
                        "reason": "spec-change",
                        "state": "stable",
                        "created": "2026-12-01T10:00:00Z",
                        "generator": "template",
                        "codeSha256": "b" * 64,
                    },
                    {
                        "number": 3,
                        "configMap": f"{name}-v3",
                        "reason": "crash-feedback",
                        "state": "canary",
                        "created": "2026-12-01T11:58:00Z",
                        "generator": "template",
                        "codeSha256": "c" * 64,
                        "feedbackAnswered": ["OOMKilled"],
                        "remedies": ["OOMKilled:bounded_memory"],
                    },
                ],
                "lastFailure": {
                    "reason": "OOMKilled",
                    "exitCode": 137,
                    "signature": "OOMKilled",
                    "message": "container runtime killed the process: memory limit 256Mi reached",
                    "pod": f"{name}-6d5f7-abcde",
                    "version": 2,
                    "role": "stable",
                    "time": "2026-12-01T11:57:00Z",
                },
                "health": {
                    "overall": "warning",
                    "driftScore": 0.31,
                    "driftedFeatures": ["income", "country"],
                    "driftedCount": 2,
                    "lastEvaluated": "2026-12-01T11:59:30Z",
                },
                "regenerations": {"used": 1, "budget": 3},
                "canary": {
                    "version": 3,
                    "started": "2026-12-01T11:58:00Z",
                    "readySince": "2026-12-01T11:58:30Z",
                    "restarts": 0,
                    "analysis": "error rate 0.00 vs stable 0.02",
                },
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "StableRunning",
                        "message": "stable v2 serves",
                        "lastTransitionTime": "2026-12-01T10:01:00Z",
                        "observedGeneration": 2,
                    },
                    {
                        "type": "Generated",
                        "status": "True",
                        "reason": "VersionWritten",
                        "message": "v3 written",
                        "lastTransitionTime": "2026-12-01T11:58:00Z",
                        "observedGeneration": 2,
                    },
                    {
                        "type": "CanaryHealthy",
                        "status": "Unknown",
                        "reason": "AnalysisRunning",
                        "message": "90s of 300s",
                        "lastTransitionTime": "2026-12-01T11:58:30Z",
                        "observedGeneration": 2,
                    },
                    {
                        "type": "Degraded",
                        "status": "False",
                        "reason": "Healing",
                        "message": "",
                        "lastTransitionTime": "2026-12-01T10:01:00Z",
                        "observedGeneration": 2,
                    },
                ],
                "lastManualAction": {
                    "annotation": "poet.dev/regenerate",
                    "value": "2026-12-01T09:00:00Z",
                    "outcome": "generated v2",
                    "time": "2026-12-01T09:00:05Z",
                },
            },
        }
    )


def fresh(name: str = "new", namespace: str = "ml") -> dict[str, Any]:
    """Just applied: no status at all yet."""
    return {
        "apiVersion": "poet.dev/v1alpha1",
        "kind": "ModelMonitor",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"model": "m"},
    }
