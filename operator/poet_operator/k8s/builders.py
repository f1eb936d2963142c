"""Pure builders: a ModelMonitor and a version in, Kubernetes object dicts (JSON form, camelCase) out.

No I/O and no Kubernetes client here: the handlers apply what these functions return. `monitor` arguments
are the ModelMonitor object as the API server returns it (a mapping with `metadata.name`, `namespace`,
`uid`), e.g. kopf's `body`.

Where state lives (so any new pod of any version can read it):
- the code of each version: an immutable ConfigMap `NAME-v<N>`, mounted read-only;
- the uploaded reference: the ConfigMap `NAME-reference` (binaryData `reference.npz`), mounted read-only
  and optional into stable and canary pods alike, so a canary evaluates against the same reference as the
  stable version; a ConfigMap because a reference sample is small (capped below the 1 MiB object limit),
  needs no storage class and no volume attachment, and can be read by any number of pods at once;
- checkpoints: an `emptyDir` per pod, which survives container restarts (the crash-restart case) and is
  specific to one version's code anyway (the runtime only restores a checkpoint of the same code);
- the evaluation history across versions: the ConfigMap `NAME-history` (binaryData `history.json.gz`),
  written once per promotion from the promoted canary's pod and mounted optional into every pod, which
  merges it at start, so a promoted version's new pods draw the versions before them (a checkpoint cannot:
  it is per pod).

The stable Deployment rolls with RollingUpdate (maxSurge 1, maxUnavailable 0): when it moves from version
N to N+1 at promotion, the N pod keeps serving ingestion until the N+1 pod is ready, and a new version
that never becomes ready leaves N in place until the progress deadline says so. Nothing in the pod is
exclusive (no ReadWriteOnce volume), so two pods of one role can overlap safely; Recreate would drop
ingestion for the whole start-up of the new version.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import ValidationError

from monitor_runtime import reference_npz
from monitor_runtime.contract import CODE_FILE, CONTRACT, MANIFEST_FILE, VersionManifest, code_sha256
from monitor_runtime.server.history import encode_history_file
from poet_operator.spec import API_VERSION, KIND, MonitorSpec, parse_quantity

Role = Literal["stable", "canary"]
ROLES: tuple[str, ...] = ("stable", "canary")

# --- shared names (HELPERS.md) ---------------------------------------------------------------------------
LABEL_MONITOR = "poet.dev/monitor"
LABEL_VERSION = "poet.dev/version"
LABEL_ROLE = "poet.dev/role"
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_APP_INSTANCE = "app.kubernetes.io/instance"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
RUNTIME_APP_NAME = "poet-monitor-runtime"
MANAGED_BY = "poet-monitor"

ANNOTATION_CODE_SHA256 = "poet.dev/code-sha256"
ANNOTATION_SPEC_HASH = "poet.dev/spec-hash"
ANNOTATION_REFERENCE_SHA256 = "poet.dev/reference-sha256"
ANNOTATION_HISTORY_VERSION = "poet.dev/history-version"
ANNOTATION_HISTORY_EVALUATIONS = "poet.dev/history-evaluations"

REFERENCE_KEY = "reference.npz"
HISTORY_KEY = "history.json.gz"
LESSONS_CONFIGMAP = "poet-monitor-lessons"
LESSONS_KEY = "lessons.json"

# --- the runtime pod ---------------------------------------------------------------------------------------
CONTAINER_NAME = "runtime"
HTTP_PORT = 8080
PORT_NAME = "http"
VERSION_DIR = "/etc/poet/version"
REFERENCE_DIR = "/etc/poet/reference"
REFERENCE_FILE = f"{REFERENCE_DIR}/{REFERENCE_KEY}"
HISTORY_DIR = "/etc/poet/history"
HISTORY_FILE = f"{HISTORY_DIR}/{HISTORY_KEY}"
CHECKPOINT_DIR = "/var/lib/poet/checkpoints"
TMP_DIR = "/tmp"
TERMINATION_LOG = "/dev/termination-log"
# A fixed non-root identity: the runtime image must own nothing it needs to write (the root filesystem is
# read-only), and a numeric UID lets the kubelet verify runAsNonRoot without reading the image.
RUNTIME_UID = 10001
RUNTIME_GID = 10001
# The runtime finishes its shutdown (drain, last evaluation, final checkpoint) within this deadline; the
# grace period leaves room above it so the kubelet never kills the process half-way.
SHUTDOWN_DEADLINE_S = 25
TERMINATION_GRACE_S = SHUTDOWN_DEADLINE_S + 15
REVISION_HISTORY_LIMIT = 2

# --- limits ------------------------------------------------------------------------------------------------
DNS_LABEL_MAX = 63
DNS_SUBDOMAIN_MAX = 253
# A ConfigMap holds at most 1 MiB (data and binaryData together); the rest is headroom for metadata.
CONFIGMAP_PAYLOAD_MAX = 900 * 1024
# The kept history's gzip (512 KiB once base64-encoded): the oldest evaluations are left out past it. Every
# reconcile lists the monitor's ConfigMaps, so it stays well below the object limit.
HISTORY_GZIP_MAX = 384 * 1024

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class BuildError(ValueError):
    """An object cannot be built from these inputs; the message says which input and what to do."""


# --- names -------------------------------------------------------------------------------------------------


def monitor_name_problem(name: str) -> str | None:
    """Why `name` cannot name a monitor's objects (it becomes a label value and a Service name), or None."""
    if not isinstance(name, str) or not name:
        return "metadata.name is empty; give the ModelMonitor a name"
    if len(name) > DNS_LABEL_MAX:
        return (
            f"metadata.name {name!r} has {len(name)} characters; it becomes the label value "
            f"{LABEL_MONITOR} and the Service name, which are limited to {DNS_LABEL_MAX} (a DNS label): "
            "choose a shorter name"
        )
    if not _DNS_1035_LABEL.match(name):
        return (
            f"metadata.name {name!r} is not a DNS-1035 label (lowercase letters, digits and '-', starting "
            "with a letter and ending with a letter or digit), which a Service name must be: rename it"
        )
    return None


def _checked_monitor_name(name: str) -> str:
    problem = monitor_name_problem(name)
    if problem:
        raise BuildError(problem)
    return name


def _checked_subdomain(object_name: str, what: str) -> str:
    if len(object_name) > DNS_SUBDOMAIN_MAX or not _DNS_SUBDOMAIN.match(object_name):
        raise BuildError(
            f"{what} name {object_name!r} ({len(object_name)} characters) is not a DNS subdomain of at "
            f"most {DNS_SUBDOMAIN_MAX} characters; choose a shorter monitor name"
        )
    return object_name


def version_configmap_name(name: str, number: int) -> str:
    """`NAME-v<N>`: the immutable ConfigMap holding version N's code and manifest."""
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise BuildError(f"version number must be an integer >= 1, got {number!r}")
    return _checked_subdomain(f"{_checked_monitor_name(name)}-v{number}", "ConfigMap")


def deployment_name(name: str, role: Role) -> str:
    """`NAME` for the stable Deployment, `NAME-canary` for the canary."""
    if role not in ROLES:
        raise BuildError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    base = _checked_monitor_name(name)
    return _checked_subdomain(base if role == "stable" else f"{base}-canary", "Deployment")


def service_name(name: str) -> str:
    """`NAME`: the Service for ingestion and metrics (a DNS-1035 label of at most 63 characters)."""
    return _checked_monitor_name(name)


def reference_configmap_name(name: str) -> str:
    """`NAME-reference`: the ConfigMap holding the uploaded reference sample."""
    return _checked_subdomain(f"{_checked_monitor_name(name)}-reference", "ConfigMap")


def history_configmap_name(name: str) -> str:
    """`NAME-history`: the ConfigMap holding the evaluation history kept at the last promotion."""
    return _checked_subdomain(f"{_checked_monitor_name(name)}-history", "ConfigMap")


def label_selector(name: str, role: Role | None = None) -> str:
    """The label selector (string form) of a monitor's objects, or of its pods of one role."""
    selector = f"{LABEL_MONITOR}={_checked_monitor_name(name)}"
    if role is not None:
        if role not in ROLES:
            raise BuildError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        selector += f",{LABEL_ROLE}={role}"
    return selector


# --- metadata ----------------------------------------------------------------------------------------------


def _identity(monitor: Mapping[str, Any]) -> tuple[str, str]:
    metadata = monitor.get("metadata") or {}
    name, namespace = metadata.get("name"), metadata.get("namespace")
    if not namespace:
        raise BuildError(f"the ModelMonitor {name!r} has no metadata.namespace; pass the object as served")
    return _checked_monitor_name(name), namespace


def owner_reference(monitor: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference that makes an object belong to (and be deleted with) the monitor."""
    metadata = monitor.get("metadata") or {}
    name, uid = metadata.get("name"), metadata.get("uid")
    if not name or not uid:
        raise BuildError(
            f"an owner reference needs the ModelMonitor's metadata.name and metadata.uid (got name={name!r}, "
            f"uid={uid!r}); pass the object as the API server returned it"
        )
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def common_labels(name: str) -> dict[str, str]:
    """Labels every object of monitor `name` carries."""
    return {
        LABEL_MONITOR: name,
        LABEL_APP_NAME: RUNTIME_APP_NAME,
        LABEL_APP_INSTANCE: name,
        LABEL_MANAGED_BY: MANAGED_BY,
    }


def _metadata(
    monitor: Mapping[str, Any],
    object_name: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    _, namespace = _identity(monitor)
    meta: dict[str, Any] = {
        "name": object_name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(monitor)],
    }
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def _check_payload_size(what: str, size: int, hint: str) -> None:
    if size > CONFIGMAP_PAYLOAD_MAX:
        raise BuildError(
            f"{what} is {size} bytes encoded; a ConfigMap holds at most 1 MiB, so the limit here is "
            f"{CONFIGMAP_PAYLOAD_MAX} bytes ({CONFIGMAP_PAYLOAD_MAX // 1024} KiB): {hint}"
        )


def _parse_manifest(text: str, where: str) -> VersionManifest:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BuildError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BuildError(f"{where} must be a JSON object, got {type(data).__name__}")
    if data.get("contract") != CONTRACT:
        raise BuildError(f"{where} is for contract {data.get('contract')!r}; the runtime speaks {CONTRACT}")
    try:
        return VersionManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors(include_url=False)
        )
        raise BuildError(f"{where} is not a valid manifest ({problems})") from None


# --- ConfigMaps --------------------------------------------------------------------------------------------


def version_configmap(
    monitor: Mapping[str, Any], number: int, code: str, manifest_json: str
) -> dict[str, Any]:
    """The immutable ConfigMap of version `number`: `monitor.py` and `manifest.json`, checked to agree."""
    name, _ = _identity(monitor)
    manifest = _parse_manifest(manifest_json, f"manifest.json of {name} v{number}")
    if manifest.version != number:
        raise BuildError(f"manifest.json says version {manifest.version}, but it is stored as v{number}")
    if manifest.monitor != name:
        raise BuildError(f"manifest.json belongs to monitor {manifest.monitor!r}, not {name!r}")
    actual = code_sha256(code)
    if actual != manifest.code_sha256:
        # The runtime would refuse this version at load (exit 2); better to refuse it before it ships.
        raise BuildError(
            f"monitor.py of {name} v{number} has sha256 {actual}, but manifest.json records "
            f"{manifest.code_sha256}; store the code the manifest was written for"
        )
    _check_payload_size(
        f"version {number} (monitor.py and manifest.json)",
        len(code.encode("utf-8")) + len(manifest_json.encode("utf-8")),
        "the generated code is too large to store",
    )
    labels = {**common_labels(name), LABEL_VERSION: str(number)}
    annotations = {ANNOTATION_CODE_SHA256: manifest.code_sha256, ANNOTATION_SPEC_HASH: manifest.spec_hash}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(monitor, version_configmap_name(name, number), labels, annotations),
        "immutable": True,
        "data": {CODE_FILE: code, MANIFEST_FILE: manifest_json},
    }


def reference_configmap(monitor: Mapping[str, Any], npz_bytes: bytes, sha256: str) -> dict[str, Any]:
    """The ConfigMap `NAME-reference` holding the uploaded reference as binaryData `reference.npz`.

    `sha256` is the content fingerprint the runtime reported for it; the archive must decode to exactly that
    content, so a pod that mounts it later loads what the stable pod held.
    """
    name, _ = _identity(monitor)
    encoded = base64.b64encode(npz_bytes).decode("ascii")
    _check_payload_size(
        f"the reference of {name} ({len(npz_bytes)} bytes of npz)",
        len(encoded),
        "upload a smaller reference sample (fewer rows, or only the monitored columns)",
    )
    try:
        actual = reference_npz.archive_fingerprint(npz_bytes)
    except ValueError as exc:
        raise BuildError(f"the reference archive is not one a runtime can load: {exc}") from None
    if actual != sha256:
        raise BuildError(f"the reference's content fingerprint is {actual}, not {sha256} as its pod reported")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(
            monitor,
            reference_configmap_name(name),
            common_labels(name),
            {ANNOTATION_REFERENCE_SHA256: sha256},
        ),
        "binaryData": {REFERENCE_KEY: encoded},
    }


def history_configmap(
    monitor: Mapping[str, Any], entries: Sequence[Mapping[str, Any]], *, version: int, limit: int
) -> dict[str, Any]:
    """The ConfigMap `NAME-history`: the evaluation history kept when `version` was promoted, as binaryData
    `history.json.gz` (what `poetmon serve --history-file` merges), the newest entries that fit in
    HISTORY_GZIP_MAX. Annotated with the version it was stored for (what the rollout machine compares with
    the stable version) and how many entries it holds."""
    name, _ = _identity(monitor)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise BuildError(f"version number must be an integer >= 1, got {version!r}")
    data, kept = encode_history_file(entries, limit=limit, max_bytes=HISTORY_GZIP_MAX)
    encoded = base64.b64encode(data).decode("ascii")
    _check_payload_size(f"the history of {name}", len(encoded), "lower HISTORY_GZIP_MAX")
    annotations = {ANNOTATION_HISTORY_VERSION: str(version), ANNOTATION_HISTORY_EVALUATIONS: str(kept)}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(monitor, history_configmap_name(name), common_labels(name), annotations),
        "binaryData": {HISTORY_KEY: encoded},
    }


def lessons_configmap(namespace: str, lessons_json: str) -> dict[str, Any]:
    """The cluster-wide lessons ConfigMap (no owner: it is shared by every monitor and outlives each)."""
    if not namespace:
        raise BuildError("the lessons ConfigMap needs the operator's namespace")
    try:
        json.loads(lessons_json)
    except ValueError as exc:
        raise BuildError(f"lessons.json is not valid JSON: {exc}") from None
    _check_payload_size("lessons.json", len(lessons_json.encode("utf-8")), "prune old lessons")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": LESSONS_CONFIGMAP,
            "namespace": namespace,
            "labels": {
                LABEL_APP_NAME: "poet-monitor",
                "app.kubernetes.io/component": "lessons",
                LABEL_MANAGED_BY: MANAGED_BY,
            },
        },
        "data": {LESSONS_KEY: lessons_json},
    }


# --- the runtime -------------------------------------------------------------------------------------------


def runtime_image(spec: MonitorSpec, default_image: str) -> str:
    """The image a monitor's pods run: the spec's `runtime.image` when set, else the operator's default."""
    return spec.runtime.image or default_image


def runtime_command() -> list[str]:
    """The runtime container's command line (`poetmon serve` over the mounted version)."""
    return [
        "poetmon",
        "serve",
        "--code-dir",
        VERSION_DIR,
        "--host",
        "0.0.0.0",
        "--port",
        str(HTTP_PORT),
        "--checkpoint-dir",
        CHECKPOINT_DIR,
        "--termination-log",
        TERMINATION_LOG,
        "--reference-file",
        REFERENCE_FILE,
        "--history-file",
        HISTORY_FILE,
    ]


def _resources(spec: MonitorSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for kind in ("requests", "limits"):
        amounts = getattr(spec.runtime.resources, kind)
        values = {key: value for key, value in (("cpu", amounts.cpu), ("memory", amounts.memory)) if value}
        if values:
            resources[kind] = values
    return resources


def _probe(path: str, *, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "failureThreshold": failures,
        "successThreshold": 1,
    }


def runtime_deployment(
    monitor: Mapping[str, Any], spec: MonitorSpec, version: int, role: Role, image: str
) -> dict[str, Any]:
    """The Deployment running version `version` of the monitor as `role` (stable or canary)."""
    name, _ = _identity(monitor)
    if not image:
        raise BuildError("the runtime image is empty; set --runtime-image or spec.runtime.image")
    deploy_name = deployment_name(name, role)
    selector = {LABEL_MONITOR: name, LABEL_ROLE: role}
    # The version label stays out of the selector (selectors are immutable and the stable Deployment moves
    # between versions); it is on the pod template so pods say which version they run.
    labels = {**common_labels(name), LABEL_ROLE: role, LABEL_VERSION: str(version)}
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": runtime_command(),
        "env": [
            {"name": "POET_MONITOR_NAME", "value": name},
            {"name": "POET_MONITOR_VERSION", "value": str(version)},
            {"name": "POET_MONITOR_ROLE", "value": role},
            {"name": "POET_SHUTDOWN_DEADLINE_S", "value": str(SHUTDOWN_DEADLINE_S)},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "resources": _resources(spec),
        # The listener opens only after the code is loaded and a checkpoint restored (numpy and scipy
        # imports, perhaps a large window): the startup probe allows 3 minutes before liveness counts.
        "startupProbe": _probe("/healthz", period=2, timeout=2, failures=90),
        "livenessProbe": _probe("/healthz", period=10, timeout=5, failures=3),
        "readinessProbe": _probe("/readyz", period=5, timeout=3, failures=2),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_GID,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationMessagePath": TERMINATION_LOG,
        # The runtime writes its feedback record there; when it dies before writing one, the log tail is
        # the next best evidence.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "version", "mountPath": VERSION_DIR, "readOnly": True},
            {"name": "reference", "mountPath": REFERENCE_DIR, "readOnly": True},
            {"name": "history", "mountPath": HISTORY_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
            {"name": "tmp", "mountPath": TMP_DIR},
        ],
    }
    pod_spec = {
        "automountServiceAccountToken": False,
        # With hundreds of Services in a namespace, service links would add thousands of env variables.
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": TERMINATION_GRACE_S,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUNTIME_UID,
            "runAsGroup": RUNTIME_GID,
            "fsGroup": RUNTIME_GID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {
                "name": "version",
                "configMap": {"name": version_configmap_name(name, version), "defaultMode": 0o444},
            },
            {
                "name": "reference",
                # Optional: a monitor without an uploaded reference starts with an empty directory.
                "configMap": {"name": reference_configmap_name(name), "defaultMode": 0o444, "optional": True},
            },
            {
                "name": "history",
                # Optional: before the first promotion there is no kept history.
                "configMap": {"name": history_configmap_name(name), "defaultMode": 0o444, "optional": True},
            },
            {"name": "checkpoints", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(monitor, deploy_name, labels),
        "spec": {
            "replicas": spec.runtime.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
            "revisionHistoryLimit": REVISION_HISTORY_LIMIT,
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def runtime_service(monitor: Mapping[str, Any]) -> dict[str, Any]:
    """The Service `NAME`: selects stable and canary pods alike, so each gets a share of ingestion."""
    name, _ = _identity(monitor)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(monitor, service_name(name), common_labels(name)),
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_MONITOR: name},
            "ports": [{"name": PORT_NAME, "port": HTTP_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


# --- comparing with what is live ---------------------------------------------------------------------------

# Fields the operator owns; everything else (status, defaults the API server fills in, annotations other
# controllers add) is left alone.
_OWNED_TOP = ("spec", "data", "binaryData", "immutable")
_OWNED_METADATA = ("labels", "annotations")


def _same_quantity(a: Any, b: Any) -> bool:
    try:
        return parse_quantity(str(a)) == parse_quantity(str(b))
    except ValueError:
        return False


def _covers(live: Any, desired: Any, path: tuple[str, ...]) -> bool:
    """Whether `live` holds everything `desired` sets (extra keys in live mappings are defaults: ignored)."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return False
        if path and path[-1] in ("resources", "requests", "limits") and set(live) != set(desired):
            # Resources are the operator's entirely: a limit the spec dropped must go from the pod too.
            return False
        return all(key in live and _covers(live[key], value, (*path, key)) for key, value in desired.items())
    if isinstance(desired, list):
        return (
            isinstance(live, list)
            and len(live) == len(desired)
            and all(_covers(a, b, path) for a, b in zip(live, desired, strict=True))
        )
    if live == desired:
        return True
    # The API server normalises quantities ("0.5" comes back as "500m").
    return len(path) >= 2 and path[-2] in ("requests", "limits") and _same_quantity(live, desired)


def is_up_to_date(live: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether the live object already has every field the operator sets in `desired` (then: no patch).

    `live` must be the JSON form (camelCase keys) as the API server sends it, e.g. kopf's body or
    `ApiClient().sanitize_for_serialization(obj)`, not the client's snake_case `to_dict()`.
    Only owned fields are compared: labels, annotations, spec (and ConfigMap data), each as "live holds
    what desired sets", since the API server adds defaults. A key the operator stopped setting is not seen
    here (except in resources); replace the object when the set of fields itself changes.
    """
    if "api_version" in live or "apiVersion" not in live:
        raise BuildError("is_up_to_date needs the live object in JSON form (camelCase keys, with apiVersion)")
    live_meta, desired_meta = live.get("metadata") or {}, desired.get("metadata") or {}
    for key in _OWNED_METADATA:
        if not _covers(live_meta.get(key) or {}, desired_meta.get(key) or {}, ("metadata", key)):
            return False
    return all(
        key not in desired or (key in live and _covers(live[key], desired[key], (key,))) for key in _OWNED_TOP
    )


__all__ = [
    "ANNOTATION_CODE_SHA256",
    "ANNOTATION_HISTORY_EVALUATIONS",
    "ANNOTATION_HISTORY_VERSION",
    "ANNOTATION_REFERENCE_SHA256",
    "ANNOTATION_SPEC_HASH",
    "CHECKPOINT_DIR",
    "CONFIGMAP_PAYLOAD_MAX",
    "HISTORY_DIR",
    "HISTORY_FILE",
    "HISTORY_GZIP_MAX",
    "HISTORY_KEY",
    "HTTP_PORT",
    "LABEL_MONITOR",
    "LABEL_ROLE",
    "LABEL_VERSION",
    "LESSONS_CONFIGMAP",
    "LESSONS_KEY",
    "REFERENCE_DIR",
    "REFERENCE_FILE",
    "REFERENCE_KEY",
    "SHUTDOWN_DEADLINE_S",
    "TERMINATION_GRACE_S",
    "VERSION_DIR",
    "BuildError",
    "common_labels",
    "deployment_name",
    "history_configmap",
    "history_configmap_name",
    "is_up_to_date",
    "label_selector",
    "lessons_configmap",
    "monitor_name_problem",
    "owner_reference",
    "reference_configmap",
    "reference_configmap_name",
    "runtime_command",
    "runtime_deployment",
    "runtime_image",
    "runtime_service",
    "service_name",
    "version_configmap",
    "version_configmap_name",
]
