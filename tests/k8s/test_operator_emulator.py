"""The real kopf operator and `kubernetes` client against the emulator, the test acting as the kubelet.

Each test runs the operator as `poetmon operator` would and asserts what a user would see: the ConfigMaps,
Deployments and Service it creates, the status (phase, versions, conditions) and the Events, at each step.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from poet_operator.k8s.api import core_path
from poet_operator.rollout.machine import Policy

from monitor_runtime.reference_npz import encode_reference
from tests.k8s.emulator import EmulatedCluster, running_emulator
from tests.k8s.operator_harness import NS, OPERATOR_NS, TEST_AGENT, Kubelet, OperatorProcess, eventually

CALLS_FILE = Path(__file__).with_name("operator_api_calls.json")

SPEC = {
    "model": "credit-model",
    "features": [{"name": "income", "type": "continuous"}, {"name": "segment", "type": "categorical"}],
    "window": {"strategy": "sliding", "size": 400},
    "rollout": {"canaryAnalysisSeconds": 1, "restartTolerance": 1, "regenerationBackoffSeconds": 0},
}


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmulatedCluster]:
    with running_emulator(tmp_path, namespace=NS) as emulated:
        yield emulated
        _record_calls(emulated)


@pytest.fixture
def kubelet(cluster: EmulatedCluster) -> Iterator[Kubelet]:
    node = Kubelet(cluster)
    yield node
    node.close()


@pytest.fixture
def operator(cluster: EmulatedCluster) -> Iterator[OperatorProcess]:
    process = OperatorProcess(cluster).start()
    yield process
    process.stop()


def _record_calls(cluster: EmulatedCluster) -> None:
    """Every (verb, group, resource) the operator used, kept for the chart's RBAC test. The committed file
    must list each one (the test fails otherwise); POET_RECORD_API_CALLS=1 adds new ones instead."""
    seen = {
        (
            c.verb,
            c.group,
            # RBAC names a subresource by its first segment (pods/proxy, not pods/proxy/v1/report).
            c.resource + (f"/{c.subresource.split('/')[0]}" if c.subresource else ""),
            c.namespace is not None,
        )
        for c in cluster.requests()
        if c.resource and not c.user_agent.startswith(TEST_AGENT)
    }
    known = json.loads(CALLS_FILE.read_text()) if CALLS_FILE.exists() else {"calls": []}
    recorded = {(c["verb"], c["group"], c["resource"], c["namespaced"]) for c in known["calls"]}
    missing = seen - recorded
    if missing and os.environ.get("POET_RECORD_API_CALLS") == "1":
        known["calls"] = [
            {"verb": v, "group": g, "resource": r, "namespaced": n}
            for v, g, r, n in sorted(recorded | missing)
        ]
        CALLS_FILE.write_text(json.dumps(known, indent=1) + "\n")
    elif missing:
        raise AssertionError(
            f"the operator made API calls that {CALLS_FILE.name} does not list: {sorted(missing)}; "
            "if they are intended, run the tests with POET_RECORD_API_CALLS=1 and update the chart's RBAC"
        )


def running_monitor(kubelet: Kubelet, name: str = "credit", spec: dict | None = None) -> dict:
    kubelet.apply(name, spec or SPEC)
    eventually(lambda: kubelet.deployment(name), what="the stable Deployment")
    kubelet.sync(name)
    return eventually(
        lambda: (s := kubelet.status(name)).get("phase") == "Running" and s, what="phase Running"
    )


def passes_after(operator: OperatorProcess, count: int, *, poke: Callable[[int], None] | None = None) -> None:
    """Wait until the operator has finished `count` more reconciliations. A monitor with nothing running is
    not looked at again on its own, so `poke(i)` makes a change it must look at (an annotation)."""

    def done() -> float:
        found = re.search(
            r'^poet_operator_reconciles_total\{result="ok"\} ([0-9.]+)$', operator.metrics_text, re.M
        )
        return float(found.group(1)) if found else 0.0

    for i in range(count):
        target = done() + 1
        if poke is not None:
            poke(i)
        eventually(lambda target=target: done() >= target, what=f"reconciliation {i + 1} of {count}")


def canary_of(kubelet: Kubelet, version: int, name: str = "credit") -> dict:
    return eventually(
        lambda: (s := kubelet.status(name)).get("canaryVersion") == version and s, what=f"canary v{version}"
    )


def promoted(kubelet: Kubelet, name: str, version: int) -> bool:
    return kubelet.status(name).get("stableVersion") == version and not kubelet.deployment(f"{name}-canary")


def test_apply_creates_the_version_the_deployment_and_the_service(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    status = running_monitor(kubelet)
    config_maps = kubelet.configmaps("credit")
    assert set(config_maps) == {"credit-v1"}
    v1 = config_maps["credit-v1"]
    assert v1["immutable"] is True
    assert v1["metadata"]["labels"]["poet.dev/version"] == "1"
    assert v1["metadata"]["ownerReferences"][0]["uid"] == "uid-credit"
    manifest = json.loads(v1["data"]["manifest.json"])
    assert manifest["version"] == 1 and manifest["monitor"] == "credit"
    deployment = kubelet.deployment("credit")
    template = deployment["spec"]["template"]
    assert template["metadata"]["labels"]["poet.dev/role"] == "stable"
    assert template["metadata"]["labels"]["poet.dev/version"] == "1"
    volumes = {v["name"]: v for v in template["spec"]["volumes"]}
    assert any(v.get("configMap", {}).get("name") == "credit-v1" for v in volumes.values())
    assert kubelet.get(core_path(NS, "services", "credit")) is not None
    assert status["stableVersion"] == 1 and "canaryVersion" not in status
    assert status["health"]["overall"] == "warning" and status["health"]["driftedCount"] == 1
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert conditions["Generated"]["status"] == "True"
    assert conditions["Degraded"]["status"] == "False"
    assert status["versions"][0]["state"] == "stable" and status["versions"][0]["reason"] == "initial"
    eventually(lambda: kubelet.event_reasons("credit")[:2] == ["Generating", "Generated"], what="the Events")


def test_crash_regenerates_a_canary_that_is_promoted_and_teaches_the_next_monitor(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    running_monitor(kubelet)
    stable_pod = kubelet.pods("credit", "stable")[0]["metadata"]["name"]
    kubelet.crash(stable_pod, reason="OOMKilled", exit_code=137)
    eventually(lambda: "credit-v2" in kubelet.configmaps("credit"), what="version 2's ConfigMap")
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("canaryVersion") == 2 and s, what="canary"
    )
    assert (
        status["lastFailure"]["reason"] == "OOMKilled" and status["lastFailure"]["signature"] == "OOMKilled"
    )
    canary = eventually(lambda: kubelet.deployment("credit-canary"), what="the canary Deployment")
    assert canary["spec"]["template"]["metadata"]["labels"]["poet.dev/role"] == "canary"
    manifest = json.loads(kubelet.configmaps("credit")["credit-v2"]["data"]["manifest.json"])
    assert manifest["answersFeedback"] == ["OOMKilled"]
    kubelet.sync("credit")
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("stableVersion") == 2 and "canaryVersion" not in s and s,
        what="promotion of version 2",
    )
    states = {v["number"]: v["state"] for v in status["versions"]}
    assert states == {1: "superseded", 2: "promoted"}
    eventually(lambda: kubelet.deployment("credit-canary") is None, what="the canary Deployment removed")
    stable = kubelet.deployment("credit")
    assert stable["spec"]["template"]["metadata"]["labels"]["poet.dev/version"] == "2"
    # Events follow the status write of the same pass: wait for them rather than race them.
    wanted = ("RuntimeFailed", "CanaryStarted", "Promoted")
    eventually(lambda: all(r in kubelet.event_reasons("credit") for r in wanted), what=f"Events {wanted}")
    lessons = eventually(
        lambda: kubelet.get(core_path(OPERATOR_NS, "configmaps", "poet-monitor-lessons")), what="lessons"
    )
    stored = json.loads(lessons["data"]["lessons.json"])["lessons"]
    assert [(x["signature"], x["remedy"]) for x in stored] == [("OOMKilled", "bounded_memory")]
    assert 'poet_operator_rollouts_total{outcome="promoted"} 1.0' in operator.metrics_text
    # A monitor created after the promotion starts from the lesson.
    kubelet.apply("fraud", {**SPEC, "model": "fraud-model"})
    eventually(lambda: "fraud-v1" in kubelet.configmaps("fraud"), what="fraud's version 1")
    fraud = json.loads(kubelet.configmaps("fraud")["fraud-v1"]["data"]["manifest.json"])
    assert [(x["signature"], x["remedy"]) for x in fraud["lessonsApplied"]] == [
        ("OOMKilled", "bounded_memory")
    ]
    eventually(lambda: kubelet.deployment("fraud"), what="fraud's Deployment")
    kubelet.sync("fraud")
    status = eventually(lambda: (s := kubelet.status("fraud")).get("phase") == "Running" and s, what="fraud")
    assert status["versions"][0]["lessonsApplied"] == ["OOMKilled:bounded_memory"]


CRASH_RECORD = json.dumps(
    {
        "kind": "poet.feedback/v1",
        "source": "crash",
        "phase": "run",
        "signature": {"exception": "KeyError", "location": "monitor.py:42 in monitor_features"},
        "message": "3 consecutive failed evaluations (limit 3); last: KeyError: 'brand_new'",
        "traceback": 'Traceback (most recent call last):\n  File "monitor.py", line 42, in monitor_features\n'
        "KeyError: 'brand_new'\n",
        "version": 2,
    }
)


def test_a_crashing_canary_is_rolled_back_and_stable_keeps_serving(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "canaryAnalysisSeconds": 3600, "regenerationBudget": 1}}
    running_monitor(kubelet, spec=spec)
    kubelet.crash(kubelet.pods("credit", "stable")[0]["metadata"]["name"], reason="OOMKilled", exit_code=137)
    eventually(lambda: kubelet.deployment("credit-canary"), what="the canary Deployment")
    kubelet.sync("credit")
    canary_pod = kubelet.pods("credit", "canary")[0]["metadata"]["name"]
    kubelet.crash(canary_pod, reason="Error", exit_code=1, message=CRASH_RECORD, times=2)
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("versions", [{}])[-1].get("state") == "rolled-back" and s,
        what="rollback of version 2",
    )
    assert status["stableVersion"] == 1 and "canaryVersion" not in status
    assert status["lastFailure"]["signature"] == "KeyError@monitor.py:monitor_features"
    assert status["lastFailure"]["role"] == "canary"
    eventually(lambda: kubelet.deployment("credit-canary") is None, what="the canary removed")
    assert kubelet.deployment("credit")["spec"]["template"]["metadata"]["labels"]["poet.dev/version"] == "1"
    # The budget (1) is spent: the monitor says what a person should do, once.
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("phase") == "Degraded" and s, what="phase Degraded"
    )
    degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
    assert degraded["reason"] == "RegenerationBudgetSpent"
    assert "poet.dev/regenerate" in degraded["message"]
    eventually(lambda: "RegenerationBudgetSpent" in kubelet.event_reasons("credit"), what="the Event")
    passes_after(operator, 2)
    reasons = kubelet.event_reasons("credit")
    assert "RolledBack" in reasons and reasons.count("RegenerationBudgetSpent") == 1


def test_a_bad_spec_gets_a_condition_and_an_event_naming_the_field(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    kubelet.apply("broken", {"model": "m", "window": {"strategy": "fixed", "size": 100, "overlap": 10}})
    status = eventually(lambda: (s := kubelet.status("broken")).get("phase") == "Failed" and s, what="Failed")
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "InvalidSpec"
    assert "spec.window" in ready["message"] and "overlap" in ready["message"]
    eventually(lambda: any(e["reason"] == "InvalidSpec" for e in kubelet.events("broken")), what="the Event")
    # Later passes over the same spec must not say it again.
    passes_after(
        operator,
        2,
        poke=lambda i: kubelet.patch_monitor("broken", {"metadata": {"annotations": {"test/poke": str(i)}}}),
    )
    events = [e for e in kubelet.events("broken") if e["reason"] == "InvalidSpec"]
    assert len(events) == 1 and events[0]["type"] == "Warning" and "spec.window" in events[0]["message"]
    assert kubelet.configmaps("broken") == {}
    # No crash loop: fixing the spec is picked up and the monitor proceeds.
    kubelet.patch_monitor("broken", {"metadata": {"generation": 2}, "spec": {"window": {"overlap": None}}})
    eventually(lambda: "broken-v1" in kubelet.configmaps("broken"), what="version 1 after the fix")


def test_a_call_the_api_server_fails_is_one_warning_event_naming_it(
    cluster: EmulatedCluster, kubelet: Kubelet, operator: OperatorProcess
) -> None:
    # What a cluster whose Service range is full answers; the monitor's other parts still come up.
    full = 'Internal error occurred: failed to allocate a serviceIP for Service "credit": range is full'
    cluster.fail("create", "services", 500, "InternalError", full)
    kubelet.apply("credit", SPEC)
    eventually(lambda: kubelet.deployment("credit"), what="the Deployment beside the failing Service")

    def failures() -> list[dict]:
        return [e for e in kubelet.events("credit") if e["reason"] == "ApiCallFailed"]

    eventually(failures, what="an ApiCallFailed Event")
    # The retries (every pass, and every 15 s) must not say it again.
    passes_after(
        operator,
        2,
        poke=lambda i: kubelet.patch_monitor("credit", {"metadata": {"annotations": {"test/poke": str(i)}}}),
    )
    [event] = failures()
    assert event["type"] == "Warning"
    message = event["message"]
    assert "POST" in message and "/services" in message and "range is full" in message


def test_manual_annotations_act_once_and_are_acknowledged(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    running_monitor(kubelet)
    kubelet.patch_monitor("credit", {"metadata": {"annotations": {"poet.dev/regenerate": "true"}}})
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("canaryVersion") == 2 and s, what="canary"
    )
    assert status["versions"][-1]["reason"] == "manual"
    assert status["lastManualAction"]["annotation"] == "poet.dev/regenerate"
    annotations = kubelet.monitor("credit")["metadata"].get("annotations") or {}
    assert "poet.dev/regenerate" not in annotations
    kubelet.patch_monitor("credit", {"metadata": {"annotations": {"poet.dev/abort": "true"}}})
    status = eventually(
        lambda: (s := kubelet.status("credit")).get("versions", [{}])[-1].get("state") == "rolled-back" and s,
        what="abort",
    )
    eventually(lambda: "ManualAction" in kubelet.event_reasons("credit"), what="the ManualAction Event")
    assert status["hold"].startswith("aborted")


def test_an_operator_restart_mid_generation_resumes_without_a_second_version(
    cluster: EmulatedCluster, kubelet: Kubelet
) -> None:
    first = OperatorProcess(cluster).start()
    kubelet.apply("credit", SPEC)
    eventually(lambda: kubelet.status("credit").get("phase") == "Generating", what="Generating")
    first.stop()
    second = OperatorProcess(cluster).start()
    try:
        eventually(lambda: kubelet.deployment("credit"), what="the stable Deployment after the restart")
        kubelet.sync("credit")
        status = eventually(
            lambda: (s := kubelet.status("credit")).get("phase") == "Running" and s, what="Running"
        )
    finally:
        second.stop()
    assert [v["number"] for v in status["versions"]] == [1]
    assert set(kubelet.configmaps("credit")) == {"credit-v1"}
    creates = [
        c for c in cluster.requests() if c.verb == "create" and c.resource == "configmaps" and c.name is None
    ]
    assert len([c for c in creates if (c.body or {}).get("metadata", {}).get("name") == "credit-v1"]) <= 2


def test_the_canary_gets_the_stable_reference_and_new_pods_find_it_stored(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "canaryAnalysisSeconds": 3600}}
    running_monitor(kubelet, spec=spec)
    stable_pod = kubelet.pods("credit", "stable")[0]["metadata"]["name"]
    encoded = encode_reference({"income": np.arange(100.0), "region": np.array(["north", "south"] * 50)})
    reference = encoded.npz
    kubelet.references[stable_pod] = reference
    kubelet.sync("credit")  # a pod event: the operator looks again and sees the stable pod's reference
    stored = eventually(
        lambda: kubelet.get(core_path(NS, "configmaps", "credit-reference")), what="the stored reference"
    )
    import base64

    assert base64.b64decode(stored["binaryData"]["reference.npz"]) == reference
    # The fingerprint the runtime reports is of the content, and the stored archive decodes to it.
    assert stored["metadata"]["annotations"]["poet.dev/reference-sha256"] == encoded.sha256
    kubelet.patch_monitor("credit", {"metadata": {"annotations": {"poet.dev/regenerate": "true"}}})
    eventually(lambda: kubelet.deployment("credit-canary"), what="the canary Deployment")
    # The hand-off itself (the npz POSTed to the canary pod) is checked on a real cluster
    # (tests/e2e/test_operator_on_cluster.py): the emulator decodes every request body as text, which an
    # npz archive is not.
    canary = kubelet.deployment("credit-canary")["spec"]["template"]["spec"]
    mounted = [v["configMap"]["name"] for v in canary["volumes"] if "configMap" in v]
    assert "credit-reference" in mounted, "a canary pod that restarts must find the reference stored"


def test_an_empty_termination_message_brings_in_the_log_tail_and_old_versions_are_collected(
    cluster: EmulatedCluster, kubelet: Kubelet
) -> None:
    process = OperatorProcess(cluster, policy=Policy(poll_seconds=0.5, resync_seconds=1.0, keep_versions=0))
    process.start()
    try:
        # The second promotion updates the shared lessons. The second monitor's window is smaller, so the
        # first one's lesson (learned on a larger window) does not apply to it and it learns its own.
        for name, size in (("credit", 400), ("fraud", 200)):
            spec = {**SPEC, "model": f"{name}-model", "window": {"strategy": "sliding", "size": size}}
            running_monitor(kubelet, name=name, spec=spec)
            pod = kubelet.pods(name, "stable")[0]["metadata"]["name"]
            kubelet.logs[pod] = (
                "Traceback (most recent call last):\n"
                '  File "monitor.py", line 88, in monitor_features\n'
                "MemoryError: Unable to allocate 2.31 GiB for an array with shape (310000000,)\n"
            )
            kubelet.crash(pod, reason="Error", exit_code=1)
            status = canary_of(kubelet, 2, name)
            assert status["lastFailure"]["signature"] == "MemoryError@monitor.py:monitor_features"
            feedback = status["feedback"][-1]["evidence"]
            assert "Unable to allocate" in feedback["log_tail"]
            eventually(lambda n=name: kubelet.deployment(f"{n}-canary"), what="the canary Deployment")
            kubelet.sync(name)
            eventually(
                lambda n=name: (
                    kubelet.status(n).get("stableVersion") == 2 and not kubelet.deployment(f"{n}-canary")
                ),
                what="promotion",
            )
            # Only stable (and canary) versions are kept with keep_versions=0: version 1 is collected.
            eventually(lambda n=name: set(kubelet.configmaps(n)) == {f"{n}-v2"}, what="version 1 collected")
            entry = kubelet.status(name)["versions"][0]
            assert entry["number"] == 1 and "configMap" not in entry
    finally:
        process.stop()
    lessons = kubelet.get(core_path(OPERATOR_NS, "configmaps", "poet-monitor-lessons"))
    stored = json.loads(lessons["data"]["lessons.json"])["lessons"]
    evidence = [e["monitor"] for lesson in stored for e in lesson["evidence"]]
    assert sorted(evidence) == ["credit", "fraud"]


def _entry(at: float, version: int) -> dict:
    return {
        "at": at,
        "version": version,
        "code_sha256": f"{version:064d}",
        "overall_drift_score": 0.1,
        "features": {},
    }


def test_the_history_follows_the_monitor_to_the_canary_and_is_kept_at_promotion(
    kubelet: Kubelet, operator: OperatorProcess
) -> None:
    spec = {**SPEC, "rollout": {**SPEC["rollout"], "canaryAnalysisSeconds": 3600}}
    running_monitor(kubelet, spec=spec)
    stable_pod = kubelet.pods("credit", "stable")[0]["metadata"]["name"]
    assert kubelet.histories[stable_pod] == []  # no history kept yet: the optional ConfigMap is absent
    kubelet.histories[stable_pod] = [_entry(1796126400.0, 1), _entry(1796126460.0, 1)]
    kubelet.patch_monitor("credit", {"metadata": {"annotations": {"poet.dev/regenerate": "true"}}})
    canary_of(kubelet, 2)
    eventually(lambda: kubelet.deployment("credit-canary"), what="the canary Deployment")
    for role in ("stable", "canary"):
        template = kubelet.deployment("credit" if role == "stable" else "credit-canary")["spec"]["template"]
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["history"]["configMap"] == {
            "name": "credit-history",
            "defaultMode": 0o444,
            "optional": True,
        }
    kubelet.sync("credit")
    canary_pod = kubelet.pods("credit", "canary")[0]["metadata"]["name"]
    # Handed over through the pod proxy: GET from the stable pod, POST (JSON) to the canary pod.
    eventually(
        lambda: [e["version"] for e in kubelet.histories[canary_pod]] == [1, 1], what="the canary's history"
    )
    kubelet.histories[canary_pod].append(_entry(1796126520.0, 2))  # the canary evaluates
    assert "credit-history" not in kubelet.configmaps("credit"), "nothing kept before a promotion"
    kubelet.patch_monitor("credit", {"metadata": {"annotations": {"poet.dev/promote": "true"}}})
    kept = eventually(lambda: kubelet.configmaps("credit").get("credit-history"), what="the kept history")
    assert kept["metadata"]["annotations"] == {
        "poet.dev/history-version": "2",
        "poet.dev/history-evaluations": "3",
    }
    assert kept["metadata"]["ownerReferences"][0]["uid"] == "uid-credit"  # collected with the monitor
    eventually(lambda: promoted(kubelet, "credit", 2), what="promotion of version 2, the canary removed")
    kubelet.sync("credit")
    new_stable = kubelet.pods("credit", "stable")[0]["metadata"]["name"]
    assert new_stable != stable_pod
    # The promoted version's first pod starts with both versions: its report draws the change.
    assert [e["version"] for e in kubelet.histories[new_stable]] == [1, 1, 2]
    passes_after(operator, 3)
    writes = [
        c
        for c in kubelet.cluster.requests()
        if c.resource == "configmaps"
        and c.verb in ("create", "patch")
        and (
            c.name == "credit-history"
            or ((c.body or {}).get("metadata") or {}).get("name") == "credit-history"
        )
    ]
    assert len(writes) == 1, "written once per promotion, never on a resync"
