"""Builders: every owned field, the runtime's real argument parser, Kubernetes schemas, restricted pods."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import kubernetes_validate
import numpy as np
import pytest
from poet_operator.cli import build_parser
from poet_operator.k8s import builders
from poet_operator.k8s.builders import BuildError
from poet_operator.spec import MonitorSpec

from monitor_runtime.contract import CODE_FILE, MANIFEST_FILE, write_version_dir
from monitor_runtime.reference_npz import EncodedReference, decode_reference, encode_reference
from monitor_runtime.server.history import decode_history_file, encode_history_file

K8S_VERSION = "1.37"  # the newest schemas kubernetes-validate ships
NAME, NAMESPACE, UID = "credit-monitor", "ml", "6f1c1f2e-3a7b-4c55-9d0e-1d2f3a4b5c6d"
MONITOR: dict[str, Any] = {
    "apiVersion": "poet.dev/v1alpha1",
    "kind": "ModelMonitor",
    "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": UID, "generation": 3},
    "spec": {"model": "credit-model"},
}
IMAGE = "poet-monitor/runtime:0.1.0"
CODE = "class Monitor:\n    def __init__(self, spec, toolkit):\n        self.spec = spec\n"


def spec_of(**fields: Any) -> MonitorSpec:
    return MonitorSpec.from_mapping({"model": "credit-model", **fields})


def write_version(tmp_path: Path, number: int, *, code: str = CODE, monitor: str = NAME) -> tuple[str, str]:
    """A real version directory written by the contract; returns (code, manifest.json text)."""
    spec = spec_of()
    directory = tmp_path / f"v{number}"
    write_version_dir(
        directory,
        code=code,
        version=number,
        monitor=monitor,
        model=spec.model,
        spec=spec.to_dict(),
        spec_hash=spec.spec_hash(),
        generator={"kind": "template"},
    )
    return (directory / CODE_FILE).read_text(), (directory / MANIFEST_FILE).read_text()


def validate(obj: dict[str, Any]) -> None:
    """The Kubernetes OpenAPI schema of the object's kind, strict: unknown fields are errors too."""
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


OWNER = {
    "apiVersion": "poet.dev/v1alpha1",
    "kind": "ModelMonitor",
    "name": NAME,
    "uid": UID,
    "controller": True,
    "blockOwnerDeletion": True,
}
COMMON_LABELS = {
    "poet.dev/monitor": NAME,
    "app.kubernetes.io/name": "poet-monitor-runtime",
    "app.kubernetes.io/instance": NAME,
    "app.kubernetes.io/managed-by": "poet-monitor",
}


# --- names -------------------------------------------------------------------------------------------------


def test_names_follow_the_shared_scheme() -> None:
    assert builders.version_configmap_name(NAME, 1) == "credit-monitor-v1"
    assert builders.version_configmap_name(NAME, 12) == "credit-monitor-v12"
    assert builders.deployment_name(NAME, "stable") == "credit-monitor"
    assert builders.deployment_name(NAME, "canary") == "credit-monitor-canary"
    assert builders.service_name(NAME) == "credit-monitor"
    assert builders.reference_configmap_name(NAME) == "credit-monitor-reference"
    assert builders.label_selector(NAME) == "poet.dev/monitor=credit-monitor"
    assert builders.label_selector(NAME, "canary") == "poet.dev/monitor=credit-monitor,poet.dev/role=canary"


def test_a_name_of_63_characters_fits_and_64_is_refused_naming_the_limit() -> None:
    longest = "m" * 63
    assert builders.monitor_name_problem(longest) is None
    assert builders.service_name(longest) == longest
    assert builders.deployment_name(longest, "canary") == longest + "-canary"
    assert builders.version_configmap_name(longest, 10**6) == f"{longest}-v1000000"
    too_long = "m" * 64
    problem = builders.monitor_name_problem(too_long)
    assert problem is not None and "64 characters" in problem and "limited to 63" in problem
    for build in (
        lambda: builders.service_name(too_long),
        lambda: builders.deployment_name(too_long, "stable"),
        lambda: builders.version_configmap_name(too_long, 1),
        lambda: builders.reference_configmap_name(too_long),
        lambda: builders.runtime_service(
            {"metadata": {"name": too_long, "namespace": NAMESPACE, "uid": UID}}
        ),
    ):
        with pytest.raises(BuildError, match=r"limited to 63"):
            build()


@pytest.mark.parametrize("bad", ["", "Credit", "1credit", "credit_monitor", "credit-", "credit.monitor"])
def test_names_a_service_cannot_carry_are_refused(bad: str) -> None:
    assert builders.monitor_name_problem(bad) is not None
    with pytest.raises(BuildError, match=r"metadata.name"):
        builders.service_name(bad)


def test_version_numbers_and_roles_are_checked() -> None:
    for number in (0, -1, True, "1"):
        with pytest.raises(BuildError, match=r"version number must be an integer >= 1"):
            builders.version_configmap_name(NAME, number)  # type: ignore[arg-type]
    with pytest.raises(BuildError, match=r"role must be one of stable, canary"):
        builders.deployment_name(NAME, "blue")  # type: ignore[arg-type]
    with pytest.raises(BuildError, match=r"role must be one of"):
        builders.label_selector(NAME, "green")  # type: ignore[arg-type]


# --- owner reference ---------------------------------------------------------------------------------------


def test_owner_reference_points_at_the_monitor_as_controller() -> None:
    assert builders.owner_reference(MONITOR) == OWNER


def test_owner_reference_needs_uid() -> None:
    with pytest.raises(BuildError, match=r"metadata.uid"):
        builders.owner_reference({"metadata": {"name": NAME, "namespace": NAMESPACE}})


def test_objects_need_the_monitor_namespace() -> None:
    with pytest.raises(BuildError, match=r"metadata.namespace"):
        builders.runtime_service({"metadata": {"name": NAME, "uid": UID}})


# --- version ConfigMap -------------------------------------------------------------------------------------


def test_version_configmap_holds_code_and_manifest_immutably(tmp_path: Path) -> None:
    code, manifest_json = write_version(tmp_path, 3)
    manifest = json.loads(manifest_json)
    cm = builders.version_configmap(MONITOR, 3, code, manifest_json)
    validate(cm)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["immutable"] is True
    assert cm["data"] == {"monitor.py": code, "manifest.json": manifest_json}
    assert "binaryData" not in cm
    meta = cm["metadata"]
    assert meta["name"] == "credit-monitor-v3" and meta["namespace"] == NAMESPACE
    assert meta["labels"] == {**COMMON_LABELS, "poet.dev/version": "3"}
    assert meta["ownerReferences"] == [OWNER]
    assert meta["annotations"] == {
        "poet.dev/code-sha256": hashlib.sha256(code.encode()).hexdigest(),
        "poet.dev/spec-hash": manifest["specHash"],
    }
    assert manifest["codeSha256"] == meta["annotations"]["poet.dev/code-sha256"]


def test_version_configmap_refuses_code_the_manifest_was_not_written_for(tmp_path: Path) -> None:
    code, manifest_json = write_version(tmp_path, 1)
    with pytest.raises(BuildError, match=r"sha256 .* but manifest.json records"):
        builders.version_configmap(MONITOR, 1, code + "# changed\n", manifest_json)


def test_version_configmap_refuses_a_manifest_of_another_version_or_monitor(tmp_path: Path) -> None:
    code, manifest_json = write_version(tmp_path, 2)
    with pytest.raises(BuildError, match=r"manifest.json says version 2, but it is stored as v3"):
        builders.version_configmap(MONITOR, 3, code, manifest_json)
    code, other = write_version(tmp_path / "other", 1, monitor="fraud-monitor")
    with pytest.raises(BuildError, match=r"belongs to monitor 'fraud-monitor'"):
        builders.version_configmap(MONITOR, 1, code, other)


def test_version_configmap_refuses_a_broken_manifest(tmp_path: Path) -> None:
    code, manifest_json = write_version(tmp_path, 1)
    with pytest.raises(BuildError, match=r"not valid JSON"):
        builders.version_configmap(MONITOR, 1, code, manifest_json[:-5])
    data = json.loads(manifest_json)
    with pytest.raises(BuildError, match=r"contract 99"):
        builders.version_configmap(MONITOR, 1, code, json.dumps({**data, "contract": 99}))
    del data["codeSha256"]
    with pytest.raises(BuildError, match=r"codeSha256"):
        builders.version_configmap(MONITOR, 1, code, json.dumps(data))


def test_version_configmap_refuses_code_beyond_a_configmap(tmp_path: Path) -> None:
    code, manifest_json = write_version(tmp_path, 1, code=CODE + "#" * (900 * 1024) + "\n")
    with pytest.raises(BuildError, match=r"at most 1 MiB.*921600 bytes"):
        builders.version_configmap(MONITOR, 1, code, manifest_json)


# --- the Deployment ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["stable", "canary"])
def test_deployment_objects_validate_against_the_kubernetes_schema(role: str) -> None:
    validate(builders.runtime_deployment(MONITOR, spec_of(), 4, role, IMAGE))  # type: ignore[arg-type]


def test_deployment_metadata_spec_and_strategy() -> None:
    spec = spec_of(rollout={"progressDeadlineSeconds": 420})
    dep = builders.runtime_deployment(MONITOR, spec, 4, "stable", IMAGE)
    assert dep["apiVersion"] == "apps/v1" and dep["kind"] == "Deployment"
    meta = dep["metadata"]
    assert meta["name"] == "credit-monitor" and meta["namespace"] == NAMESPACE
    assert meta["ownerReferences"] == [OWNER]
    assert meta["labels"] == {**COMMON_LABELS, "poet.dev/role": "stable", "poet.dev/version": "4"}
    body = dep["spec"]
    assert body["replicas"] == 1 == spec.runtime.replicas
    assert body["progressDeadlineSeconds"] == 420
    assert body["revisionHistoryLimit"] == 2
    assert body["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }


def test_selector_leaves_the_version_out_and_matches_the_pod_template() -> None:
    stable_v1 = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)
    stable_v2 = builders.runtime_deployment(MONITOR, spec_of(), 2, "stable", IMAGE)
    canary = builders.runtime_deployment(MONITOR, spec_of(), 2, "canary", IMAGE)
    # Selectors are immutable: moving stable from v1 to v2 must not change it.
    assert stable_v1["spec"]["selector"] == stable_v2["spec"]["selector"]
    assert stable_v1["spec"]["selector"] == {
        "matchLabels": {"poet.dev/monitor": NAME, "poet.dev/role": "stable"}
    }
    assert canary["spec"]["selector"] == {
        "matchLabels": {"poet.dev/monitor": NAME, "poet.dev/role": "canary"}
    }
    service_selector = builders.runtime_service(MONITOR)["spec"]["selector"]
    for dep, version, role in (
        (stable_v1, "1", "stable"),
        (stable_v2, "2", "stable"),
        (canary, "2", "canary"),
    ):
        pod_labels = dep["spec"]["template"]["metadata"]["labels"]
        assert pod_labels == {**COMMON_LABELS, "poet.dev/role": role, "poet.dev/version": version}
        assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        # The Service reaches stable and canary pods alike (canary by replica share).
        assert service_selector.items() <= pod_labels.items()
    # Neither Deployment adopts the other's pods.
    canary_labels = canary["spec"]["template"]["metadata"]["labels"]
    assert not stable_v2["spec"]["selector"]["matchLabels"].items() <= canary_labels.items()


def test_pod_template_annotations_let_prometheus_scrape() -> None:
    dep = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)
    assert dep["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }


def test_container_runs_poetmon_serve_with_the_shared_arguments() -> None:
    container = only_container(builders.runtime_deployment(MONITOR, spec_of(), 5, "canary", IMAGE))
    assert container["name"] == "runtime"
    assert container["image"] == IMAGE and container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == [
        "poetmon",
        "serve",
        "--code-dir",
        "/etc/poet/version",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
        "--checkpoint-dir",
        "/var/lib/poet/checkpoints",
        "--termination-log",
        "/dev/termination-log",
        "--reference-file",
        "/etc/poet/reference/reference.npz",
        "--history-file",
        "/etc/poet/history/history.json.gz",
    ]
    assert "args" not in container
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["env"] == [
        {"name": "POET_MONITOR_NAME", "value": NAME},
        {"name": "POET_MONITOR_VERSION", "value": "5"},
        {"name": "POET_MONITOR_ROLE", "value": "canary"},
        {"name": "POET_SHUTDOWN_DEADLINE_S", "value": "25"},
    ]


def test_runtime_arguments_parse_with_the_real_serve_parser_and_name_mounted_paths() -> None:
    dep = builders.runtime_deployment(MONITOR, spec_of(), 2, "stable", IMAGE)
    container = only_container(dep)
    command = container["command"]
    assert command[0] == "poetmon"
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve"
    assert (args.host, args.port) == ("0.0.0.0", 8080)
    assert args.port == container["ports"][0]["containerPort"]
    assert args.termination_log == container["terminationMessagePath"] == "/dev/termination-log"

    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert len(volumes) == len(dep["spec"]["template"]["spec"]["volumes"]), "volume names are unique"
    assert {m["name"] for m in mounts.values()} == set(volumes), "every volume is mounted, every mount exists"

    code_mount = mounts[args.code_dir]
    assert code_mount["readOnly"] is True
    assert volumes[code_mount["name"]]["configMap"] == {"name": "credit-monitor-v2", "defaultMode": 0o444}

    reference_mount = mounts[os.path.dirname(args.reference_file)]
    assert reference_mount["readOnly"] is True
    assert os.path.basename(args.reference_file) == "reference.npz"
    assert volumes[reference_mount["name"]]["configMap"] == {
        "name": "credit-monitor-reference",
        "defaultMode": 0o444,
        "optional": True,
    }

    history_mount = mounts[os.path.dirname(args.history_file)]
    assert history_mount["readOnly"] is True
    assert os.path.basename(args.history_file) == "history.json.gz"
    assert volumes[history_mount["name"]]["configMap"] == {
        "name": "credit-monitor-history",
        "defaultMode": 0o444,
        "optional": True,
    }

    checkpoint_mount = mounts[args.checkpoint_dir]
    assert checkpoint_mount.get("readOnly") is not True
    assert volumes[checkpoint_mount["name"]] == {"name": checkpoint_mount["name"], "emptyDir": {}}
    # The root filesystem is read-only, so /tmp needs its own writable volume.
    assert volumes[mounts["/tmp"]["name"]] == {"name": "tmp", "emptyDir": {}}
    assert set(mounts) == {
        args.code_dir,
        os.path.dirname(args.reference_file),
        os.path.dirname(args.history_file),
        args.checkpoint_dir,
        "/tmp",
    }


def test_stable_and_canary_read_the_same_reference_and_their_own_code() -> None:
    """A canary evaluates against the reference the stable version has: the same ConfigMap, path and flag."""
    stable = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)
    canary = builders.runtime_deployment(MONITOR, spec_of(), 2, "canary", IMAGE)

    def sources(dep: dict[str, Any]) -> dict[str, Any]:
        container = only_container(dep)
        args = build_parser().parse_args(container["command"][1:])
        volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        return {
            "reference_file": args.reference_file,
            "reference": mounts[os.path.dirname(args.reference_file)]["configMap"]["name"],
            "code": mounts[args.code_dir]["configMap"]["name"],
        }

    assert sources(stable)["reference"] == sources(canary)["reference"] == "credit-monitor-reference"
    assert sources(stable)["reference_file"] == sources(canary)["reference_file"]
    assert (sources(stable)["code"], sources(canary)["code"]) == ("credit-monitor-v1", "credit-monitor-v2")


def test_probes_use_the_runtime_endpoints() -> None:
    container = only_container(builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE))
    port_names = {p["name"] for p in container["ports"]}
    expected = {
        "startupProbe": ("/healthz", 2, 2, 90),
        "livenessProbe": ("/healthz", 10, 5, 3),
        "readinessProbe": ("/readyz", 5, 3, 2),
    }
    for probe_name, (path, period, timeout, failures) in expected.items():
        probe = container[probe_name]
        assert probe["httpGet"] == {"path": path, "port": "http", "scheme": "HTTP"}
        assert probe["httpGet"]["port"] in port_names
        assert (probe["periodSeconds"], probe["timeoutSeconds"], probe["failureThreshold"]) == (
            period,
            timeout,
            failures,
        )
        assert probe["successThreshold"] == 1
        assert probe["timeoutSeconds"] < probe["periodSeconds"] or probe_name == "startupProbe"
    # Loading and resuming may take minutes before the listener opens; liveness must not kill it meanwhile.
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


def test_termination_grace_exceeds_the_runtime_shutdown_deadline() -> None:
    dep = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)
    pod = dep["spec"]["template"]["spec"]
    deadline = {e["name"]: e["value"] for e in only_container(dep)["env"]}["POET_SHUTDOWN_DEADLINE_S"]
    assert int(deadline) == 25
    assert pod["terminationGracePeriodSeconds"] == 40 > int(deadline)
    assert only_container(dep)["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_pod_spec_keeps_the_api_and_service_links_out() -> None:
    pod = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


def test_resources_come_from_the_spec() -> None:
    default = only_container(builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE))
    assert default["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    spec = spec_of(
        runtime={"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}}
    )
    custom = only_container(builders.runtime_deployment(MONITOR, spec, 1, "stable", IMAGE))
    assert custom["resources"] == {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"memory": "2Gi"}}
    validate(builders.runtime_deployment(MONITOR, spec, 1, "stable", IMAGE))
    spec = spec_of(runtime={"resources": {"requests": {}, "limits": {}}})
    assert only_container(builders.runtime_deployment(MONITOR, spec, 1, "stable", IMAGE))["resources"] == {}


def test_runtime_image_prefers_the_spec() -> None:
    assert builders.runtime_image(spec_of(), IMAGE) == IMAGE
    assert builders.runtime_image(spec_of(runtime={"image": "reg.local/rt:9"}), IMAGE) == "reg.local/rt:9"
    with pytest.raises(BuildError, match=r"runtime image is empty"):
        builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", "")


# --- restricted Pod Security Standard ----------------------------------------------------------------------

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (baseline and restricted controls)
_RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
_SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Every control of the restricted profile (which includes baseline) this pod spec breaks."""
    problems: list[str] = []
    pod_sc = pod.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            problems.append(f"{field} is set")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUME_TYPES:
            problems.append(f"volume {volume['name']} has type {sorted(kinds)}")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl["name"] not in _SAFE_SYSCTLS:
            problems.append(f"sysctl {sysctl['name']}")
    if (pod_sc.get("seLinuxOptions") or {}).keys() & {"user", "role"}:
        problems.append("pod seLinuxOptions sets user or role")
    if (pod_sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        problems.append("pod appArmorProfile")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        problems.append("pod runAsUser is 0")
    containers = [*pod.get("initContainers", []), *pod["containers"], *pod.get("ephemeralContainers", [])]
    for container in containers:
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            problems.append(f"{name}: privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            problems.append(f"{name}: hostProcess")
        if any("hostPort" in port for port in container.get("ports") or []):
            problems.append(f"{name}: hostPort")
        if sc.get("procMount", "Default") != "Default":
            problems.append(f"{name}: procMount")
        if (sc.get("seLinuxOptions") or {}).keys() & {"user", "role"}:
            problems.append(f"{name}: seLinuxOptions sets user or role")
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            problems.append(f"{name}: appArmorProfile")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation is not false")
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        if run_as_non_root is not True:
            problems.append(f"{name}: runAsNonRoot is not true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{name}: runAsUser is 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile is {seccomp!r}")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            problems.append(f"{name}: adds capabilities {capabilities['add']}")
    return problems


def test_schema_validation_catches_a_misspelt_field() -> None:
    dep = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)
    only_container(dep)["securityContext"]["readonlyRootFilesystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readonlyRootFilesystem"):
        validate(dep)


@pytest.mark.parametrize("role", ["stable", "canary"])
def test_runtime_pods_meet_the_restricted_pod_security_standard(role: str) -> None:
    dep = builders.runtime_deployment(MONITOR, spec_of(), 1, role, IMAGE)  # type: ignore[arg-type]
    pod = dep["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    # Beyond the standard: a fixed non-root identity and a read-only root filesystem.
    assert pod["securityContext"]["runAsUser"] == pod["securityContext"]["runAsGroup"] == 10001
    sc = only_container(dep)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsUser"] == 10001 and sc["runAsNonRoot"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_the_restricted_check_catches_each_kind_of_violation() -> None:
    pod = builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE)["spec"]["template"]["spec"]

    def broken(change: Any) -> list[str]:
        copy_ = copy.deepcopy(pod)
        change(copy_)
        return restricted_violations(copy_)

    container = 0
    assert broken(lambda p: p["containers"][container]["securityContext"].pop("allowPrivilegeEscalation"))
    assert broken(lambda p: p["containers"][container]["securityContext"].update(runAsNonRoot=False))
    assert broken(lambda p: p["containers"][container]["securityContext"]["capabilities"].update(drop=[]))
    assert broken(
        lambda p: p["containers"][container]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])
    )
    assert broken(
        lambda p: p["containers"][container]["securityContext"].update(seccompProfile={"type": "Unconfined"})
    )
    assert broken(lambda p: p["containers"][container]["securityContext"].update(privileged=True))
    assert broken(lambda p: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}))
    assert broken(lambda p: p.update(hostNetwork=True))
    assert broken(lambda p: p["containers"][container]["ports"][0].update(hostPort=8080))


# --- the Service -------------------------------------------------------------------------------------------


def test_service_selects_every_pod_of_the_monitor_on_port_8080() -> None:
    svc = builders.runtime_service(MONITOR)
    validate(svc)
    assert svc["apiVersion"] == "v1" and svc["kind"] == "Service"
    meta = svc["metadata"]
    assert (meta["name"], meta["namespace"]) == (NAME, NAMESPACE)
    assert meta["labels"] == COMMON_LABELS
    assert meta["ownerReferences"] == [OWNER]
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["selector"] == {"poet.dev/monitor": NAME}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    container = only_container(builders.runtime_deployment(MONITOR, spec_of(), 1, "stable", IMAGE))
    assert svc["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}


# --- the reference ConfigMap -------------------------------------------------------------------------------


def reference_archive(rows: int, text_chars: int = 8) -> EncodedReference:
    """A reference archive as a runtime serves it (GET /v1/reference), with its content fingerprint."""
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 2 ** min(4 * text_chars, 62), rows, dtype=np.int64)
    return encode_reference(
        {
            "age": rng.normal(40, 10, rows),
            "merchant": np.char.mod(f"%0{text_chars}x", ids).astype(object),
        }
    )


def test_reference_configmap_holds_the_npz_as_binary_data() -> None:
    archive = reference_archive(500)
    cm = builders.reference_configmap(MONITOR, archive.npz, archive.sha256)
    validate(cm)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    meta = cm["metadata"]
    assert (meta["name"], meta["namespace"]) == ("credit-monitor-reference", NAMESPACE)
    assert meta["labels"] == COMMON_LABELS
    assert meta["annotations"] == {"poet.dev/reference-sha256": archive.sha256}
    assert meta["ownerReferences"] == [OWNER]
    assert "data" not in cm and "immutable" not in cm  # a new upload replaces it in place
    assert list(cm["binaryData"]) == ["reference.npz"]
    decoded = base64.b64decode(cm["binaryData"]["reference.npz"], validate=True)
    assert decoded == archive.npz
    columns = decode_reference(decoded)
    assert sorted(columns) == ["age", "merchant"] and columns["age"].shape == (500,)


def test_reference_configmap_refuses_more_than_900_kib_encoded() -> None:
    limit = 900 * 1024
    fits = reference_archive(20_000)
    assert len(base64.b64encode(fits.npz)) < limit
    builders.reference_configmap(MONITOR, fits.npz, fits.sha256)
    over = reference_archive(40_000, text_chars=16)
    assert len(base64.b64encode(over.npz)) > limit
    with pytest.raises(BuildError, match=r"a ConfigMap holds at most 1 MiB.*smaller reference sample"):
        builders.reference_configmap(MONITOR, over.npz, over.sha256)


def test_reference_configmap_checks_the_content_fingerprint_not_the_bytes() -> None:
    archive = reference_archive(50)
    # The runtime's fingerprint names the content; a digest of the zip bytes is not it.
    assert archive.sha256 != hashlib.sha256(archive.npz).hexdigest()
    with pytest.raises(BuildError, match=r"content fingerprint is [0-9a-f]{64}, not 0{64}"):
        builders.reference_configmap(MONITOR, archive.npz, "0" * 64)
    with pytest.raises(BuildError, match=r"not one a runtime can load: reference is not a readable npz"):
        builders.reference_configmap(MONITOR, b"abc", hashlib.sha256(b"abc").hexdigest())


# --- the history ConfigMap ---------------------------------------------------------------------------------


def history_entries(count: int, features: int = 5, seed: int = 3) -> list[dict]:
    """History entries as a runtime's GET /v1/history holds them, oldest first (two versions)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "at": 1796126400.0 + 60 * i,
            "version": 1 if i < count // 2 else 2,
            "code_sha256": "a" * 64 if i < count // 2 else "b" * 64,
            "overall_drift_score": float(rng.random()),
            "features": {
                f"feature_{j}_{rng.integers(10**9)}": {"score": float(rng.random()), "drift": bool(j % 2)}
                for j in range(features)
            },
        }
        for i in range(count)
    ]


def test_history_configmap_holds_the_history_as_gzip_marked_with_its_version() -> None:
    entries = history_entries(10)
    cm = builders.history_configmap(MONITOR, entries, version=2, limit=100)
    validate(cm)
    meta = cm["metadata"]
    assert (meta["name"], meta["namespace"]) == ("credit-monitor-history", NAMESPACE)
    assert builders.history_configmap_name(NAME) == "credit-monitor-history"
    assert meta["labels"] == COMMON_LABELS
    assert meta["ownerReferences"] == [OWNER]  # collected with the monitor
    assert meta["annotations"] == {"poet.dev/history-version": "2", "poet.dev/history-evaluations": "10"}
    assert "data" not in cm and "immutable" not in cm  # the next promotion replaces it in place
    data = base64.b64decode(cm["binaryData"]["history.json.gz"], validate=True)
    # What the runtime merges at start (`poetmon serve --history-file`): the entries as they were.
    assert decode_history_file(data, max_bytes=10**8) == entries
    with pytest.raises(BuildError, match="version number"):
        builders.history_configmap(MONITOR, entries, version=0, limit=100)


def test_history_configmap_leaves_out_the_oldest_entries_past_its_size() -> None:
    # Random feature names compress badly: 600 entries of 100 features are over a megabyte of gzip.
    entries = history_entries(600, features=100)
    cm = builders.history_configmap(MONITOR, entries, version=7, limit=600)
    encoded = cm["binaryData"]["history.json.gz"]
    assert len(encoded) <= 4 * builders.HISTORY_GZIP_MAX // 3 + 4 < 900 * 1024
    kept = int(cm["metadata"]["annotations"]["poet.dev/history-evaluations"])
    assert 0 < kept < 600
    decoded = decode_history_file(base64.b64decode(encoded), max_bytes=10**9)
    assert decoded == entries[-kept:]  # the newest ones, oldest first
    more = encode_history_file(entries[-int(kept * 1.1) :], limit=600, max_bytes=10**9)[0]
    assert len(more) > builders.HISTORY_GZIP_MAX, "close to the most that fit, not far below"


ARCHIVE = reference_archive(40)


# --- the lessons ConfigMap ---------------------------------------------------------------------------------


def test_lessons_configmap_is_shared_and_owned_by_no_monitor() -> None:
    lessons = json.dumps({"lessons": [{"signature": "KeyError", "remedy": "guard_unknown_columns"}]})
    cm = builders.lessons_configmap("poet-system", lessons)
    validate(cm)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == "poet-monitor-lessons"
    assert cm["metadata"]["namespace"] == "poet-system"
    assert "ownerReferences" not in cm["metadata"]
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "poet-monitor"
    assert cm["data"] == {"lessons.json": lessons}
    assert "immutable" not in cm


def test_lessons_configmap_refuses_bad_json_and_oversize() -> None:
    with pytest.raises(BuildError, match=r"lessons.json is not valid JSON"):
        builders.lessons_configmap("poet-system", "{")
    with pytest.raises(BuildError, match=r"prune old lessons"):
        builders.lessons_configmap("poet-system", json.dumps(["x" * (901 * 1024)]))
    with pytest.raises(BuildError, match=r"namespace"):
        builders.lessons_configmap("", "{}")


# --- comparing with the live object ------------------------------------------------------------------------


def as_served(desired: dict[str, Any]) -> dict[str, Any]:
    """The object as an API server returns it: defaults filled in, status and bookkeeping added."""
    live = copy.deepcopy(desired)
    live["metadata"].update(
        uid="0b9d", resourceVersion="4711", generation=2, creationTimestamp="2026-12-01T10:00:00Z"
    )
    if live["kind"] == "Deployment":
        live["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "2"
        live["spec"]["template"]["metadata"]["creationTimestamp"] = None
        pod = live["spec"]["template"]["spec"]
        pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler")
        pod["containers"][0]["resources"]["limits"]["cpu"] = "1000m"  # a quantity written another way
        live["status"] = {"replicas": 1, "readyReplicas": 1, "observedGeneration": 2}
    if live["kind"] == "Service":
        live["spec"].update(
            clusterIP="10.96.0.12",
            clusterIPs=["10.96.0.12"],
            sessionAffinity="None",
            ipFamilies=["IPv4"],
            ipFamilyPolicy="SingleStack",
            internalTrafficPolicy="Cluster",
        )
    return live


def test_a_served_object_with_defaults_is_up_to_date() -> None:
    for desired in (
        builders.runtime_deployment(MONITOR, spec_of(), 3, "stable", IMAGE),
        builders.runtime_service(MONITOR),
        builders.reference_configmap(MONITOR, ARCHIVE.npz, ARCHIVE.sha256),
    ):
        assert builders.is_up_to_date(as_served(desired), desired)


def test_normalised_quantities_are_the_same_quantity() -> None:
    spec = spec_of(runtime={"resources": {"requests": {"cpu": "0.5", "memory": "1024Mi"}}})
    desired = builders.runtime_deployment(MONITOR, spec, 1, "stable", IMAGE)
    live = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] = {
        "cpu": "500m",
        "memory": "1Gi",
    }
    assert builders.is_up_to_date(live, desired)
    live["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] = "600m"
    assert not builders.is_up_to_date(live, desired)


def test_each_owned_change_is_seen() -> None:
    desired = builders.runtime_deployment(MONITOR, spec_of(), 3, "stable", IMAGE)
    served = as_served(desired)
    changes = {
        "new version": builders.runtime_deployment(MONITOR, spec_of(), 4, "stable", IMAGE),
        "new image": builders.runtime_deployment(
            MONITOR, spec_of(), 3, "stable", "poet-monitor/runtime:0.2.0"
        ),
        "new deadline": builders.runtime_deployment(
            MONITOR, spec_of(rollout={"progressDeadlineSeconds": 900}), 3, "stable", IMAGE
        ),
        "new memory": builders.runtime_deployment(
            MONITOR, spec_of(runtime={"resources": {"limits": {"memory": "4Gi"}}}), 3, "stable", IMAGE
        ),
    }
    for what, changed in changes.items():
        assert not builders.is_up_to_date(served, changed), what
    # Someone scaled it by hand or removed a label: the operator puts it back.
    scaled = copy.deepcopy(served)
    scaled["spec"]["replicas"] = 3
    assert not builders.is_up_to_date(scaled, desired)
    unlabelled = copy.deepcopy(served)
    del unlabelled["metadata"]["labels"]["poet.dev/version"]
    assert not builders.is_up_to_date(unlabelled, desired)
    # A limit the spec no longer sets must leave the pod too.
    no_cpu_limit = builders.runtime_deployment(
        MONITOR, spec_of(runtime={"resources": {"limits": {"memory": "1Gi"}}}), 3, "stable", IMAGE
    )
    assert not builders.is_up_to_date(served, no_cpu_limit)
    # A new reference upload is a change too.
    ref = builders.reference_configmap(MONITOR, ARCHIVE.npz, ARCHIVE.sha256)
    newer_archive = reference_archive(60)
    newer = builders.reference_configmap(MONITOR, newer_archive.npz, newer_archive.sha256)
    assert not builders.is_up_to_date(as_served(ref), newer)


def test_is_up_to_date_refuses_the_clients_snake_case_form() -> None:
    desired = builders.runtime_service(MONITOR)
    snake = {"api_version": "v1", "kind": "Service", "metadata": desired["metadata"], "spec": desired["spec"]}
    with pytest.raises(BuildError, match=r"JSON form"):
        builders.is_up_to_date(snake, desired)
