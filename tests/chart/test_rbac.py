"""RBAC: every API call the operator made in its integration tests is allowed by the rendered rules, and the
rules grant nothing it did not call unless named and justified below.

The calls come from tests/k8s/operator_api_calls.json, written from the request log of the emulator the
operator's integration tests run against: RBAC verbs, group "" for core, subresources as resource/sub.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.chart.chart_helpers import CHART, RELEASE_NAMESPACE, REPO, find, one, render

CALLS_FILE = REPO / "tests" / "k8s" / "operator_api_calls.json"

# Grants with no recorded call, each with the reason it is there anyway. Empty today.
JUSTIFIED: dict[tuple[str, str, str], str] = {}

Permission = tuple[str, str, str]  # (group, resource, verb)


def recorded_calls() -> list[dict[str, Any]]:
    calls = json.loads(CALLS_FILE.read_text())["calls"]
    assert calls, f"{CALLS_FILE} lists no calls"
    for call in calls:
        assert set(call) >= {"verb", "group", "resource", "namespaced"}, call
    return calls


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


def permission(call: dict[str, Any]) -> Permission:
    return (call["group"], call["resource"], call["verb"])


def test_cluster_wide_clusterrole_allows_every_recorded_call_and_nothing_else() -> None:
    docs = render()
    role = one(docs, "ClusterRole")
    grants = granted(role["rules"])
    calls = {permission(c) for c in recorded_calls()}
    assert not calls - grants, f"calls the ClusterRole does not allow: {sorted(calls - grants)}"
    unused = grants - calls - set(JUSTIFIED)
    assert not unused, f"granted but never called (remove, or justify in JUSTIFIED): {sorted(unused)}"
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


def test_namespaced_install_grants_monitor_access_only_in_the_watched_namespaces() -> None:
    docs = render([CHART / "ci" / "namespaced-values.yaml"])
    watched = ["ml-team-a", "ml-team-b"]
    calls = recorded_calls()
    namespaced = {permission(c) for c in calls if c["namespaced"]}
    cluster_scoped = {permission(c) for c in calls if not c["namespaced"]}
    # A kopf with an explicit namespace list never lists or watches namespaces (it only does so cluster-wide
    # or for glob patterns), so the namespaced install does not grant it.
    cluster_scoped = {p for p in cluster_scoped if p[1] != "namespaces"}

    cluster_grants = granted(one(docs, "ClusterRole")["rules"])
    assert cluster_grants == cluster_scoped, (
        "a namespaced install's ClusterRole holds cluster-scoped reads only"
    )
    for namespace in watched:
        role = one(docs, "Role", namespace=namespace)
        grants = granted(role["rules"])
        assert not namespaced - grants, f"{namespace}: calls not allowed: {sorted(namespaced - grants)}"
        assert not grants - namespaced - set(JUSTIFIED), (
            f"{namespace}: unused grants {sorted(grants - namespaced)}"
        )
        binding = one(docs, "RoleBinding", namespace=namespace)
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"][0]["namespace"] == RELEASE_NAMESPACE
    # The operator's own namespace (not watched) gets the lessons ConfigMap and events, nothing else.
    own = granted(one(docs, "Role", namespace=RELEASE_NAMESPACE)["rules"])
    assert {r for _, r, _ in own} == {"configmaps", "events"}
    assert own <= namespaced
    assert {d["metadata"].get("namespace") for d in find(docs, "Role")} == {*watched, RELEASE_NAMESPACE}


@pytest.mark.parametrize(
    ("call", "allowed"),
    [
        ({"verb": "delete", "group": "", "resource": "services"}, False),
        ({"verb": "get", "group": "", "resource": "secrets"}, False),
        ({"verb": "create", "group": "", "resource": "pods/exec"}, False),
        ({"verb": "get", "group": "", "resource": "pods/log"}, True),
    ],
)
def test_the_check_tells_allowed_from_refused(call: dict[str, str], allowed: bool) -> None:
    """The comparison above can fail: calls outside the operator's needs are not granted."""
    grants = granted(one(render(), "ClusterRole")["rules"])
    assert (permission(call) in grants) is allowed
