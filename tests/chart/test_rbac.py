"""RBAC: every API call the operator made in its integration tests is allowed by the rendered rules, and the
rules grant nothing beyond those calls unless named and justified below.

The calls come from tests/k8s/operator_api_calls.json, recorded from the Kubernetes API emulator the
operator's integration tests run against (`POET_RECORD_API_CALLS=1`): RBAC verbs, group "" for core,
subresources as resource/subresource.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.chart_helpers import CHART, RELEASE_NAMESPACE, REPO, find, one, render

CALLS_FILE = REPO / "tests" / "k8s" / "operator_api_calls.json"

Permission = tuple[str, str, str]  # (group, resource, verb)

# Calls the test harness makes while playing the user and the kubelet against the same emulator. The log
# keeps only the operator's calls (by user agent); these are left out should any appear, and none of them may
# be granted to the operator.
HARNESS_CALLS: dict[Permission, str] = {
    ("poet.dev", "modelmonitors", "create"): "the user applies ModelMonitors (kubectl apply)",
    ("", "pods/status", "patch"): "the kubelet reports pod readiness, restarts and crashes",
    ("apps", "deployments/status", "patch"): "the deployment controller reports replicas",
    ("", "events", "list"): "the tests read the events the operator posted",
}

# Grants with no call in the log, each with the operator code that makes the call. The integration tests do
# not reach these paths today; the chart must still allow them or the operator fails there in a cluster.
JUSTIFIED: dict[Permission, str] = {
    (
        "",
        "services",
        "patch",
    ): "_ensure patches a Service whose labels drifted from the builder's (effects.py)",
}

# Resources that are not namespaced (the log does not say; RBAC does).
CLUSTER_SCOPED = {"namespaces", "nodes", "customresourcedefinitions", "clusterroles", "persistentvolumes"}


def permission(call: dict[str, Any]) -> Permission:
    """RBAC's view of a logged call: `pods/proxy/v1/report` is the `pods/proxy` subresource."""
    resource = "/".join(call["resource"].split("/")[:2])
    return (call["group"], resource, call["verb"])


def operator_calls() -> set[Permission]:
    """The operator's calls from the log: API discovery (no resource; every authenticated client may) and the
    harness's own calls left out."""
    calls = json.loads(CALLS_FILE.read_text())["calls"]
    assert calls, f"{CALLS_FILE} lists no calls"
    out = {permission(c) for c in calls if c["resource"]}
    return out - set(HARNESS_CALLS)


def granted(rules: list[dict[str, Any]]) -> set[Permission]:
    """Every (group, resource, verb) the rules grant; wildcards are refused outright."""
    out: set[Permission] = set()
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"wildcard in {field}: {rule}"
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def test_the_log_has_the_operators_core_calls() -> None:
    calls = operator_calls()
    for needed in [("poet.dev", "modelmonitors", "watch"), ("poet.dev", "modelmonitors/status", "patch")]:
        assert needed in calls, f"{needed} missing from {CALLS_FILE}: was it recorded from the operator?"
    assert not set(JUSTIFIED) & set(HARNESS_CALLS)
    stale = set(JUSTIFIED) & calls
    assert not stale, f"now recorded, so no longer needing a justification: {sorted(stale)}"


def test_cluster_wide_clusterrole_allows_every_operator_call_and_nothing_else() -> None:
    docs = render()
    role = one(docs, "ClusterRole")
    grants = granted(role["rules"])
    calls = operator_calls()
    assert not calls - grants, f"calls the ClusterRole does not allow: {sorted(calls - grants)}"
    unused = grants - calls - set(JUSTIFIED)
    assert not unused, f"granted but never called (remove, or justify in JUSTIFIED): {sorted(unused)}"
    assert not grants & set(HARNESS_CALLS), "the operator is granted what only the harness does"
    binding = one(docs, "ClusterRoleBinding")
    account = one(docs, "ServiceAccount")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": RELEASE_NAMESPACE}
    ]
    assert not find(docs, "Role") and not find(docs, "RoleBinding")
    assert not any(resource == "secrets" for _, resource, _ in grants)


def test_namespaced_install_grants_access_only_in_the_watched_namespaces() -> None:
    docs = render([CHART / "ci" / "namespaced-values.yaml"])
    watched = ["ml-team-a", "ml-team-b"]
    calls = operator_calls()
    assert not {c for c in calls if c[1] in CLUSTER_SCOPED}, "the operator makes no cluster-scoped call"
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    for namespace in watched:
        role = one(docs, "Role", namespace=namespace)
        grants = granted(role["rules"])
        assert not calls - grants, f"{namespace}: calls not allowed: {sorted(calls - grants)}"
        unused = grants - calls - set(JUSTIFIED)
        assert not unused, f"{namespace}: granted but never called: {sorted(unused)}"
        binding = one(docs, "RoleBinding", namespace=namespace)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    # The operator's own namespace (not watched) holds the lessons ConfigMap and nothing else of its.
    own = granted(one(docs, "Role", namespace=RELEASE_NAMESPACE)["rules"])
    assert own == {("", "configmaps", "get"), ("", "configmaps", "create"), ("", "configmaps", "patch")}
    assert {d["metadata"].get("namespace") for d in find(docs, "Role")} == {*watched, RELEASE_NAMESPACE}


def test_monitor_secrets_only_when_asked_for() -> None:
    grants = granted(one(render(sets=["llm.allowMonitorSecrets=true"]), "ClusterRole")["rules"])
    assert ("", "secrets", "get") in grants
    assert not {p for p in grants if p[1] == "secrets" and p[2] != "get"}


@pytest.mark.parametrize(
    ("call", "allowed"),
    [
        ({"verb": "delete", "group": "", "resource": "services"}, False),
        ({"verb": "get", "group": "", "resource": "secrets"}, False),
        ({"verb": "create", "group": "", "resource": "pods/exec"}, False),
        ({"verb": "create", "group": "poet.dev", "resource": "modelmonitors"}, False),
        ({"verb": "get", "group": "", "resource": "pods/proxy/v1/report"}, True),
    ],
)
def test_the_check_tells_allowed_from_refused(call: dict[str, str], allowed: bool) -> None:
    """The comparison above can fail: calls outside the operator's needs are not granted."""
    grants = granted(one(render(), "ClusterRole")["rules"])
    assert (permission(call) in grants) is allowed
